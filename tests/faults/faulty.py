"""A model for the tests of a rank that fails alone: dlx's MLP, except that on one rank it raises at one training
step. Which rank and step come from the environment (every rank of a run inherits the same one), so that the
other ranks train on normally and meet the failure only through the collectives, as in a real crash.

Used as: PYTHONPATH=tests/faults dlx train --config-dir tests/faults/conf model=faulty_ffn, with
DLX_TEST_FAIL_RANK=1 DLX_TEST_FAIL_STEP=5."""

import os

import torch

from dlx.models.ffn import FeedForward


class FaultyFeedForward(FeedForward):
    def __init__(self, input_shape: list[int], num_outputs: int, hidden_sizes: list[int]) -> None:
        super().__init__(input_shape, num_outputs, hidden_sizes)
        self.training_forwards = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.training_forwards += 1
            failing = os.environ.get("DLX_TEST_FAIL_RANK") == os.environ.get("RANK", "0")
            if failing and self.training_forwards == int(os.environ.get("DLX_TEST_FAIL_STEP", "0")):
                raise ValueError(f"the test's failure on rank {os.environ['RANK']} at step {self.training_forwards}")
        return super().forward(x)

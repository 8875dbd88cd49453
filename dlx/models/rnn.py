from typing import Literal

import torch
from torch import nn

from dlx.models.layers import WeightInit, init_weights


def as_sequence(x: torch.Tensor) -> torch.Tensor:
    """Read an input as a sequence: an image (B, C, H, W) as H rows of C*W features, a vector (B, F) as
    F steps of one feature, a sequence (B, T, F) as it is."""
    if x.dim() == 4:
        return x.permute(0, 2, 1, 3).flatten(2)  # (B, H, C*W)
    if x.dim() == 2:
        return x.unsqueeze(-1)  # (B, F, 1)
    return x


def sequence_shape(input_shape: list[int]) -> tuple[int, int]:
    """(steps, features per step) of as_sequence() for one sample of this shape."""
    if len(input_shape) == 3:
        channels, height, width = input_shape
        return height, channels * width
    if len(input_shape) == 1:
        return input_shape[0], 1
    return input_shape[0], input_shape[1]


class RecurrentNet(nn.Module):
    """A recurrent classifier (vanilla RNN, LSTM or GRU cell) that reads its input one step at a time and
    classifies from the last hidden state (both directions' when bidirectional)."""

    def __init__(
        self,
        input_shape: list[int],
        num_outputs: int,
        cell: Literal["rnn", "lstm", "gru"] = "lstm",
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        weight_init: WeightInit = "default",
    ) -> None:
        super().__init__()
        recurrent = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell]
        _, features = sequence_shape(input_shape)
        self.recurrent = recurrent(
            features,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,  # torch applies it between layers only
        )
        self.head = nn.Linear(hidden_size * (2 if bidirectional else 1), num_outputs)
        init_weights(self, weight_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, hidden = self.recurrent(as_sequence(x))
        if isinstance(hidden, tuple):  # the LSTM also returns its cell state
            hidden = hidden[0]
        # hidden: (layers * directions, B, H); keep the last layer's state of each direction.
        directions = 2 if self.recurrent.bidirectional else 1
        last = hidden[-directions:].transpose(0, 1).flatten(1)  # (B, directions * H)
        return self.head(last)

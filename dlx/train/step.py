"""The optimizer update a task's train_step() calls once per optimizer: backward, gradient clipping, skipping
a non-finite step (trainer.on_nonfinite=skip), the optimizer's step and its scheduler's."""

import math
from typing import Any

import torch
from torch import nn

from dlx.parallel.world import World
from dlx.train.state import TrainState


class Updater:
    """`updater(name, loss)` updates the parameters of optimizer `name` from `loss`.

    Without clipping or skipping, nothing is read back from the device: a step costs no host synchronisation.
    Skipping reads the loss and the gradient norm of every rank once per step, so that a step is skipped
    everywhere or nowhere."""

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer], schedulers: dict[str, Any],
                 grad_clip: float | None, skip_nonfinite: bool, world: World, state: TrainState) -> None:
        self.optimizers = optimizers
        self.schedulers = schedulers
        self.grad_clip = grad_clip
        self.skip_nonfinite = skip_nonfinite
        self.world = world
        self.state = state  # counts the skipped steps

    def __call__(self, name: str, loss: torch.Tensor) -> None:
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip or self.skip_nonfinite:
            parameters = [p for group in optimizer.param_groups for p in group["params"]]
            norm = nn.utils.clip_grad_norm_(parameters, self.grad_clip or math.inf)
            if self.skip_nonfinite and not torch.isfinite(self.world.sum(loss.detach()) + norm):
                self.state.skipped_steps += 1
                return
        optimizer.step()
        if name in self.schedulers:
            self.schedulers[name].step()

    @property
    def lr(self) -> float:
        """The first optimizer's current learning rate, for the training rows."""
        return next(iter(self.optimizers.values())).param_groups[0]["lr"]

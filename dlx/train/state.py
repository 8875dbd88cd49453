"""Where a run is (TrainState, saved in every checkpoint) and where it is going (Schedule: steps per epoch,
when to log, validate and save), and the sample order of each epoch."""

import math
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from dlx.errors import DlxError

SMOKE_BATCHES = 2


@dataclass
class TrainState:
    step: int = 0  # optimizer steps done (for a GAN, one step updates both networks)
    epoch: int = 0  # epochs completed
    batch_in_epoch: int = 0  # batches of the current epoch done
    best_value: float | None = None
    best_step: int | None = None
    skipped_steps: int = 0  # steps with a non-finite loss or gradient, skipped under on_nonfinite=skip
    evals_without_improvement: int = 0  # for early stopping (trainer.patience)
    stopped_early: bool = False
    train_samples: int = 0  # samples trained on, and the seconds spent on it (validation excluded)
    train_seconds: float = 0.0


@dataclass
class Schedule:
    steps_per_epoch: int
    total_steps: int
    eval_every: int
    log_every: int
    max_eval_batches: int | None

    @classmethod
    def plan(cls, trainer: DictConfig, num_train: int, world_size: int = 1) -> "Schedule":
        """Steps are counted per rank: each of `world_size` processes trains on num_train // world_size
        samples of every epoch, in batches of trainer.batch_size."""
        if num_train < world_size:
            raise DlxError(f"The training split has {num_train} samples, fewer than the {world_size} processes that "
                           "would share it. Train in fewer processes (trainer.devices) or on more data.")
        num_train //= world_size
        steps_per_epoch = math.ceil(num_train / trainer.batch_size)
        if num_train % trainer.batch_size == 1 and steps_per_epoch > 1:
            steps_per_epoch -= 1  # drop a last batch of one sample: batch norm cannot normalise it
        if trainer.smoke:
            return cls(steps_per_epoch, SMOKE_BATCHES, SMOKE_BATCHES, 1, SMOKE_BATCHES)
        total = trainer.max_steps or trainer.max_epochs * steps_per_epoch
        return cls(steps_per_epoch, total, trainer.eval_every or steps_per_epoch, trainer.log_every, None)


def epoch_order(num_samples: int, epoch: int, seed: int, device: str) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_samples, generator=generator).to(device)

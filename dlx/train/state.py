"""Where a run is (TrainState, saved in every checkpoint) and where it is going (Schedule: the batches of each
epoch, and at which steps to log, validate and save).

Every split is batched by sample index, in memory or streamed from files alike (dlx.data): an epoch is a
permutation drawn from (seed, epoch) alone, so a run's sample order does not depend on anything else that
consumed random numbers, and a resumed run continues inside its epoch in the same order.
"""

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from dlx.data import Batch, Split
from dlx.errors import DlxError

SMOKE_BATCHES = 2
OrderOfEpoch = Callable[[int], torch.Tensor]  # epoch -> this rank's permutation of the training samples


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
    pruned: bool = False  # stopped early by a search's pruner (also stopped_early)
    train_samples: int = 0  # samples trained on, and the seconds spent on it (validation excluded)
    train_seconds: float = 0.0


@dataclass
class Schedule:
    steps_per_epoch: int
    total_steps: int
    eval_every: int
    log_every: int
    max_eval_batches: int | None
    batch_size: int
    checkpoint_every: int | None = None  # steps between saves besides those at each validation

    @classmethod
    def plan(cls, trainer: DictConfig, num_train: int, world_size: int = 1) -> "Schedule":
        """Steps are counted per rank: each of `world_size` processes trains on num_train // world_size
        samples of every epoch, in batches of trainer.batch_size."""
        if num_train < world_size:
            raise DlxError(f"The training split has {num_train} samples, fewer than the {world_size} processes that "
                           "would share it. Train in fewer processes (trainer.devices) or on more data.")
        num_train //= world_size
        batch_size = trainer.batch_size
        steps_per_epoch = math.ceil(num_train / batch_size)
        if num_train % batch_size == 1 and steps_per_epoch > 1:
            steps_per_epoch -= 1  # drop a last batch of one sample: batch norm cannot normalise it
        if trainer.smoke:
            return cls(steps_per_epoch, SMOKE_BATCHES, SMOKE_BATCHES, 1, SMOKE_BATCHES, batch_size,
                       trainer.checkpoint_every)
        total = trainer.max_steps or trainer.max_epochs * steps_per_epoch
        return cls(steps_per_epoch, total, trainer.eval_every or steps_per_epoch, trainer.log_every, None, batch_size,
                   trainer.checkpoint_every)

    def batches(self, state: TrainState, order_of_epoch: OrderOfEpoch, split: Split) -> Iterator[Batch]:
        """The (x, y) batch of each step from `state` on, to the last step (none for a run that stopped early:
        its checkpoint resumes to nothing more). The split is asked for the rest of each epoch at once, so that
        a streamed one reads ahead. The state's position in the epoch advances as each batch is handed out, so
        that a checkpoint saved after the step counts it done; a new epoch begins once the consumer is through
        with the last batch of the one before."""
        while state.step < self.total_steps and not state.stopped_early:
            order = order_of_epoch(state.epoch)
            starts = range(state.batch_in_epoch * self.batch_size, self.steps_per_epoch * self.batch_size,
                           self.batch_size)
            for batch in split.batches([order[begin : begin + self.batch_size] for begin in starts]):
                state.batch_in_epoch += 1
                yield batch
                if state.step >= self.total_steps:
                    return
            state.epoch += 1
            state.batch_in_epoch = 0

    def is_last_step(self, step: int) -> bool:
        return step == self.total_steps

    def is_log_step(self, step: int) -> bool:
        return step % self.log_every == 0 or step == self.total_steps

    def is_eval_step(self, step: int) -> bool:
        return step % self.eval_every == 0 or step == self.total_steps

    def is_checkpoint_step(self, step: int) -> bool:
        return self.checkpoint_every is not None and step % self.checkpoint_every == 0

    def epochs_done(self, state: TrainState) -> float:
        """Epochs trained, counting the current one's batches as a fraction."""
        return state.epoch + state.batch_in_epoch / self.steps_per_epoch



def epoch_order(num_samples: int, epoch: int, seed: int, device: str) -> torch.Tensor:
    """The permutation of the training samples for `epoch`: the same for the same (seed, epoch), on every rank."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_samples, generator=generator).to(device)


def rank_share(order: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank `rank`'s samples of an epoch: every world_size-th of the permutation, from its rank on; the last
    len % world_size samples sit the epoch out, so that every rank has as many batches."""
    return order[rank : len(order) - len(order) % world_size : world_size]

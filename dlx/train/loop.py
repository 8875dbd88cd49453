"""The training loop, the same for every model family: fit() drives the phases of a Loop, one step at a time.

Data-parallel (several processes, `world`): every rank draws the same permutation and trains on its own share
of it through DistributedDataParallel, which averages the gradients. Every value that decides what the loop does
next (the losses checked for NaN, validation metrics, a stop request) is first combined over the ranks, so that
every rank takes the same decisions; rank 0 alone writes files.
"""

import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from dlx.data import Batch, Split
from dlx.errors import DlxError
from dlx.parallel.world import World
from dlx.store.metrics import MetricsLog, finite
from dlx.train.augment import Augment
from dlx.train.checkpointing import CheckpointWriter
from dlx.train.compiling import CompileFailures, compiled
from dlx.train.evaluate import evaluate
from dlx.train.monitor import BestMonitor, IntervalMeter
from dlx.train.signals import SAVE_NOW, Interrupted
from dlx.train.state import Schedule, TrainState, epoch_order, rank_share
from dlx.train.step import Updater
from dlx.train.tasks import Task
from dlx.ui.console import logger
from dlx.ui.progress import TrainingProgress


class Pruning(Protocol):
    """What a hyperparameter search (dlx.sweep) gives a run it may prune: told the monitored metric at each
    validation, it answers whether the run should stop now. Asked on rank 0 only."""

    def report(self, validation: int, value: float) -> bool:
        """`value`: the monitored metric at the `validation`-th validation of the run (1, 2, ...: with the
        default trainer.eval_every, the epoch). True: stop the run here."""
        ...


def fit(loop: "Loop") -> TrainState:
    """Train from loop.state to the schedule's last step, validating and checkpointing on the way.

    The state may come from a checkpoint: training then continues at its step, inside its epoch, in the same
    sample order."""
    loop.model.train()
    for batch in loop.schedule.batches(loop.state, loop.order_of_epoch, loop.data_train):
        loop.train_step(batch)
        if loop.schedule.is_log_step(loop.state.step):
            loop.log_interval()
        if loop.schedule.is_eval_step(loop.state.step):
            loop.validate_and_save()
        elif loop.schedule.is_checkpoint_step(loop.state.step):
            loop.save()
        loop.stop_if_signalled()
        if loop.state.stopped_early:
            break
    return loop.state


@dataclass
class Loop:
    """One run's training, as phases that fit() calls. Built by dlx.train.run from the run's parts."""

    model: nn.Module  # evaluation, checks and checkpoints use the model itself
    task: Task
    data_train: Split  # prepared by the task: batches as the model sees them, on the device
    data_val: Split
    schedule: Schedule
    updater: Updater
    checkpoints: CheckpointWriter
    monitor: BestMonitor
    metrics_log: MetricsLog
    progress: TrainingProgress
    world: World
    state: TrainState
    run_dir: Path
    device: str
    seed: int  # the sample order's: trainer.seed
    eval_batch_size: int
    mixed_precision: AbstractContextManager  # autocast, or nothing at 32 bits
    stop_requested: Callable[[], int]  # the signal number once the user asked to stop (SIGINT, SIGTERM), SAVE_NOW, or 0
    augment: Augment | None = None  # flips, shifts: changes each training batch before the model sees it
    pruning: Pruning | None = None  # a search's trial: may stop the run after a validation
    compile: bool = False  # trainer.compile: the steps call the model through torch.compile
    train_model: nn.Module = field(init=False)  # what the steps call: under DDP, the model in its wrapper
    compile_failures: AbstractContextManager = field(init=False)  # a compile failure as one paragraph, or nothing
    meter: IntervalMeter = field(init=False)
    started: float = field(init=False)

    def __post_init__(self) -> None:
        # Under DDP the model (or the GAN's two networks) in DistributedDataParallel, and compiled around it when
        # asked (torch.compile of the wrapper, so that DDP's gradient buckets are kept); the parameters are the
        # model's own tensors either way.
        wrap = self.world.wrap if self.world.size > 1 else None
        if self.compile:
            wrap = (lambda module: compiled(self.world.wrap(module))) if wrap else compiled
        self.train_model = self.task.training_view(self.model, wrap) if wrap else self.model
        self.compile_failures = CompileFailures(type(self.model).__name__) if self.compile else nullcontext()
        self.meter = IntervalMeter(self.world, drop_nonfinite=self.updater.skip_nonfinite)
        self.started = time.perf_counter()

    def order_of_epoch(self, epoch: int) -> torch.Tensor:
        """This rank's permutation of the training samples for `epoch`."""
        order = epoch_order(len(self.data_train), epoch, self.seed, self.device)
        return rank_share(order, self.world.rank, self.world.size)

    def train_step(self, batch: Batch) -> None:
        """One optimizer step (for a GAN, one of each network) on one batch."""
        x, y = batch
        if self.augment:
            x = self.augment(x)
        with self.mixed_precision, self.compile_failures:
            values = self.task.train_step(self.train_model, x, y, self.updater)
        self.state.step += 1
        self.meter.add(values, len(x))
        self.progress.advance(self.state.step)

    def log_interval(self) -> None:
        """A row of training metrics: the interval's means, the learning rate and the throughput."""
        row = self.meter.means()
        self.check_finite(row)
        now = time.perf_counter()
        seen, seconds = self.meter.samples(), now - self.meter.started
        row |= {"lr": self.updater.lr, "samples_per_sec": seen / seconds}
        if self.updater.skip_nonfinite:
            row["skipped_steps"] = self.state.skipped_steps
        self.log("train", row, now)
        self.state.train_samples += seen
        self.state.train_seconds += seconds
        self.meter.restart(now)

    def validate_and_save(self) -> None:
        """Validate, record the monitored metric (best, patience), save, and let the task look (GAN samples)."""
        started = time.perf_counter()
        self.check_finite(weights_too=True)
        self.world.copy_from_main(self.model.buffers())  # batch-norm statistics: rank 0's, which it saves
        val = evaluate(self.model, self.task, self.data_val, self.eval_batch_size, self.schedule.max_eval_batches,
                       self.mixed_precision, self.world)
        self.log("val", val, time.perf_counter())
        # `val` holds the same all-reduced numbers on every rank: the decisions below agree.
        improved = self.monitor.update(self.state, val, self.schedule.is_last_step(self.state.step))
        self.prune_if_told(val)  # before the save, so that the checkpoint records the decision
        # Without a validation split there is nothing to choose on: the best checkpoint is the last.
        self.checkpoints.save(self.state, val, improved or not val)
        if self.world.is_main:
            self.task.after_validation(self.model, self.run_dir, self.state.step, self.metrics_log)
        self.model.train()
        self.meter.pause(time.perf_counter() - started)  # validation is not training throughput

    def prune_if_told(self, val: dict[str, float]) -> None:
        """A search's pruner, asked on rank 0, may stop the run at this validation; every rank stops with it, and
        the run ends as if stopped early (tested, summarised), with its status `pruned`."""
        if self.pruning is None or not val:
            return
        number = math.ceil(self.state.step / self.schedule.eval_every)  # validations happen every eval_every steps
        value = val.get(self.monitor.metric.removeprefix("val/"), math.nan)
        stop = self.world.is_main and self.pruning.report(number, value)
        if self.world.max(int(stop)) and not self.schedule.is_last_step(self.state.step) and not self.state.stopped_early:
            self.state.stopped_early = self.state.pruned = True
            logger.info(f"Pruned at step {self.state.step} (validation {number}): the search stops this run, whose "
                        f"{self.monitor.metric} {value:.4f} is not promising next to the other trials' at this point")

    def save(self) -> None:
        """last.ckpt with the weights of this step, checked first."""
        self.check_finite(weights_too=True)
        self.checkpoints.save(self.state, {}, improved=False)

    def stop_if_signalled(self) -> None:
        """A signal may reach some ranks only, or between their steps: all stop (or save) after the same step."""
        signal_number = self.world.max(self.stop_requested())
        if signal_number == SAVE_NOW:  # SIGTERM under SLURM: SIGKILL follows, and the job may be requeued
            self.save()
        elif signal_number and not self.schedule.is_last_step(self.state.step):
            self.save()
            raise Interrupted(signal_number, self.state.step, self.checkpoints.last)

    def check_finite(self, row: dict[str, float] | None = None, weights_too: bool = False) -> None:
        """Called before anything is logged or saved, so no checkpoint ever holds the weights of a bad step.

        A finite loss can still come with an infinite gradient; the weights it produced are checked before
        each save. One synchronisation (and, across ranks, one reduction) per check."""
        if self.updater.skip_nonfinite:
            return
        weights = torch.stack([p.detach().isfinite().all() for p in self.model.parameters()]).all() \
            if weights_too else None
        bad = self.meter.first_bad_step(self.state.step, weights)
        row = row or {}
        if bad or not all(finite(value) for value in row.values()):
            raise non_finite_error(row, bad or self.state.step, self.checkpoints.folder)

    def log(self, split: str, values: dict[str, float], now: float) -> None:
        if not self.world.is_main:
            return
        row = {"step": self.state.step, "epoch": round(self.schedule.epochs_done(self.state), 4), "split": split,
               **values, "elapsed": round(now - self.started, 3)}
        self.metrics_log.write(row)
        self.progress.log(row)


def non_finite_error(row: dict[str, float], step: int, checkpoints: Path) -> DlxError:
    bad = ", ".join(f"{key}={value}" for key, value in row.items() if not finite(value)) or "the loss"
    return DlxError(f"Training diverged at step {step}: {bad} is not finite (NaN or infinite). The usual causes "
                    "are a learning rate that is too high, no gradient clipping (trainer.grad_clip=1.0), or inputs "
                    f"with NaN or huge values. The checkpoints in {checkpoints}, if any, hold the last good state "
                    "(validated before each save). Lower optimizer.lr and train again, or pass "
                    "trainer.on_nonfinite=skip to skip such steps.")

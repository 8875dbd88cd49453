"""What the loop measures and decides between steps: the values of a logging interval (and the first step
whose loss was not finite), and the best validation metric with its patience."""

import math
import time

import torch
from omegaconf import DictConfig

from dlx.errors import DlxError, did_you_mean
from dlx.parallel.world import World
from dlx.store.metrics import finite
from dlx.train.state import TrainState
from dlx.train.tasks import Task
from dlx.ui.console import logger

StepValues = dict[str, torch.Tensor]  # a step's means (losses...) as 0-dim device tensors


class IntervalMeter:
    """The values and batch sizes of the steps since the last log, kept as the device tensors the task
    returned: no tensor operation and no synchronisation per step, and a value that turns out not finite
    names its step exactly. Also times the interval's training (validation excluded)."""

    def __init__(self, world: World, drop_nonfinite: bool) -> None:
        self.world = world
        self.drop_nonfinite = drop_nonfinite  # on_nonfinite=skip: a skipped step is not logged
        self.steps: list[tuple[StepValues, int]] = []
        self.started = time.perf_counter()

    def add(self, values: StepValues, batch_size: int) -> None:
        # Under on_nonfinite=skip (one synchronisation per step already), a skipped step is left out.
        if self.drop_nonfinite and not self.world.all(torch.stack(list(values.values())).isfinite().all()):
            return
        self.steps.append((values, batch_size))

    def samples(self) -> int:
        """Samples trained on in the interval, by every rank (their batches have the same sizes)."""
        return self.world.size * sum(size for _, size in self.steps)

    def means(self) -> dict[str, float]:
        """The one host synchronisation per logging interval: reading the interval's values."""
        return interval_means(self.steps, self.world)

    def first_bad_step(self, step: int, weights_finite: torch.Tensor | None = None) -> int:
        """The first of the interval's steps (ending at `step`) whose values are not finite on some rank, else
        `step` itself when `weights_finite` (a flag for the weights after it) is false, else 0."""
        flags = stacked(self.steps).isfinite().all(dim=1) if self.steps else torch.ones(0, dtype=torch.bool)
        if weights_finite is not None:
            flags = torch.cat([flags.to(weights_finite.device), weights_finite.view(1)])
        if not len(flags):
            return 0
        bad_at = (~self.world.all(flags)).nonzero()
        # The first false flag names its step; the weights' flag, after the steps', names the current one.
        return min(step - len(self.steps) + 1 + int(bad_at[0]), step) if len(bad_at) else 0

    def pause(self, seconds: float) -> None:
        """Leave `seconds` (a validation) out of the interval's training time."""
        self.started += seconds

    def restart(self, now: float) -> None:
        self.steps = []
        self.started = now


def stacked(steps: list[tuple[StepValues, int]]) -> torch.Tensor:
    """(steps, values) of an interval, in one stack (a stack per step cost more than writing the interval's row);
    every step's values have the same keys in the same order, as one task's train_step returns them."""
    return torch.stack([value.float() for values, _ in steps for value in values.values()]).view(len(steps), -1)


def interval_means(steps: list[tuple[StepValues, int]], world: World) -> dict[str, float]:
    """Each value's mean over the interval's samples (the batches' means weighted by their sizes), averaged
    over the ranks (whose intervals have the same number of samples)."""
    if not steps:
        return {}
    names = list(steps[0][0])
    values = stacked(steps)
    sizes = torch.tensor([size for _, size in steps], dtype=values.dtype, device=values.device)
    means = world.mean((values * sizes[:, None]).sum(dim=0) / sizes.sum())
    return dict(zip(names, means.tolist()))


class BestMonitor:
    """The monitored validation metric: which validation improved on the best so far, and early stopping
    after `patience` validations without improvement. Its record lives in the TrainState, so it resumes."""

    def __init__(self, metric: str, mode: str, patience: int | None) -> None:
        self.metric = metric  # val/acc, val/loss...
        self.mode = mode  # max | min
        self.patience = patience

    def better(self, value: float, best: float | None) -> bool:
        return finite(value) and (best is None or (value > best if self.mode == "max" else value < best))

    def update(self, state: TrainState, val: dict[str, float], last_step: bool) -> bool:
        """Record a validation's metrics in `state`; whether they are the best so far."""
        value = val.get(self.metric.removeprefix("val/"), math.nan) if val else math.nan
        improved = self.better(value, state.best_value)
        if improved:
            state.best_value, state.best_step = value, state.step
        if val:
            state.evals_without_improvement = 0 if improved else state.evals_without_improvement + 1
        if self.patience and state.evals_without_improvement >= self.patience and not last_step:
            state.stopped_early = True
            logger.info(f"Early stop at step {state.step}: no better {self.metric} in {self.patience} "
                        f"validations (best {state.best_value} at step {state.best_step})")
        return improved


def monitored(trainer: DictConfig, task: Task) -> tuple[str, str]:
    """(metric, mode) that chooses the best checkpoint: the config's, or the task's default."""
    metric, mode = task.default_monitor
    if trainer.monitor.metric != "auto":
        metric = trainer.monitor.metric
        names = [f"val/{name}" for name in task.metric_names]
        if metric not in names:
            raise DlxError(f'trainer.monitor.metric="{metric}" is not measured by this run.'
                           f"{did_you_mean(metric, names)} Choose one of: {', '.join(names)}.")
        if metric != task.default_monitor[0]:
            mode = "max" if "acc" in metric else "min"
    if trainer.monitor.mode != "auto":
        mode = trainer.monitor.mode
    return metric, mode

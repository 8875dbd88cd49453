"""The training engine: fit() and evaluate(), the same loop for every model family.

Data sets are tensors in memory, batched by index: an epoch is a permutation drawn from (seed, epoch) alone,
so a run's sample order does not depend on anything else that consumed random numbers.
"""

import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from dlx import __version__
from dlx.checkpoint import FORMAT_VERSION, capture_rng_state, save_checkpoint
from dlx.data import DataSplits
from dlx.errors import DlxError
from dlx.metrics import MetricsLog, finite
from dlx.progress import TrainingProgress
from dlx.tasks import Adversarial, Task

SMOKE_BATCHES = 2


@dataclass
class TrainState:
    step: int = 0  # optimizer steps done (for a GAN, one step updates both networks)
    epoch: int = 0  # epochs completed
    batch_in_epoch: int = 0  # batches of the current epoch done
    best_value: float | None = None
    best_step: int | None = None


@dataclass
class Schedule:
    steps_per_epoch: int
    total_steps: int
    eval_every: int
    log_every: int
    max_eval_batches: int | None

    @classmethod
    def plan(cls, trainer: DictConfig, num_train: int) -> "Schedule":
        steps_per_epoch = math.ceil(num_train / trainer.batch_size)
        if trainer.smoke:
            return cls(steps_per_epoch, SMOKE_BATCHES, SMOKE_BATCHES, 1, SMOKE_BATCHES)
        total = trainer.max_steps or trainer.max_epochs * steps_per_epoch
        return cls(steps_per_epoch, total, trainer.eval_every or steps_per_epoch, trainer.log_every, None)


def monitored(trainer: DictConfig, task: Task) -> tuple[str, str]:
    """(metric, mode) that chooses the best checkpoint: the config's, or the task's default."""
    metric, mode = task.default_monitor
    if trainer.monitor.metric != "auto":
        metric = trainer.monitor.metric
        mode = trainer.monitor.mode if trainer.monitor.mode != "auto" else ("max" if "acc" in metric else "min")
    elif trainer.monitor.mode != "auto":
        mode = trainer.monitor.mode
    return metric, mode


def epoch_order(num_samples: int, epoch: int, seed: int, device: str) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_samples, generator=generator).to(device)


def fit(
    model: nn.Module,
    task: Task,
    optimizers: dict[str, torch.optim.Optimizer],
    schedulers: dict[str, Any],
    data: DataSplits,
    trainer: DictConfig,
    config: dict[str, Any],
    run_dir: Path,
    device: str,
    progress: TrainingProgress,
    state: TrainState,
) -> TrainState:
    x_train, y_train = (t.to(device) for t in data.train)
    schedule = Schedule.plan(trainer, len(x_train))
    metric, mode = monitored(trainer, task)
    metrics_log = MetricsLog(run_dir / "metrics.jsonl")
    checkpoints = run_dir / "checkpoints"

    def update(name: str, loss: torch.Tensor) -> None:
        optimizer = optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if trainer.grad_clip:
            nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], trainer.grad_clip)
        optimizer.step()
        if name in schedulers:
            schedulers[name].step()

    sums: dict[str, torch.Tensor] = {}
    seen = 0
    interval_start = time.perf_counter()
    start = interval_start
    model.train()
    while state.step < schedule.total_steps:
        order = epoch_order(len(x_train), state.epoch, trainer.seed, device)
        for batch in range(state.batch_in_epoch, schedule.steps_per_epoch):
            index = order[batch * trainer.batch_size : (batch + 1) * trainer.batch_size]
            for key, value in task.train_step(model, x_train[index], y_train[index], update).items():
                sums[key] = sums[key] + value if key in sums else value
            seen += len(index)
            state.step += 1
            state.batch_in_epoch = batch + 1
            progress.advance(state.step)
            epoch = state.epoch + state.batch_in_epoch / schedule.steps_per_epoch
            finished = state.step == schedule.total_steps

            if state.step % schedule.log_every == 0 or finished:
                # The one host synchronisation per logging interval: reading the summed losses.
                row = {key: value.item() / seen for key, value in sums.items()}
                if not all(finite(value) for value in row.values()):
                    raise non_finite_error(row, state.step, checkpoints)
                now = time.perf_counter()
                row |= {"lr": first_lr(optimizers), "samples_per_sec": seen / (now - interval_start)}
                log_row(metrics_log, progress, "train", state.step, epoch, row, now - start)
                sums, seen, interval_start = {}, 0, now

            if state.step % schedule.eval_every == 0 or finished:
                eval_started = time.perf_counter()
                val = evaluate(model, task, *data.val, trainer.eval_batch_size, device, schedule.max_eval_batches)
                log_row(metrics_log, progress, "val", state.step, epoch, val, time.perf_counter() - start)
                value = val.get(metric.removeprefix("val/"), math.nan) if val else math.nan
                improved = finite(value) and (state.best_value is None or
                                              (value > state.best_value if mode == "max" else value < state.best_value))
                if improved:
                    state.best_value, state.best_step = value, state.step
                payload = checkpoint_payload(config, model, optimizers, schedulers, state, val)
                save_checkpoint(checkpoints / "last.ckpt", payload)
                # Without a validation split there is nothing to choose on: the best checkpoint is the last.
                if improved or not val:
                    copy_checkpoint(checkpoints / "last.ckpt", checkpoints / "best.ckpt")
                if isinstance(task, Adversarial):
                    task.save_samples(model, run_dir / "samples" / f"step_{state.step:07d}.png")
                model.train()
                interval_start += time.perf_counter() - eval_started  # validation is not training throughput

            if finished:
                break
        if state.batch_in_epoch == schedule.steps_per_epoch:
            state.epoch += 1
            state.batch_in_epoch = 0
    metrics_log.close()
    return state


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    task: Task,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    device: str,
    max_batches: int | None = None,
) -> dict[str, float]:
    """Mean of each metric over (x, y), in fixed batches, so the same weights always give the same numbers."""
    was_training = model.training
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    count = 0
    for batch_index, begin in enumerate(range(0, len(x), batch_size)):
        if max_batches is not None and batch_index >= max_batches:
            break
        xb, yb = x[begin : begin + batch_size].to(device), y[begin : begin + batch_size].to(device)
        for key, value in task.eval_batch(model, xb, yb, batch_index).items():
            value = value.double()
            sums[key] = sums[key] + value if key in sums else value
        count += len(xb)
    model.train(was_training)
    if count == 0:
        return {}
    return {key: value.item() / count for key, value in sums.items()}


def log_row(log: MetricsLog, progress: TrainingProgress, split: str, step: int, epoch: float,
            values: dict[str, float], elapsed: float) -> None:
    row = {"step": step, "epoch": round(epoch, 4), "split": split, **values, "elapsed": round(elapsed, 3)}
    log.write(row)
    progress.log(row)


def first_lr(optimizers: dict[str, torch.optim.Optimizer]) -> float:
    return next(iter(optimizers.values())).param_groups[0]["lr"]


def checkpoint_payload(config: dict[str, Any], model: nn.Module, optimizers: dict[str, Any],
                       schedulers: dict[str, Any], state: TrainState, val: dict[str, float]) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "dlx_version": __version__,
        "torch_version": str(torch.__version__),
        "config": config,
        "model": model.state_dict(),
        "optimizers": {name: optimizer.state_dict() for name, optimizer in optimizers.items()},
        "schedulers": {name: scheduler.state_dict() for name, scheduler in schedulers.items()},
        "state": asdict(state),
        "val": val,
        "rng": capture_rng_state(),
    }


def copy_checkpoint(source: Path, destination: Path) -> None:
    """Make `destination` the same complete file as `source`, atomically: a hard link renamed into place
    (no second write), or a copy where the file system has no hard links."""
    temporary = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    try:
        os.link(source, temporary)
    except OSError:
        shutil.copyfile(source, temporary)
    os.replace(temporary, destination)


def non_finite_error(row: dict[str, float], step: int, checkpoints: Path) -> DlxError:
    bad = ", ".join(f"{key}={value}" for key, value in row.items() if not finite(value))
    return DlxError(f"Training diverged: {bad} in the steps up to {step}. The usual causes are a learning rate "
                    "that is too high, no gradient clipping (trainer.grad_clip=1.0), or inputs with NaN or huge "
                    f"values. The last good checkpoint, if any, is in {checkpoints}; lower optimizer.lr and train again.")

"""The training engine: fit() and evaluate(), the same loop for every model family.

Data sets are tensors in memory, batched by index: an epoch is a permutation drawn from (seed, epoch) alone,
so a run's sample order does not depend on anything else that consumed random numbers.

Data-parallel (several processes, `world`): every rank draws the same permutation and trains on its own share
of it through DistributedDataParallel, which averages the gradients. Every value that decides what the loop does
next (the losses checked for NaN, validation metrics, a stop request) is first combined over the ranks, so that
every rank takes the same decisions; rank 0 alone writes files.
"""

import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from dlx import __version__
from dlx.data import DataSplits
from dlx.errors import DlxError
from dlx.parallel.world import World
from dlx.store.checkpoint import FORMAT_VERSION, capture_rng_state, copy_checkpoint, save_checkpoint
from dlx.store.metrics import MetricsLog, finite
from dlx.train.augment import Augment
from dlx.train.evaluate import autocast, evaluate, monitored
from dlx.train.signals import Interrupted
from dlx.train.state import Schedule, TrainState, epoch_order
from dlx.train.tasks import Adversarial, Task
from dlx.ui.console import logger
from dlx.ui.progress import TrainingProgress


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
    metrics_log: MetricsLog,
    progress: TrainingProgress,
    state: TrainState,
    stop_requested: Callable[[], int],
    world: World,
    augment: Augment | None = None,
) -> TrainState:
    """Train until the planned number of steps, validating and checkpointing on the way.

    `state` may come from a checkpoint: training then continues at its step, inside its epoch, in the same
    sample order. `stop_requested()` returns a signal number once the user asked to stop (SIGINT, SIGTERM):
    the current step finishes, last.ckpt is written, and Interrupted is raised. `augment` (flips, shifts)
    changes each training batch before the model sees it.
    """
    x_train, y_train = data.train  # prepared by the task, on the device
    schedule = Schedule.plan(trainer, len(x_train), world.size)
    # What the training steps call: under DDP the model (or the GAN's two networks) in DistributedDataParallel.
    # Evaluation, checks and checkpoints use `model` itself, whose parameters are the same tensors.
    train_model = task.training_view(model, world.wrap) if world.size > 1 else model
    metric, mode = monitored(trainer, task)
    checkpoints = run_dir / "checkpoints"
    skip_nonfinite = trainer.on_nonfinite == "skip"
    # Plain values for the per-step path: reading an OmegaConf node costs microseconds each time.
    batch_size, grad_clip, checkpoint_every = trainer.batch_size, trainer.grad_clip, trainer.checkpoint_every
    mixed_precision = autocast(device, trainer.precision)
    # The values (losses...) and batch sizes of the steps since the last log, as the device tensors the task
    # returned: no tensor operation and no synchronisation per step, and a value that turns out not finite
    # names its step exactly.
    recent: list[tuple[dict[str, torch.Tensor], int]] = []

    def update(name: str, loss: torch.Tensor) -> None:
        optimizer = optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip or skip_nonfinite:
            parameters = [p for group in optimizer.param_groups for p in group["params"]]
            norm = nn.utils.clip_grad_norm_(parameters, grad_clip or math.inf)
            # The loss of every rank: a step is skipped everywhere or nowhere. One synchronisation per step.
            if skip_nonfinite and not torch.isfinite(world.sum(loss.detach()) + norm):
                state.skipped_steps += 1
                return
        optimizer.step()
        if name in schedulers:
            schedulers[name].step()

    def save(val: dict[str, float], improved: bool) -> None:
        rng = world.gather(capture_rng_state(device)) if world.size > 1 else None  # every rank's generators
        if not world.is_main:
            return
        payload = checkpoint_payload(config, model, optimizers, schedulers, state, val, device, rng, data)
        if (checkpoints / "last.ckpt").exists():  # keep the one before, for resume=auto to fall back on
            copy_checkpoint(checkpoints / "last.ckpt", checkpoints / "previous.ckpt")
        save_checkpoint(checkpoints / "last.ckpt", payload)
        if improved:
            copy_checkpoint(checkpoints / "last.ckpt", checkpoints / "best.ckpt")

    def check_finite(row: dict[str, float], weights_too: bool = False) -> None:
        """Called before anything is logged or saved, so no checkpoint ever holds the weights of a bad step.

        A finite loss can still come with an infinite gradient; the weights it produced are checked before
        each save. One synchronisation (and, across ranks, one reduction) per check."""
        if skip_nonfinite:
            return
        # One flag per step since the last log (then one for the weights), false where it is not finite on
        # some rank: every rank finds the same first bad step.
        flags = [torch.stack(list(values.values())).isfinite().all() for values, _ in recent]
        if weights_too:
            flags.append(torch.stack([p.detach().isfinite().all() for p in model.parameters()]).all())
        bad_at = (~world.all(torch.stack(flags))).nonzero() if flags else []
        # The first false flag names its step; the weights' flag, after the steps', names the current one.
        bad = min(state.step - len(recent) + 1 + int(bad_at[0]), state.step) if len(bad_at) else 0
        if bad or not all(finite(value) for value in row.values()):
            raise non_finite_error(row, bad or state.step, checkpoints)

    interval_start = time.perf_counter()
    start = interval_start
    model.train()
    while state.step < schedule.total_steps and not state.stopped_early:
        # Every rank draws the same permutation and takes every world.size-th sample of it, from its rank on;
        # the last len % world.size samples sit this epoch out, so that every rank has as many batches.
        order = epoch_order(len(x_train), state.epoch, trainer.seed, device)
        order = order[world.rank : len(order) - len(order) % world.size : world.size]
        for batch in range(state.batch_in_epoch, schedule.steps_per_epoch):
            index = order[batch * batch_size : (batch + 1) * batch_size]
            inputs = augment(x_train[index]) if augment else x_train[index]
            with mixed_precision:
                values = task.train_step(train_model, inputs, y_train[index], update)
            state.step += 1
            state.batch_in_epoch = batch + 1
            # Under on_nonfinite=skip (one synchronisation per step already), a skipped step is not logged.
            if not skip_nonfinite or world.all(torch.stack(list(values.values())).isfinite().all()):
                recent.append((values, len(index)))
            progress.advance(state.step)
            epoch = state.epoch + state.batch_in_epoch / schedule.steps_per_epoch
            finished = state.step == schedule.total_steps

            if state.step % schedule.log_every == 0 or finished:
                # The one host synchronisation per logging interval: reading the interval's values.
                seen = world.size * sum(size for _, size in recent)  # every rank's batches have the same sizes
                row = interval_means(recent, world)
                check_finite(row)
                now = time.perf_counter()
                row |= {"lr": first_lr(optimizers), "samples_per_sec": seen / (now - interval_start)}
                if skip_nonfinite:
                    row["skipped_steps"] = state.skipped_steps
                if world.is_main:
                    log_row(metrics_log, progress, "train", state.step, epoch, row, now - start)
                state.train_samples += seen
                state.train_seconds += now - interval_start
                recent, interval_start = [], now

            if state.step % schedule.eval_every == 0 or finished:
                eval_started = time.perf_counter()
                check_finite({}, weights_too=True)
                world.copy_from_main(model.buffers())  # batch-norm statistics: rank 0's, which it saves
                val = evaluate(model, task, *data.val, trainer.eval_batch_size, schedule.max_eval_batches,
                               mixed_precision, world)
                if world.is_main:
                    log_row(metrics_log, progress, "val", state.step, epoch, val, time.perf_counter() - start)
                # `val` holds the same all-reduced numbers on every rank: the decisions below agree.
                value = val.get(metric.removeprefix("val/"), math.nan) if val else math.nan
                improved = finite(value) and (state.best_value is None or
                                              (value > state.best_value if mode == "max" else value < state.best_value))
                if improved:
                    state.best_value, state.best_step = value, state.step
                if val:
                    state.evals_without_improvement = 0 if improved else state.evals_without_improvement + 1
                if trainer.patience and state.evals_without_improvement >= trainer.patience and not finished:
                    state.stopped_early = True
                    logger.info(f"Early stop at step {state.step}: no better {metric} in {trainer.patience} "
                                f"validations (best {state.best_value} at step {state.best_step})")
                # Without a validation split there is nothing to choose on: the best checkpoint is the last.
                save(val, improved or not val)
                if isinstance(task, Adversarial) and world.is_main:
                    samples = run_dir / "samples" / f"step_{state.step:07d}.png"
                    task.save_samples(model, samples)
                    metrics_log.image("samples", samples, state.step)
                model.train()
                interval_start += time.perf_counter() - eval_started  # validation is not training throughput
            elif checkpoint_every and state.step % checkpoint_every == 0:
                check_finite({}, weights_too=True)
                save({}, improved=False)

            # A signal may reach some ranks only, or between their steps: all stop after the same step.
            signal_number = world.max(stop_requested())
            if signal_number and not finished:
                check_finite({}, weights_too=True)
                save({}, improved=False)
                raise Interrupted(signal_number, state.step, checkpoints / "last.ckpt")
            if finished or state.stopped_early:
                break
        if state.batch_in_epoch == schedule.steps_per_epoch:
            state.epoch += 1
            state.batch_in_epoch = 0
    return state


def interval_means(steps: list[tuple[dict[str, torch.Tensor], int]], world: World) -> dict[str, float]:
    """Each value's mean over the interval's samples (the batches' means weighted by their sizes), averaged
    over the ranks (whose intervals have the same number of samples)."""
    if not steps:
        return {}
    names = list(steps[0][0])
    values = torch.stack([torch.stack([step[name].float() for name in names]) for step, _ in steps])  # (S, K)
    sizes = torch.tensor([size for _, size in steps], dtype=values.dtype, device=values.device)
    means = world.mean((values * sizes[:, None]).sum(dim=0) / sizes.sum())
    return dict(zip(names, means.tolist()))


def log_row(log: MetricsLog, progress: TrainingProgress, split: str, step: int, epoch: float,
            values: dict[str, float], elapsed: float) -> None:
    row = {"step": step, "epoch": round(epoch, 4), "split": split, **values, "elapsed": round(elapsed, 3)}
    log.write(row)
    progress.log(row)


def first_lr(optimizers: dict[str, torch.optim.Optimizer]) -> float:
    return next(iter(optimizers.values())).param_groups[0]["lr"]


def checkpoint_payload(config: dict[str, Any], model: nn.Module, optimizers: dict[str, Any],
                       schedulers: dict[str, Any], state: TrainState, val: dict[str, float],
                       device: str, rng_per_rank: list[dict[str, Any]] | None = None,
                       data: DataSplits | None = None) -> dict[str, Any]:
    payload = {
        "format_version": FORMAT_VERSION,
        "dlx_version": __version__,
        "torch_version": str(torch.__version__),
        "config": config,
        "model": model.state_dict(),
        "optimizers": {name: optimizer.state_dict() for name, optimizer in optimizers.items()},
        "schedulers": {name: scheduler.state_dict() for name, scheduler in schedulers.items()},
        "state": asdict(state),
        "val": val,
        "rng": capture_rng_state(device),
    }
    if rng_per_rank:  # data-parallel: each rank's generators (its dropout masks, its noise), in rank order
        payload["rng_per_rank"] = rng_per_rank
    if data is not None:  # what `dlx predict` and `dlx export` need to prepare new inputs as training did
        payload["data"] = {
            "task": data.task, "input_shape": data.input_shape, "class_names": [str(c) for c in data.class_names],
            "pixel_mean": None if data.pixel_mean is None else [float(v) for v in data.pixel_mean],
            "pixel_std": None if data.pixel_std is None else [float(v) for v in data.pixel_std],
        }
    return payload


def non_finite_error(row: dict[str, float], step: int, checkpoints: Path) -> DlxError:
    bad = ", ".join(f"{key}={value}" for key, value in row.items() if not finite(value)) or "the loss"
    return DlxError(f"Training diverged at step {step}: {bad} is not finite (NaN or infinite). The usual causes "
                    "are a learning rate that is too high, no gradient clipping (trainer.grad_clip=1.0), or inputs "
                    f"with NaN or huge values. The checkpoints in {checkpoints}, if any, hold the last good state "
                    "(validated before each save). Lower optimizer.lr and train again, or pass "
                    "trainer.on_nonfinite=skip to skip such steps.")

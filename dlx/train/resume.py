"""Continuing a run from a checkpoint exactly where it stopped: same weights, optimizer and scheduler state,
random generators, step, position in the epoch, best metric; the metrics file continues without duplicates."""

import json
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from dlx.config.diff import config_changes, flatten
from dlx.errors import DlxError
from dlx.parallel.world import World
from dlx.store.checkpoint import copy_checkpoint, load_checkpoint, restore_rng_state
from dlx.store.files import read_regular_file, write_text_atomically
from dlx.train.state import TrainState
from dlx.ui.console import logger

# Scheduler arguments that dlx fills with the run's length: a resumed schedule cannot be stretched.
SCHEDULE_LENGTHS = ("scheduler.T_max", "scheduler.total_steps", "scheduler.total_iters")
# Newest first: what resume=auto tries in a run folder.
AUTO_CANDIDATES = ("last.ckpt", "previous.ckpt", "best.ckpt")


def find_checkpoint(setting: str, run_dir: Path, start_over: bool = False) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint trainer.resume names: a path, or for "auto" the newest loadable one in run_dir.

    auto skips a checkpoint that is damaged (a crash can corrupt a disk, even if dlx's own writes are
    atomic), with a warning, and falls back to the one before; with none yet, the run starts from scratch.
    When every one is damaged, starting from scratch would quietly throw the run away: refused, unless
    `start_over` (trainer.overwrite=true).
    """
    if setting != "auto":
        return Path(setting), load_checkpoint(Path(setting))
    loaded, damaged = [], []
    for name in AUTO_CANDIDATES:
        path = run_dir / "checkpoints" / name
        if path.is_symlink():  # only the run's own files: a link may lead anywhere
            damaged.append((path, f"{path} is a symbolic link, not a checkpoint this run wrote."))
            continue
        if not path.exists():
            continue
        try:
            loaded.append((path, load_checkpoint(path)))
        except DlxError as err:
            damaged.append((path, str(err)))
    if damaged and not loaded and not start_over:
        raise DlxError(f"trainer.resume=auto found no usable checkpoint in {run_dir / 'checkpoints'}: "
                       f"{' '.join(reason for _, reason in damaged)} Starting from scratch would throw the run away. "
                       "Restore a copy of a checkpoint, or pass trainer.overwrite=true to start this run over from "
                       "step 0.")
    for path, reason in damaged:
        logger.warning(f"Warning: skipping {path}: {reason}")
    if not loaded and damaged:
        logger.warning(f"trainer.resume=auto: no usable checkpoint in {run_dir / 'checkpoints'}, and "
                       "trainer.overwrite=true: this run starts over from scratch.")
    elif not loaded:
        logger.warning(f"trainer.resume=auto: no checkpoint in {run_dir / 'checkpoints'} yet, so this run starts "
                       "from scratch. To resume an earlier run, name its folder: hydra.run.dir=RUN_FOLDER.")
    if not loaded:
        return None
    return max(loaded, key=lambda item: item[1]["state"]["step"])


def restore(path: Path, checkpoint: dict[str, Any], config: dict[str, Any], allow_changes: bool, model: nn.Module,
            optimizers: dict[str, torch.optim.Optimizer], schedulers: dict[str, Any], device: str) -> TrainState:
    """Load the checkpoint's state into the freshly built objects and the random generators."""
    before, after = flatten(checkpoint["config"]), flatten(config)
    stretched = [key for key in SCHEDULE_LENGTHS if key in after and before.get(key) != after[key]]
    if stretched:
        raise DlxError(f"Cannot resume from {path} with a different run length: the {config['scheduler']['_target_']} "
                       f"schedule was planned over {before.get(stretched[0])} steps and this run has {after[stretched[0]]}. "
                       "Resume with the original max_epochs/max_steps, or start a new run from these weights.")
    changes = config_changes(checkpoint["config"], config)
    if changes and not allow_changes:
        raise DlxError(f"Refused to resume from {path}: the config differs from the checkpoint's in "
                       f"{len(changes)} key(s): {'; '.join(changes)}. Resume with the same overrides as the "
                       "original run, or pass trainer.resume_allow_changes=true to continue with the new values.")
    if changes:
        logger.warning(f"Resuming with config changes: {'; '.join(changes)}")
    try:
        model.load_state_dict(checkpoint["model"])
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(checkpoint["optimizers"][name])
        for name, scheduler in schedulers.items():
            scheduler.load_state_dict(checkpoint["schedulers"][name])
    except (RuntimeError, KeyError, ValueError) as err:
        raise DlxError(f"{path} does not fit this run's model or optimizers ({str(err).splitlines()[0]}). It "
                       "belongs to another model, data shape or optimizer; resume with the config it was "
                       "trained with.") from err
    restore_rng_state(checkpoint["rng"], device)
    state = TrainState(**checkpoint["state"])
    logger.info(f"Resumed from {path} at step {state.step} (epoch {state.epoch}, batch {state.batch_in_epoch})")
    return state


def truncate_metrics(path: Path, step: int) -> None:
    """Drop the rows logged after `step` (the resumed run logs them again) and any final test row."""
    if not path.exists() and not path.is_symlink():
        return
    kept = []
    for line in read_regular_file(path, path.parent).decode("utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a row cut short by the crash
            continue
        if row.get("step", 0) <= step and row.get("split") != "test":
            kept.append(line)
    write_text_atomically(path, "".join(line + "\n" for line in kept), path.parent)


def resume_or_start(trainer: DictConfig, run_dir: Path, world: World, config: dict[str, Any], model: torch.nn.Module,
                    optimizers: dict[str, Any], schedulers: dict[str, Any], device: str) -> TrainState:
    """The state training starts from: trainer.resume's checkpoint loaded into the fresh objects (and the
    run folder's metrics and best.ckpt brought back to that point), or step 0."""
    found = resume_point(trainer.resume, run_dir, world, trainer.get("overwrite", False))
    if not found:
        if trainer.resume == "auto" and world.is_main:  # nothing saved yet: the lost rows are logged again
            truncate_metrics(run_dir / "metrics.jsonl", 0)
        return TrainState()
    state = restore(*found, config, trainer.resume_allow_changes, model, optimizers, schedulers, device)
    if len(found[1].get("rng_per_rank", [])) == world.size > 1:
        restore_rng_state(found[1]["rng_per_rank"][world.rank], device)  # this rank's own generators
    if world.is_main:
        truncate_metrics(run_dir / "metrics.jsonl", state.step)
        adopt_best_checkpoint(found[0], run_dir / "checkpoints")
    return state


def resume_point(setting: str | None, run_dir: Path, world: World,
                 start_over: bool = False) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint trainer.resume names, chosen by rank 0 (resume=auto skips damaged files, and two ranks
    must not choose differently) and read by every rank: on several machines, keep the run folder on a shared
    disk."""
    if not setting:
        return None
    found = find_checkpoint(setting, run_dir, start_over) if world.is_main else None
    if world.size == 1:
        return found
    chosen = world.gather(str(found[0]) if found else None)[0]
    if world.is_main or chosen is None:
        return found
    return Path(chosen), load_checkpoint(Path(chosen))


def adopt_best_checkpoint(resumed_from: Path, checkpoints: Path) -> None:
    """A run resumed from another folder's checkpoint takes that folder's best.ckpt along (the best metric
    it restored refers to it)."""
    source = resumed_from.parent / "best.ckpt"
    if source.exists() and source.resolve() != (checkpoints / "best.ckpt").resolve():
        copy_checkpoint(source, checkpoints / "best.ckpt", checkpoints.parent)

"""Continuing a run from a checkpoint exactly where it stopped: same weights, optimizer and scheduler state,
random generators, step, position in the epoch, best metric; the metrics file continues without duplicates."""

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlx.checkpoint import load_checkpoint, restore_rng_state
from dlx.engine import TrainState
from dlx.errors import DlxError
from dlx.metrics import write_text_atomically
from dlx.progress import logger

# Keys that may differ between a checkpoint's config and the resumed run's without changing the training.
RESUME_KEYS_IGNORED = {"trainer.resume", "trainer.resume_allow_changes", "trainer.device", "trainer.threads",
                       "trainer.checkpoint_every", "trainer.log_every", "trainer.eval_every", "trainer.eval_batch_size",
                       "trainer.patience", "output_root"}
# Keys that later versions of dlx added, with the value that reproduces what older versions did: a checkpoint
# whose config lacks one was trained with that value, so resuming it with that value changes nothing.
ADDED_KEYS_DEFAULTS = {"trainer.devices": 1, "trainer.precision": "32", "trainer.deterministic": False,
                       "augment.hflip": False, "augment.shift": 0}
# Scheduler arguments that dlx fills with the run's length: a resumed schedule cannot be stretched.
SCHEDULE_LENGTHS = ("scheduler.T_max", "scheduler.total_steps", "scheduler.total_iters")
# Newest first: what resume=auto tries in a run folder.
AUTO_CANDIDATES = ("last.ckpt", "previous.ckpt", "best.ckpt")


def find_checkpoint(setting: str, run_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint trainer.resume names: a path, or for "auto" the newest loadable one in run_dir.

    auto skips a checkpoint that is damaged (a crash can corrupt a disk, even if dlx's own writes are
    atomic), with a warning, and falls back to the one before; with none, the run starts from scratch.
    """
    if setting != "auto":
        return Path(setting), load_checkpoint(Path(setting))
    loaded = []
    for name in AUTO_CANDIDATES:
        path = run_dir / "checkpoints" / name
        if not path.exists():
            continue
        try:
            loaded.append((path, load_checkpoint(path)))
        except DlxError as err:
            logger.warning(f"Warning: skipping {path}: {err}")
    if not loaded:
        logger.warning(f"trainer.resume=auto: no checkpoint in {run_dir / 'checkpoints'} yet, so this run starts "
                       "from scratch. To resume an earlier run, name its folder: hydra.run.dir=RUN_FOLDER.")
        return None
    return max(loaded, key=lambda item: item[1]["state"]["step"])


def changes_training(key: str) -> bool:
    """False for the keys that only steer resuming, logging or where a run runs."""
    return key not in RESUME_KEYS_IGNORED and key != "logger" and not key.startswith("logger.")


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """'key: old -> new' for every leaf that differs, ignoring the keys that do not change the training."""
    before, after = ADDED_KEYS_DEFAULTS | flatten(old), ADDED_KEYS_DEFAULTS | flatten(new)
    changes = []
    for key in sorted(set(before) | set(after)):
        if changes_training(key) and before.get(key, "<absent>") != after.get(key, "<absent>"):
            changes.append(f"{key}: {before.get(key, '<absent>')!r} -> {after.get(key, '<absent>')!r}")
    return changes


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat |= flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return flat
    return {prefix: node}


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
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a row cut short by the crash
            continue
        if row.get("step", 0) <= step and row.get("split") != "test":
            kept.append(line)
    write_text_atomically(path, "".join(line + "\n" for line in kept))

"""What a run saves while it trains: checkpoints/last.ckpt at each validation (and every checkpoint_every
steps, and when stopped), the one before it as previous.ckpt, and best.ckpt whenever the monitored metric
improved. Each file is complete or absent (dlx.store.checkpoint writes atomically); rank 0 alone writes."""

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlx import __version__
from dlx.data import DataSplits
from dlx.errors import DlxError
from dlx.parallel.world import World
from dlx.store.checkpoint import FORMAT_VERSION, capture_rng_state, copy_checkpoint, save_checkpoint
from dlx.store.files import atomic_file
from dlx.train.state import TrainState


class CheckpointWriter:
    def __init__(self, folder: Path, config: dict[str, Any], model: nn.Module,
                 optimizers: dict[str, torch.optim.Optimizer], schedulers: dict[str, Any], data: DataSplits,
                 device: str, world: World) -> None:
        self.folder = folder
        self.config = config  # resolved: this config alone rebuilds the model
        self.model = model  # unwrapped (not DistributedDataParallel): its state_dict loads anywhere
        self.optimizers = optimizers
        self.schedulers = schedulers
        self.data = data
        self.device = device
        self.world = world

    @property
    def last(self) -> Path:
        return self.folder / "last.ckpt"

    def save(self, state: TrainState, val: dict[str, float], improved: bool) -> None:
        """Write last.ckpt (keeping the one before as previous.ckpt, for resume=auto to fall back on), and
        best.ckpt too if `improved`. Every rank calls it: each one's random generators are saved."""
        rng = self.world.gather(capture_rng_state(self.device)) if self.world.size > 1 else None
        if not self.world.is_main:
            return
        payload = checkpoint_payload(self.config, self.model, self.optimizers, self.schedulers, state, val,
                                     self.device, rng, self.data)
        run_dir = self.folder.parent  # no link on the way from the run folder down to the files
        if self.last.is_file() and not self.last.is_symlink():
            copy_checkpoint(self.last, self.folder / "previous.ckpt", run_dir)
        save_checkpoint(self.last, payload, run_dir)
        if improved:
            copy_checkpoint(self.last, self.folder / "best.ckpt", run_dir)


def check_writable(folder: Path) -> None:
    """Before the first step, not after a thousand: a checkpoint can be written in `folder` (RUN/checkpoints)."""
    probe = folder / ".writable"
    try:
        with atomic_file(probe, folder.parent):
            pass
        probe.unlink()
    except OSError as err:
        raise DlxError(f"Cannot write checkpoints in {folder}: {err.strerror or err}. The run would lose every save: "
                       "make the folder writable, or point hydra.run.dir (or output_root) at a writable folder, then "
                       "run again (this attempt trained nothing).") from err


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
        payload["data"] = data_record(data)
    return payload


def data_record(data: DataSplits) -> dict[str, Any]:
    """What a checkpoint records of its data, as plain values: the task, the shape of a sample, the class names,
    and how inputs were prepared (pixel statistics, a table's encoding, a tokenizer)."""
    record: dict[str, Any] = {
        "task": data.task, "input_shape": data.input_shape, "class_names": [str(c) for c in data.class_names],
        "pixel_mean": None if data.pixel_mean is None else [float(v) for v in data.pixel_mean],
        "pixel_std": None if data.pixel_std is None else [float(v) for v in data.pixel_std],
    }
    if data.preprocessing is not None:  # plain values: a table's columns, statistics and categories
        record["preprocessing"] = data.preprocessing
    if data.tokenizer is not None:  # the tokenizer's own JSON: a string, never a pickle
        record["tokenizer"] = data.tokenizer
    return record


def changed_data(stored: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
    """What differs between the data a checkpoint was trained on and the same config's data now (the files
    changed since: other texts give another vocabulary, other rows other statistics); nothing for checkpoints
    that record no data."""
    if stored is None:
        return []
    def comparable(key: str, record: dict[str, Any]) -> Any:
        value = record.get(key)
        if key == "tokenizer" and isinstance(value, str):
            return json.loads(value)  # the library writes the same vocabulary's keys in varying order
        if key == "preprocessing" and isinstance(value, dict):
            return {name: part for name, part in value.items() if name != "source"}  # a file may move and be renamed
        return value

    return [key for key in sorted(set(stored) | set(current)) if comparable(key, stored) != comparable(key, current)]

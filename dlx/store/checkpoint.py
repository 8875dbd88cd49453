"""Checkpoints: a dict of plain values and state_dicts, written atomically, read without running code.

Loading uses torch.load(weights_only=True), which refuses anything but tensors and plain containers, so a
crafted file cannot execute code; the config inside is only ever instantiated through dlx.config.trust's allow-list.
"""

import os
import pickle
import random
import shutil
import warnings
import zipfile
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from dlx import __version__
from dlx.errors import DlxError
from dlx.store.files import fsync_folder

FORMAT_VERSION = 1
# NumPy's global generator state: ("MT19937", key (624,) uint32, position, has_gauss, cached_gaussian)
LegacyNumpyState = tuple[str, np.ndarray, int, int, float]


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write to a temporary file beside `path`, fsync it, rename it over `path`, fsync the folder.

    The rename is atomic on POSIX file systems, so `path` always holds either the previous complete
    checkpoint or the new complete one, whenever the process dies.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
        fsync_folder(path.parent)
    except (OSError, RuntimeError) as err:  # torch reports a failed write (disk full) as a RuntimeError
        temporary.unlink(missing_ok=True)
        cause = err if isinstance(err, OSError) else err.__context__
        reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(err).splitlines()[0]
        raise DlxError(f"Could not write the checkpoint {path}: {reason}. The previous checkpoint, if "
                       "any, is unchanged. Free some disk space or point output_root at a writable folder, then "
                       "resume.") from err


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at `path`, loaded on the CPU with weights_only=True, or a DlxError saying why not."""
    path = Path(path)
    if not path.is_file():
        raise DlxError(f"No checkpoint file at {path}. Each run keeps checkpoints/last.ckpt and "
                       "checkpoints/best.ckpt in its run folder; the newest run is outputs/latest.")
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of foreign files
            warnings.simplefilter("ignore")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise DlxError(f"Refused to load {path}: it holds Python objects other than tensors and plain values, "
                       "which could run code when loaded (torch.load with weights_only=True rejected it). dlx "
                       "writes no such files; do not trust this one.") from err
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        reason = str(err).split(". ")[0]
        raise DlxError(f"{path} is truncated or corrupt and cannot be read ({reason}). Use another checkpoint of "
                       "the run (last.ckpt or best.ckpt), or train again.") from err
    if not isinstance(checkpoint, dict) or "format_version" not in checkpoint or "config" not in checkpoint:
        raise DlxError(f"{path} is a PyTorch file but not a dlx checkpoint (no format_version/config inside). "
                       "dlx eval needs a checkpoint written by dlx train.")
    expected = {"format_version": int, "config": dict, "model": dict, "state": dict, "rng": dict}
    wrong = [key for key, kind in expected.items() if not isinstance(checkpoint.get(key), kind)]
    if wrong or not isinstance(checkpoint["state"].get("step"), int):
        raise DlxError(f"{path} is damaged or was altered: {', '.join(wrong) or 'state.step'} missing or of the "
                       "wrong type. Use another checkpoint of the run.")
    if checkpoint["format_version"] > FORMAT_VERSION:
        raise DlxError(f"{path} was written by a newer dlx (checkpoint format {checkpoint['format_version']}, "
                       f"this dlx {__version__} reads up to {FORMAT_VERSION}). Upgrade dlx to load it.")
    return checkpoint


def capture_rng_state(device: str) -> dict[str, Any]:
    """Every random generator a run draws from, as plain values that weights_only loading accepts: Python's,
    NumPy's, torch's CPU generator, and the one of the device that trains (dropout masks, GAN noise)."""
    kind, key, position, has_gauss, gauss = cast(LegacyNumpyState, np.random.get_state())
    state = {
        "python": random.getstate(),
        "numpy": (kind, key.tolist(), position, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if device.startswith("cuda"):
        state["device"] = torch.cuda.get_rng_state(device)
    elif device == "mps":
        state["device"] = torch.mps.get_rng_state()
    return state


def restore_rng_state(state: dict[str, Any], device: str) -> None:
    python_state = state["python"]
    random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
    kind, key, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(key, dtype=np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "device" in state and device.startswith("cuda"):
        torch.cuda.set_rng_state(state["device"], device)
    elif "device" in state and device == "mps":
        torch.mps.set_rng_state(state["device"])


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

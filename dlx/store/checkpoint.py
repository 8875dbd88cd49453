"""Checkpoints: a dict of plain values and state_dicts, written atomically, read without running code.

Loading uses torch.load(weights_only=True), which refuses anything but tensors and plain containers, so a
crafted file cannot execute code; the config inside is only ever instantiated through dlx.config.trust's allow-list.
"""

import contextlib
import os
import pickle
import random
import secrets
import shutil
import warnings
import zipfile
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from dlx import __version__
from dlx.errors import DlxError
from dlx.store.files import atomic_file, fsync_folder, open_folder

FORMAT_VERSION = 1
OLDEST_FORMAT_VERSION = 1  # the first dlx's
PICKLE_START = b"\x80"  # the PROTO opcode that begins every pickle of protocol 2 and later
# NumPy's global generator state: ("MT19937", key (624,) uint32, position, has_gauss, cached_gaussian)
LegacyNumpyState = tuple[str, np.ndarray, int, int, float]


def save_checkpoint(path: Path, payload: dict[str, Any], within: Path | None = None) -> None:
    """Write to a temporary file beside `path`, fsync it, rename it over `path`, fsync the folder.

    The rename is atomic on POSIX file systems, so `path` always holds either the previous complete
    checkpoint or the new complete one, whenever the process dies. With `within` (the run folder), no folder
    from it down to `path` may be a link (dlx.store.files).
    """
    try:
        with atomic_file(path, within) as file:
            torch.save(payload, file)
        fsync_folder(path.parent)
    except (OSError, RuntimeError) as err:  # torch reports a failed write (disk full) as a RuntimeError
        raise unwritable(path, err) from err


def unwritable(path: Path, err: BaseException) -> DlxError:
    cause = err if isinstance(err, OSError) else err.__context__
    reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(err).splitlines()[0]
    return DlxError(f"Could not write the checkpoint {path}: {reason}. The previous checkpoint, if any, is "
                    "unchanged. Free some disk space or make the folder writable (or point output_root at a "
                    "writable folder), then resume.")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at `path`, loaded on the CPU with weights_only=True, or a DlxError saying why not."""
    path = Path(path)
    if path.is_dir():
        raise DlxError(f"{path} is a folder, not a checkpoint file. A run folder keeps its checkpoints in "
                       f"checkpoints/: name one, e.g. {path / 'checkpoints' / 'best.ckpt'}.")
    if not path.is_file():
        raise DlxError(f"No checkpoint file at {path}. Each run keeps checkpoints/last.ckpt and "
                       "checkpoints/best.ckpt in its run folder; the newest run's folder is outputs/latest.")
    if not zipfile.is_zipfile(path):  # what torch.save writes; anything else would reach pickle's legacy reader
        with open(path, "rb") as file:
            if file.read(1) == PICKLE_START:
                raise DlxError(f"Refused to load {path}: it is a bare pickle, which could run code when loaded. dlx "
                               "writes no such files (its checkpoints are zip archives of tensors and plain values); "
                               "do not trust this one.")
        raise DlxError(f"{path} is truncated or corrupt, or not a checkpoint at all: dlx writes PyTorch's zip format, "
                       "and this file is not a complete zip archive. Use another checkpoint of the run (last.ckpt or "
                       "best.ckpt), or train again.")
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of foreign files
            warnings.simplefilter("ignore")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise DlxError(f"Refused to load {path}: it holds Python objects other than tensors and plain values, "
                       "which could run code when loaded (torch.load with weights_only=True rejected it). dlx "
                       "writes no such files; do not trust this one.") from err
    except (RuntimeError, EOFError, OSError, ValueError, IndexError, KeyError, zipfile.BadZipFile) as err:
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
    if checkpoint["format_version"] < OLDEST_FORMAT_VERSION or isinstance(checkpoint["format_version"], bool):
        raise DlxError(f"{path} says it is a checkpoint of format {checkpoint['format_version']!r}, which no dlx ever "
                       f"wrote (the formats are {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION}): it was altered, or written "
                       "by another program. Use another checkpoint of the run.")
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


def copy_checkpoint(source: Path, destination: Path, within: Path | None = None) -> None:
    """Make `destination` the same complete file as `source`, atomically: a hard link renamed into place
    (no second write), or a copy where the file system has no hard links."""
    folder = open_folder(destination.parent, within, create=True)
    temporary = f".{destination.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        try:
            os.link(source, temporary, dst_dir_fd=folder, follow_symlinks=False)
        except OSError:
            with open(source, "rb") as original, atomic_file(destination, within) as copy:
                shutil.copyfileobj(original, copy)
            return
        os.replace(temporary, destination.name, src_dir_fd=folder, dst_dir_fd=folder)
    except OSError as err:
        raise unwritable(destination, err) from err
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary, dir_fd=folder)
        os.close(folder)

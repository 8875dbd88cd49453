"""Files that a crash never leaves half-written: each is written beside its destination, fsynced, and renamed
over it; and JSON without the NaNs other readers reject."""

import contextlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO


def write_json_atomically(path: Path, value: Any) -> None:
    write_text_atomically(path, json.dumps(json_safe(value), indent=2) + "\n")


def write_text_atomically(path: Path, text: str) -> None:
    with atomic_file(path) as file:
        file.write(text.encode("utf-8"))


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A file to write `path` through: readers see the old file or the new one, never half of it, even after a
    crash: written beside it (a name of this process's own), flushed to disk, then renamed over it. An error
    while writing leaves the old file and no temporary one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_json(path: Path) -> dict[str, Any] | None:
    """The file's JSON, or None when it is missing or unreadable (a run not started yet)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def json_safe(value: Any) -> Any:
    """NaN and infinities as null: JSON has no such numbers, and other readers reject Python's NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_safe(item) for item in value]
    return value

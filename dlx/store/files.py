"""Files that a crash never leaves half-written, and run folders that a planted link cannot turn against their
reader: every file dlx writes is written beside its destination, fsynced, and renamed over it (so a link in
its place is replaced, never written through); a file it appends to (metrics.jsonl, train.log) is opened
without following a link; and inside a run folder, every folder on the way is opened without following one,
so that neither a write nor a read (a report, a table) leaves the run folder. And JSON without the NaNs other
readers reject."""

import contextlib
import errno
import json
import math
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from dlx.errors import DlxError

NOT_FOLLOWED = os.O_NOFOLLOW | os.O_CLOEXEC
FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def write_json_atomically(path: Path, value: Any, within: Path | None = None) -> None:
    write_text_atomically(path, json.dumps(json_safe(value), indent=2) + "\n", within)


def write_text_atomically(path: Path, text: str, within: Path | None = None) -> None:
    with atomic_file(path, within) as file:
        file.write(text.encode("utf-8"))


@contextlib.contextmanager
def atomic_file(path: Path, within: Path | None = None) -> Iterator[BinaryIO]:
    """A file to write `path` through: readers see the old file or the new one, never half of it, even after a
    crash: written beside it (a new file of a name no one can guess), flushed to disk, then renamed over it. An
    error while writing leaves the old file and no temporary one. A link at `path` is replaced, not written
    through. With `within` (a run folder), the folders from it down to `path` are made as needed and none may
    be a link."""
    path = Path(path)
    folder = open_folder(path.parent, within, create=True)
    temporary = f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOT_FOLLOWED, 0o666, dir_fd=folder)
        try:
            with os.fdopen(descriptor, "wb") as file:
                yield file
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path.name, src_dir_fd=folder, dst_dir_fd=folder)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary, dir_fd=folder)
    finally:
        os.close(folder)


def open_to_append(path: Path, within: Path | None = None) -> TextIO:
    """`path` opened to append text (made if absent): a link in its place is refused, not followed."""
    path = Path(path)
    folder = open_folder(path.parent, within, create=True)
    try:
        descriptor = os.open(path.name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | NOT_FOLLOWED, 0o666, dir_fd=folder)
    except OSError as err:
        raise refused(path, err) from err
    finally:
        os.close(folder)
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise DlxError(f"{path} is not a regular file (a pipe or a device?): dlx appends its rows only to a file "
                       "of its own. Remove it and run again.")
    return os.fdopen(descriptor, "a", encoding="utf-8")


def read_regular_file(path: Path, within: Path | None = None) -> bytes:
    """The bytes of `path`, which must be a regular file (not a link, nor a device or a pipe); with `within`, inside
    that folder without a link on the way. OSError when it is missing or unreadable; DlxError when it is a link
    or not a file."""
    path = Path(path)
    folder = open_folder(path.parent, within, create=False)
    try:
        descriptor = os.open(path.name, os.O_RDONLY | os.O_NONBLOCK | NOT_FOLLOWED, dir_fd=folder)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.EMLINK):
            raise refused(path, err) from err
        raise
    finally:
        os.close(folder)
    with os.fdopen(descriptor, "rb") as file:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise DlxError(f"{path} is not a regular file: dlx reads only the files a run wrote. Remove it.")
        return file.read()


def open_folder(folder: Path, within: Path | None, create: bool) -> int:
    """A descriptor of `folder`. With `within`, `folder` must lie inside it, and each folder from `within` down to
    it is opened (made, when `create`) without following a link: a link planted in a run folder can take neither
    dlx's writes nor its reads elsewhere. `within` itself may be a link (outputs/latest), as the user named it."""
    if within is None:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        return os.open(folder, FOLDER)
    relative = os.path.relpath(os.path.abspath(folder), os.path.abspath(within))
    if relative == os.pardir or relative.startswith(os.pardir + os.sep) or os.path.isabs(relative):
        raise DlxError(f"{folder} is outside the run folder {within}: dlx reads and writes a run's files only inside "
                       "its folder.")
    if create:
        Path(within).mkdir(parents=True, exist_ok=True)
    descriptor = os.open(within, FOLDER)
    parts = Path(relative).parts if relative != os.curdir else ()
    try:
        for depth, part in enumerate(parts):
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, dir_fd=descriptor)
            try:
                inner = os.open(part, FOLDER | os.O_NOFOLLOW, dir_fd=descriptor)
            except OSError as err:
                raise refused(Path(within, *parts[:depth + 1]), err) from err
            os.close(descriptor)
            descriptor = inner
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def refused(path: Path, err: OSError) -> OSError | DlxError:
    """A link (or a file where a folder should be) in a run folder, as a DlxError; other errors as they are."""
    if err.errno in (errno.ELOOP, errno.EMLINK, errno.ENOTDIR):
        what = "a symbolic link" if os.path.islink(path) else "not a folder"
        return DlxError(f"{path} is {what}: dlx reads and writes a run's files only inside its run folder, never "
                        "through a link (one planted there could send a report your files, or make a run write "
                        "over them). Remove it, or use another run folder.")
    return err


def fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_json(path: Path, within: Path | None = None) -> Any:
    """The file's JSON, or None when it is missing, unreadable, a link or not JSON (a run not started yet)."""
    try:
        return json.loads(read_regular_file(path, within).decode("utf-8"))
    except (OSError, ValueError, DlxError):
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

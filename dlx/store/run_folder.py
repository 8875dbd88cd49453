"""One run per run folder: the lock a training process holds on its folder (an flock on RUN/.lock, which the
kernel drops when the process ends, however it ends; the file records the holder's pid and host), what an
earlier run left in a folder, and whether the process of a "running" run is still alive."""

import contextlib
import errno
import fcntl
import json
import os
import platform
import shutil
from pathlib import Path
from typing import Any

from dlx.errors import DlxError
from dlx.store.files import NOT_FOLLOWED, open_folder, read_json

LOCK = ".lock"
# What a run writes in its folder (besides Hydra's .hydra/): what trainer.overwrite=true removes.
RUN_FILES = ("checkpoints", "metrics.jsonl", "summary.json", "config.yaml", "train.log", "model_summary.txt",
             "samples", "eval", "predictions", "metrics.csv", "tensorboard", "mlflow_run_id", "report.html")


class RunFolderLock:
    """This process's hold on a run folder, until release() (or the process's end)."""

    def __init__(self, run_dir: Path, descriptor: int) -> None:
        self.run_dir = run_dir
        self.descriptor: int | None = descriptor

    def release(self) -> None:
        if self.descriptor is not None:
            os.close(self.descriptor)  # closing drops the flock
            self.descriptor = None

    def __enter__(self) -> "RunFolderLock":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def lock_run_folder(run_dir: Path) -> RunFolderLock:
    """Hold `run_dir` for this process, or raise a DlxError naming the process that holds it."""
    try:
        folder = open_folder(run_dir, None, create=True)
    except OSError as err:
        raise DlxError(f"Cannot create the run folder {run_dir}: {err.strerror or err}. Point output_root (or "
                       "hydra.run.dir) at a folder you can write to, e.g. output_root=$HOME/dlx-outputs.") from err
    try:
        descriptor = os.open(LOCK, os.O_RDWR | os.O_CREAT | NOT_FOLLOWED, 0o666, dir_fd=folder)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise DlxError(f"{run_dir / LOCK} is a symbolic link: it is dlx's lock of the run folder. Remove it, "
                           "then run again.") from err
        raise DlxError(f"Cannot write in the run folder {run_dir}: {err.strerror}. Point hydra.run.dir (or "
                       "output_root) at a folder you can write to.") from err
    finally:
        os.close(folder)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = read_holder(descriptor)
        os.close(descriptor)
        raise DlxError(f"{run_dir} is being trained right now by {holder}: two runs must not write one run folder "
                       "(they would replace each other's checkpoints and mix their metrics and logs). Wait for it to "
                       "end, or stop it, or train in another folder (drop hydra.run.dir, or name a new one).") from None
    except OSError:  # a file system without flock: the summary's pid is the only guard left
        pass
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, json.dumps({"pid": os.getpid(), "host": platform.node()}).encode(), 0)
    return RunFolderLock(run_dir, descriptor)


def read_holder(descriptor: int) -> str:
    try:
        holder = json.loads(os.pread(descriptor, 4096, 0))
        return f"process {int(holder['pid'])} on {holder['host']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def earlier_run(run_dir: Path) -> str | None:
    """What `run_dir` holds of a run started there before, in words, or None for a new or empty folder."""
    summary = read_json(run_dir / "summary.json")
    checkpoints = run_dir / "checkpoints"
    saved = sorted(path.name for path in checkpoints.glob("*.ckpt")) if checkpoints.is_dir() else []
    if isinstance(summary, dict) and summary.get("kind") != "sweep":
        steps = summary.get("steps")
        return (f"a {summary.get('status', 'started')} run" + (f" of {steps:,} steps" if isinstance(steps, int) else "")
                + (f" ({', '.join(saved)})" if saved else ""))
    if isinstance(summary, dict):
        return "a sweep (its table and jobs)"
    if saved:
        return f"the checkpoints of a run ({', '.join(saved)})"
    return None


def failed_before_training(run_dir: Path) -> bool:
    """Whether the run in `run_dir` failed before its first step (a typo in a key, a bad data file): it left
    nothing worth keeping, and the user who fixed the mistake runs the same command again."""
    summary = read_json(run_dir / "summary.json")
    checkpoints = run_dir / "checkpoints"
    return (isinstance(summary, dict) and summary.get("kind") != "sweep" and summary.get("status") == "failed"
            and not summary.get("steps") and not (checkpoints.is_dir() and any(checkpoints.iterdir()))
            and not (run_dir / "metrics.jsonl").exists())


def clear_run_folder(run_dir: Path) -> None:
    """Remove what an earlier run wrote in `run_dir` (trainer.overwrite=true); links are removed, not followed."""
    for name in RUN_FILES:
        path = run_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def claim_run_folder(run_dir: Path, resume: str | None, overwrite: bool) -> RunFolderLock:
    """Hold `run_dir` for a run, refused while another process trains there, and refused when it holds an
    earlier run, unless this run resumes it (trainer.resume) or replaces it (trainer.overwrite=true, which
    removes the earlier run's files first)."""
    lock = lock_run_folder(run_dir)
    try:
        held = None if resume else earlier_run(run_dir)
        if held and not overwrite and not failed_before_training(run_dir):
            raise DlxError(f"{run_dir} already holds {held}: a second run there would replace its checkpoints and "
                           "config and mix its metrics and log with the new ones. Resume it with trainer.resume=auto, "
                           "train in a new folder (drop hydra.run.dir, or name another), or pass "
                           "trainer.overwrite=true to delete it and start over there.")
        if held:
            clear_run_folder(run_dir)
    except BaseException:
        lock.release()
        raise
    return lock


def process_alive(summary: dict[str, Any], other_hosts_alive: bool) -> bool:
    """Whether the process that wrote a "running" summary is alive. Another machine's process cannot be
    checked from here: taken as alive when `other_hosts_alive` (a table of runs), else as gone (a lost node
    leaves "running" behind, and a requeued job must go on)."""
    if summary.get("host") != platform.node() or not isinstance(summary.get("pid"), int):
        return other_hosts_alive
    try:
        os.kill(summary["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return summary["pid"] != os.getpid()

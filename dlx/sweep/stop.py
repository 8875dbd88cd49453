"""Stopping a sweep whose jobs run in other processes (joblib's workers, submitit's local jobs) as Ctrl-C stops
one run. SIGINT or SIGTERM to the `dlx train -m` process asks every running job to stop after its step (with
SIGINT, which a job takes as "finish the step, save last.ckpt" in every launcher, submitit's included), waits
until each has saved, and only then ends the sweep, which prints how to continue it; the launcher then ends its
idle workers, so no worker is left behind training.

Each job process moves into a process group of its own when it starts (leave_terminal_group): a terminal's
Ctrl-C, or a SIGTERM to the whole group, then reaches the jobs once, through here, and not twice (for a job, a
second signal means "stop at once, without saving")."""

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dlx.store.files import read_json
from dlx.store.run_folder import process_alive
from dlx.ui.console import print_error

SWEEP_PROCESS = "DLX_SWEEP_PID"  # set for the job processes: the pid of the `dlx train -m` that started them
JOBS_TO_SAVE_S = 300.0  # how long a stopped sweep waits for its jobs to save (a large model's last.ckpt)
LAUNCHERS_OF_PROCESSES = ("JoblibLauncher", "LocalLauncher")  # jobs in processes this machine starts


def runs_jobs_in_processes(launcher: str) -> bool:
    """Whether the launcher's jobs run in other processes of this machine (joblib, submitit_local), which a
    signal to the sweep's process does not stop by itself."""
    return launcher.rpartition(".")[2] in LAUNCHERS_OF_PROCESSES


def job_ends_its_process(launcher: str) -> bool:
    """submitit starts a process per job, which ends with it; joblib's workers wait for the next job."""
    return launcher.rpartition(".")[2] == "LocalLauncher"


@contextlib.contextmanager
def jobs_stop_with_the_sweep(folder: Path, jobs_end_their_process: bool) -> Iterator[Callable[[], int]]:
    """While the launcher runs the jobs: SIGINT and SIGTERM stop them as described above, then raise
    KeyboardInterrupt here; a second signal stops them at once. Yields a function returning the signal
    received, or 0. When each job has a process of its own, that process is also waited for (and reaped)."""
    received: list[int] = []
    asked: set[tuple[Path, int]] = set()  # (job folder, pid): each job is asked once

    def handler(number: int, frame: Any) -> None:
        if received:  # the second time: the user means it
            ask_running_jobs(folder, set())
            raise KeyboardInterrupt
        received.append(number)
        print_error(f"{signal.Signals(number).name} received: each running job stops after its step and saves, then "
                    "the sweep ends (send it again to stop at once).", "stopping")
        deadline = time.monotonic() + JOBS_TO_SAVE_S
        while ask_running_jobs(folder, asked) and time.monotonic() < deadline:
            time.sleep(0.1)
        if jobs_end_their_process:
            for _, pid in asked:
                wait_for_child(pid, deadline)
        raise KeyboardInterrupt

    os.environ[SWEEP_PROCESS] = str(os.getpid())
    previous = {number: signal.signal(number, handler) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: received[0] if received else 0
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
        os.environ.pop(SWEEP_PROCESS, None)


def ask_running_jobs(folder: Path, asked: set[tuple[Path, int]]) -> bool:
    """SIGINT to each job of the sweep whose process is running on this machine and was not asked yet; whether
    any job is still running. A job's summary.json names its process (written when the job starts)."""
    running = False
    for path in sorted(folder.glob("*/summary.json")):
        summary = read_json(path)
        if not isinstance(summary, dict) or summary.get("status") != "running" \
                or not process_alive(summary, other_hosts_alive=False):
            continue
        running = True
        if (path.parent, summary["pid"]) not in asked:
            asked.add((path.parent, summary["pid"]))
            with contextlib.suppress(ProcessLookupError):
                os.kill(summary["pid"], signal.SIGINT)
    return running


def wait_for_child(pid: int, deadline: float) -> None:
    """Until the child process `pid` has ended (and is reaped: no zombie is left behind), or the deadline."""
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:  # not a child of this process (a rank that a job started), or reaped already
            return
        time.sleep(0.05)


def leave_terminal_group() -> None:
    """In a job process that a launcher started (not the sweep's own process): a process group of its own, so
    that a signal to the terminal's group reaches the job once, passed on by the sweep's process."""
    parent = os.environ.get(SWEEP_PROCESS)
    if parent is not None and parent != str(os.getpid()) and os.getpgrp() != os.getpid():
        with contextlib.suppress(OSError):  # a session leader cannot move; it had no terminal group to leave
            os.setpgid(0, 0)

"""Stopping a run on request: SIGINT, SIGTERM and SIGUSR2 (a scheduler's preemption warning) make the loop
finish its step, save last.ckpt and raise Interrupted. Under SLURM (submitit), SIGTERM saves and training goes on."""

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dlx.errors import DlxError
from dlx.ui.console import logger

# What the loop is asked, as one number that the ranks combine with one max(): 0 nothing, SAVE_NOW save
# last.ckpt and go on, else the number of the signal that asks to stop (SIGINT 2, SIGUSR2 12, SIGTERM 15; 1 is
# SIGHUP, which no rank handles). A stop wins over a save, and saves too.
SAVE_NOW = 1


@contextmanager
def stop_on_signals() -> Iterator[Callable[[], int]]:
    """While training, SIGINT, SIGTERM and SIGUSR2 ask the loop to stop after the current step (it then
    saves last.ckpt); a second signal stops at once. Yields a function returning what was asked (0, SAVE_NOW or
    the signal's number); a save request is answered once.

    SIGUSR2 is the warning SLURM (--signal) and submitit send before preemption or the time limit. Under
    submitit, SIGTERM stays with submitit, which ignores it so as to save and requeue on SIGUSR2 (the job
    wrapper hands SIGUSR2 back once last.ckpt is saved): a job that stopped on SIGTERM would report itself
    finished to the sweep while SLURM requeues it. SLURM sends SIGTERM when it ends a job for good or for a
    requeue (scancel, `scontrol requeue`, preemption without a warning, the time limit), then SIGKILL after
    its KillWait: dlx saves last.ckpt at once and trains on until then, so the requeued job loses at most
    those seconds.
    """
    received: list[int] = []
    save: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # handlers can only be set there
        yield lambda: 0
        return

    def handler(signal_number: int, frame: Any) -> None:
        if received:  # the second time: the user means it
            signal.signal(signal_number, signal.SIG_DFL)
            os.kill(os.getpid(), signal_number)
        received.append(signal_number)
        logger.warning(f"{signal.Signals(signal_number).name} received: stopping after this step "
                       "(send it again to stop at once)")

    scheduler_handler = signal.getsignal(signal.SIGTERM)

    def save_on_sigterm(signal_number: int, frame: Any) -> None:
        save.append(signal_number)
        logger.warning("SIGTERM received under SLURM: saving last.ckpt after this step; the job goes on until "
                       "SLURM ends it")
        if callable(scheduler_handler):
            scheduler_handler(signal_number, frame)

    numbers = {signal.SIGINT: handler, signal.SIGUSR2: handler}
    # The default, or a job scheduler's own handler (submitit's)
    numbers[signal.SIGTERM] = save_on_sigterm if callable(scheduler_handler) else handler
    previous = {number: signal.signal(number, each) for number, each in numbers.items()}

    def requested() -> int:
        if received:
            return received[0]
        if save:
            save.clear()
            return SAVE_NOW
        return 0

    try:
        yield requested
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def ignore_stop_requests() -> None:
    """This rank is ending by itself, on an error (its own or another rank's): SIGTERM and SIGINT, which the
    launcher sends to stop the ranks still running when one failed, would only cut short its record of why."""
    if threading.current_thread() is threading.main_thread():
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, signal.SIG_IGN)


class Interrupted(DlxError):
    """The user stopped the run (SIGINT, SIGTERM); last.ckpt holds the state after the last full step, or, when
    `checkpoint` is None, the run was stopped before its first step. `when` says when, if not after `step`."""

    def __init__(self, signal_number: int, step: int, checkpoint: Path | None, when: str | None = None) -> None:
        name = signal.Signals(signal_number).name
        if checkpoint is None:
            super().__init__(f"Stopped by {name} {when or 'before the first step'}: nothing was trained.")
        else:
            super().__init__(f"Stopped by {name} {when or f'after step {step}'}; {checkpoint} holds that state.")
        self.exit_code = 128 + signal_number  # the shell's convention for "ended by signal N"
        self.checkpoint = checkpoint

"""Stopping a run on request: SIGINT, SIGTERM and SIGUSR2 (a scheduler's preemption warning) make the loop
finish its step, save last.ckpt and raise Interrupted."""

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dlx.errors import DlxError
from dlx.ui.console import logger


@contextmanager
def stop_on_signals() -> Iterator[Callable[[], int]]:
    """While training, SIGINT, SIGTERM and SIGUSR2 ask the loop to stop after the current step (it then
    saves last.ckpt); a second signal stops at once. Yields a function returning the signal received, or 0.

    SIGUSR2 is the warning SLURM (--signal) and submitit send before preemption or the time limit. Under
    submitit, SIGTERM stays with submitit's handler: SLURM sends it on preemption too, and submitit ignores it
    so as to save and requeue on SIGUSR2 instead (the job wrapper hands SIGUSR2 back once last.ckpt is saved).
    """
    received: list[int] = []
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

    numbers = [signal.SIGINT, signal.SIGUSR2]
    if not callable(signal.getsignal(signal.SIGTERM)):  # the default, not a job scheduler's own handler
        numbers.append(signal.SIGTERM)
    previous = {number: signal.signal(number, handler) for number in numbers}
    try:
        yield lambda: received[0] if received else 0
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


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

"""trainer.devices=N: one run in N processes on this machine, started by torch's elastic launcher (the engine
behind torchrun), each running dlx.train.run.train as one rank.

This sits above the training layer (it starts training in each process), apart from the collectives in
dlx.parallel.world, which the training loop itself uses."""

import gc
import json
import logging
import os
import signal
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dlx.errors import DlxError
from dlx.train.loop import Pruning
from dlx.train.run import train
from dlx.train.signals import Interrupted


class WorkersFailed(Exception):
    """The processes of a trainer.devices=N run ended with an error, or were stopped by a signal."""

    def __init__(self, exit_code: int, cause: str) -> None:
        super().__init__(cause)
        self.exit_code = exit_code  # rank 0's exit status, or 128 + the signal that stopped the launcher
        self.cause = cause  # what the first rank to fail reported, when it was not a clean stop


def train_on_devices(cfg: DictConfig, run_dir: Path, choices: dict[str, str], overrides: list[str],
                     config_dirs: list[str], pruning: Pruning | None = None) -> dict[str, Any]:
    """trainer.devices=N: train in N processes on this machine (one per GPU, or sharing the CPU), each one rank
    running train(); rank 0's summary. A failure is reported as rank 0 recorded it in summary.json."""
    OmegaConf.resolve(cfg)  # here, where Hydra's resolvers (${hydra:...}) still work
    try:
        return launch(cfg.trainer.devices, train_rank, cfg, run_dir, choices, overrides, config_dirs, pruning)
    except WorkersFailed as failure:
        raise error_of_ranks(run_dir / "summary.json", failure) from None


def train_rank(cfg: DictConfig, run_dir: Path, choices: dict[str, str], overrides: list[str],
               config_dirs: list[str], pruning: Pruning | None = None) -> dict[str, Any]:
    """One rank of a trainer.devices=N run, in a process of its own."""
    # A session of its own, as torchrun starts its workers: Ctrl-C in the terminal then reaches the launching
    # process only, which passes it on. Otherwise each rank would get it twice (from the terminal, then passed
    # on), and a second signal means "stop at once", without saving.
    os.setsid()
    try:
        return train(cfg, run_dir, choices, overrides, config_dirs, pruning)
    except DlxError as err:  # rank 0 recorded it in summary.json; the launching process reports it from there
        raise SystemExit(err.exit_code) from None
    finally:
        gc.freeze()  # as `dlx` does: no final garbage collection over every object torch created


def error_of_ranks(summary_path: Path, failure: WorkersFailed) -> DlxError:
    """The error of a multi-process run: rank 0's, as its summary records it, or else the first failed rank's."""
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.exists() else {}
    if failure.exit_code > 128 and summary.get("status") == "interrupted":
        stopped = Interrupted(failure.exit_code - 128, 0, summary_path.parent / "checkpoints" / "last.ckpt")
        stopped.args = (summary["error"],)  # rank 0's own message: the step it stopped after, how to resume
        return stopped
    if failure.exit_code == DlxError.exit_code and summary.get("status") == "failed":
        return DlxError(summary["error"])
    if summary.get("failed_rank") is not None:  # the rank that failed first, as the others found it
        crash = DlxError(f"{summary['error']} The run folder {summary_path.parent} holds what was saved; the "
                         "messages above come from the processes themselves.")
        crash.exit_code = 1  # not a mistake in the command: a crash
        return crash
    crash = DlxError(f"Training in several processes failed: {failure.cause or 'they were stopped'}. The run "
                     f"folder {summary_path.parent} holds what rank 0 saved; the messages above come from the "
                     "processes themselves.")
    crash.exit_code = 1  # not a mistake in the command: the status of a Python error
    return crash


def launch(num_processes: int, function: Callable[..., Any], *args: Any) -> Any:
    """Run function(*args) in `num_processes` new processes on this machine, as ranks 0..N-1 of one job
    (torch's elastic launcher, standalone rendezvous on a free local port); rank 0's return value.

    A signal to this process (SIGINT, SIGTERM, SIGUSR2...) is passed on to the ranks by the launcher; raises
    WorkersFailed when they end with an error, or after such a signal."""
    from torch.distributed.elastic.multiprocessing.api import (
        DefaultLogsSpecs,
        SignalException,
    )
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # Passed on to the ranks: those the launcher handles by default, and SIGUSR2, the warning of a preemption.
    handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR2)
    handlers = {number: signal.getsignal(number) for number in handled}  # the launcher replaces them
    launcher_log = logging.getLogger("torch.distributed.elastic.multiprocessing.api")
    launcher_log.addFilter(quiet_dlx_exits)
    with tempfile.TemporaryDirectory(prefix="dlx-ranks-") as logs:  # the ranks' error files, read on failure
        # After passing a signal on, the agent waits this long for the ranks to finish their step and save
        # before it kills them (30 s by default: too short to save a large model).
        os.environ.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", "300")
        config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=num_processes, run_id=uuid.uuid4().hex,
                              rdzv_backend="c10d", rdzv_endpoint="localhost:0",  # as torchrun --standalone
                              max_restarts=0, logs_specs=DefaultLogsSpecs(log_dir=logs),
                              signals_to_handle=",".join(signal.Signals(number).name for number in handled))
        try:
            return elastic_launch(config, function)(*args)[0]
        except SignalException as err:
            raise WorkersFailed(128 + err.sigval, "") from None
        except ChildFailedError as err:
            rank, first = err.get_first_failure()
            message = first.message.get("message", "") if isinstance(first.message, dict) else str(first.message)
            exit_code = err.failures[0].exitcode if 0 in err.failures else first.exitcode
            raise WorkersFailed(exit_code, f"rank {rank} exited with status {first.exitcode}: {message}") from None
        finally:
            launcher_log.removeFilter(quiet_dlx_exits)
            for number, handler in handlers.items():
                signal.signal(number, handler)


def quiet_dlx_exits(record: logging.LogRecord) -> bool:
    """A filter for the launcher's log: drop its report, with a traceback of its own, of a rank that ended by
    dlx's own error path (exit status 2, or 128 + a signal); rank 0's summary.json holds that error, and the
    launching process reports it as one paragraph. Crashes keep their traceback."""
    args = record.args if isinstance(record.args, tuple) else ()
    code = args[0] if str(record.msg).startswith("failed (exitcode") and args else None
    return not (isinstance(code, int) and (code == DlxError.exit_code or code > 128))



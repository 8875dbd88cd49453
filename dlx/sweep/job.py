"""The function Hydra runs for each job, in whatever process its launcher chose: one run, in this process or
in trainer.devices processes, skipped if an earlier attempt completed it."""

import contextlib
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from dlx.errors import DlxError
from dlx.parallel.world import is_main_process, launched_as_rank
from dlx.ui.console import print_error

if TYPE_CHECKING:  # torch comes with it: imported when a job trains, not when the CLI starts
    from dlx.train.loop import Pruning


def train_job(cfg: Any) -> Optional[dict[str, Any]]:
    """The function Hydra runs for each job, with the composed config and the job's run folder. Returns the
    run's summary (status, best value, ...): what dlx's Optuna sweeper tells its study; None marks a failed
    job."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from dlx.parallel.rendezvous import export_submitit_environment
    from dlx.store.run_folder import claim_run_folder
    from dlx.sweep.attempts import completed_attempt
    from dlx.sweep.machine import share_machine
    from dlx.sweep.stop import leave_terminal_group
    from dlx.sweep.trial import trial_of_job
    from dlx.train.signals import Interrupted

    export_submitit_environment()  # a SLURM job of several tasks: each task is one rank of the run
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    sweeping = hydra_cfg.mode == RunMode.MULTIRUN
    choices = {group: option for group, option in hydra_cfg.runtime.choices.items()
               if not group.startswith("hydra/") and group != "train_schema" and option is not None}
    config_dirs = [source.path.removeprefix("file://") for source in hydra_cfg.runtime.config_sources
                   if source.provider == "command-line"]
    if sweeping:
        leave_terminal_group()  # a job process of joblib or submitit: signals reach it through the sweep's process
    try:
        if sweeping and (done := completed_attempt(cfg, run_dir, overrides)) is not None:
            print(f"Job {hydra_cfg.job.num} ({' '.join(overrides) or 'defaults'}) already {done['status']} in "
                  f"{run_dir}: skipped", flush=True)
            return done
        pruning = trial_of_job(hydra_cfg) if sweeping else None  # a trial of dlx's Optuna search, or None
        # A single run's folder is held by the `dlx train` process from before Hydra started; a sweep's job
        # holds its own, in whatever process its launcher chose.
        held = claim_run_folder(run_dir, cfg.trainer.resume, cfg.trainer.get("overwrite", False)) \
            if sweeping and is_main_process() else contextlib.nullcontext()
        with held, share_machine(cfg, hydra_cfg):
            summary = train_here_or_on_devices(cfg, run_dir, choices, overrides, config_dirs, pruning)
    except DlxError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if is_main_process():
            print_error(err, "stopped" if isinstance(err, Interrupted) else "error")
        if isinstance(err, Interrupted) and err.exit_code == 128 + signal.SIGUSR2:
            hand_back_preemption_signal()
        if not sweeping or isinstance(err, Interrupted):  # Ctrl-C stops a whole sweep too
            raise SystemExit(err.exit_code) from None
        return None  # in a sweep, one failed job does not stop the others (a search records a failed trial)
    except Exception as err:  # a bug or an out-of-memory error: in a sweep, the other jobs still run
        if not sweeping:
            raise
        import traceback

        traceback.print_exc()
        print_error(DlxError(f"Job {hydra_cfg.job.num} failed: {type(err).__name__}: {err}"))
        return None
    return summary


def train_here_or_on_devices(cfg: Any, run_dir: Path, choices: dict[str, str], overrides: list[str],
                             config_dirs: list[str], pruning: "Pruning | None" = None) -> dict[str, Any]:
    """The run's summary. trainer.devices=N (N > 1) trains in N new processes, each one rank, and returns rank
    0's summary; a process that torchrun or submitit started is one rank already, and trains here."""
    if cfg.trainer.devices > 1 and not launched_as_rank():
        from dlx.parallel.launch import train_on_devices

        return train_on_devices(cfg, run_dir, choices, overrides, config_dirs, pruning)
    from dlx.train.run import train

    return train(cfg, run_dir, choices, overrides, config_dirs, pruning)


def hand_back_preemption_signal() -> None:
    """SIGUSR2 is how SLURM (--signal) and submitit announce preemption or the time limit. dlx stopped and
    saved last.ckpt first; now the handler that was there before (submitit's: requeue this job) runs."""

    handler = signal.getsignal(signal.SIGUSR2)
    if callable(handler):
        handler(signal.SIGUSR2, None)


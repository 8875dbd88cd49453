"""What a job does when its folder already holds an earlier attempt: a sweep continued after Ctrl-C or a lost
node, a SLURM job requeued after preemption. Completed jobs are skipped, interrupted ones resume."""

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from dlx.errors import DlxError
from dlx.results.runs import read_summary
from dlx.store.run_folder import process_alive
from dlx.sweep.records import training_overrides


def completed_attempt(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> dict[str, Any] | None:
    """A sweep's job run again in its folder: the summary of an earlier attempt that completed or was pruned (the
    job is then skipped), or None; an attempt that did not finish is resumed from its last checkpoint."""
    previous = earlier_attempt(run_dir, overrides)
    if previous is not None and previous.get("status") in ("completed", "pruned"):
        return previous
    if previous is not None and not cfg.trainer.resume:
        cfg.trainer.resume = "auto"
    return None


def earlier_attempt(run_dir: Path, overrides: list[str]) -> dict[str, Any] | None:
    """The summary a job's folder holds from an earlier attempt at the same job, if any.

    A sweep continued in its folder, and a SLURM job requeued after preemption, run the same job number in
    the same folder again: it is the same job only if its overrides are the same.
    """
    previous = read_summary(run_dir)
    if previous is None:
        return None
    if training_overrides(previous.get("overrides", [])) != training_overrides(overrides):
        raise DlxError(f"{run_dir} holds another job ({' '.join(previous.get('overrides', [])) or 'defaults'}), not "
                       f"this one ({' '.join(overrides) or 'defaults'}). Run this sweep in a new folder.")
    if previous.get("status") == "running" and process_alive(previous, other_hosts_alive=False):
        raise DlxError(f"{run_dir} is being trained right now by process {previous['pid']}: two processes must not "
                       "write one run folder. Wait for it to end (or stop it), then continue the sweep.")
    return previous

"""Sweeps around Hydra's sweepers and launchers: the plan written before the first job, the table after the
last one, and what each job does when its folder already holds an earlier attempt (a sweep continued after
Ctrl-C or a lost node, a SLURM job requeued after preemption).

Jobs run through Hydra's own launchers (in this process, joblib workers, submitit/SLURM jobs), so everything
a job needs to know is read from its folder, never from this process's memory.
"""

import fcntl
import os
import platform
import re
import shlex
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dlx.compose import Plan
from dlx.errors import DlxError
from dlx.metrics import write_json_atomically
from dlx.progress import logger
from dlx.runs import (Run, best_first, print_table, read_json, read_summary, split_override, sweep_runs,
                      write_summary)

MANIFEST = "sweep.json"


def quote_override_value(value: str) -> str:
    """A value Hydra's override parser reads back verbatim: as it is when plain (outputs/sweeps/...), quoted
    when it holds spaces, commas, colons, brackets or quotes."""
    if re.fullmatch(r"[\w./+-]+", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def continue_command(args: list[str], folder: str) -> str:
    kept = [a for a in args if not a.startswith("hydra.sweep.dir=")]
    return shlex.join(["dlx", "train", *kept, f"hydra.sweep.dir={quote_override_value(folder)}"])


def job_config(cfg: DictConfig) -> dict[str, Any]:
    container = OmegaConf.to_container(cfg, resolve=False)
    container.pop("hydra", None)
    return container


def start_sweep(plan: Plan, args: list[str]) -> None:
    """Write the sweep's plan (its jobs and their configs) into the sweep folder, or, when the folder already
    holds one (continuing a sweep), refuse unless the sweep is the same one."""
    from dlx.resume import config_changes

    folder = Path(plan.folder)
    manifest = folder / MANIFEST
    configs = [job_config(cfg) for cfg in plan.configs]
    old = read_json(manifest)
    if old is not None:
        if plan.searched:
            raise DlxError(f"{folder} already holds a sweep, and a search sweeper (Optuna) numbers its trials from 0 "
                           "again, over the earlier jobs. An Optuna study continues through its storage, in a new "
                           "sweep folder: drop hydra.sweep.dir and pass the same hydra.sweeper.storage and "
                           "hydra.sweeper.study_name (see the README, \"Search\").")
        if [training_overrides(job) for job in old["jobs"]] != [training_overrides(job) for job in plan.jobs]:
            raise DlxError(f"Refused to continue the sweep in {folder}: it was started with other jobs "
                           f"({describe_jobs(old['jobs'])}; now {describe_jobs(plan.jobs)}). Continue it with the "
                           f"arguments it was started with: {shlex.join(old['command'])}")
        allow = any(cfg.trainer.resume_allow_changes for cfg in plan.configs)
        for number, (before, after) in enumerate(zip(old["configs"], configs)):
            changes = config_changes(before, after)
            if changes and not allow:
                raise DlxError(f"Refused to continue the sweep in {folder}: the config of job {number} changed since "
                               f"it started ({'; '.join(changes[:5])}{'; ...' if len(changes) > 5 else ''}). Undo "
                               "the change (a config file edited in between?), start a new sweep, or pass "
                               "trainer.resume_allow_changes=true to continue with the new values (completed "
                               "jobs keep their results: they are not run again).")
        print(f"Continuing the sweep in {folder}: finished jobs are skipped, interrupted ones resume.")
        return
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomically(manifest, {"command": ["dlx", "train", *args], "jobs": None if plan.searched else plan.jobs,
                                     "configs": [] if plan.searched else configs})
    print(f"Sweep folder: {folder}" + ("" if plan.searched else f" ({len(plan.jobs)} jobs)"), flush=True)


def training_overrides(overrides: list[str]) -> list[str]:
    """The overrides that change what a job trains: trainer.device, logger=..., trainer.resume_allow_changes
    and the like may differ between the attempts at one job."""
    from dlx.resume import changes_training

    return [o for o in overrides if changes_training(split_override(o)[0])]


def describe_jobs(jobs: list[list[str]]) -> str:
    return f"{len(jobs)} job(s): " + ", ".join(" ".join(job) or "(defaults)" for job in jobs[:4]) + (
        ", ..." if len(jobs) > 4 else "")


def finish_sweep(folder: Path) -> list[Run]:
    """Print the table of the sweep's jobs, best first, and save it as summary.csv and summary.json."""
    manifest = read_json(folder / MANIFEST) or {}
    runs = best_first(sweep_runs(folder, manifest.get("jobs")))
    if not runs:
        return runs
    print_table(runs, f"Sweep {folder}: {len(runs)} jobs, best first")
    extra: dict[str, Any] = {"sweep_dir": str(folder), "command": manifest.get("command")}
    best = next((run for run in runs if run.has_score), None)
    if best is not None:
        extra["best"] = {"run": best.name, "overrides": best.overrides, "metric": best.metric, "value": best.best}
        print(f"Best: job {best.name} ({' '.join(best.overrides) or 'defaults'}): {best.metric} {best.best:.4f}")
    write_summary(folder, runs, extra)
    print(f"Saved {folder / 'summary.csv'} and {folder / 'summary.json'}")
    return runs


def completed_attempt(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> dict[str, Any] | None:
    """A sweep's job run again in its folder: the summary of an earlier attempt that completed (the job is then
    skipped), or None; an attempt that did not complete is resumed from its last checkpoint."""
    previous = earlier_attempt(run_dir, overrides)
    if previous is not None and previous["status"] == "completed":
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
    if previous["status"] == "running" and still_running(previous):
        raise DlxError(f"{run_dir} is being trained right now by process {previous['pid']}: two processes must not "
                       "write one run folder. Wait for it to end (or stop it), then continue the sweep.")
    return previous


def still_running(summary: dict[str, Any]) -> bool:
    """Whether the process that wrote a "running" summary is alive on this machine (a killed one is not)."""
    if summary.get("host") != platform.node() or not isinstance(summary.get("pid"), int):
        return False  # another machine's job: a lost node leaves "running" behind, so it is taken as gone
    try:
        os.kill(summary["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return summary["pid"] != os.getpid()


class GpuClaim:
    """One GPU of this machine for one job, held (an flock) until the job ends: jobs that a local launcher
    (joblib) runs side by side each take a free GPU instead of all piling onto the first. The lock files
    are per machine, so separate `dlx` commands share GPUs the same way."""

    def __init__(self) -> None:
        self.descriptor: int | None = None

    def acquire(self, gpus: list[str]) -> int | None:
        """The index of the first GPU of `gpus` (their identities) no other job holds, or None."""
        folder = lock_folder()
        for index, identity in enumerate(gpus):
            # O_NOFOLLOW: a link planted under this name is refused, never followed (nor truncated).
            descriptor = os.open(folder / f"{identity}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                continue
            self.descriptor = descriptor
            return index
        return None

    def release(self) -> None:
        if self.descriptor is not None:
            os.close(self.descriptor)  # closing drops the lock
            self.descriptor = None


def lock_folder() -> Path:
    """This user's private folder for the GPU locks (refused if someone else owns it or may write in it)."""
    folder = Path(tempfile.gettempdir()) / f"dlx-gpus-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise DlxError(f"{folder} is not a private folder of yours (a link, another owner, or writable by others): "
                       "remove it, dlx makes it again for the GPU locks of parallel jobs.")
    return folder


def gpu_identity(index: int) -> str:
    """A name for GPU `index` that is the same whatever CUDA_VISIBLE_DEVICES renumbers."""
    import torch

    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    return f"GPU-{uuid}" if uuid else str(index)


@contextmanager
def share_machine(cfg: DictConfig, hydra_cfg: DictConfig) -> Iterator[None]:
    """Give a job its share of the machine when a launcher runs several at once.

    joblib runs jobs side by side on this machine (it already limits each worker's CPU threads): each job
    takes a GPU no other job holds. Under SLURM, each job uses the CPUs its allocation has.
    """
    if cfg.trainer.threads is None and os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
        cfg.trainer.threads = int(os.environ["SLURM_CPUS_PER_TASK"])
    claim = GpuClaim()
    if "joblib" in hydra_cfg.launcher.get("_target_", "").lower() and cfg.trainer.device in ("auto", "cuda"):
        import torch

        count = torch.cuda.device_count()
        if count > 1:
            index = claim.acquire([gpu_identity(i) for i in range(count)])
            if index is None:
                index = hydra_cfg.job.num % count
                logger.warning(f"Every GPU is taken by another job: this one shares cuda:{index}. Run at most "
                               f"{count} jobs at once (hydra.launcher.n_jobs={count}).")
            # The current device, not the config: the stored config keeps "cuda", which any machine can evaluate.
            torch.cuda.set_device(index)
    try:
        yield
    finally:
        claim.release()

"""Sweeps around Hydra's sweepers and launchers: the plan written before the first job, the table after the
last one, and what each job does when its folder already holds an earlier attempt (a sweep continued after
Ctrl-C or a lost node, a SLURM job requeued after preemption).

Jobs run through Hydra's own launchers (in this process, joblib workers, submitit/SLURM jobs), so everything
a job needs to know is read from its folder, never from this process's memory.
"""

import shlex
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dlx.config.compose import Plan
from dlx.config.overrides import quote_override_value, split_override
from dlx.errors import DlxError
from dlx.results.runs import Run, best_first, print_table, sweep_runs, write_summary
from dlx.store.files import read_json, write_json_atomically
from dlx.store.run_folder import earlier_run

MANIFEST = "sweep.json"


def continue_command(args: list[str], folder: str) -> str:
    kept = [a for a in args if not a.startswith("hydra.sweep.dir=")]
    return shlex.join(["dlx", "train", *kept, f"hydra.sweep.dir={quote_override_value(folder)}"])


def job_config(cfg: DictConfig) -> dict[str, Any]:
    container = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(container, dict)  # a DictConfig's container
    container.pop("hydra", None)
    return {str(key): value for key, value in container.items()}


def start_sweep(plan: Plan, args: list[str]) -> None:
    """Write the sweep's plan (its jobs and their configs) into the sweep folder, or, when the folder already
    holds one (continuing a sweep), refuse unless the sweep is the same one."""
    from dlx.config.diff import config_changes

    folder = Path(plan.folder)
    manifest = folder / MANIFEST
    composed = [cfg for cfg in plan.configs if cfg is not None]
    assert len(composed) == len(plan.configs)  # outside --dry-run, preflight composed every job or raised
    configs = [job_config(cfg) for cfg in composed]
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
        allow = any(cfg.trainer.resume_allow_changes for cfg in composed)
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
    held = earlier_run(folder)
    if held:  # the sweep's table (summary.json) would replace the run's own
        raise DlxError(f"{folder} already holds {held}, not a sweep: a sweep there would replace its summary. Name a "
                       "new folder for the sweep (hydra.sweep.dir=...), or drop hydra.sweep.dir.")
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomically(manifest, {"command": ["dlx", "train", *args], "jobs": None if plan.searched else plan.jobs,
                                     "configs": [] if plan.searched else configs})
    print(f"Sweep folder: {folder}" + ("" if plan.searched else f" ({len(plan.jobs)} jobs)"), flush=True)


def training_overrides(overrides: list[str]) -> list[str]:
    """The overrides that change what a job trains: trainer.device, logger=..., trainer.resume_allow_changes
    and the like may differ between the attempts at one job."""
    from dlx.config.diff import changes_training

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



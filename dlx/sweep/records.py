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
from dlx.results.runs import SWEEP_MANIFEST, Run, best_first, print_table, sweep_runs, write_summary
from dlx.store.files import read_json, write_json_atomically
from dlx.store.run_folder import earlier_run

MANIFEST = SWEEP_MANIFEST


def continue_command(args: list[str], folder: str) -> str:
    kept = [a for a in args if not a.startswith("hydra.sweep.dir=")]
    return shlex.join(["dlx", "train", *kept, f"hydra.sweep.dir={quote_override_value(folder)}"])


def job_config(cfg: DictConfig) -> dict[str, Any]:
    container = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(container, dict)  # a DictConfig's container
    container.pop("hydra", None)
    return {str(key): value for key, value in container.items()}


def start_sweep(plan: Plan, args: list[str], study: Any = None) -> None:
    """Write the sweep's plan (its jobs and their configs; for a study, the config its trials start from, its
    search space and storage) into the sweep folder, or, when the folder already holds one (continuing a
    sweep), refuse unless the sweep is the same one."""
    folder = Path(plan.folder)
    manifest = folder / MANIFEST
    composed = [cfg for cfg in plan.configs if cfg is not None]
    assert len(composed) == len(plan.configs)  # outside --dry-run, preflight composed every job or raised
    configs = [job_config(cfg) for cfg in composed]
    old = read_json(manifest)
    record: dict[str, Any] = {"command": ["dlx", "train", *args], "jobs": None if plan.searched else plan.jobs,
                              "configs": configs if study is not None or not plan.searched else []}
    if study is not None:
        record["study"] = {"name": study.settings.study_name, "storage": study.url,
                           "search_space": study.space.described()}
    if old is not None:
        check_same_sweep(plan, old, record, composed)
        if study is None:
            print(f"Continuing the sweep in {folder}: finished jobs are skipped, interrupted ones resume.")
        return
    held = earlier_run(folder)
    if held:  # the sweep's table (summary.json) would replace the run's own
        raise DlxError(f"{folder} already holds {held}, not a sweep: a sweep there would replace its summary. Name a "
                       "new folder for the sweep (hydra.sweep.dir=...), or drop hydra.sweep.dir.")
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomically(manifest, record)
    print(f"Sweep folder: {folder}" + ("" if plan.searched else f" ({len(plan.jobs)} jobs)"), flush=True)


def check_same_sweep(plan: Plan, old: dict[str, Any], new: dict[str, Any], composed: list[DictConfig]) -> None:
    """A sweep continues in its folder only as the sweep it was: the same jobs (for a study: the same study,
    search space and starting config), each config unchanged unless trainer.resume_allow_changes."""
    from dlx.config.diff import config_changes

    folder = Path(plan.folder)
    if plan.searched and "study" not in new:
        raise DlxError(f"{folder} already holds a sweep, and a search sweeper numbers its trials from 0 again, over "
                       "the earlier jobs. Run the search in a new sweep folder (drop hydra.sweep.dir).")
    if "study" in new:
        before = old.get("study") or {}
        if (before.get("name"), before.get("storage")) != (new["study"]["name"], new["study"]["storage"]):
            raise DlxError(f"{folder} holds "
                           + (f"the study {before['name']} (storage {before['storage']})" if before else "a sweep")
                           + f", not the study {new['study']['name']} (storage {new['study']['storage']}). Run "
                           "this one in a folder of its own (hydra.sweep.dir=...), or continue that one with the "
                           f"arguments it was started with: {shlex.join(old['command'])}")
        if before["search_space"] != new["study"]["search_space"]:
            changed = [f"{key}: {before['search_space'].get(key, '<absent>')} -> "
                       f"{new['study']['search_space'].get(key, '<absent>')}"
                       for key in sorted(set(before["search_space"]) | set(new["study"]["search_space"]))
                       if before["search_space"].get(key) != new["study"]["search_space"].get(key)]
            raise DlxError(f"Refused to continue the study in {folder}: its search space changed since it started "
                           f"({'; '.join(changed)}). Start a new study for the new space "
                           "(hydra.sweeper.study_name=NEW_NAME), or continue this one with the space it has.")
    elif [training_overrides(job) for job in old["jobs"]] != [training_overrides(job) for job in plan.jobs]:
        raise DlxError(f"Refused to continue the sweep in {folder}: it was started with other jobs "
                       f"({describe_jobs(old['jobs'])}; now {describe_jobs(plan.jobs)}). Continue it with the "
                       f"arguments it was started with: {shlex.join(old['command'])}")
    allow = any(cfg.trainer.resume_allow_changes for cfg in composed)
    what = "the config its trials start from" if "study" in new else "the config of job {number}"
    for number, (before_config, after_config) in enumerate(zip(old["configs"], new["configs"])):
        changes = config_changes(before_config, after_config)
        if changes and not allow:
            raise DlxError(f"Refused to continue the {'study' if 'study' in new else 'sweep'} in {folder}: "
                           f"{what.format(number=number)} changed since it started "
                           f"({'; '.join(changes[:5])}{'; ...' if len(changes) > 5 else ''}). Undo "
                           "the change (a config file edited in between?), start a new "
                           f"{'study (hydra.sweeper.study_name=NEW_NAME)' if 'study' in new else 'sweep'}, or pass "
                           "trainer.resume_allow_changes=true to continue with the new values (completed "
                           "jobs keep their results: they are not run again).")


def training_overrides(overrides: list[str]) -> list[str]:
    """The overrides that change what a job trains: trainer.device, logger=..., trainer.resume_allow_changes
    and the like may differ between the attempts at one job."""
    from dlx.config.diff import changes_training

    return [o for o in overrides if changes_training(split_override(o)[0])]


def describe_jobs(jobs: list[list[str]]) -> str:
    return f"{len(jobs)} job(s): " + ", ".join(" ".join(job) or "(defaults)" for job in jobs[:4]) + (
        ", ..." if len(jobs) > 4 else "")


def finish_sweep(folder: Path) -> list[Run]:
    """Print the table of the sweep's jobs, best first, and save it as summary.csv and summary.json; for a
    study, its best trial and the command that trains it again (or, for several objectives, its Pareto
    front) too."""
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
    if manifest.get("study"):
        extra["study"] = report_study(manifest["study"])
    write_summary(folder, runs, extra)
    print(f"Saved {folder / 'summary.csv'} and {folder / 'summary.json'}")
    return runs


def report_study(record: dict[str, Any]) -> dict[str, Any] | None:
    """The study's summary (dlx.results.study), printed: the command of its best trial, or its Pareto front."""
    from dlx.results.study import StudyLocation, load_study, study_summary

    try:
        summary = study_summary(load_study(StudyLocation(record["storage"], record["name"], None)))
    except DlxError as err:  # the storage went away meanwhile: the table above still stands
        print(f"The study could not be read back: {err}")
        return None
    summary["storage"] = record["storage"]
    for trial in [summary["best"]] if "best" in summary else summary.get("pareto_front", []):
        values = ", ".join(f"{name} {value:.4g}" for name, value in (trial["values"] or {}).items())
        label = "Best trial" if "best" in summary else "Pareto front: trial"
        print(f"{label} {trial['number']}: {values}" + (
            f"; train it again with: {shlex.join(trial['command'])}" if trial["command"] else ""))
    return summary

"""An Optuna search checked before anything runs or is written: its settings, its search space, the metric it
optimises against what the runs measure, and its storage. Every mistake is a DlxError here, before Hydra's
runner starts, so a bad command leaves an existing study as it was."""

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from dlx.config.compose import Plan
from dlx.errors import DlxError
from dlx.sweep.search import OPTUNA_SWEEPER, Measures, SearchSettings, build_pruner, build_sampler, check_objectives
from dlx.sweep.search_space import SYNTAX, SearchSpace, grid_of, parse_search_space

BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def is_dlx_search(plan: Plan) -> bool:
    """A sweep run by dlx's own Optuna sweeper (hydra/sweeper=dlx_optuna)."""
    return plan.multirun and plan.sweeper == OPTUNA_SWEEPER


@dataclass
class StudyPlan:
    settings: SearchSettings
    space: SearchSpace
    url: str  # the storage
    measures: Measures | None  # None when the config the trials start from is invalid (--dry-run goes on)
    finished: int = 0  # trials the study holds already, when it continues
    interrupted: int = 0  # trials of this sweep an earlier process left running: they resume


def plan_study(plan: Plan, overrides: list[str]) -> StudyPlan:
    """Check the search `dlx train OVERRIDES` would run; a DlxError for the first mistake."""
    settings = SearchSettings.of(plan.sweeper_config)
    if settings.n_jobs > 1 and plan.launcher == BASIC_LAUNCHER:
        raise DlxError(f"hydra.sweeper.n_jobs={settings.n_jobs} runs trials side by side, which takes a parallel "
                       "launcher: add hydra/launcher=joblib (processes on this machine; hydra.launcher.n_jobs "
                       "of them) or hydra/launcher=slurm. The basic launcher runs one trial at a time.")
    space = parse_search_space(settings.params, overrides)
    if not space.params:
        raise DlxError(f"The search has nothing to search: no key of hydra.sweeper.params or of the command line is "
                       f"a search space. {SYNTAX}")
    build_sampler(settings, grid_of(space) if settings.sampler == "grid" else None)
    build_pruner(settings.pruner, settings.pruner_options)
    base = plan.configs[0] if plan.configs and plan.errors[0] is None else None
    measures = measures_of(base) if base is not None else None
    if measures is not None:
        check_objectives(settings, measures)
    study = StudyPlan(settings, space, settings.url(plan.folder), measures)
    # The existing study is looked at last: a wrong direction is first a mistake about the metric.
    look_at_existing_study(study, Path(plan.folder))
    return study


def measures_of(cfg: DictConfig) -> Measures:
    """What runs of this config measure: the task (classification, regression, GAN...) depends on the data, so
    the data is loaded here once, on the CPU, as the first trial will load it."""
    from dlx.train.build import build_data, build_task
    from dlx.train.monitor import monitored

    data = build_data(cfg)
    task = build_task(cfg, data, "cpu")
    metric, mode = monitored(cfg.trainer, task)
    return Measures(tuple(f"val/{name}" for name in task.metric_names), metric, mode)


def look_at_existing_study(study: StudyPlan, sweep_dir: Path) -> None:
    """An existing study must have the directions asked for, and the trials an earlier process of this sweep
    left running must be stopped for good before they resume. A storage that does not exist yet is not
    created here."""
    from dlx.results.runs import read_summary
    from dlx.store.run_folder import process_alive
    from dlx.store.study import check_storage_creatable, is_journal, sqlite_path
    from dlx.sweep.optuna_sweeper import interrupted_trials, open_study

    check_storage_creatable(study.url)
    path = sqlite_path(study.url) if study.url.startswith("sqlite:") else Path(study.url) if is_journal(study.url) else None
    if path is not None and not path.exists():
        return
    existing = open_study(study.settings, study.space, study.url, create=False)
    if existing is None:
        return
    from optuna.trial import TrialState

    study.finished = len(existing.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                                    TrialState.FAIL)))
    left = interrupted_trials(existing, sweep_dir)
    study.interrupted = len(left)
    for trial in left:
        summary = read_summary(Path(trial.user_attrs["run_dir"])) or {}
        if summary.get("status") == "running" and process_alive(summary, other_hosts_alive=False):
            raise DlxError(f"Trial {trial.number} of the study {study.settings.study_name} is still being trained, "
                           f"by process {summary['pid']} (left over from the sweep that stopped?). Wait for it to "
                           "end, or stop it, then run the command again: the trial then resumes from its last "
                           "checkpoint.")


def describe_study(study: StudyPlan) -> list[str]:
    """Lines for --dry-run: what the search would do."""
    from dlx.store.study import describe

    settings = study.settings
    lines = [f"Study {settings.study_name}: {settings.sampler} sampler"
             + (f", {settings.pruner} pruner" if settings.pruner else ", no pruner")
             + f", {settings.n_trials} trials" + (f", {settings.n_jobs} at a time" if settings.n_jobs > 1 else ""),
             f"Storage: {describe(study.url)}"
             + (f" (holds {study.finished} finished trial(s); {study.interrupted} to resume)"
                if study.finished or study.interrupted else "")]
    if study.measures is not None:
        objectives = settings.objectives or [study.measures.monitored]
        lines.append("Optimises: " + ", ".join(f"{name} ({direction})"
                                                for name, direction in zip(objectives, settings.directions)))
    return lines


def search_overrides(args: list[str]) -> list[str]:
    """The overrides of a `dlx train` command line (no flags), as Hydra hands them to a sweeper."""
    from dlx.config.compose import parse_hydra_args

    return list(parse_hydra_args(args).overrides)

"""The settings of an Optuna search (`hydra.sweeper.*` of hydra/sweeper=dlx_optuna): its sampler, pruner,
objectives and directions, checked before anything runs, and what turns a finished job into the values Optuna
is told.

optuna is imported inside the functions: the CLI imports this module before it knows whether it searches."""

import inspect
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlx.errors import DlxError, did_you_mean, format_choices
from dlx.store.study import storage_url

# The class Hydra instantiates (conf/hydra/sweeper/dlx_optuna.yaml); Hydra only loads sweepers it found under
# the hydra_plugins namespace, so the class there is a subclass of dlx.sweep.optuna_sweeper.OptunaSweeper.
OPTUNA_SWEEPER = "hydra_plugins.dlx_optuna_sweeper.DlxOptunaSweeper"

# hydra.sweeper.sampler -> Optuna's class. A dict, not a registry: the choices are these.
SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler", "grid": "GridSampler", "cmaes": "CmaEsSampler",
            "gp": "GPSampler", "qmc": "QMCSampler", "nsgaii": "NSGAIISampler", "nsgaiii": "NSGAIIISampler"}
SINGLE_OBJECTIVE_SAMPLERS = {"cmaes"}
PRUNERS = {"median": "MedianPruner", "percentile": "PercentilePruner",
           "successive_halving": "SuccessiveHalvingPruner", "hyperband": "HyperbandPruner"}
PRUNER_DEFAULTS = {"percentile": {"percentile": 25.0}}  # PercentilePruner has no default percentile
DIRECTIONS = ("maximize", "minimize")
# What an objective may name besides the run's validation metrics, each read from its summary.json.
RUN_MEASURES = ("num_parameters", "wall_time_s", "steps")


@dataclass
class SearchSettings:
    sampler: str = "tpe"
    seed: int | None = None
    sampler_options: dict[str, Any] = field(default_factory=dict)
    pruner: str | None = None
    pruner_options: dict[str, Any] = field(default_factory=dict)
    directions: list[str] = field(default_factory=lambda: ["maximize"])
    objectives: list[str] | None = None  # None: the run's monitored metric (its best value)
    study_name: str = "search"
    storage: str | None = None  # None: SQLite in the sweep folder
    n_trials: int = 20  # the study's size: a continued study runs the trials it lacks
    n_jobs: int = 1  # trials at once (with a parallel launcher)
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, sweeper: Mapping[str, Any]) -> "SearchSettings":
        """The settings from hydra.sweeper (plain values), each checked: a DlxError names the key to fix."""
        direction = sweeper.get("direction", "maximize")
        directions = [direction] if isinstance(direction, str) else list(direction)
        objectives = sweeper.get("objectives")
        settings = cls(sampler=str(sweeper.get("sampler") or "tpe"), seed=sweeper.get("seed"),
                       sampler_options=dict(sweeper.get("sampler_options") or {}),
                       pruner=sweeper.get("pruner"), pruner_options=dict(sweeper.get("pruner_options") or {}),
                       directions=directions, objectives=None if objectives is None else [str(o) for o in objectives],
                       study_name=str(sweeper.get("study_name")), storage=sweeper.get("storage"),
                       n_trials=sweeper.get("n_trials", 20), n_jobs=sweeper.get("n_jobs", 1),
                       params=dict(sweeper.get("params") or {}))
        settings.check()
        return settings

    def check(self) -> None:
        check_name("hydra.sweeper.sampler", self.sampler, SAMPLERS)
        if self.pruner is not None:
            check_name("hydra.sweeper.pruner", self.pruner, PRUNERS)
        for direction in self.directions:
            if direction not in DIRECTIONS:
                raise DlxError(f"hydra.sweeper.direction={direction} is not a direction.{did_you_mean(direction, DIRECTIONS)}"
                               " Choose maximize or minimize (a list of them, one per objective, for several).")
        wanted = len(self.objectives) if self.objectives else 1
        if len(self.directions) != wanted:
            raise DlxError(f"hydra.sweeper.direction gives {len(self.directions)} direction(s) for {wanted} "
                           f"objective(s) ({', '.join(self.objectives or ['the monitored metric'])}): give one per "
                           "objective, in the same order, e.g. hydra.sweeper.direction=[maximize,minimize].")
        if self.multi_objective and self.pruner is not None:
            raise DlxError(f"hydra.sweeper.pruner={self.pruner} cannot prune a search of several objectives "
                           f"({', '.join(self.objectives or [])}): Optuna prunes on one reported value. Drop the "
                           "pruner (hydra.sweeper.pruner=null) or search one objective.")
        if self.multi_objective and self.sampler in SINGLE_OBJECTIVE_SAMPLERS:
            raise DlxError(f"hydra.sweeper.sampler={self.sampler} optimises one objective; for several "
                           f"({', '.join(self.objectives or [])}) choose nsgaii, tpe or random.")
        if not isinstance(self.n_trials, int) or self.n_trials < 1:
            raise DlxError(f"hydra.sweeper.n_trials={self.n_trials} must be a whole number of trials, 1 or more.")
        if not isinstance(self.n_jobs, int) or self.n_jobs < 1:
            raise DlxError(f"hydra.sweeper.n_jobs={self.n_jobs} must be a whole number of trials run at once, 1 "
                           "or more.")

    @property
    def multi_objective(self) -> bool:
        return len(self.directions) > 1

    def url(self, sweep_dir: str | Path) -> str:
        return storage_url(self.storage, sweep_dir)


def check_name(key: str, name: str, choices: dict[str, str]) -> None:
    if name not in choices:
        raise DlxError(f'{key}={name} is not one dlx knows.{did_you_mean(name, choices)} Choose one of: '
                       f"{format_choices(choices)}.")


def build_sampler(settings: SearchSettings, grid: dict[str, list[Any]] | None = None) -> Any:
    """Optuna's sampler of that name, seeded; `grid` (every value of every parameter) for the grid sampler."""
    import optuna

    cls = getattr(optuna.samplers, SAMPLERS[settings.sampler])
    arguments: dict[str, Any] = {"seed": settings.seed, **settings.sampler_options}
    if settings.sampler == "grid":
        arguments["search_space"] = grid
    return construct(cls, arguments, f"hydra.sweeper.sampler={settings.sampler}", "hydra.sweeper.sampler_options")


def build_pruner(name: str | None, options: Mapping[str, Any]) -> Any:
    import optuna

    if name is None:
        return optuna.pruners.NopPruner()
    cls = getattr(optuna.pruners, PRUNERS[name])
    return construct(cls, {**PRUNER_DEFAULTS.get(name, {}), **options}, f"hydra.sweeper.pruner={name}",
                     "hydra.sweeper.pruner_options")


def construct(cls: type, arguments: dict[str, Any], what: str, options_key: str) -> Any:
    """cls(**arguments), or a DlxError naming the arguments it takes."""
    import optuna

    accepted = [name for name in inspect.signature(cls).parameters if name not in ("search_space", "self")]
    unknown = [name for name in arguments if name not in accepted and name != "search_space"]
    if unknown:
        raise DlxError(f"{options_key}.{unknown[0]}: {what} ({cls.__name__}) takes no such option."
                       f"{did_you_mean(unknown[0], accepted)} Its options: {', '.join(accepted)}.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return cls(**arguments)
    except ImportError as err:
        raise DlxError(f"{what} needs {err.name or 'a package'}, which is not installed: pip install "
                       f"{err.name or ''} (or pip install \"dlx[sweep]\").") from err
    except (TypeError, ValueError) as err:
        raise DlxError(f"{what} refused its options ({options_key}): {err}.") from err


@dataclass(frozen=True)
class Measures:
    """What a run of the search's config measures: its validation metrics, and the monitored one."""

    metrics: tuple[str, ...]  # val/acc, val/loss...
    monitored: str
    mode: str  # max | min


def check_objectives(settings: SearchSettings, measures: Measures) -> None:
    """Every objective is something the runs measure, optimised in the direction that makes it better."""
    for name, direction in zip(objective_names(settings, measures), settings.directions):
        if name.startswith("val/"):
            if name not in measures.metrics:
                raise DlxError(f"hydra.sweeper.objectives names {name}, which these runs do not measure."
                               f"{did_you_mean(name, [*measures.metrics, *RUN_MEASURES])} They measure "
                               f"{', '.join(measures.metrics)}, and each run's {', '.join(RUN_MEASURES)}.")
            mode = measures.mode if name == measures.monitored else "max" if "acc" in name else "min"
            expected = {"max": "maximize", "min": "minimize"}[mode]
            if direction != expected:
                fix = ("hydra.sweeper.direction=" + expected if not settings.multi_objective else
                       "the direction of that objective in hydra.sweeper.direction")
                raise DlxError(f"hydra.sweeper.direction={direction}, but {name} is best at its {mode}imum: the "
                               f"search would look for the worst model. Pass {fix}, or monitor another metric "
                               "(trainer.monitor.metric=..., trainer.monitor.mode=...).")
        elif name not in RUN_MEASURES:
            raise DlxError(f"hydra.sweeper.objectives names {name}, which these runs do not measure."
                           f"{did_you_mean(name, [*measures.metrics, *RUN_MEASURES])} Choose among "
                           f"{', '.join([*measures.metrics, *RUN_MEASURES])}.")
    if settings.pruner is not None and objective_names(settings, measures) != [measures.monitored]:
        raise DlxError(f"hydra.sweeper.pruner={settings.pruner} prunes on the metric each validation reports, "
                       f"the monitored one ({measures.monitored}), but the search optimises "
                       f"{objective_names(settings, measures)[0]}. Monitor that metric instead "
                       f"(trainer.monitor.metric={objective_names(settings, measures)[0]}) and drop "
                       "hydra.sweeper.objectives.")


def objective_names(settings: SearchSettings, measures: Measures | None = None, monitored: str | None = None) -> list[str]:
    if settings.objectives:
        return settings.objectives
    return [measures.monitored if measures else monitored or "best"]


def objective_values(settings: SearchSettings, summary: Mapping[str, Any], run_dir: Path) -> list[float] | None:
    """The values a completed run gives the study, in the objectives' order; None when one is missing or not
    finite (the trial then fails)."""
    monitored = (summary.get("monitor") or {}).get("metric")
    values = []
    for name in objective_names(settings, monitored=monitored):
        if name == monitored:
            value = (summary.get("best") or {}).get("value")
        elif name.startswith("val/"):
            value = value_at_best_step(run_dir, name, (summary.get("best") or {}).get("step"))
        else:
            value = summary.get(name)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return None
        values.append(float(value))
    return values


def value_at_best_step(run_dir: Path, name: str, step: int | None) -> float | None:
    """A validation metric that is not the monitored one, at the validation that gave the best checkpoint."""
    from dlx.store.metrics import read_metrics

    metric = name.removeprefix("val/")
    for row in read_metrics(run_dir / "metrics.jsonl"):
        if row.get("split") == "val" and row.get("step") == step and metric in row:
            return row[metric]
    return None

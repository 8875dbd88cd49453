"""What an Optuna study holds, for people: `dlx study SWEEP_OR_STORAGE`, the end of a search, and the HTML
report of a sweep. The best trial with the command that trains it again, a table of trials with their
states, the parameters' importances, and PNG plots drawn by optuna.visualization.matplotlib.

optuna and matplotlib are imported inside the functions."""

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlx.errors import DlxError, require
from dlx.results.runs import SWEEP_MANIFEST, format_duration
from dlx.store.files import read_json


@dataclass(frozen=True)
class StudyLocation:
    url: str
    name: str | None  # None: the storage's only study
    sweep_dir: Path | None  # the sweep folder it came from, if any


def locate_study(target: str, name: str | None = None) -> StudyLocation:
    """A sweep folder of dlx's Optuna search (its sweep.json names the study and its storage), a SQLAlchemy
    URL, a SQLite file, or a journal file."""
    from dlx.store.study import STUDY_FILE, storage_url

    path = Path(target).expanduser()
    if "://" in target:
        return StudyLocation(target, name, None)
    if path.is_dir():
        study = (read_json(path / SWEEP_MANIFEST) or {}).get("study")
        if study:
            return StudyLocation(study["storage"], name or study["name"], path)
        if (path / STUDY_FILE).is_file():
            return StudyLocation(storage_url(None, path), name, path)
        raise DlxError(f"{path} holds no Optuna study: neither a sweep.json of a search (dlx train -m "
                       f"hparams_search=...) nor a {STUDY_FILE}. Name a search's sweep folder, a storage URL "
                       "(sqlite:///PATH) or a study's file.")
    if path.is_file():
        with open(path, "rb") as file:
            is_sqlite = file.read(16) == b"SQLite format 3\x00"
        return StudyLocation(f"sqlite:///{path.resolve()}" if is_sqlite else str(path.resolve()), name, None)
    raise DlxError(f"{target} is neither a folder, a file nor a storage URL. Name a search's sweep folder "
                   "(outputs/studies/NAME), its study.db, or a URL such as sqlite:///optuna.db.")


def load_study(location: StudyLocation) -> Any:
    """The study, read from its storage; a DlxError names the studies there when the name is wrong."""
    import optuna

    from dlx.store.study import describe, open_storage, sqlite_path

    path = sqlite_path(location.url)
    if path is not None and not path.is_file():
        raise DlxError(f"There is no study file {path}. Name the sweep folder of a search or its study.db.")
    storage = open_storage(location.url)
    names = optuna.get_all_study_names(storage)
    name = location.name
    if name is None:
        if len(names) != 1:
            raise DlxError(f"{describe(location.url)} holds {len(names)} studies"
                           + (f" ({', '.join(names)}): name one with --study NAME." if names else "."))
        name = names[0]
    if name not in names:
        from dlx.errors import did_you_mean

        raise DlxError(f"{describe(location.url)} holds no study named {name}.{did_you_mean(name, names)} Its "
                       f"studies: {', '.join(names) or 'none'}.")
    return optuna.load_study(study_name=name, storage=storage)


def objective_labels(study: Any) -> list[str]:
    """The objectives' names as dlx's sweeper recorded them on the study (val/acc...), else value 0, 1..."""
    names = study.user_attrs.get("objectives")
    if names and len(names) == len(study.directions):
        return list(names)
    return ["value"] if len(study.directions) == 1 else [f"value {i}" for i in range(len(study.directions))]


def state_counts(study: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
    return counts


def trial_record(trial: Any, labels: list[str]) -> dict[str, Any]:
    return {"number": trial.number, "state": trial.state.name.lower(),
            "values": dict(zip(labels, trial.values)) if trial.values else None, "params": trial.params,
            "validations": trial.last_step, "run_dir": trial.user_attrs.get("run_dir"),
            "command": trial.user_attrs.get("command"),
            "duration_s": trial.duration.total_seconds() if trial.duration else None}


def study_summary(study: Any) -> dict[str, Any]:
    """The study in plain values: its trials by state, and its best trial (one objective) or the trials of
    its Pareto front (several), each with the command that trains it again."""
    labels = objective_labels(study)
    summary: dict[str, Any] = {"name": study.study_name, "directions": [d.name.lower() for d in study.directions],
                               "objectives": labels, "trials": state_counts(study)}
    completed = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not completed:
        return summary
    if len(study.directions) == 1:
        summary["best"] = trial_record(study.best_trial, labels)
    else:
        summary["pareto_front"] = [trial_record(t, labels) for t in sorted(study.best_trials, key=lambda t: t.number)]
    return summary


def importances(study: Any) -> dict[str, dict[str, float]]:
    """Each objective's parameter importances (fANOVA over the completed trials), most important first; empty
    for an objective too few trials inform (two completed trials with different parameters at least)."""
    import optuna

    found: dict[str, dict[str, float]] = {}
    for index, label in enumerate(objective_labels(study)):
        try:
            with quiet_optuna():
                found[label] = optuna.importance.get_param_importances(
                    study, target=value_of(index) if len(study.directions) > 1 else None)
        except (RuntimeError, ValueError):  # fewer than two completed trials, or no parameter varies
            continue
    return found


def value_of(index: int) -> Any:
    """The target that reads objective `index` of a trial (Optuna's plots and importances take one)."""
    return lambda trial: trial.values[index]


@contextmanager
def quiet_optuna() -> Iterator[None]:
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)  # matplotlib's, about trials it cannot draw
        yield


def study_figures(study: Any) -> Iterator[tuple[str, Any]]:
    """The study's plots, each a matplotlib Figure (closed once the caller moves on): optimisation history,
    parameter importances, parallel coordinates, intermediate values (the validations the pruner saw), the
    timeline of trials (which ran at once); for several objectives, the Pareto front. A plot the study cannot
    fill yet (one trial) is left out."""
    matplotlib = require("matplotlib", "plot", "The study's plots")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    labels = objective_labels(study)
    several = len(study.directions) > 1
    first = {"target": value_of(0), "target_name": labels[0]} if several else {"target_name": labels[0]}
    drawers: dict[str, Any] = {
        "history": lambda: plots.plot_optimization_history(study, **first),
        "importances": lambda: plots.plot_param_importances(study, **first),
        "parallel_coordinates": lambda: plots.plot_parallel_coordinate(study, **first),
        "intermediate_values": lambda: plots.plot_intermediate_values(study),
        "timeline": lambda: plots.plot_timeline(study),
    }
    if several:
        drawers["pareto_front"] = lambda: plots.plot_pareto_front(study, target_names=labels)
        del drawers["intermediate_values"]  # Optuna reports intermediate values for one objective only
    for name, draw in drawers.items():
        try:
            with quiet_optuna():
                axes = draw()
        except (RuntimeError, ValueError):  # too few trials for this plot
            plt.close("all")
            continue
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        if name == "intermediate_values":
            axes.set_xlabel("Validation (the epoch, with the default trainer.eval_every)")
        figure.set_size_inches(9, 5.5)
        figure.tight_layout()
        try:
            yield name, figure
        finally:
            plt.close(figure)


def write_plots(study: Any, out: Path) -> list[Path]:
    """The study's plots as NAME.png in `out`."""
    from dlx.ui.figures import save_figure

    return [save_figure(figure, out / f"{name}.png") for name, figure in study_figures(study)]


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def print_study(study: Any, location: StudyLocation) -> None:
    """The study on the terminal: its counts, best trial (or Pareto front) with commands, trials, importances."""
    import shlex

    from rich.markup import escape
    from rich.table import Table

    from dlx.store.study import describe
    from dlx.ui.console import wide_console

    console = wide_console()
    summary = study_summary(study)
    labels = summary["objectives"]
    counts = ", ".join(f"{n} {state}" for state, n in summary["trials"].items())
    console.print(escape(f"Study {study.study_name} in {describe(location.url)}: {sum(summary['trials'].values())} "
                         f"trial(s) ({counts}); "
                         + ", ".join(f"{d} {label}" for d, label in zip(summary["directions"], labels))))
    for record in ([summary["best"]] if "best" in summary else summary.get("pareto_front", [])):
        values = ", ".join(f"{k} {format_value(v)}" for k, v in (record["values"] or {}).items())
        title = "Best trial" if "best" in summary else "On the Pareto front: trial"
        console.print(escape(f"{title} {record['number']}: {values}"))
        if record["command"]:
            console.print(escape(f"  train it again: {shlex.join(record['command'])}"), soft_wrap=True)
        else:
            console.print(escape(f"  parameters: {record['params']}"))
    params = sorted({name for trial in study.get_trials(deepcopy=False) for name in trial.params})
    table = Table(title="Trials", title_justify="left")
    for column in ["trial", "state", *labels, *params, "validations", "time"]:
        table.add_column(column, overflow="fold")
    for trial in study.get_trials(deepcopy=False):
        cells = list(trial.values) if trial.values else [None] * len(labels)
        table.add_row(str(trial.number), trial.state.name.lower(),
                      *(format_value(v) if v is not None else "" for v in cells),
                      *(escape(format_value(trial.params[p])) if p in trial.params else "" for p in params),
                      "" if trial.last_step is None else str(trial.last_step),
                      format_duration(trial.duration.total_seconds()) if trial.duration else "")
    console.print(table)
    for label, found in importances(study).items():
        console.print(escape(f"Parameter importances for {label} (fANOVA): "
                             + ", ".join(f"{name} {share:.2f}" for name, share in found.items())))

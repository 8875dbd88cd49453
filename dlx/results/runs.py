"""Tables of runs: the summary printed and saved at the end of a sweep, and `dlx runs FOLDER`.

Every run folder holds a summary.json (written by dlx.train.run.train whatever happened), so a table of runs is
built from those files alone: it works for sweeps still running, killed or run on another machine.
"""

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlx.config.overrides import differing_overrides, split_override
from dlx.errors import DlxError
from dlx.store.files import json_safe, read_regular_file, write_json_atomically, write_text_atomically
from dlx.store.metrics import finite
from dlx.store.run_folder import process_alive
from dlx.ui.console import print_error, printable, wide_console

SWEEP_MANIFEST = "sweep.json"  # a sweep's plan: its command, jobs and configs (dlx.sweep.records writes it)


@dataclass
class Run:
    name: str  # the job number in a sweep, the path relative to the folder in `dlx runs`
    status: str  # completed | pruned (by a search) | failed | interrupted | running | killed | pending (a sweep job not started yet)
    overrides: list[str] = field(default_factory=list)
    choices: dict[str, str] = field(default_factory=dict)
    metric: str | None = None  # the monitored metric and its direction
    mode: str | None = None
    best: float | None = None
    best_step: int | None = None
    test: dict[str, float] = field(default_factory=dict)
    steps: int | None = None
    wall_time_s: float | None = None
    error: str | None = None
    run_dir: str | None = None

    @classmethod
    def from_summary(cls, name: str, summary: dict[str, Any]) -> "Run":
        monitor, best = summary.get("monitor") or {}, summary.get("best") or {}
        return cls(name=name, status=summary.get("status", "unknown"), overrides=summary.get("overrides", []),
                   choices=summary.get("choices", {}), metric=monitor.get("metric"), mode=monitor.get("mode"),
                   best=best.get("value"), best_step=best.get("step"), test=summary.get("test") or {},
                   steps=summary.get("steps"), wall_time_s=summary.get("wall_time_s"), error=summary.get("error"),
                   run_dir=summary.get("run_dir"))

    @property
    def has_score(self) -> bool:
        return self.status == "completed" and self.best is not None and finite(self.best)


# The fields of a run's summary.json that tables and reports read, and their JSON types (null is always allowed:
# NaN metrics are written as null, and a run that failed early has few of them).
NUMBER = (int, float)
SUMMARY_FIELDS: dict[str, Any] = {
    "status": str, "overrides": list, "choices": dict, "monitor": dict, "best": dict, "test": dict, "steps": int,
    "wall_time_s": NUMBER, "error": str, "run_dir": str, "pid": int, "host": str, "checkpoint": str, "epochs": NUMBER,
    "samples_per_sec": NUMBER, "num_parameters": int, "device": str, "kind": str}
NESTED_FIELDS: dict[str, Any] = {"monitor.metric": str, "monitor.mode": str, "best.value": NUMBER, "best.step": int}
CHECKPOINTS = ("checkpoints/best.ckpt", "checkpoints/last.ckpt")  # what "checkpoint" may name


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """The run's summary.json, or None when it has none (yet). A DlxError when the file is not a summary dlx
    wrote (not a JSON object, a field of the wrong type, a link): such a file is not read into a table."""
    path = run_dir / "summary.json"
    try:
        text = read_regular_file(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise DlxError(f"{path} cannot be read ({err.strerror or err}).") from err
    try:
        summary = json.loads(text.decode("utf-8"))
    except ValueError as err:
        raise DlxError(f"{path} is not JSON ({err}): a run's summary.json is written whole or not at all, so it "
                       "was altered, or is not dlx's.") from err
    problem = summary_problem(summary)
    if problem:
        raise DlxError(f"{path} is not a summary dlx wrote: {problem}.")
    return summary


def summary_problem(summary: Any) -> str | None:
    """What makes `summary` other than a summary.json dlx writes, or None."""
    if not isinstance(summary, dict):
        return f"it holds a JSON {type(summary).__name__}, not an object"
    values = {**summary, **{key: (summary.get(key.partition(".")[0]) or {}).get(key.partition(".")[2])
                            for key in NESTED_FIELDS if isinstance(summary.get(key.partition(".")[0]), dict)}}
    for key, kind in (SUMMARY_FIELDS | NESTED_FIELDS).items():
        value = values.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
            return f'"{key}" is {json.dumps(value)[:40]}, not {"a number" if kind is NUMBER else "a " + kind.__name__}'
    if not all(isinstance(o, str) for o in summary.get("overrides") or []):
        return '"overrides" holds something other than text'
    if not all(isinstance(v, str) for v in (summary.get("choices") or {}).values()):
        return '"choices" holds something other than text'
    if not all(v is None or (isinstance(v, NUMBER) and not isinstance(v, bool)) for v in (summary.get("test") or {}).values()):
        return '"test" holds something other than numbers'
    if summary.get("checkpoint") is not None and summary["checkpoint"] not in CHECKPOINTS:
        return f'"checkpoint" names {summary["checkpoint"]!r}, not one of {", ".join(CHECKPOINTS)}'
    return None


def find_runs(folder: Path) -> list[Run]:
    """Every run under `folder` (the folder itself included), named by its path relative to `folder`.
    Symbolic links (outputs/latest) are not followed, so no run is listed twice. A summary.json that is not one
    dlx wrote is skipped with a warning: one bad file must not hide every other run. A run whose summary says
    "running" while its process is gone (killed with SIGKILL, out of memory) shows as killed."""
    runs = []
    for parent, folders, files in os.walk(folder):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        if "summary.json" not in files:
            continue
        try:
            summary = read_summary(Path(parent))
        except DlxError as err:
            print_error(f"{err} Skipped.", "warning")
            continue
        if summary is not None and summary.get("kind") != "sweep":  # a sweep's table is not a run
            runs.append(Run.from_summary(os.path.relpath(parent, folder), mark_killed(summary, Path(parent))))
    return runs


def mark_killed(summary: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """A "running" summary whose process (on this machine) is gone: the run was killed without a word."""
    if summary.get("status") != "running" or process_alive(summary, other_hosts_alive=True):
        return summary
    return {**summary, "status": "killed",
            "error": f"its process ({summary.get('pid')}) ended without recording how: killed (SIGKILL, out of "
                     f"memory) or its machine went down. Resume it: dlx train hydra.run.dir={run_dir} "
                     "trainer.resume=auto"}


def sweep_runs(sweep_dir: Path, planned_jobs: list[list[str]] | None) -> list[Run]:
    """The jobs of a sweep in job-number order; planned jobs that never started are listed as pending."""
    runs = {int(run.name): run for run in find_runs(sweep_dir) if run.name.isdigit()}
    for number, overrides in enumerate(planned_jobs or []):
        runs.setdefault(number, Run(name=str(number), status="pending", overrides=overrides))
    return [runs[number] for number in sorted(runs)]


def score(run: Run) -> float:
    assert run.best is not None  # has_score
    return run.best


def best_first(runs: list[Run]) -> list[Run]:
    """Runs with a score first, best first for their metric's direction; then the others in their order."""
    scored = [run for run in runs if run.has_score]
    scored.sort(key=lambda run: (run.metric or "", -score(run) if run.mode == "max" else score(run)))
    return scored + [run for run in runs if not run.has_score]


def table_rows(runs: list[Run], groups: tuple[str, ...] = ()) -> tuple[list[str], list[dict[str, Any]]]:
    """Column names and one dict per run: what the printed table, summary.csv and summary.json share.
    `groups` adds a column per config group (model, dataset) with each run's choice."""
    keys = [key for key in differing_overrides([run.overrides for run in runs]) if key not in groups]
    metrics = sorted({run.metric for run in runs if run.metric})
    tests = sorted({name for run in runs for name in run.test})
    columns = ["run", *groups, *keys, *(f"best {m}" for m in metrics), *(f"test/{t}" for t in tests),
               "steps", "wall_time_s", "status", "error"]
    rows = []
    for run in runs:
        overrides = dict(split_override(o) for o in run.overrides)
        row: dict[str, Any] = {"run": run.name, **{group: run.choices.get(group) for group in groups}}
        row |= {key: overrides.get(key) for key in keys}
        row |= {f"best {m}": run.best if run.metric == m else None for m in metrics}
        row |= {f"test/{t}": run.test.get(t) for t in tests}
        row |= {"steps": run.steps, "wall_time_s": run.wall_time_s, "status": run.status, "error": run.error}
        rows.append(row)
    return columns, rows


def print_table(runs: list[Run], title: str, groups: tuple[str, ...] = ()) -> None:
    from rich.markup import escape
    from rich.table import Table

    columns, rows = table_rows(runs, groups)
    columns = [c for c in columns if any(row[c] is not None for row in rows)]  # no empty error column
    table = Table(title=title, title_justify="left")
    for column in columns:
        numeric = column.startswith(("best ", "test/")) or column in ("steps", "wall_time_s")
        table.add_column("time" if column == "wall_time_s" else column, justify="right" if numeric else "left",
                         overflow="fold", no_wrap=column != "error" and not column.startswith("run"))
    for row in rows:
        table.add_row(*(escape(printable(format_cell(column, row[column]), newlines=False)) for column in columns),
                      style="red" if row["status"] == "failed" else None)
    wide_console().print(table)


def format_cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if column == "wall_time_s":
        return format_duration(value)
    if column == "error":
        return value if len(value) <= 90 else value[:87] + "..."
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else str(value)
    return str(value)


def format_duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def write_summary(folder: Path, runs: list[Run], extra: dict[str, Any]) -> None:
    """summary.csv (a row per run, the table's columns) and summary.json (the same, plus each run's full
    record) in `folder`, each written to a temporary file and renamed into place."""
    columns, rows = table_rows(runs)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomically(folder / "summary.csv", text.getvalue())
    write_json_atomically(folder / "summary.json", {"kind": "sweep", **extra, "columns": columns, "rows": rows,
                                                    "runs": [vars(run) for run in runs]})


def select_runs(folder: Path, model: str | None, dataset: str | None, status: str | None,
                best: int | None) -> list[Run]:
    """`dlx runs`: the runs under `folder` of this model, data set and status (None: any), best first; with
    `best`, only that many of those with a score."""
    runs = [run for run in find_runs(folder)
            if (model is None or run.choices.get("model") == model)
            and (dataset is None or run.choices.get("dataset") == dataset)
            and (status is None or run.status == status)]
    runs = best_first(runs)
    return runs if best is None else [run for run in runs if run.has_score][:best]


def print_runs(runs: list[Run], folder: Path, json_output: bool, filtered: bool) -> None:
    if json_output:
        columns, rows = table_rows(runs, ("model", "dataset"))
        print(json.dumps(json_safe(rows), indent=2))
    elif not runs:
        print(f"No runs under {folder}" + (" match these filters." if filtered else "."))
    else:
        print_table(runs, f"{len(runs)} run(s) under {folder}, best first", ("model", "dataset"))

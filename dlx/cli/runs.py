"""`dlx runs [FOLDER]`: a table of the runs under a folder, best first."""

import json
from pathlib import Path
from typing import Optional

import typer

from dlx.errors import DlxError
from dlx.ui.console import print_error


def runs_command(
    folder: Path = typer.Argument(Path("outputs"), help="A folder of runs and sweeps, searched recursively."),
    model: Optional[str] = typer.Option(None, help="Only runs of this model (e.g. cnn)."),
    dataset: Optional[str] = typer.Option(None, help="Only runs on this data set (e.g. digits)."),
    status: Optional[str] = typer.Option(None, help="Only runs with this status: completed, failed, interrupted "
                                         "or running."),
    best: Optional[int] = typer.Option(None, "--best", min=1, help="Only the N best completed runs."),
    json_output: bool = typer.Option(False, "--json", help="Print the rows as JSON instead of a table."),
) -> None:
    """Table of the runs under FOLDER (default outputs/), best first: overrides, metrics, time, status."""
    from dlx.results.runs import best_first, find_runs, print_table, table_rows
    from dlx.store.files import json_safe

    if not folder.is_dir():
        print_error(DlxError(f"{folder} is not a folder. dlx train writes runs under outputs/ in the folder it "
                             "runs in (or output_root=...): run `dlx runs` there, or name the folder."))
        raise typer.Exit(DlxError.exit_code)
    runs = [run for run in find_runs(folder)
            if (model is None or run.choices.get("model") == model)
            and (dataset is None or run.choices.get("dataset") == dataset)
            and (status is None or run.status == status)]
    runs = best_first(runs)
    if best is not None:
        runs = [run for run in runs if run.has_score][:best]
    if json_output:
        columns, rows = table_rows(runs, ("model", "dataset"))
        print(json.dumps(json_safe(rows), indent=2))
    elif not runs:
        print(f"No runs under {folder}" + (" match these filters." if model or dataset or status else "."))
    else:
        print_table(runs, f"{len(runs)} run(s) under {folder}, best first", ("model", "dataset"))

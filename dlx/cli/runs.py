"""`dlx runs [FOLDER]`: a table of the runs under a folder, best first."""

from pathlib import Path
from typing import Optional

import typer

from dlx.errors import DlxError
from dlx.ui.console import print_error


def runs_command(
    folder: Path = typer.Argument(Path("outputs"), help="A folder of runs and sweeps, searched recursively."),
    model: Optional[str] = typer.Option(None, help="Only runs of this model (e.g. cnn)."),
    dataset: Optional[str] = typer.Option(None, help="Only runs on this data set (e.g. digits)."),
    status: Optional[str] = typer.Option(None, help="Only runs with this status: completed, pruned (by a "
                                         "search), failed, interrupted, running or killed."),
    best: Optional[int] = typer.Option(None, "--best", min=1, help="Only the N best completed runs."),
    json_output: bool = typer.Option(False, "--json", help="Print the rows as JSON instead of a table."),
) -> None:
    """Table of the runs under FOLDER (default outputs/), best first: overrides, metrics, time, status."""
    from dlx.results.runs import print_runs, select_runs

    if not folder.is_dir():
        print_error(DlxError(f"{folder} is not a folder. dlx train writes runs under outputs/ in the folder it "
                             "runs in (or output_root=...): run `dlx runs` there, or name the folder."))
        raise typer.Exit(DlxError.exit_code)
    runs = select_runs(folder, model, dataset, status, best)
    print_runs(runs, folder, json_output, filtered=bool(model or dataset or status))

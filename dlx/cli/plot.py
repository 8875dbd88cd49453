"""`dlx plot RUN...`: loss and metric curves as a PNG."""

from pathlib import Path
from typing import Optional

import typer

from dlx.cli.options import errors_reported
from dlx.ui.console import printable


def plot_command(
    runs: list[Path] = typer.Argument(..., help="Run folders, or folders of runs (a sweep folder: all its jobs)."),
    metric: list[str] = typer.Option([], "--metric", help="Only this curve: loss, acc, or val/acc for one split "
                                     "(repeat for several)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="The PNG to write; default RUN/curves.png for one "
                                       "folder, else ./curves.png."),
) -> None:
    """Loss and metric curves of runs as a PNG: training and validation, several runs overlaid.

    The legend names each run by the overrides that differ between them."""
    from dlx.results.plot import plot_runs

    with errors_reported():
        path, curves, metrics = plot_runs(runs, metric, out)
    print(printable(f"{path}: {', '.join(metrics)} of {len(curves)} run(s)"))

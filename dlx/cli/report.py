"""`dlx report RUN`: one self-contained HTML page about a run."""

from pathlib import Path
from typing import Optional

import typer

from dlx.cli.options import ALLOW_HELP, CONFIG_DIR_HELP, errors_reported
from dlx.ui.console import printable


def report_command(
    run: Path = typer.Argument(..., help="A run folder (outputs/latest, outputs/DATE/TIME)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="The HTML file; default RUN/report.html."),
    allow: list[str] = typer.Option([], "--allow", help=ALLOW_HELP),
    config_dirs: list[Path] = typer.Option([], "--config-dir", "-cd", help=CONFIG_DIR_HELP),
) -> None:
    """One self-contained HTML page about a run: metrics, curves, confusion matrix or samples, config."""
    from dlx.results.report import write_report

    with errors_reported():
        path = write_report(run, out, allow, config_dirs)
    print(printable(f"{path} ({path.stat().st_size // 1024:,} KiB, self-contained: open it in any browser)"))

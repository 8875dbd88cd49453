"""`dlx study SWEEP_OR_STORAGE`: an Optuna study's best trial, trials, parameter importances and plots."""

from pathlib import Path
from typing import Optional

import typer

from dlx.cli.options import errors_reported


def study_command(
    target: str = typer.Argument(..., help="A search's sweep folder (outputs/studies/NAME), its study.db, a "
                                 "journal file, or a storage URL (sqlite:///optuna.db)."),
    study: Optional[str] = typer.Option(None, "--study", help="The study's name, when the storage holds several."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="The folder for the PNG plots; default "
                                       "SWEEP/plots, or NAME-plots here for a storage."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write the PNG plots (matplotlib)."),
) -> None:
    """The study's best trial and the command that trains it again, its trials and their states, the
    parameters' importances, and PNG plots: optimisation history, importances, parallel coordinates,
    intermediate values (what the pruner saw), timeline."""
    from dlx.results.study import load_study, locate_study, print_study, write_plots

    with errors_reported():
        location = locate_study(target, study)
        loaded = load_study(location)
        print_study(loaded, location)
        if plots:
            folder = out or (location.sweep_dir / "plots" if location.sweep_dir else Path(f"{loaded.study_name}-plots"))
            written = write_plots(loaded, folder)
            print(f"Wrote {len(written)} plot(s) to {folder}: {', '.join(path.name for path in written)}")

"""What a run prints while it trains: a rich progress bar in a terminal, plain lines elsewhere (CI, pipes),
and every line in the run folder's train.log either way."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # rich is imported only when a terminal shows it: a run in CI or a sweep does not pay for it
    from rich.console import Console
    from rich.progress import Progress

logger = logging.getLogger("dlx")


def running_in_terminal() -> bool:
    return os.isatty(1) and os.environ.get("TERM", "") != "dumb"


class ConsoleFilter(logging.Filter):
    """Lets a record reach the console unless it was logged with extra={"console": False}."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "console", True)


def terminal_console() -> Console | None:
    """A rich console when a person is watching, None when output goes to a pipe or a CI log."""
    if not running_in_terminal():
        return None
    from rich.console import Console

    return Console()


def setup_logging(log_file: Path | None, console: Console | None) -> None:
    """dlx's logger: to the console (rich in a terminal, plain otherwise) and to log_file."""
    for old in list(logger.handlers):  # the previous job's, in a sweep
        old.close()
        logger.removeHandler(old)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    # Hydra sets up logging at the start of every job (logging.config.dictConfig), which disables every
    # logger that exists by then: from the second job of a sweep on, dlx's would be silent.
    logger.disabled = False
    if console is not None:
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=console, show_path=False, show_level=False)
    else:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(ConsoleFilter())
    logger.addHandler(handler)
    if log_file is not None:
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s"))
        logger.addHandler(file_handler)


def format_row(row: dict[str, Any]) -> str:
    parts = [f"{row['split']:<5} step {row['step']}", f"epoch {row['epoch']:.2f}"]
    for key, value in row.items():
        if key in ("split", "step", "epoch", "elapsed"):
            continue
        if key == "samples_per_sec":
            parts.append(f"{value:,.0f} samples/s")
        elif isinstance(value, float):
            parts.append(f"{key} {value:.4g}")
    return "  ".join(parts)


class TrainingProgress:
    """A progress bar over the run's optimizer steps (terminal), or nothing but log lines (no terminal)."""

    def __init__(self, total_steps: int, first_step: int, console: Console | None) -> None:
        self.bar: Progress | None = None
        if console is not None:
            from rich import progress as bar

            self.bar = bar.Progress(
                bar.TextColumn("[bold]train"), bar.BarColumn(), bar.MofNCompleteColumn(),
                bar.TextColumn("{task.description}"), bar.TimeElapsedColumn(), bar.TimeRemainingColumn(),
                console=console, transient=False,
            )
            self.task = self.bar.add_task("", total=total_steps, completed=first_step)

    def __enter__(self) -> "TrainingProgress":
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()

    def advance(self, step: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=step)

    def log(self, row: dict[str, Any]) -> None:
        """A metrics row: training rows update the bar in a terminal; every row goes to the log."""
        if self.bar is not None and row["split"] == "train":
            shown = [f"{k} {v:.4g}" for k, v in row.items() if k in ("loss", "g_loss", "d_acc")]
            self.bar.update(self.task, description="  ".join(shown + [f"{row['samples_per_sec']:,.0f} samples/s"]))
            logger.info(format_row(row), extra={"console": False})
        else:
            logger.info(format_row(row))

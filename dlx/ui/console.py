"""dlx's voice: its logger (console and train.log), rich consoles for tables, and errors as one paragraph.

rich is imported only where something is shown: a run in CI or a sweep job does not pay for it.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

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


def wide_console() -> Console:
    """A console for tables: the terminal's width, or 200 columns in a CI log or a file."""
    from rich.console import Console

    console = Console(soft_wrap=True)
    if not console.is_terminal:  # a CI log or a file: no terminal width to fit, keep rows on one line
        console.width = 200
    return console


def print_error(err: BaseException | str, label: str = "error") -> None:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, soft_wrap=True).print(f"[bold red]{label}:[/] {escape(str(err))}")

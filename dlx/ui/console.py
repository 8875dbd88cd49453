"""dlx's voice: its logger (console and train.log), rich consoles for tables, and errors as one paragraph.

rich is imported only where something is shown: a run in CI or a sweep job does not pay for it.
"""

from __future__ import annotations

import logging
import os
import sys
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.console import Console

logger = logging.getLogger("dlx")


def running_in_terminal() -> bool:
    return os.isatty(1) and os.environ.get("TERM", "") != "dumb"


class LogFile(logging.FileHandler):
    """train.log, opened by the run's `opener` (which does not follow a link), and opened again after something
    closed it: Hydra closes every handler when the next job of a sweep starts."""

    def __init__(self, path: Path, opener: Callable[[Path], TextIO]) -> None:
        self.opener = opener
        super().__init__(path, encoding="utf-8")

    def _open(self) -> TextIO:  # type: ignore[override]
        return self.opener(Path(self.baseFilename))


class ConsoleFilter(logging.Filter):
    """Lets a record reach the console unless it was logged with extra={"console": False}."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "console", True)


class PrintableFilter(logging.Filter):
    """Every message on one line, its control characters escaped (a file or folder name can hold any, a newline
    included, which would make a line of the log look like another)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = printable(record.getMessage(), newlines=False), None
        return True


def printable(text: str, newlines: bool = True) -> str:
    """`text` with control and format characters escaped (\x1b, \u202e...): a file name can hold any, and
    printed raw they would move the cursor, clear the screen or reorder what the terminal shows."""
    return "".join(character if (character == "\n" and newlines) or unicodedata.category(character)[0] != "C"
                   else character.encode("unicode_escape").decode("ascii") for character in text)


def terminal_console() -> Console | None:
    """A rich console when a person is watching, None when output goes to a pipe or a CI log."""
    if not running_in_terminal():
        return None
    from rich.console import Console

    return Console()


def setup_logging(log_file: Path | None, console: Console | None,
                  opener: Callable[[Path], TextIO] | None = None) -> None:
    """dlx's logger: to the console (rich in a terminal, plain otherwise) and to log_file, appended to through
    `opener` (the run folder's: it does not follow a link)."""
    for old in list(logger.handlers):  # the previous job's, in a sweep
        old.close()
        logger.removeHandler(old)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not any(isinstance(each, PrintableFilter) for each in logger.filters):
        logger.addFilter(PrintableFilter())
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
        assert opener is not None, "a log file is opened by its run"
        file_handler = LogFile(log_file, opener)
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

    Console(stderr=True, soft_wrap=True).print(f"[bold red]{label}:[/] {escape(printable(str(err)))}")

"""The metrics file: one JSON object per line, appended and flushed row by row, so a killed run keeps
every row it logged. Keys: step, epoch, split (train/val/test), then the split's metrics."""

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dlx.store.files import json_safe, open_to_append, read_regular_file


class MetricsLog:
    """metrics.jsonl (none for `path` None: a rank that does not write), and the loggers the config chose
    (dlx.store.loggers), which get every row and image too."""

    def __init__(self, path: Path | None, loggers: Sequence[Any] = ()) -> None:
        self.path = path
        self.file = open_to_append(path, path.parent) if path is not None else None
        self.loggers = list(loggers)

    def write(self, row: dict[str, Any]) -> None:
        row = json_safe(row)
        if self.file is not None:
            self.file.write(json.dumps(row) + "\n")
            self.file.flush()
        self.to_loggers("log_metrics", row)

    def image(self, tag: str, path: Path, step: int) -> None:
        self.to_loggers("log_image", tag, path, step)

    def to_loggers(self, method: str, *args: Any) -> None:
        """A logger that fails (a tracking server gone) is dropped with a warning: training goes on, and
        metrics.jsonl keeps every row."""
        for logger in list(self.loggers):
            try:
                getattr(logger, method)(*args)
            except Exception as err:
                from dlx.ui.console import logger as console

                console.warning(f"Warning: {type(logger).__name__} failed ({type(err).__name__}: {err}); it gets no "
                                f"more metrics. metrics.jsonl has them all.")
                self.loggers = [other for other in self.loggers if other is not logger]

    def close(self) -> None:
        if self.file is not None:
            self.file.close()

    def __enter__(self) -> "MetricsLog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Every complete row; a last line cut short by a crash is skipped. A link is refused (a DlxError): the rows
    of a run are its own file."""
    rows = []
    for line in read_regular_file(Path(path)).decode("utf-8", errors="replace").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)



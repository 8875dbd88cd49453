"""The metrics file: one JSON object per line, appended and flushed row by row, so a killed run keeps
every row it logged. Keys: step, epoch, split (train/val/test), then the split's metrics."""

import json
import math
from pathlib import Path
from typing import Any


class MetricsLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = open(path, "a", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Every complete row; a last line cut short by a crash is skipped."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)

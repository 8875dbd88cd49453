"""Figures drawn by matplotlib (the "plot" extra) on its Agg backend, headless: what `dlx plot`, `dlx eval`
and `dlx report` draw with."""

import io
from pathlib import Path
from typing import Any

from dlx.errors import DlxError, check_writable, require


def new_figure(purpose: str, **kwargs: Any) -> Any:
    """A matplotlib Figure drawn by the Agg backend (no display needed), or a DlxError naming the extra."""
    matplotlib = require("matplotlib", "plot", purpose)
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def figure_png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def save_figure(figure: Any, path: Path, option: str = "--out") -> Path:
    check_writable(path, option)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png", dpi=100)
    except OSError as err:
        raise DlxError(f"Cannot write {path}: {err.strerror or err}. Pass another {option}.") from err
    return path

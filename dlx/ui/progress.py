"""What a run prints while it trains: a rich progress bar in a terminal, plain lines elsewhere (CI, pipes),
and every line in the run folder's train.log either way."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dlx.ui.console import logger

if TYPE_CHECKING:  # rich is imported only when a terminal shows it: a run in CI or a sweep does not pay for it
    from rich.console import Console
    from rich.progress import Progress


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


# Terminal widths (columns) below which the bar, then the time elapsed, are left out: the numbers need about 75
# ("train 12,345/67,890 loss 0.1234  123,456 samples/s 0:01:02 0:03:04").
NO_BAR_BELOW = 100
NO_ELAPSED_BELOW = 75


class TrainingProgress:
    """A progress bar over the run's optimizer steps (terminal), or nothing but log lines (no terminal)."""

    def __init__(self, total_steps: int, first_step: int, console: Console | None) -> None:
        self.bar: Progress | None = None
        if console is not None:
            from rich import progress as bar

            # The numbers first: in a narrow terminal the bar goes (rich would squeeze out the step, the loss and
            # the time left instead), then the time elapsed.
            numbers = [bar.TextColumn("[bold]train"), bar.MofNCompleteColumn(), bar.TextColumn("{task.description}")]
            width = console.width
            columns = [*numbers, *([bar.TimeElapsedColumn()] if width >= NO_ELAPSED_BELOW else []),
                       bar.TimeRemainingColumn()]
            if width >= NO_BAR_BELOW:
                columns.insert(1, bar.BarColumn(bar_width=min(40, width - NO_BAR_BELOW + 10)))
            self.bar = bar.Progress(*columns, console=console, transient=False)
            self.task = self.bar.add_task("", total=total_steps, completed=first_step)

    def __enter__(self) -> TrainingProgress:
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

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

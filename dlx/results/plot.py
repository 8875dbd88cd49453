"""`dlx plot`: loss and metric curves of runs from their metrics.jsonl, several runs overlaid; and the figure
helpers that `dlx eval` and `dlx report` draw with. matplotlib (the "plot" extra), headless: its Agg backend.

torch is not imported here: plotting a sweep takes a second, not the time of loading PyTorch.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlx.config.overrides import differing_overrides, split_override
from dlx.errors import DlxError, check_writable, did_you_mean
from dlx.results.runs import Run, find_runs, read_summary
from dlx.store.metrics import read_metrics
from dlx.ui.figures import new_figure, save_figure

# Row keys that are bookkeeping rather than curves; the learning rate is drawn only where it changes.
NOT_CURVES = {"step", "epoch", "split", "elapsed", "samples_per_sec", "checkpoint_step", "skipped_steps"}
SPLITS = ("train", "val")


@dataclass
class Curves:
    """One run's rows of metrics.jsonl, and the label it gets in a legend."""

    folder: Path
    run: Run
    rows: list[dict[str, Any]]
    label: str = ""


def find_curves(paths: list[Path]) -> list[Curves]:
    """The runs named: run folders, or folders of runs (a sweep, outputs/) meaning every run inside."""
    found = []
    for path in paths:
        if not path.exists():
            raise DlxError(f"{path} does not exist. Name run folders (outputs/DATE/TIME) or sweep folders "
                           "(outputs/sweeps/DATE/TIME); `dlx runs` lists them.")
        if path.is_file() and path.name in ("metrics.jsonl", "summary.json"):
            path = path.parent
        if (path / "metrics.jsonl").is_file():
            runs = [(path, Run.from_summary(path.name, read_summary(path) or {}))]
        elif path.is_dir():
            runs = [(path / run.name, run) for run in find_runs(path)]
        else:
            runs = []
        runs = [(folder, run) for folder, run in runs if (folder / "metrics.jsonl").is_file()]
        if not runs:
            raise DlxError(f"{path} holds no run with a metrics.jsonl. Name a run folder or a folder of runs.")
        found += [Curves(folder, run, read_metrics(folder / "metrics.jsonl")) for folder, run in runs]
    label_runs(found)
    return found


def label_runs(curves: list[Curves]) -> None:
    """Each run's legend label: the overrides whose values differ between the runs, else its folder."""
    keys = differing_overrides([c.run.overrides for c in curves])
    for c in curves:
        values = dict(split_override(o) for o in c.run.overrides)
        c.label = " ".join(f"{key}={values[key]}" for key in keys if key in values) or c.folder.name
    labels = [c.label for c in curves]
    for c in curves:
        if labels.count(c.label) > 1:  # the same overrides (two runs of one command): tell them apart by folder
            c.label = f"{c.label} ({c.folder.name})" if c.label != c.folder.name else str(c.folder)


def metric_names(curves: list[Curves]) -> list[str]:
    """The metrics the runs logged for training or validation: loss first, the learning rate last (and only
    if it changes)."""
    names = {key for c in curves for row in c.rows if row.get("split") in SPLITS for key in row} - NOT_CURVES
    if "lr" in names and all(len({row.get("lr") for row in c.rows if "lr" in row}) <= 1 for c in curves):
        names.discard("lr")
    return sorted(names, key=lambda name: (name != "loss", name == "lr", name))


def choose_metrics(curves: list[Curves], wanted: list[str]) -> list[tuple[str, tuple[str, ...]]]:
    """(metric, splits) per panel: every metric, or those asked for as `acc` (both splits) or `val/acc`."""
    available = metric_names(curves)
    if not wanted:
        return [(name, SPLITS) for name in available]
    panels: list[tuple[str, tuple[str, ...]]] = []
    for metric in wanted:
        split, _, name = metric.rpartition("/")
        if name not in available or split not in ("", *SPLITS):
            choices = available + [f"{s}/{n}" for n in available for s in SPLITS]
            raise DlxError(f'--metric {metric}: the runs logged no such curve.{did_you_mean(metric, choices)} '
                           f"Choose among: {', '.join(available)} (or train/NAME, val/NAME for one split).")
        panels.append((name, (split,) if split else SPLITS))
    return panels


def curves_figure(curves: list[Curves], panels: list[tuple[str, tuple[str, ...]]], purpose: str) -> Any:
    """One panel per metric against the step. One run: a colour per split; several: a colour per run, solid
    for training and dashed for validation."""
    columns = min(len(panels), 3)
    rows = -(-len(panels) // columns)
    figure = new_figure(purpose, figsize=(4.2 * columns + 2.2, 3.2 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, (metric, splits) in zip(axes, panels):
        for number, c in enumerate(curves):
            for split in splits:
                points = [(row["step"], row[metric]) for row in c.rows
                          if row.get("split") == split and isinstance(row.get(metric), (int, float))]
                if not points:
                    continue
                steps, values = zip(*points)
                single = len(curves) == 1
                ax.plot(steps, values, color=f"C{SPLITS.index(split) if single else number % 10}",
                        linestyle="-" if split == "train" else "--",
                        marker="." if split == "val" or len(points) == 1 else None,
                        label=split if single else f"{c.label} ({split})")
        ax.set_title(metric if len(splits) > 1 else f"{splits[0]}/{metric}")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    handles, labels = {}, []
    for ax in axes[: len(panels)]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in handles:
                handles[label] = handle
                labels.append(label)
    figure.legend([handles[label] for label in labels], labels, loc="outside right upper", fontsize="small")
    return figure


def plot_runs(paths: list[Path], metrics: list[str], out: Path | None) -> tuple[Path, list[Curves], list[str]]:
    """Draw the runs' curves into a PNG; its path, the runs and the metrics drawn."""
    curves = find_curves(paths)
    panels = choose_metrics(curves, metrics)
    if not panels:
        raise DlxError(f"The runs in {', '.join(map(str, paths))} logged no training or validation rows yet.")
    out = out or (paths[0] / "curves.png" if len(paths) == 1 and paths[0].is_dir() else Path("curves.png"))
    check_writable(out)
    save_figure(curves_figure(curves, panels, "dlx plot"), out)
    return out, curves, [name if len(splits) > 1 else f"{splits[0]}/{name}" for name, splits in panels]

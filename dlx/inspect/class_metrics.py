"""What `dlx eval` adds for classifiers: precision, recall and F1 per class (scikit-learn), the confusion
matrix as a table and a PNG, and the most confidently wrong examples, listed and drawn as a grid of images."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlx.errors import check_writable
from dlx.inspect.evaluate import Evaluated
from dlx.inspect.predicted import probabilities
from dlx.train.tasks import Classification


@dataclass
class ClassReport:
    class_names: list[str]
    per_class: list[dict[str, Any]]  # class, precision, recall, f1, support
    confusion_matrix: list[list[int]]  # [true class][predicted class] counts
    worst: list[dict[str, Any]] = field(default_factory=list)  # index (in the split), true, predicted, probability
    files: dict[str, str] = field(default_factory=dict)  # what was saved: confusion_matrix, worst


@torch.inference_mode()
def predict_split(evaluated: Evaluated) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities (N, classes) and predicted classes (N,) of the evaluated inputs, on the CPU; the
    predictions are those the accuracy counted (the task's own rule): from the outputs recorded as the split
    was evaluated, or else computed here."""
    model, task = evaluated.model, evaluated.task
    assert isinstance(task, Classification)  # class reports are made for classifiers only
    if evaluated.outputs is not None and len(evaluated.outputs) == evaluated.samples:
        return probabilities(evaluated.outputs), task.predict(evaluated.outputs)
    was_training = model.training
    model.eval()
    batches = []
    size, count = evaluated.batch_size, evaluated.samples
    for x, _ in evaluated.split.batches([slice(begin, min(begin + size, count)) for begin in range(0, count, size)]):
        with evaluated.mixed_precision:
            batches.append(model(x).float())
    model.train(was_training)
    logits = torch.cat(batches)
    return probabilities(logits).cpu(), task.predict(logits).cpu()


def class_report(evaluated: Evaluated, worst: int = 0) -> ClassReport:
    """The per-class numbers, the confusion matrix and the `worst` most confidently wrong examples."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    probs, predicted = predict_split(evaluated)
    y = evaluated.split.labels()[: evaluated.samples].cpu()
    names = evaluated.class_names
    labels = list(range(len(names)))
    precision, recall, f1, support = precision_recall_fscore_support(y.numpy(), predicted.numpy(), labels=labels,
                                                                     zero_division=0)
    matrix = confusion_matrix(y.numpy(), predicted.numpy(), labels=labels)
    report = ClassReport(names, [{"class": name, "precision": float(p), "recall": float(r), "f1": float(f),
                                  "support": int(s)} for name, p, r, f, s in zip(names, precision, recall, f1, support)],
                         matrix.tolist())
    wrong = (predicted != y).nonzero().squeeze(1)
    confidence = probs[wrong, predicted[wrong]]
    report.worst = [{"index": int(i), "true": names[int(y[i])], "predicted": names[int(predicted[i])],
                     "probability": float(probs[i, predicted[i]])}
                    for i in wrong[confidence.argsort(descending=True)][:worst]]
    if report.worst and evaluated.tokenizer is not None:
        add_texts(report.worst, evaluated)
    return report


def add_texts(rows: list[dict[str, Any]], evaluated: Evaluated) -> None:
    """Each row's text, decoded from its token ids (as the model read it: lowercased, cut at max_length)."""
    from dlx.data.tokens import decode_ids, tokenizer_from_json

    assert evaluated.tokenizer is not None
    tokenizer = tokenizer_from_json(evaluated.tokenizer, "the data set")
    ids, _ = next(evaluated.raw.batches([torch.tensor([row["index"] for row in rows])]))
    for row, text in zip(rows, ids.tolist()):
        row["text"] = decode_ids(tokenizer, text)


def class_figures(report: ClassReport, evaluated: Evaluated) -> dict[str, Any]:
    """{"confusion_matrix": figure, "worst": figure of the worst examples, for images only}."""
    figures = {"confusion_matrix": confusion_figure(report.confusion_matrix, report.class_names)}
    if report.worst and is_image(evaluated):
        index = torch.tensor([row["index"] for row in report.worst])
        images, _ = next(evaluated.raw.batches([index]))
        figures["worst"] = examples_figure(images, report.worst)
    return figures


def is_image(evaluated: Evaluated) -> bool:
    shape = evaluated.raw.sample_shape
    return len(shape) == 3 and shape[0] in (1, 3)


def confusion_figure(matrix: list[list[int]], names: list[str]) -> Any:
    from sklearn.metrics import ConfusionMatrixDisplay

    from dlx.ui.figures import new_figure

    size = 2.5 + 0.45 * len(names)
    figure = new_figure("The confusion matrix PNG of dlx eval", figsize=(size, size), layout="constrained")
    ax = figure.subplots()
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=names).plot(ax=ax, cmap="Blues", colorbar=False,
                                                              values_format="d", xticks_rotation="vertical")
    ax.set_title("confusion matrix")
    return figure


def examples_figure(images: torch.Tensor, rows: list[dict[str, Any]]) -> Any:
    """A grid of images (N, C, H, W) in [0, 1], each titled with its true and predicted class."""
    from dlx.ui.figures import new_figure

    columns = min(len(rows), 8)
    lines = -(-len(rows) // columns)
    figure = new_figure("dlx eval --worst", figsize=(1.6 * columns, 1.9 * lines), layout="constrained")
    axes = figure.subplots(lines, columns, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, image, row in zip(axes, images.float().cpu(), rows):
        picture = image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)  # (H, W) or (H, W, 3)
        ax.imshow(picture.clamp(0, 1).numpy(), cmap="gray" if image.shape[0] == 1 else None, vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_title(f"true {row['true']}\npred {row['predicted']} {row['probability']:.2f}", fontsize=8)
    return figure


def class_details(evaluated: Evaluated, checkpoint: Path, split: str, out_dir: Path | None,
                  worst: int) -> tuple[ClassReport | None, list[str]]:
    """A classifier's class report (None for other models) with its figures saved in out_dir (default:
    RUN/eval) as CKPT_SPLIT_confusion_matrix.png and CKPT_SPLIT_worst.png; and warnings to print.

    The tables hold every number, so figures that cannot be made (no matplotlib) or saved (a run folder that
    is not writable) only cost the files, with a warning, unless the user chose --out-dir."""
    from dlx.errors import DlxError
    from dlx.inspect.rebuild import run_folder_of

    if not isinstance(evaluated.task, Classification):
        return None, ["--worst lists the wrong predictions of classifiers; this model is not one."] if worst else []
    if out_dir is not None:
        check_writable(out_dir / "confusion_matrix.png", "--out-dir")  # before the work, not after it
    report = class_report(evaluated, worst)
    run_dir = None if out_dir else run_folder_of(checkpoint)  # RUN/eval: made and written inside the run folder
    folder = out_dir or run_folder_of(checkpoint) / "eval"
    warnings = []
    try:
        for name, figure in class_figures(report, evaluated).items():
            report.files[name] = save_png(figure, folder / f"{checkpoint.stem}_{split}_{name}.png", run_dir)
    except DlxError as err:
        if out_dir is not None:
            raise
        warnings.append(f"{err} (The PNGs were not saved; the tables hold the same numbers.)")
    if report.worst and "worst" not in report.files and not is_image(evaluated) and evaluated.tokenizer is None:
        warnings.append("--worst: these inputs are not images, so they are listed but not drawn.")
    return report, warnings


def save_png(figure: Any, path: Path, within: Path | None) -> str:
    """The figure as a PNG at `path`, written atomically (inside the run folder `within`, without a link on
    the way)."""
    from dlx.errors import DlxError
    from dlx.store.files import atomic_file
    from dlx.ui.figures import figure_png

    try:
        with atomic_file(path, within) as file:
            file.write(figure_png(figure))
    except OSError as err:
        raise DlxError(f"Cannot write {path}: {err.strerror or err}. Pass another --out-dir.") from err
    return str(path)


def print_class_report(report: ClassReport, console: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    from dlx.ui.console import printable

    table = Table(title="per class", title_justify="left")
    for column in ("class", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for row in report.per_class:
        table.add_row(escape(row["class"]), *(f"{row[key]:.4f}" for key in ("precision", "recall", "f1")),
                      str(row["support"]))
    count = len(report.per_class) or 1
    table.add_row("macro avg", *(f"{sum(r[key] for r in report.per_class) / count:.4f}"
                                 for key in ("precision", "recall", "f1")),
                  str(sum(r["support"] for r in report.per_class)), style="bold")
    console.print(table)

    matrix = Table(title="confusion matrix (rows: true class, columns: predicted)", title_justify="left")
    matrix.add_column("true \\ predicted")
    for name in report.class_names:
        matrix.add_column(escape(name), justify="right")
    for true, (name, counts) in enumerate(zip(report.class_names, report.confusion_matrix)):
        matrix.add_row(escape(name), *(format_count(count, true == predicted) for predicted, count in enumerate(counts)))
    console.print(matrix)

    if report.worst:
        worst = Table(title=f"{len(report.worst)} most confidently wrong", title_justify="left")
        texts = "text" in report.worst[0]
        for column in ("index", "true", "predicted", "probability", *(["text"] if texts else [])):
            worst.add_column(column, justify="right" if column in ("index", "probability") else "left",
                             overflow="fold")
        for row in report.worst:
            worst.add_row(str(row["index"]), escape(row["true"]), escape(row["predicted"]), f"{row['probability']:.4f}",
                          *([escape(row["text"])] if texts else []))
        console.print(worst)
    for name, path in report.files.items():
        console.print(f"{name.replace('_', ' ')}: {escape(printable(path))}", soft_wrap=True)


def format_count(count: int, correct: bool) -> str:
    if count == 0:
        return "[dim]0[/]"
    return f"[green]{count}[/]" if correct else f"[red]{count}[/]"

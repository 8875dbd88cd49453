"""What `dlx eval` computes and shows: a checkpoint's metrics on a split, and for classifiers the per-class
report; a GAN can be scored by a classifier of the same data (classifier=CLASSIFIER.ckpt)."""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dlx.errors import DlxError
from dlx.inspect.class_metrics import ClassReport, class_details, print_class_report
from dlx.inspect.evaluate import evaluate_checkpoint
from dlx.inspect.rebuild import checkpoint_in
from dlx.store.files import json_safe


@dataclass
class Examined:
    metrics: dict[str, float]
    info: dict[str, Any]  # what was evaluated: checkpoint, split, samples, step, model, data set, device
    classes: ClassReport | None  # classifiers only
    warnings: list[str] = field(default_factory=list)


def eval_arguments(arguments: list[str], split: str) -> tuple[list[str], str, Path | None, int | None]:
    """(overrides of the stored config, split, classifier checkpoint, beam) from `dlx eval`'s key=value arguments:
    split=val, classifier=PATH and beam=N are the command's own; every other one changes the stored config."""
    overrides, classifier, beam = [], None, None
    for argument in arguments:
        if argument.startswith("split="):
            split = argument.partition("=")[2]
        elif argument.startswith("classifier="):
            classifier = Path(argument.partition("=")[2])
        elif argument.startswith("beam="):
            beam = beam_width(argument.partition("=")[2])
        else:
            overrides.append(argument)
    return overrides, split, classifier, beam


def beam_width(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise DlxError(f'beam={text}: give the number of hypotheses beam search keeps, a whole number of 1 or more '
                       "(beam=1 is greedy decoding, what training's evaluations use).")
    return int(text)


def examine(checkpoint: Path, arguments: list[str], split: str, allow: list[str], config_dirs: list[Path],
            out_dir: Path | None, worst: int) -> Examined:
    overrides, split, classifier, beam = eval_arguments(arguments, split)
    checkpoint = checkpoint_in(checkpoint)
    metrics, info, evaluated = evaluate_checkpoint(checkpoint, overrides, split, allow, config_dirs, beam)
    classes, warnings = class_details(evaluated, checkpoint, split, out_dir, worst)
    if classifier is not None:
        from dlx.inspect.gan_score import classifier_score

        metrics |= classifier_score(checkpoint, classifier, allow, config_dirs)
        info["classifier"] = str(classifier)
    return Examined(metrics, info, classes, warnings)


def examined_json(examined: Examined) -> str:
    classes = asdict(examined.classes) if examined.classes else {}
    return json.dumps(json_safe({**examined.info, "metrics": examined.metrics, **classes}))


def print_examined(examined: Examined) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from dlx.ui.console import printable

    info = examined.info
    console = Console()
    decoding = f", beam search of {info['beam']}" if info.get("beam") else ""
    console.print(escape(printable(f"{info['checkpoint']}: step {info['step']:,}, {info['split']} split, "
                                   f"{info['samples']:,} samples{decoding}")),
                  soft_wrap=True)
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in examined.metrics.items():
        table.add_row(key, f"{value:.4f}")
    console.print(table)
    if examined.classes:
        print_class_report(examined.classes, console)

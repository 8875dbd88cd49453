"""`dlx eval CHECKPOINT [key=value...]`: a checkpoint's metrics on a split, per-class numbers for classifiers."""

import json
from pathlib import Path
from typing import Optional

import typer

from dlx.errors import DlxError
from dlx.ui.console import print_error


def eval_command(
    checkpoint: Path = typer.Argument(..., help="A .ckpt file written by dlx train."),
    overrides: Optional[list[str]] = typer.Argument(
        None, help="key=value changes to the stored config (dataset.root=..., trainer.device=cpu); split=val; "
        "for a GAN, classifier=CLASSIFIER.ckpt scores its samples with that classifier."
    ),
    split: str = typer.Option("test", help="Which split to evaluate: test, val or train."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object on stdout instead of a table."),
    allow: list[str] = typer.Option(
        [], "--allow", help="Trust this _target_ (your own model or data class) named in the checkpoint's config."
    ),
    config_dirs: list[Path] = typer.Option(
        [], "--config-dir", "-cd", help="Your config folder: the _target_s its YAML files name are trusted."
    ),
    out_dir: Optional[Path] = typer.Option(
        None, "--out-dir", help="Classifiers: where the confusion matrix PNG (and --worst grid) go; default RUN/eval."
    ),
    worst: int = typer.Option(0, "--worst", min=0, help="Classifiers: list the N most confidently wrong examples "
                              "and save them as an image grid."),
) -> None:
    """Evaluate a checkpoint: rebuilds its model and data from the file alone.

    Classifiers also get precision, recall and F1 per class and a confusion matrix (a table and a PNG)."""
    from dlx.inspect.class_metrics import class_details, print_class_report
    from dlx.inspect.evaluate import evaluate_checkpoint

    rest, classifier = [], None
    for override in overrides or []:
        if override.startswith("split="):
            split = override.partition("=")[2]
        elif override.startswith("classifier="):
            classifier = Path(override.partition("=")[2])
        else:
            rest.append(override)
    try:
        metrics, info, evaluated = evaluate_checkpoint(checkpoint, rest, split, allow, config_dirs)
        classes, warnings = class_details(evaluated, checkpoint, split, out_dir, worst)
        if classifier is not None:  # a GAN scored by a classifier of the same data (dlx/inspect/gan_score.py)
            from dlx.inspect.gan_score import classifier_score

            metrics |= classifier_score(checkpoint, classifier, allow, config_dirs)
            info["classifier"] = str(classifier)
    except DlxError as err:
        print_error(err)
        raise typer.Exit(err.exit_code)
    for warning in warnings:
        print_error(warning, "warning")
    if json_output:
        from dataclasses import asdict

        from dlx.store.files import json_safe

        print(json.dumps(json_safe({**info, "metrics": metrics, **(asdict(classes) if classes else {})})))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"{checkpoint}: step {info['step']:,}, {split} split, {info['samples']:,} samples", soft_wrap=True)
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}")
    console.print(table)
    if classes:
        print_class_report(classes, console)

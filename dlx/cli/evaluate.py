"""`dlx eval CHECKPOINT [key=value...]`: a checkpoint's metrics on a split, per-class numbers for classifiers."""

from pathlib import Path
from typing import Optional

import typer

from dlx.cli.options import errors_reported
from dlx.ui.console import print_error


def eval_command(
    checkpoint: Path = typer.Argument(..., help="A .ckpt file written by dlx train."),
    overrides: Optional[list[str]] = typer.Argument(
        None, help="key=value changes to the stored config (dataset.root=..., trainer.device=cpu); split=val; "
        "for a GAN, classifier=CLASSIFIER.ckpt scores its samples with that classifier; for an encoder-decoder, "
        "beam=N decodes by beam search of N hypotheses (training's evaluations decode greedily)."
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
    from dlx.inspect.examine import examine, examined_json, print_examined

    with errors_reported():
        examined = examine(checkpoint, overrides or [], split, allow, config_dirs, out_dir, worst)
    for warning in examined.warnings:
        print_error(warning, "warning")
    if json_output:
        print(examined_json(examined))
    else:
        print_examined(examined)

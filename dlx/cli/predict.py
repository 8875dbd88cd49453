"""`dlx predict CHECKPOINT IMAGES...` (a classifier on image files), `dlx predict CHECKPOINT ROWS.csv` (a model
trained on a table, on new rows) and `dlx sample CHECKPOINT` (a GAN's samples)."""

import json
from pathlib import Path
from typing import Optional

import typer

from dlx.cli.options import ALLOW_HELP, CONFIG_DIR_HELP, errors_reported
from dlx.ui.console import printable


def predict_command(
    checkpoint: Path = typer.Argument(..., help="A .ckpt file written by dlx train."),
    inputs: list[Path] = typer.Argument(..., metavar="IMAGES_OR_TABLE...",
                                        help="PNG or JPEG files, or folders of them, for a model of images; one "
                                        "CSV, TSV or Parquet file of rows for a model trained with dataset=table."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Tables: the file to write, the rows with their "
                                       "predictions (.csv, .tsv or .parquet); default RUN/predictions/ROWS_FILE."),
    top_k: int = typer.Option(3, "--top-k", "-k", help="Images: how many of the most probable classes to show."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON on stdout instead of a table."),
    allow: list[str] = typer.Option([], "--allow", help=ALLOW_HELP),
    config_dirs: list[Path] = typer.Option([], "--config-dir", "-cd", help=CONFIG_DIR_HELP),
) -> None:
    """A classifier's classes for your own image files, or a table model's predictions for new rows.

    Each image is prepared as the training images were: grey or colour, resized, scaled to [0, 1], normalised.
    Rows are encoded as the training rows were (standardised numbers, one-hot categories: the checkpoint records
    how) and written back with a `prediction` column and, for a classifier, `probability_<class>` columns."""
    from dlx.inspect.predict import TablePredictions, predict, print_predictions, print_table_predictions

    with errors_reported():
        predictions = predict(checkpoint, inputs, top_k, allow, config_dirs, out)
    if isinstance(predictions, TablePredictions):
        warn(predictions.warnings)
        if json_output:
            print(json.dumps({"checkpoint": str(checkpoint), "rows": str(predictions.rows),
                              "out": str(predictions.out), "count": predictions.count, "added": predictions.added,
                              "warnings": predictions.warnings}))
        else:
            print_table_predictions(predictions, checkpoint)
    elif json_output:
        print(json.dumps({"checkpoint": str(checkpoint), "predictions": predictions}))
    else:
        print_predictions(predictions, checkpoint)


def warn(lines: list[str]) -> None:
    from dlx.ui.console import print_error

    for line in lines:  # on stderr, with --json too: stdout stays one JSON document
        print_error(line, label="warning")


def sample_command(
    checkpoint: Path = typer.Argument(..., help="A GAN's .ckpt file written by dlx train."),
    count: int = typer.Option(64, "-n", "--count", help="How many samples to draw."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="The PNG grid to write; default "
                                       "RUN/samples/CKPT_seedSEED.png."),
    seed: int = typer.Option(0, "--seed", help="Seed of the noise: the same seed draws the same samples."),
    allow: list[str] = typer.Option([], "--allow", help=ALLOW_HELP),
    config_dirs: list[Path] = typer.Option([], "--config-dir", "-cd", help=CONFIG_DIR_HELP),
) -> None:
    """New samples from a GAN checkpoint's generator, as a grid of images."""
    from dlx.inspect.predict import sample

    with errors_reported():
        path = sample(checkpoint, count, out, seed, allow, config_dirs)
    print(printable(f"{path}: {count} samples from {checkpoint} (seed {seed})"))

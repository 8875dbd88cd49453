"""`dlx predict CHECKPOINT IMAGES...` (a classifier on image files), `dlx predict CHECKPOINT ROWS.csv` (a model
trained on a table, on new rows), `dlx predict CHECKPOINT SOURCES.txt` (an encoder-decoder's targets) and
`dlx sample CHECKPOINT` (a GAN's samples)."""

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from dlx.cli.options import ALLOW_HELP, CONFIG_DIR_HELP, errors_reported
from dlx.ui.console import printable


def predict_command(
    checkpoint: Path = typer.Argument(..., help="A .ckpt file written by dlx train."),
    inputs: list[Path] = typer.Argument(..., metavar="IMAGES_OR_TABLE...",
                                        help="PNG or JPEG files, or folders of them, for a model of images; one "
                                        "CSV, TSV or Parquet file of rows for a model trained with dataset=table; "
                                        "for an encoder-decoder, a text file of one source per line or a table "
                                        "with a source column; one file of the series for a forecaster "
                                        "(dataset=timeseries)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Tables: the file to write, the rows with their "
                                       "predictions (.csv, .tsv or .parquet); default RUN/predictions/ROWS_FILE. "
                                       "Text classifiers and encoder-decoders given a .txt file: default printed. "
                                       "Series: a file for the forecast too (it is printed either way)."),
    top_k: int = typer.Option(3, "--top-k", "-k", help="Images and texts: how many of the most probable classes to "
                              "show."),
    column: Optional[str] = typer.Option(None, "--column", help="Text classifiers, on a table: the column of texts "
                                         "(default: the training data's dataset.text_column)."),
    beam: int = typer.Option(1, "--beam", help="Encoder-decoders: decode by beam search of N hypotheses (1: "
                             "greedy)."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON on stdout instead of a table."),
    allow: list[str] = typer.Option([], "--allow", help=ALLOW_HELP),
    config_dirs: list[Path] = typer.Option([], "--config-dir", "-cd", help=CONFIG_DIR_HELP),
) -> None:
    """A classifier's classes for your own image files, a table model's predictions for new rows, or a
    forecaster's next values after the end of a series.

    Each image is prepared as the training images were: grey or colour, resized, scaled to [0, 1], normalised.
    Rows are encoded as the training rows were (standardised numbers, one-hot categories: the checkpoint records
    how) and written back with a `prediction` column and, for a classifier, `probability_<class>` columns."""
    from dlx.inspect.forecast import Forecast, print_forecast
    from dlx.inspect.predict import TablePredictions, predict, print_predictions, print_table_predictions
    from dlx.inspect.translate import Translations, print_translations

    with errors_reported():
        predictions = predict(checkpoint, inputs, top_k, allow, config_dirs, out, column, beam)
    if isinstance(predictions, Forecast):
        print_forecast(predictions, checkpoint, json_output)
    elif isinstance(predictions, Translations):
        warn(predictions.warnings)
        if json_output:
            print(json.dumps({"checkpoint": str(checkpoint), "sources": str(predictions.sources),
                              "out": None if predictions.out is None else str(predictions.out),
                              "beam": predictions.beam, "predictions": predictions.rows,
                              "warnings": predictions.warnings}))
        else:
            print_translations(predictions, checkpoint)
    elif isinstance(predictions, TablePredictions):
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
    checkpoint: Path = typer.Argument(..., help="A GAN's or a language model's .ckpt file written by dlx train."),
    count: Optional[int] = typer.Option(None, "-n", "--count", help="How many samples to draw: images of a GAN "
                                        "(default 64), texts of a language model (default 1)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="GAN: the PNG grid to write (default "
                                       "RUN/samples/CKPT_seedSEED.png). Language model: a text file to write the "
                                       "texts to, besides printing them."),
    seed: int = typer.Option(0, "--seed", help="Seed of the draws: the same seed draws the same samples."),
    prompt: str = typer.Option("", "--prompt", "-p", help="Language model: the text to continue (empty: the start "
                               "of a line)."),
    max_tokens: int = typer.Option(200, "--max-tokens", help="Language model: how many tokens to generate."),
    temperature: float = typer.Option(1.0, "--temperature", "-t", help="Language model: below 1 more likely "
                                      "tokens, above 1 more varied ones; 0 always the most likely."),
    top_k: Optional[int] = typer.Option(None, "--top-k", "-k", help="Language model: draw each token from the k "
                                        "most likely only."),
    allow: list[str] = typer.Option([], "--allow", help=ALLOW_HELP),
    config_dirs: list[Path] = typer.Option([], "--config-dir", "-cd", help=CONFIG_DIR_HELP),
) -> None:
    """New samples: images from a GAN checkpoint's generator (a grid), or text from a language model."""
    from dlx.inspect.generate import Sampling
    from dlx.inspect.predict import sample

    with errors_reported():
        sampled = sample(checkpoint, count, out, seed, allow, config_dirs,
                         Sampling(prompt, max_tokens, temperature, top_k, seed))
    if sampled.texts:
        print("\n\n".join(sampled.texts))
        if sampled.out is not None:
            # on stderr: stdout holds the texts alone, for a pipe
            print(printable(f"{sampled.out}: {len(sampled.texts)} text(s) from {checkpoint} (seed {seed})"),
                  file=sys.stderr)
    else:
        print(printable(f"{sampled.out}: {count or 64} samples from {checkpoint} (seed {seed})"))

"""`dlx predict CHECKPOINT IMAGES...` (a classifier on image files) and `dlx sample CHECKPOINT` (a GAN's samples)."""

import json
from pathlib import Path
from typing import Optional

import typer

from dlx.cli.options import ALLOW_HELP, CONFIG_DIR_HELP, errors_reported


def predict_command(
    checkpoint: Path = typer.Argument(..., help="A classifier's .ckpt file written by dlx train."),
    images: list[Path] = typer.Argument(..., help="PNG or JPEG files, or folders of them."),
    top_k: int = typer.Option(3, "--top-k", "-k", help="How many of the most probable classes to show."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON on stdout instead of a table."),
    allow: list[str] = typer.Option([], "--allow", help=ALLOW_HELP),
    config_dirs: list[Path] = typer.Option([], "--config-dir", "-cd", help=CONFIG_DIR_HELP),
) -> None:
    """Class and top-k probabilities of a classifier for your own image files.

    Each image is prepared as the training images were: grey or colour, resized, scaled to [0, 1], normalised."""
    from dlx.inspect.predict import predict, print_predictions

    with errors_reported():
        predictions = predict(checkpoint, images, top_k, allow, config_dirs)
    if json_output:
        print(json.dumps({"checkpoint": str(checkpoint), "predictions": predictions}))
    else:
        print_predictions(predictions, checkpoint)


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
    print(f"{path}: {count} samples from {checkpoint} (seed {seed})")

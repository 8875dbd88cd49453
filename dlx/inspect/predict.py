"""`dlx predict`: a trained classifier on the user's own image files; `dlx sample`: new images from a GAN.

An image is prepared as the training data was: converted to grey or colour to match the model's channels,
resized to the training input size, scaled to [0, 1] and normalised with the training split's per-channel
mean and standard deviation, which the checkpoint records.
"""

from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlx.errors import DlxError, check_writable
from dlx.inspect.rebuild import raw_input_model, rebuild_model, run_folder_of
from dlx.train.tasks import Adversarial

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
BATCH = 256


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """(N, classes) class probabilities: the softmax of the logits; for a binary model with one output (a
    sigmoid loss), the sigmoid of that logit is the probability of class 1."""
    logits = logits.float()
    if logits.shape[1] == 1:
        positive = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - positive, positive], dim=1)
    return torch.softmax(logits, dim=1)


def image_files(inputs: list[Path]) -> list[Path]:
    """The files named, and the image files directly inside the folders named, in name order."""
    files = []
    for path in inputs:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DlxError(f"The folder {path} holds no image files ({', '.join(IMAGE_SUFFIXES)}).")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise DlxError(f"{path} does not exist. Name image files (PNG, JPEG) or folders that hold them.")
    return files


def load_image(path: Path, input_shape: list[int]) -> torch.Tensor:
    """One image file as the training images were: (C, H, W) float32 in [0, 1], grey or RGB as the model's
    channels, resized to the training size."""
    from PIL import Image, UnidentifiedImageError

    channels, height, width = input_shape
    try:
        with Image.open(path) as opened:
            image = opened.convert("L" if channels == 1 else "RGB")
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DlxError(f"{path} is not an image file that Pillow can read ({err}). dlx predict takes PNG and JPEG "
                       "files (and the other formats Pillow reads).") from err
    if image.size != (width, height):
        # Shrinking averages the area under each new pixel (as scikit-learn's digits were made from 32x32
        # bitmaps, and as OpenCV's INTER_AREA does); enlarging interpolates bilinearly.
        shrinking = image.width >= width and image.height >= height
        image = image.resize((width, height), Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)
    return pixels.unsqueeze(0) if channels == 1 else pixels.permute(2, 0, 1)  # (H, W) or (H, W, 3) -> (C, H, W)


def predict(checkpoint: Path, inputs: list[Path], top_k: int, allow: list[str],
            config_dirs: list[Path]) -> list[dict[str, Any]]:
    """For each image file: the predicted class, its probability, and the top_k classes with theirs."""
    if top_k < 1:
        raise DlxError(f"--top-k {top_k}: give a number of classes of 1 or more.")
    rebuilt = rebuild_model(checkpoint, allow, config_dirs)
    if rebuilt.is_gan:
        raise DlxError(f"{checkpoint} holds a GAN, which generates images rather than classifying them. Draw new "
                       f"samples with: dlx sample {checkpoint} -n 64 --out grid.png")
    data = rebuilt.data("predict")
    shape = data["input_shape"]
    if data["task"] != "classification":
        raise DlxError(f"{checkpoint} holds a regression model: dlx predict gives the classes of a classifier. "
                       f"`dlx export {checkpoint} --format onnx` exports it to compute its predictions elsewhere.")
    if data.get("pixel_mean") is None or len(shape) != 3:
        raise DlxError(f"{checkpoint} was trained on tabular features (input shape {shape}), not images: dlx "
                       "predict takes image files. `dlx export` exports the model to run on your own features.")
    if shape[0] not in (1, 3):
        raise DlxError(f"{checkpoint} takes images with {shape[0]} channels; image files hold 1 (grey) or 3 (RGB).")
    files = image_files(inputs)
    x = torch.stack([load_image(path, shape) for path in files])  # (N, C, H, W) in [0, 1]
    model = raw_input_model(rebuilt, "predict")
    with torch.inference_mode():
        probs = probabilities(torch.cat([model(batch) for batch in x.split(BATCH)]))
    names = data["class_names"]
    if probs.shape[1] != len(names):
        raise DlxError(f"{checkpoint} names {len(names)} classes but its model gives {probs.shape[1]} outputs: the "
                       "file is damaged or was altered. Use another checkpoint.")
    values, indices = probs.topk(min(top_k, probs.shape[1]), dim=1)
    return [{"file": str(path),
             "class": names[int(index[0])],
             "probability": float(value[0]),
             "top_k": [{"class": names[int(i)], "probability": float(v)} for v, i in zip(value, index)]}
            for path, value, index in zip(files, values, indices)]


def print_predictions(predictions: list[dict[str, Any]], checkpoint: Path) -> None:
    from rich.markup import escape
    from rich.table import Table

    from dlx.ui.console import wide_console

    table = Table(title=f"{len(predictions)} image(s), {checkpoint}", title_justify="left")
    for column in ("file", "class", "probability", "top classes"):
        table.add_column(column, justify="right" if column == "probability" else "left", overflow="fold")
    for row in predictions:
        top = ", ".join(f"{escape(t['class'])} {t['probability']:.3f}" for t in row["top_k"])
        table.add_row(escape(row["file"]), escape(row["class"]), f"{row['probability']:.4f}", top)
    wide_console().print(table)


def sample(checkpoint: Path, count: int, out: Path | None, seed: int, allow: list[str],
           config_dirs: list[Path]) -> Path:
    """A grid of `count` new images from a GAN checkpoint's generator, drawn from noise seeded with `seed`
    (the same seed, the same images); the PNG's path."""
    if count < 1:
        raise DlxError(f"-n {count}: give a number of samples of 1 or more.")
    rebuilt = rebuild_model(checkpoint, allow, config_dirs)
    if not rebuilt.is_gan:
        raise DlxError(f"{checkpoint} holds a {type(rebuilt.model).__name__}, not a GAN: dlx sample draws images "
                       f"from a GAN's generator. Classify images with: dlx predict {checkpoint} IMAGE...")
    if len(rebuilt.gan.input_shape) != 3:
        raise DlxError(f"{checkpoint} is a GAN of tabular data (shape {rebuilt.gan.input_shape}): its samples "
                       "are not images. `dlx export` exports its generator to draw them yourself.")
    out = out or run_folder_of(checkpoint) / "samples" / f"{checkpoint.stem}_seed{seed}.png"
    check_writable(out)
    Adversarial.save_samples(rebuilt.gan, out, count, seed)
    return out


"""`dlx predict`: a trained classifier on the user's own image files, or a model trained on a table
(dataset=table) on new rows; `dlx sample`: new images from a GAN.

An image is prepared as the training data was: read as image folders are (dlx.data.images: EXIF orientation,
16-bit, transparency), in grey or colour to match the model's channels, resized to the training size, scaled
to [0, 1] and normalised with the training split's per-channel mean and standard deviation, which the
checkpoint records.

A table's rows are encoded by dlx.data.table.encode_rows with the record of the training encoding the checkpoint
keeps (means, standard deviations, categories): no access to the training file is needed. The rows are written
back with a `prediction` column (the class, or the value in the target's own units) and, for a classifier, one
`probability_<class>` column per class; every column of the input is carried over unchanged (from a text file
to a text file, each cell as it was written). A category that training never saw is encoded as all zeros (none
of the known categories), and a warning counts such rows per column.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from dlx.data.images import IMAGE_SUFFIXES, read_image
from dlx.errors import DlxError, check_writable
from dlx.inspect.forecast import Forecast, forecast_series
from dlx.inspect.predicted import BATCH, TablePredictions, check_output, prediction_columns, probabilities
from dlx.inspect.rebuild import Rebuilt, checkpoint_in, raw_input_model, rebuild_model, run_folder_of
from dlx.inspect.translate import Translations, translate
from dlx.train.tasks import Adversarial

if TYPE_CHECKING:
    from dlx.data.table import Encoded
    from dlx.inspect.generate import Sampling

TEXT_SHOWN = 80  # characters of a text in the printed table (--json has them all)
TABLE_BATCH = 65536  # rows per forward pass: (65536, features) floats, a few MiB per hundred inputs


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
        elif path.exists():  # reading a pipe or a device would wait for data forever, or never end
            raise DlxError(f"{path} is not a regular file (a pipe, a socket or a device). Name image files (PNG, "
                           "JPEG) or folders that hold them.")
        else:
            raise DlxError(f"{path} does not exist. Name image files (PNG, JPEG) or folders that hold them.")
    return files


def load_image(path: Path, input_shape: list[int]) -> torch.Tensor:
    """One image file as the training images were: (C, H, W) float32 in [0, 1], grey or RGB as the model's
    channels, resized to the training size, read as image folders are (dlx.data.images)."""
    channels, height, width = input_shape
    return torch.from_numpy(read_image(path, channels, height, width)).float().div_(255.0)


def predict(checkpoint: Path, inputs: list[Path], top_k: int, allow: list[str], config_dirs: list[Path],
            out: Path | None = None, column: str | None = None,
            beam: int = 1) -> "list[dict[str, Any]] | TablePredictions | Translations | Forecast":
    """A model of images: for each image file, the predicted class, its probability, and the top_k classes
    with theirs. A model trained on a table (the checkpoint records its encoding): the rows of the one table
    file named, with their predictions, written to `out` (see predict_rows). A classifier of text: the texts of
    a file, one a line, or a table's `column` (dlx.inspect.predict_text). An encoder-decoder: the target decoded
    for each source of the file (dlx.inspect.translate), by beam search when `beam` > 1. A forecaster
    (dataset=timeseries): the next values after the end of the one series file named (dlx.inspect.forecast)."""
    if top_k < 1:
        raise DlxError(f"--top-k {top_k}: give a number of classes of 1 or more.")
    rebuilt = rebuild_model(checkpoint_in(checkpoint), allow, config_dirs)
    if rebuilt.is_gan:
        raise DlxError(f"{checkpoint} holds a GAN, which generates images rather than classifying them. Draw new "
                       f"samples with: dlx sample {checkpoint} -n 64 --out grid.png")
    data = rebuilt.data("predict")
    if data.get("tokenizer") is not None and data["task"] == "classification":
        from dlx.inspect.predict_text import classify_texts

        return classify_texts(rebuilt, data, inputs, top_k, out, column)
    if data.get("task") == "language_model":
        raise DlxError(f"{checkpoint} holds a language model, which continues text rather than classifying it. "
                       f"Generate with: dlx sample {checkpoint} --prompt \"...\"")
    if data["task"] == "seq2seq":
        return translate(rebuilt, data, inputs, out, beam)
    if data["task"] == "forecasting":
        return forecast_series(rebuilt, data, inputs, out)
    if data.get("preprocessing") is not None:
        return predict_rows(rebuilt, data, inputs, out)
    if out is not None:
        raise DlxError(f"--out {out}: dlx predict writes a file for the rows of a table, but {checkpoint} holds a "
                       "model of images, whose predictions are printed (--json prints them as JSON).")
    return classify_images(rebuilt, data, inputs, top_k)


def classify_images(rebuilt: Rebuilt, data: dict[str, Any], inputs: list[Path], top_k: int) -> list[dict[str, Any]]:
    checkpoint = rebuilt.path
    shape = data["input_shape"]
    if data["task"] != "classification":
        raise DlxError(f"{checkpoint} holds a regression model: dlx predict gives the classes of a classifier. "
                       f"`dlx export {checkpoint} --format onnx` exports it to compute its predictions elsewhere.")
    if data.get("pixel_mean") is None or len(shape) != 3:
        raise DlxError(f"{checkpoint} was trained on tabular features (input shape {shape}), not images: dlx "
                       "predict takes image files, or table files for models trained with dataset=table. "
                       "`dlx export` exports the model to run on your own features.")
    if shape[0] not in (1, 3):
        raise DlxError(f"{checkpoint} takes images with {shape[0]} channels; image files hold 1 (grey) or 3 (RGB).")
    refuse_tables(inputs, checkpoint)
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


def refuse_tables(inputs: list[Path], checkpoint: Path) -> None:
    """A table file given to a model of images: say so, rather than that it is not an image."""
    odd = [path for path in inputs if path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES]
    if odd:
        from dlx.data.table import is_table_file  # pandas only for the files that are not images

        tables = [path for path in odd if is_table_file(path)]
        if tables:
            raise DlxError(f"{tables[0]} is a table, but {checkpoint} holds a model of images: dlx predict takes "
                           "image files (or folders of them) for it. Tables are for models trained with "
                           "dataset=table.")


def predict_rows(rebuilt: Rebuilt, data: dict[str, Any], inputs: list[Path], out: Path | None) -> TablePredictions:
    """The rows of one table file with the model's predictions, written to `out` (by default
    RUN/predictions/<the file's name>, in the format of its suffix): the columns of the input unchanged, then
    `prediction` and, for a classifier, `probability_<class>` for each class."""
    from dlx.data.table import encode_rows, read_table, table_format, write_table

    checkpoint = rebuilt.path
    preprocessing = data["preprocessing"]
    if len(inputs) != 1 or not inputs[0].is_file():
        given = ", ".join(map(str, inputs))
        raise DlxError(f"{checkpoint} was trained on a table ({preprocessing['source']}): give dlx predict one "
                       f"CSV, TSV or Parquet file of rows (given: {given}"
                       + (", which is not a file" if len(inputs) == 1 else "") + ").")
    rows = inputs[0]
    within = None if out else run_folder_of(checkpoint)  # RUN/predictions: written inside the run folder
    out = out or run_folder_of(checkpoint) / "predictions" / rows.name
    check_output(rows, out)
    # Text rows are read as the training file was: with its dataset.sep (a ';'-separated .csv), else by suffix.
    frame = read_table(rows, preprocessing["sep"], preprocessing["na_values"])
    encoded = encode_rows(frame, preprocessing, rows)
    if data["input_shape"] != [encoded.x.shape[1]]:
        raise DlxError(f"{checkpoint} is damaged or was altered: its model takes {data['input_shape']} inputs, its "
                       f"table encoding gives {encoded.x.shape[1]}. Use another checkpoint.")
    with torch.inference_mode():
        outputs = torch.cat([rebuilt.model(batch) for batch in torch.from_numpy(encoded.x).split(TABLE_BATCH)])
    added = prediction_columns(outputs, data, checkpoint)
    clashing = [name for name in added if name in frame.columns]
    if clashing:
        raise DlxError(f"{rows} already has a column {clashing[0]}, the name of a column dlx predict adds. Rename "
                       "or remove it (a file of earlier predictions? predict on the rows alone).")
    # From text to text, the cells are carried over as written (1.50 stays 1.50, 007 stays 007, NA stays NA), not
    # as pandas reads them; into Parquet, with the types read.
    as_written = table_format(rows, preprocessing["sep"])[0] == table_format(out, None)[0] == "text"
    carried = read_table(rows, preprocessing["sep"], as_text=True) if as_written else frame
    write_table(carried.assign(**added), out, within)
    return TablePredictions(rows, out, len(frame), list(added), encoding_warnings(encoded, rows))


def encoding_warnings(encoded: "Encoded", rows: Path) -> list[str]:
    """One line for the categories training never saw (encoded as all zeros), counted per column, and one
    for the numbers missing in columns that had no missing values in training (the training mean)."""
    lines = []
    if encoded.unseen:
        counts = ", ".join(f"{name} {count:,} (e.g. {encoded.unseen_examples[name]!r})"
                           for name, count in encoded.unseen.items())
        lines.append(f"{rows}: rows with a category the training rows do not have, encoded as none of the known "
                     f"categories (all zeros), per column: {counts}")
    if encoded.new_missing:
        counts = ", ".join(f"{name} {count:,}" for name, count in encoded.new_missing.items())
        lines.append(f"{rows}: missing numbers in columns that had none in training, read as the training mean, "
                     f"per column: {counts}")
    return lines


def print_table_predictions(written: TablePredictions, checkpoint: Path) -> None:
    rows = f"{written.count:,} row{'s' * (written.count != 1)}"
    print(f"{written.out}: {rows} of {written.rows} with the predictions of {checkpoint} "
          f"(added columns: {', '.join(written.added)})")


def print_predictions(predictions: list[dict[str, Any]], checkpoint: Path) -> None:
    from rich.markup import escape
    from rich.table import Table

    from dlx.ui.console import printable, wide_console

    what = "text" if predictions and "text" in predictions[0] else "file"
    table = Table(title=escape(printable(f"{len(predictions)} {'text' if what == 'text' else 'image'}(s), "
                                         f"{checkpoint}", newlines=False)),
                  title_justify="left")
    for column in (what, "class", "probability", "top classes"):
        table.add_column(column, justify="right" if column == "probability" else "left", overflow="fold")
    for row in predictions:
        top = ", ".join(f"{escape(t['class'])} {t['probability']:.3f}" for t in row["top_k"])
        shown = row[what] if len(row[what]) <= TEXT_SHOWN else row[what][: TEXT_SHOWN - 1] + "…"
        table.add_row(escape(printable(shown, newlines=False)), escape(row["class"]), f"{row['probability']:.4f}",
                      top)
    wide_console().print(table)


@dataclass
class Sampled:
    texts: list[str]  # a language model's texts, each the prompt and its continuation (none for a GAN)
    out: Path | None  # the file written: a GAN's grid of images, or the texts when --out named a file


def sample(checkpoint: Path, count: int | None, out: Path | None, seed: int, allow: list[str],
           config_dirs: list[Path], sampling: "Sampling | None" = None) -> Sampled:
    """New samples: a grid of `count` (default 64) images from a GAN checkpoint's generator, drawn from noise
    seeded with `seed` (the same seed, the same images), written as a PNG; or `count` (default 1) texts from a
    language model, continued from `sampling`'s prompt (dlx.inspect.generate)."""
    if count is not None and count < 1:
        raise DlxError(f"-n {count}: give a number of samples of 1 or more.")
    checkpoint = checkpoint_in(checkpoint)
    rebuilt = rebuild_model(checkpoint, allow, config_dirs)
    if not rebuilt.is_gan and rebuilt.data("sample")["task"] == "language_model":
        from dlx.inspect.generate import Sampling, continue_text, write_texts

        if out is not None:
            check_writable(out)
        texts = continue_text(rebuilt, sampling or Sampling("", 200, 1.0, None, seed), count or 1)
        if out is not None:
            write_texts(texts, out)
        return Sampled(texts, out)
    if not rebuilt.is_gan:
        raise DlxError(f"{checkpoint} holds a {type(rebuilt.model).__name__}, neither a GAN nor a language model: "
                       "dlx sample draws images from a GAN's generator, or text from a language model. Classify "
                       f"with: dlx predict {checkpoint} INPUTS...")
    if len(rebuilt.gan.input_shape) != 3:
        raise DlxError(f"{checkpoint} is a GAN of tabular data (shape {rebuilt.gan.input_shape}): its samples "
                       "are not images. `dlx export` exports its generator to draw them yourself.")
    within = None if out else run_folder_of(checkpoint)  # RUN/samples: written inside the run folder
    out = out or run_folder_of(checkpoint) / "samples" / f"{checkpoint.stem}_seed{seed}.png"
    check_writable(out)
    try:
        Adversarial.save_samples(rebuilt.gan, out, count or 64, seed, within)
    except OSError as err:
        raise DlxError(f"Cannot write {out}: {err.strerror or err}. Pass another --out.") from err
    return Sampled([], out)

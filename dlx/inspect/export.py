"""`dlx export`: a checkpoint's model as an ONNX or TorchScript file that runs without dlx, checked when it is
written: the file, run by onnxruntime or reloaded by torch.jit.load, must give the checkpoint's outputs.

What the exported model takes and gives (the batch size is free):
- a model of images takes raw pixels in [0, 1], (batch, C, H, W): the training normalisation (the training
  split's per-channel mean and std) is inside the graph, so users feed images as they load them;
- a model trained on a table (dataset=table) takes its rows as numbers, (batch, inputs): first each numeric
  column as it is in the file, NaN where missing, then each categorical column one-hot over the training
  categories (its missing category too, where training had one; all zeros for a category training never saw),
  as the list `inputs` of the JSON file written beside the export (MODEL.preprocessing.json: the categories, means
  and standard deviations) orders them. The graph does the rest as training did: it standardises the numbers with
  the training mean and std, sets missing ones to the mean and their indicators to 1. So the numeric encoding
  travels inside the model, and the categorical encoding, which needs strings, is a lookup in the JSON. A
  regression gives its predictions in the target's own units (the training standardisation undone in the graph);
- a model of another tabular data set takes the features as dlx's data set gives them (standardised by its
  loader);
- a classifier gives logits (batch, classes), softmax them for probabilities (a binary model trained with a
  sigmoid loss gives one logit, of class 1); a regressor gives its predictions;
- a GAN exports its generator: noise (batch, noise_dim) in, images (batch, C, H, W) in [0, 1] out;
- an encoder-decoder (the Transformer) exports two files, its encoder and its decoder, and its tokenizer
  (dlx.inspect.export_seq2seq);
- a forecaster (dataset=timeseries) takes windows of the series in its own units, (batch, window, columns),
  oldest row first, and gives forecasts (batch, horizon, targets) in the same units: the training
  standardisation, and its undoing, are inside the graph (dlx.inspect.forecast.SeriesForecaster).
The file records this, the class names and the checkpoint it came from as metadata (and for a table, the
encoding, as the JSON file beside it holds it).
"""

import json
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlx import __version__
from dlx.errors import DlxError, check_writable, did_you_mean, require
from dlx.inspect.export_seq2seq import ExportedPair, export_encoder_decoder
from dlx.inspect.forecast import SeriesForecaster, describe_series
from dlx.inspect.rebuild import Rebuilt, checkpoint_in, raw_input_model, rebuild_model
from dlx.models.rnn import RecurrentNet
from dlx.models.seq2seq import EncoderDecoder
from dlx.store.files import write_json_atomically

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
# Another runtime may sum in another order: float32 outputs then differ by about 1e-6; 1e-4 is a real difference.
ATOL = RTOL = 1e-4
CHECK_BATCHES = (1, 7)  # a single input and a batch: the exported batch dimension must really be free


@dataclass
class Exported:
    path: Path
    format: str
    input_name: str
    input_shape: list[Any]  # ["batch", C, H, W]
    output_name: str
    metadata: dict[str, str]
    max_difference: float  # the largest difference from the checkpoint's outputs on the checked inputs
    checked_inputs: int
    encoding: Path | None = None  # a table's: the JSON file of its inputs, categories and statistics


def export_checkpoint(checkpoint: Path, fmt: str, out: Path | None, allow: list[str],
                      config_dirs: list[Path]) -> "Exported | ExportedPair":
    if fmt not in FORMATS:
        raise DlxError(f'--format {fmt} is not an export format.{did_you_mean(fmt, FORMATS)} Choose onnx (for '
                       "onnxruntime and the runtimes that read ONNX) or torchscript (for PyTorch's C++ runtime).")
    if fmt == "onnx":
        for module in ("onnx", "onnxruntime", "onnxscript"):  # onnxscript: torch's ONNX exporter builds with it
            require(module, "export", "dlx export --format onnx")
    checkpoint = checkpoint_in(checkpoint)
    rebuilt = rebuild_model(checkpoint, allow, config_dirs)
    if fmt == "onnx" and isinstance(rebuilt.model, RecurrentNet) and rebuilt.model.embedding is not None:
        raise DlxError(f"{checkpoint} holds a recurrent classifier of text, which reads packed sequences (each text "
                       "to its own last token): torch's ONNX exporter has no graph for them. Export it with --format "
                       "torchscript, or train model=transformer, which exports to ONNX.")
    if isinstance(rebuilt.model, EncoderDecoder):  # two graphs, encoder and decoder: dlx.inspect.export_seq2seq
        tokenizer = rebuilt.data("export").get("tokenizer") or ""
        return export_encoder_decoder(rebuilt, fmt, out or checkpoint.with_suffix(FORMATS[fmt]), tokenizer)
    series = None if rebuilt.is_gan else series_record(rebuilt.data("export"))
    preprocessing = None if rebuilt.is_gan or series else rebuilt.data("export").get("preprocessing")
    if series is not None:
        model: nn.Module = SeriesForecaster(rebuilt.model, series).eval()
    else:
        model = raw_input_model(rebuilt, "export") if preprocessing is None else table_model(rebuilt.model,
                                                                                             preprocessing)
    example, input_name, input_shape, output_name, metadata = describe(rebuilt, model)
    out = out or checkpoint.with_suffix(FORMATS[fmt])
    check_writable(out)
    encoding = None if preprocessing is None else out.with_name(f"{out.stem}.preprocessing.json")
    if encoding is not None:
        check_writable(encoding)
    # Written beside `out` and renamed into place once checked: a file that fails the check is never left there.
    temporary = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        if fmt == "onnx":
            write_onnx(model, example(2), temporary, input_name, output_name, metadata)
            run = onnx_runner(temporary)
        else:
            write_torchscript(model, example(2), temporary, metadata)
            run = torchscript_runner(temporary)
        difference = check_same_outputs(model, run, [example(n) for n in CHECK_BATCHES], fmt)
        if encoding is not None:
            write_json_atomically(encoding, json.loads(metadata["dlx.preprocessing"]))
        os.replace(temporary, out)
    finally:
        temporary.unlink(missing_ok=True)
    return Exported(out, fmt, input_name, input_shape, output_name, metadata, difference, sum(CHECK_BATCHES),
                    encoding)


def series_record(data: dict[str, Any]) -> dict[str, Any] | None:
    """A forecaster's record of its series (dlx.data.timeseries), or None for any other model."""
    return data["preprocessing"] if data["task"] == "forecasting" else None


class TableInputs(nn.Module):
    """A table's rows as the export takes them, (B, numbers + one-hot), to the feature vector the model was
    trained on, (B, numbers + indicators + one-hot), as dlx.data.table.encode_arrays makes it: the numbers
    standardised with the training mean and std, a missing one (NaN) set to 0 (the training mean) and, in the
    columns that had missing values in training, its indicator set to 1."""

    mean: torch.Tensor
    std: torch.Tensor
    flagged: torch.Tensor

    def __init__(self, preprocessing: dict[str, Any]) -> None:
        super().__init__()
        numeric = preprocessing["numeric"]
        self.numbers = len(numeric)
        self.register_buffer("mean", torch.tensor([c["mean"] for c in numeric], dtype=torch.float32))
        self.register_buffer("std", torch.tensor([c["std"] for c in numeric], dtype=torch.float32))
        self.register_buffer("flagged", torch.tensor([j for j, c in enumerate(numeric) if c["missing"]],
                                                     dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.numbers == 0:
            return x
        numbers = x[:, :self.numbers]
        missing = torch.isnan(numbers)
        parts = [torch.where(missing, torch.zeros_like(numbers), (numbers - self.mean) / self.std)]
        if len(self.flagged):
            parts.append(missing[:, self.flagged].to(x.dtype))
        return torch.cat([*parts, x[:, self.numbers:]], dim=1)


class TargetUnits(nn.Module):
    """Standardised predictions (B, 1) back in the target's own units: y * std + mean of the training rows."""

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.std + self.mean


def table_model(model: nn.Module, preprocessing: dict[str, Any]) -> nn.Module:
    """A model trained on a table, taking rows as export_inputs() orders them, giving logits or, for a
    regression, predictions in the target's units."""
    layers = [TableInputs(preprocessing), model]
    if preprocessing["task"] == "regression":
        layers.append(TargetUnits(preprocessing["target_mean"], preprocessing["target_std"]))
    return nn.Sequential(*layers).eval()


def export_inputs(preprocessing: dict[str, Any]) -> list[str]:
    """The names of the exported model's inputs: the numeric columns, then each categorical one's categories
    (the model's own feature vector without the missing indicators, which the graph computes)."""
    numbers = len(preprocessing["numeric"])
    indicators = sum(c["missing"] for c in preprocessing["numeric"])
    return preprocessing["features"][:numbers] + preprocessing["features"][numbers + indicators:]


def table_encoding(preprocessing: dict[str, Any], class_names: list[str], output: str) -> dict[str, Any]:
    """What the JSON beside a table's export holds: how to make its inputs from a row, and what it gives."""
    return {"inputs": export_inputs(preprocessing),
            "how": ("One row of numbers per table row, in the order of `inputs`: each numeric column's value (NaN "
                    "where missing; the model standardises it with `mean` and `std` and fills in missing values "
                    "itself), then for each categorical column a 1 in the input of its category and 0 in the "
                    "others (the value as text: whole numbers without a decimal point, booleans as True or False; "
                    "a missing value is the category (missing) where the column has one; a category not listed "
                    "gets all zeros)."),
            "output": output, "class_names": class_names, **preprocessing}


# What describe() gives: inputs to trace and check with (of the batch size), input name, its shape, output name,
# and the metadata.
Description = tuple[Callable[[int], torch.Tensor], str, list[Any], str, dict[str, str]]


def describe(rebuilt: Rebuilt, model: nn.Module) -> Description:
    """Inputs to trace and check with (a function of the batch size, seeded), the names and shape of the
    exported model's input and output, and the metadata the file records."""
    metadata = {"dlx.checkpoint": str(rebuilt.path), "dlx.step": str(rebuilt.checkpoint["state"]["step"]),
                "dlx.model": str(rebuilt.cfg.model._target_), "dlx.version": __version__}
    if rebuilt.is_gan:
        gan = rebuilt.gan
        metadata["dlx.input"] = (f"noise, shape (batch, {gan.noise_dim}), drawn from "
                                 f"{'U(-1, 1)' if gan.noise == 'uniform' else 'N(0, 1)'}")
        metadata["dlx.output"] = f"generated samples, shape (batch, {', '.join(map(str, gan.input_shape))}), in [0, 1]"
        return (lambda n: gan.sample_noise(n, torch.Generator().manual_seed(n)), "noise", ["batch", gan.noise_dim],
                "images", metadata)
    data = rebuilt.data("export")
    series = series_record(data)
    if series is not None:
        return describe_series(model, series, metadata)
    preprocessing = data.get("preprocessing")
    if preprocessing is not None:
        return describe_table(model, preprocessing, data["class_names"], metadata)
    if data.get("tokenizer") is not None:
        return describe_text(model, data, metadata)
    shape = data["input_shape"]
    images = data.get("pixel_mean") is not None
    classes = data.get("class_names") or []
    size = ", ".join(map(str, shape))
    if images:
        mean, std = ([round(v, 4) for v in data[key]] for key in ("pixel_mean", "pixel_std"))
        metadata["dlx.input"] = (f"pixels in [0, 1], shape (batch, {size}); the model normalises them as training "
                                 f"did (per-channel mean {mean}, std {std})")
    else:
        metadata["dlx.input"] = f"features, shape (batch, {size}), standardised as dlx's data set gives them"

    def example(n: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(n)
        draw = torch.rand if images else torch.randn  # pixels in [0, 1]; standardised features
        return draw((n, *shape), generator=generator)

    with torch.inference_mode():
        outputs = model(example(1)).shape[1]
    if data["task"] == "classification":
        metadata["dlx.class_names"] = json.dumps(classes)
        metadata["dlx.output"] = logits_description(outputs)
    else:
        metadata["dlx.output"] = (f"predictions, shape (batch, {outputs}), in the standardised units the model "
                                  "was trained on")

    return (example, "pixels" if images else "features", ["batch", *shape],
            "logits" if data["task"] == "classification" else "predictions", metadata)


def logits_description(outputs: int) -> str:
    text = ("logits of class 1, shape (batch, 1): their sigmoid is its probability" if outputs == 1
            else f"logits, shape (batch, {outputs}): their softmax gives the class probabilities")
    return text + "; the metadata entry dlx.class_names names the classes"


def describe_table(model: nn.Module, preprocessing: dict[str, Any], class_names: list[str],
                   metadata: dict[str, str]) -> Description:
    """describe() for a model trained on a table: rows in, with missing numbers among the checked inputs."""
    inputs = export_inputs(preprocessing)
    numbers = len(preprocessing["numeric"])
    categorical = ", ".join(f"{c['name']} ({len(c['categories']) + c['missing']})"
                            for c in preprocessing["categorical"])
    metadata["dlx.input"] = (f"table rows, shape (batch, {len(inputs)}): {numbers} numeric column(s) as numbers, "
                             "NaN where missing (standardised and filled in by the model as training did)"
                             + (f", then one-hot categories of {categorical}" if categorical else "")
                             + "; the JSON file beside the export lists the inputs in order")

    def example(n: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(n)
        x = torch.randn((n, len(inputs)), generator=generator) * 2
        missing = torch.rand((n, numbers), generator=generator) < 0.25
        x[:, :numbers][missing] = float("nan")  # the graph's imputation is checked too
        return x

    if preprocessing["task"] == "classification":
        with torch.inference_mode():
            outputs = model(example(1)).shape[1]
        metadata["dlx.class_names"] = json.dumps(class_names)
        metadata["dlx.output"] = logits_description(outputs)
    else:
        metadata["dlx.output"] = f"predictions of {preprocessing['target']}, shape (batch, 1), in its own units"
    metadata["dlx.preprocessing"] = json.dumps(table_encoding(preprocessing, class_names, metadata["dlx.output"]))
    name = "logits" if preprocessing["task"] == "classification" else "predictions"
    return example, "rows", ["batch", len(inputs)], name, metadata


def describe_text(model: nn.Module, data: dict[str, Any], metadata: dict[str, str]) -> Description:
    """describe() for a model of text: token ids in, as the tokenizer recorded in the metadata (Hugging Face
    `tokenizers` JSON: Tokenizer.from_str) gives them, padded with 0 after each text."""
    (length,) = data["input_shape"]
    vocab = json.loads(data["tokenizer"])
    size = len(vocab["model"]["vocab"]) + len([t for t in vocab["added_tokens"] if t["content"] not in
                                                vocab["model"]["vocab"]])
    language_model = data["task"] == "language_model"
    metadata["dlx.tokenizer"] = data["tokenizer"]
    metadata["dlx.input"] = (f"token ids, shape (batch, {'up to ' if language_model else ''}{length}), int64, from "
                             "the tokenizer in the metadata entry dlx.tokenizer (Hugging Face tokenizers' JSON)"
                             + ("" if language_model else f", each text padded with 0 ([PAD]) to {length}"))

    def example(n: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(n)
        ids = torch.randint(4, max(size, 5), (n, length), generator=generator)  # past the special tokens
        if not language_model:  # texts of different lengths: the padding masks are checked too
            lengths = torch.randint(1, length + 1, (n, 1), generator=generator)
            ids = ids.masked_fill(torch.arange(length) >= lengths, 0)
        return ids

    if language_model:
        metadata["dlx.output"] = (f"logits of the next token at each position, shape (batch, tokens, {size}): their "
                                  "softmax gives its probabilities")
        return example, "tokens", ["batch", length], "logits", metadata
    with torch.inference_mode():
        outputs = model(example(1)).shape[1]
    metadata["dlx.class_names"] = json.dumps(data["class_names"])
    metadata["dlx.output"] = logits_description(outputs)
    return example, "tokens", ["batch", length], "logits", metadata


def write_onnx(model: nn.Module, example: torch.Tensor, path: Path, input_name: str, output_name: str,
               metadata: dict[str, str]) -> None:
    """torch.onnx.export with the torch.export-based exporter (PyTorch's maintained one; the TorchScript-based
    exporter is deprecated), the batch dimension left free."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, (example,), input_names=[input_name], output_names=[output_name],
                                        dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True,
                                        verbose=False)
        assert program is not None  # with dynamo=True the exporter returns its program
        program.model.metadata_props.update(metadata)
        program.save(path, external_data=False)
    except Exception as err:  # the exporter's own errors are many; its first line says what it could not do
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        reason = re.sub(r"\x1b\[[0-9;]*m", "", reason)  # the exporter colours its messages for a terminal
        raise DlxError(f"torch.onnx.export could not export {type(model).__name__}: {reason}. A model with "
                       "Python control flow that depends on the input's values cannot be traced to a graph; "
                       "try --format torchscript.") from err


def onnx_runner(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])


def write_torchscript(model: nn.Module, example: torch.Tensor, path: Path, metadata: dict[str, str]) -> None:
    """torch.jit.trace; PyTorch deprecates TorchScript (it still runs, and PyTorch's C++ runtime reads it)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Its own sanity check re-traces and compares graphs, which fails on modules with fast paths
            # (nn.TransformerEncoder); the outputs of the saved file are checked against the model instead.
            traced = torch.jit.trace(model, example, check_trace=False)
            torch.jit.save(traced, str(path), _extra_files={"dlx.json": json.dumps(metadata)})
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DlxError(f"torch.jit.trace could not export {type(model).__name__}: {reason}. Try --format onnx.") from err


def torchscript_runner(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = torch.jit.load(str(path), map_location="cpu")
    return loaded


@torch.inference_mode()
def check_same_outputs(model: nn.Module, run: Callable[[torch.Tensor], torch.Tensor], inputs: list[torch.Tensor],
                       fmt: str) -> float:
    """The largest difference between the exported file's outputs and the model's; a DlxError beyond the
    tolerance (|exported - checkpoint| <= ATOL + RTOL * |checkpoint|, element by element)."""
    largest = 0.0
    for x in inputs:
        expected = model(x).float()
        got = run(x).float()
        if got.shape != expected.shape or not torch.allclose(got, expected, rtol=RTOL, atol=ATOL):
            difference = (got - expected).abs().max().item() if got.shape == expected.shape else float("nan")
            raise DlxError(f"The exported {fmt} model does not give the checkpoint's outputs (shape {list(got.shape)} "
                           f"against {list(expected.shape)}, largest difference {difference:.3g}, tolerance "
                           f"{ATOL:g}): nothing was written. Please report it with the model's config; the other "
                           "format may export it faithfully.")
        largest = max(largest, (got - expected).abs().max().item())
    return largest


def print_exported(exported: Exported, checkpoint: Path) -> None:
    checker = "onnxruntime" if exported.format == "onnx" else "torch.jit.load"
    print(f"Exported {checkpoint} to {exported.path} ({'ONNX' if exported.format == 'onnx' else 'TorchScript'}).\n"
          f"  input  {exported.input_name}: {exported.metadata['dlx.input']}\n"
          f"  output {exported.output_name}: {exported.metadata['dlx.output']}\n"
          + (f"  encoding {exported.encoding}: the inputs in order, the categories, means and standard deviations\n"
             if exported.encoding else "") +
          f"Checked: run by {checker}, the file gives the checkpoint's outputs on {exported.checked_inputs} inputs "
          f"(largest difference {exported.max_difference:.2g}, tolerance {ATOL:g}).")

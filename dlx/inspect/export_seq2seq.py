"""`dlx export` of an encoder-decoder: two files, checked when written as dlx.inspect.export checks one.

- OUT.encoder.onnx (or .pt): source ids (batch, source_length), int64, padded with 0 -> memory (batch,
  source_length, d_model), what the decoder attends to;
- OUT.decoder.onnx (or .pt): memory, the source ids (their padding is masked out) and the target so far (batch,
  target_length), int64, starting with [BOS] (id 2) -> logits (batch, target_length, vocab) of each next token.
Greedy decoding is then a loop: start from [[2]], append the argmax of the last position's logits, stop at [EOS]
(id 3). Batch, source and target lengths are free. The tokenizer's JSON (Hugging Face `tokenizers`, which reads it
with Tokenizer.from_file) is written beside them as OUT.tokenizer.json, to turn text into ids and back.

The Transformer (model=seq2seq) exports. The LSTM encoder-decoder does not: its encoder packs each source by its
length, a step that depends on the input's values, which torch's exporters cannot record in a graph.
"""

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlx import __version__
from dlx.errors import DlxError, check_writable
from dlx.inspect.rebuild import Rebuilt
from dlx.models.seq2seq import BOS_ID, PAD_ID, EncoderDecoder, TransformerSeq2Seq
from dlx.store.files import write_text_atomically

ATOL = RTOL = 1e-4
CHECKS = ((1, 5, 3), (7, 9, 6))  # (batch, source length, target length): one, and a padded batch


@dataclass
class ExportedPair:
    encoder: Path
    decoder: Path
    tokenizer: Path
    format: str
    max_difference: float
    checked_inputs: int


class Encoder(nn.Module):
    def __init__(self, model: TransformerSeq2Seq) -> None:
        super().__init__()
        self.model = model

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        return self.model.encode(src)[0]


class Decoder(nn.Module):
    def __init__(self, model: TransformerSeq2Seq) -> None:
        super().__init__()
        self.model = model

    def forward(self, memory: torch.Tensor, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.model.decode(memory, src == PAD_ID, tgt_in)


def export_encoder_decoder(rebuilt: Rebuilt, fmt: str, out: Path, tokenizer_json: str) -> ExportedPair:
    model = rebuilt.model
    assert isinstance(model, EncoderDecoder)  # the caller dispatches on it
    if not isinstance(model, TransformerSeq2Seq):
        raise DlxError(f"{rebuilt.path} holds a {type(model).__name__}, whose encoder packs each source by its "
                       "length: a step that depends on the input's values, which torch's exporters cannot record in "
                       "a graph. Encoder-decoders of model=seq2seq (the Transformer) export; use `dlx predict` for "
                       "this one.")
    stem = out.name.removesuffix(out.suffix)
    paths = {part: out.with_name(f"{stem}.{part}{out.suffix}") for part in ("encoder", "decoder")}
    tokenizer = out.with_name(f"{stem}.tokenizer.json")
    for path in (*paths.values(), tokenizer):
        check_writable(path)
    vocab = model.head.out_features
    metadata = {"dlx.checkpoint": str(rebuilt.path), "dlx.step": str(rebuilt.checkpoint["state"]["step"]),
                "dlx.model": str(rebuilt.cfg.model._target_), "dlx.version": __version__,
                "dlx.special_ids": "[PAD] 0, [UNK] 1, [BOS] 2, [EOS] 3",
                "dlx.max_target_length": str(model.max_target_length)}
    encoder, decoder = Encoder(model).eval(), Decoder(model).eval()

    def encoder_inputs(batch: int, source: int, target: int) -> tuple[torch.Tensor, ...]:
        return (example_ids(batch, source, vocab, batch * 31 + source),)

    def decoder_inputs(batch: int, source: int, target: int) -> tuple[torch.Tensor, ...]:
        src = example_ids(batch, source, vocab, batch * 31 + source)
        tgt_in = example_ids(batch, target, vocab, batch * 17 + target, padded=False)
        tgt_in[:, 0] = BOS_ID
        with torch.inference_mode():
            memory = encoder(src)
        return memory, src, tgt_in

    batch, source, target = (torch.export.Dim(name) for name in ("batch", "source_length", "target_length"))
    graphs = [(encoder, encoder_inputs, ["source_ids"], ["memory"], ({0: batch, 1: source},), paths["encoder"]),
              (decoder, decoder_inputs, ["memory", "source_ids", "target_ids"], ["logits"],
               ({0: batch, 1: source}, {0: batch, 1: source}, {0: batch, 1: target}), paths["decoder"])]
    largest = 0.0
    temporary = [path.with_name(f".{path.name}.{os.getpid()}.tmp") for *_, path in graphs]
    try:
        for (graph, inputs, input_names, output_names, dynamic, _), written in zip(graphs, temporary):
            example = inputs(*CHECKS[1])
            if fmt == "onnx":
                write_graph_onnx(graph, example, written, input_names, output_names, dynamic,
                                 metadata | {"dlx.graph": written.name})
                run = onnx_session(written)
            else:
                write_graph_torchscript(graph, example, written)
                run = torchscript_module(written)
            largest = max(largest, check_outputs(graph, run, [inputs(*sizes) for sizes in CHECKS], fmt))
        for written, (*_, path) in zip(temporary, graphs):
            os.replace(written, path)
    finally:
        for written in temporary:
            written.unlink(missing_ok=True)
    write_text_atomically(tokenizer, tokenizer_json)
    return ExportedPair(paths["encoder"], paths["decoder"], tokenizer, fmt, largest, len(CHECKS))


def example_ids(batch: int, length: int, vocab: int, seed: int, padded: bool = True) -> torch.Tensor:
    """(batch, length) token ids, the later rows ending in padding, as a batch of sources does."""
    ids = torch.randint(4, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))
    if padded:
        for row in range(1, batch):
            ids[row, max(1, length - row):] = PAD_ID
    return ids


def write_graph_onnx(graph: nn.Module, example: tuple[torch.Tensor, ...], path: Path, input_names: list[str],
                     output_names: list[str], dynamic: tuple[dict[int, Any], ...], metadata: dict[str, str]) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(graph, example, input_names=input_names, output_names=output_names,
                                        dynamic_shapes=dynamic, dynamo=True, verbose=False)
        assert program is not None  # with dynamo=True the exporter returns its program
        program.model.metadata_props.update(metadata)
        program.save(path, external_data=False)
    except Exception as err:  # the exporter's own errors are many; its first line says what it could not do
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DlxError(f"torch.onnx.export could not export the {type(graph).__name__.lower()}: {reason}. Try "
                       "--format torchscript.") from err


def write_graph_torchscript(graph: nn.Module, example: tuple[torch.Tensor, ...], path: Path) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.save(torch.jit.trace(graph, example, check_trace=False), str(path))
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DlxError(f"torch.jit.trace could not export the {type(graph).__name__.lower()}: {reason}. Try "
                       "--format onnx.") from err


Runner = Callable[..., torch.Tensor]


def onnx_session(path: Path) -> Runner:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [item.name for item in session.get_inputs()]
    return lambda *inputs: torch.from_numpy(session.run(None, {n: x.numpy() for n, x in zip(names, inputs)})[0])


def torchscript_module(path: Path) -> Runner:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.load(str(path), map_location="cpu")


@torch.inference_mode()
def check_outputs(graph: nn.Module, run: Runner, inputs: Sequence[tuple[torch.Tensor, ...]], fmt: str) -> float:
    largest = 0.0
    for example in inputs:
        expected = graph(*example).float()
        got = run(*example).float()
        if got.shape != expected.shape or not torch.allclose(got, expected, rtol=RTOL, atol=ATOL):
            difference = (got - expected).abs().max().item() if got.shape == expected.shape else float("nan")
            raise DlxError(f"The exported {fmt} {type(graph).__name__.lower()} does not give the checkpoint's "
                           f"outputs (shape {list(got.shape)} against {list(expected.shape)}, largest difference "
                           f"{difference:.3g}, tolerance {ATOL:g}): nothing was written. Please report it with the "
                           "model's config; the other format may export it faithfully.")
        largest = max(largest, (got - expected).abs().max().item())
    return largest


def print_exported_pair(exported: ExportedPair, checkpoint: Path) -> None:
    kind = "ONNX" if exported.format == "onnx" else "TorchScript"
    checker = "onnxruntime" if exported.format == "onnx" else "torch.jit.load"
    print(f"Exported {checkpoint} to two {kind} files and its tokenizer:\n"
          f"  encoder   {exported.encoder}: source_ids (batch, source_length) int64, 0-padded -> memory\n"
          f"  decoder   {exported.decoder}: memory, source_ids, target_ids (batch, target_length) int64 from [BOS] "
          "(id 2) -> logits (batch, target_length, vocab); stop at [EOS] (id 3)\n"
          f"  tokenizer {exported.tokenizer}: Hugging Face tokenizers JSON (Tokenizer.from_file), text <-> ids\n"
          f"Checked: run by {checker}, both files give the checkpoint's outputs on {exported.checked_inputs} inputs "
          f"each (largest difference {exported.max_difference:.2g}, tolerance {ATOL:g}).")

"""`dlx export CHECKPOINT --format onnx|torchscript`."""

from pathlib import Path
from typing import Optional

import typer

from dlx.cli.options import ALLOW_HELP, CONFIG_DIR_HELP, errors_reported


def export_command(
    checkpoint: Path = typer.Argument(..., help="A .ckpt file written by dlx train."),
    fmt: str = typer.Option("onnx", "--format", "-f", help="onnx or torchscript."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="The file to write; default beside the "
                                       "checkpoint (best.onnx, best.pt)."),
    allow: list[str] = typer.Option([], "--allow", help=ALLOW_HELP),
    config_dirs: list[Path] = typer.Option([], "--config-dir", "-cd", help=CONFIG_DIR_HELP),
) -> None:
    """Export a checkpoint's model to ONNX or TorchScript, checked to give the checkpoint's outputs.

    Image models take raw pixels in [0, 1]: the training normalisation is inside the exported graph. An
    encoder-decoder (model=seq2seq) exports its encoder and its decoder as two files, with its tokenizer."""
    from dlx.inspect.export import export_checkpoint, print_exported
    from dlx.inspect.export_seq2seq import ExportedPair, print_exported_pair

    with errors_reported():
        exported = export_checkpoint(checkpoint, fmt, out, allow, config_dirs)
    if isinstance(exported, ExportedPair):
        print_exported_pair(exported, checkpoint)
    else:
        print_exported(exported, checkpoint)

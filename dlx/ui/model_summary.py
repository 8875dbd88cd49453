"""The model summary shown when training starts: layers, output shapes, parameter counts and sizes, measured
by torchinfo with one forward pass of a single example; the full table is saved as model_summary.txt."""

from pathlib import Path
from typing import Any

import torch
from torch import nn

PRINTED_DEPTH = 2  # the console shows the top of the tree; the file has every layer


# (name, network, the size of the input it gets, or an example of it: token ids must be whole numbers)
Networks = list[tuple[str, nn.Module, tuple[int, ...] | torch.Tensor]]


def summarize(model: nn.Module, networks: Networks, device: str) -> list[tuple[str, Any]]:
    """(name, torchinfo statistics) for each of the model's `networks` (name, module, the input size it gets
    in training): the task knows them, e.g. a GAN's generator and discriminator."""
    import torchinfo

    was_training = model.training
    model.eval()  # batch norm in training mode would update its statistics (and refuses a batch of one)
    statistics = []
    for name, network, size in networks:
        given = {"input_data": size.to(device)} if isinstance(size, torch.Tensor) else {"input_size": size}
        # A summary must not change the run's random numbers (torchinfo draws its input on the device).
        with torch.random.fork_rng(devices=[torch.device(device)] if device.startswith("cuda") else []):
            statistics.append((name, torchinfo.summary(network, **given, device=device, verbose=0, depth=8,
                                                       col_names=("output_size", "num_params"))))
    model.train(was_training)
    return statistics


def summary_text(statistics: list[tuple[str, Any]]) -> str:
    """The full table of every network, as model_summary.txt holds it."""
    return "\n\n".join(f"{name}\n{stats}" for name, stats in statistics) + "\n"


def show(statistics: list[tuple[str, Any]], path: Path, console: Any) -> None:
    """The top of each network's table on the console, and where the full one (`path`) is."""
    from rich.table import Table

    from dlx.ui.console import wide_console

    console = console or wide_console()  # plain text in a CI log

    for name, stats in statistics:
        table = Table(title=f"{name}: {stats.total_params:,} parameters ({stats.trainable_params:,} trainable), "
                            f"{megabytes(stats.total_param_bytes)} of weights, "
                            f"{megabytes(stats.total_output_bytes)} of activations per example",
                      title_justify="left")
        for column in ("layer", "output shape", "parameters"):
            table.add_column(column, justify="right" if column == "parameters" else "left")
        for layer in stats.summary_list:
            if layer.depth <= PRINTED_DEPTH:
                params = layer.num_params_to_str(reached_max_depth=layer.depth == PRINTED_DEPTH)
                table.add_row("  " * layer.depth + layer.class_name, str(layer.output_size), params)
        console.print(table)
    console.print(f"Full model summary: {path}")


def megabytes(count: int) -> str:
    return f"{count / 1e6:.2f} MB"

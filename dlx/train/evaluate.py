"""Evaluation in fixed batches, so that the same weights always give the same numbers; the metric that
chooses the best checkpoint; mixed precision as a context."""

import contextlib
import math

import torch
from torch import nn

from dlx.data import Split
from dlx.parallel.world import World
from dlx.train.tasks import Task


def autocast(device: str, precision: str) -> contextlib.AbstractContextManager:
    """bf16-mixed: matrix products and convolutions in bfloat16, weights, losses and reductions in float32.
    At 32 bits, a context that does nothing (entering a disabled torch.autocast still costs each step)."""
    if precision != "bf16-mixed":
        return contextlib.nullcontext()
    return torch.autocast(device.split(":")[0], dtype=torch.bfloat16)


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    task: Task,
    split: Split,
    batch_size: int,
    max_batches: int | None = None,
    mixed_precision: contextlib.AbstractContextManager | None = None,
    world: World = World(),
) -> dict[str, float]:
    """The split's metrics (prepared by the task, on the device), in fixed batches, so that the same weights always
    give the same numbers: eval_batch()'s sums over all batches, divided by the number of samples, then summarized
    by the task (a perplexity from the mean loss, a root mean squared error from the mean squared error).

    With several ranks, rank r evaluates batches r, r + world.size, ...; the batches' sums are then added up in
    batch order, as a single process adds them, so that `dlx eval` later finds exactly the same numbers."""
    was_training = model.training
    model.eval()
    num_batches = math.ceil(len(split) / batch_size)
    if max_batches is not None:
        num_batches = min(num_batches, max_batches)
    names: list[str] = []  # the sums eval_batch() returns, in its order
    batch_sums: list[torch.Tensor] = []  # (K,) per batch: the sum of each over the batch
    mine = range(world.rank, num_batches, world.size)
    ranges = [slice(index * batch_size, (index + 1) * batch_size) for index in mine]
    for batch_index, (xb, yb) in zip(mine, split.batches(ranges)):
        with mixed_precision or contextlib.nullcontext():
            sums = task.eval_batch(model, xb, yb, batch_index)
        names = names or list(sums)
        # float32: counts stay exact up to 2**24 samples; float64 does not exist on MPS
        batch_sums.append(torch.stack([sums[name].float() for name in names]))
    model.train(was_training)
    if world.size > 1:
        shares = world.gather((names, [row.cpu() for row in batch_sums]))
        names = next((share_names for share_names, _ in shares if share_names), names)
        batch_sums = [shares[index % world.size][1][index // world.size] for index in range(num_batches)]
    if not batch_sums:
        return {}
    total = batch_sums[0]
    for row in batch_sums[1:]:
        total = total + row
    count = min(len(split), num_batches * batch_size)
    return task.summarize({name: value / count for name, value in zip(names, total.tolist())})

"""dlx.data.InMemory: how a split held in memory is laid out and cut into batches."""

import numpy as np
import torch
from torch import nn

from dlx.data import CHUNK_VALUES, InMemory, image_splits, scaled


def idx_like_splits(count: int = 600):
    """uint8 images (N, 1, 28, 28) as the IDX reader gives them: a view of a file's bytes, a channel added."""
    generator = np.random.default_rng(0)
    images = generator.integers(0, 256, (count, 28, 28), dtype=np.uint8)[:, None]
    labels = generator.integers(0, 10, count)
    return image_splits((images, labels), (images[:50], labels[:50]), 0.1, 0, [str(c) for c in range(10)])


def test_batches_of_one_channel_images_have_standard_strides() -> None:
    """numpy's fancy indexing (the validation hold-out) gives (N, 1, 28, 28) the strides (784, 1, 28, 1), which
    torch reads as channels-last: a convolution then ran the whole network channels-last, 1.5x slower."""
    data = idx_like_splits()
    assert data.train.x.stride()[1] != data.train.x.stride()[0]  # what the loader gives: not standard
    train = data.train.prepared(lambda x: x, "cpu", "memory")
    for x, _ in train.batches([slice(0, 64), torch.arange(64)]):  # evaluation's ranges, training's indices
        assert x.stride() == (784, 784, 28, 1)
        assert nn.Conv2d(1, 8, 3, padding=1)(x).is_contiguous()  # not channels-last


def test_batches_scaled_in_chunks_are_those_scaled_one_by_one() -> None:
    data = idx_like_splits(3000)
    mean, std = torch.tensor(data.pixel_mean).view(1, -1, 1, 1), torch.tensor(data.pixel_std).view(1, -1, 1, 1)
    normalise = lambda x: (x - mean).div_(std)  # noqa: E731  (the task's mapping)
    train = data.train.prepared(normalise, "cpu", "memory")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    size = 100
    indices = [order[begin : begin + size] for begin in range(0, len(order), size)]  # the last one smaller
    assert CHUNK_VALUES // (784 * size) < len(indices)  # several chunks, each of several batches
    batches = list(train.batches(indices))
    assert len(batches) == len(indices)
    for index, (x, y) in zip(indices, batches):
        assert torch.equal(x, normalise(scaled(train.x[index]))) and torch.equal(y, train.y[index])
    evaluation = list(train.batches([slice(0, 1000), slice(1000, 2000)]))
    assert torch.equal(evaluation[1][0], normalise(scaled(train.x[1000:2000])))
    assert isinstance(train, InMemory)

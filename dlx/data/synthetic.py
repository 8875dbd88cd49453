from collections.abc import Sequence

import numpy as np
import torch

from dlx.data import DataSplits, InMemory, hold_out


def load_synthetic(
    shape: Sequence[int] = (1, 8, 8),
    num_samples: int = 512,
    num_classes: int = 4,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    split_seed: int = 0,
) -> DataSplits:
    """Random inputs in [0, 1) labelled by a fixed random linear map, so there is something to learn.
    For smoke tests and timing: no files, any shape, any size."""
    generator = np.random.default_rng(split_seed)
    x = generator.random((num_samples, *shape), dtype=np.float32)
    projection = generator.standard_normal((int(np.prod(shape)), num_classes)).astype(np.float32)
    y = (x.reshape(num_samples, -1) - 0.5) @ projection
    labels = y.argmax(axis=1)
    x_rest, y_rest, x_test, y_test = hold_out(x, labels, test_fraction, split_seed, stratify=False)
    x_train, y_train, x_val, y_val = hold_out(x_rest, y_rest, val_fraction, split_seed, stratify=False)

    def tensors(a: np.ndarray, b: np.ndarray) -> InMemory:
        return InMemory(torch.from_numpy(a), torch.from_numpy(b).long())

    images = len(shape) == 3
    return DataSplits(
        train=tensors(x_train, y_train),
        val=tensors(x_val, y_val),
        test=tensors(x_test, y_test),
        class_names=[str(c) for c in range(num_classes)],
        # Uniform [0, 1) pixels: mean 0.5, std 1/sqrt(12).
        pixel_mean=[0.5] * shape[0] if images else None,
        pixel_std=[0.2887] * shape[0] if images else None,
    )

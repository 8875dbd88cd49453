"""Data sources. Each loader returns a DataSplits of in-memory tensors; see README "Bring your own data"."""

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

TaskKind = Literal["classification", "regression"]


@dataclass
class DataSplits:
    """Train, validation and test sets as (x, y) tensor pairs held in memory.

    Images are float32 in [0, 1] with shape (N, C, H, W) and `pixel_mean`/`pixel_std` per channel, measured
    on the training split; the task normalises each batch with them. Tabular features come already
    standardised. Classification targets are int64 class indices, regression targets float32 (N, T).
    """

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    task: TaskKind = "classification"
    class_names: list[str] = field(default_factory=list)
    pixel_mean: list[float] | None = None
    pixel_std: list[float] | None = None

    @property
    def input_shape(self) -> list[int]:
        return list(self.train[0].shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_targets(self) -> int:
        """Outputs the data asks of a model: one per class, or one per regression target."""
        if self.task == "classification":
            return self.num_classes
        return 1 if self.train[1].dim() == 1 else self.train[1].shape[1]

    @property
    def is_image(self) -> bool:
        return self.pixel_mean is not None


def hold_out(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int, stratify: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split (x, y) into a kept part and a held-out `fraction`, the same way for the same seed.

    Stratified for classification so that every class keeps its share in both parts. (A few lines of
    NumPy rather than scikit-learn's train_test_split, whose import alone costs most of a second.)
    """
    generator = np.random.default_rng(seed)
    groups = [np.flatnonzero(y == label) for label in np.unique(y)] if stratify else [np.arange(len(y))]
    held = [generator.permutation(group)[: round(len(group) * fraction)] for group in groups]
    out = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    keep = np.ones(len(y), dtype=bool)
    keep[out] = False
    return x[keep], y[keep], x[out], y[out]


def image_splits(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    val_fraction: float,
    split_seed: int,
    class_names: list[str],
    max_value: float = 255.0,
) -> DataSplits:
    """DataSplits from uint8-like images (N, C, H, W) and integer labels, validation held out of train."""
    x_train, y_train, x_val, y_val = hold_out(*train, val_fraction, split_seed, stratify=True)

    def tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.from_numpy(x.astype(np.float32)).div_(max_value)  # astype copies: IDX arrays are read-only
        return images, torch.from_numpy(np.asarray(y).astype(np.int64))

    train_t = tensors(x_train, y_train)
    mean = train_t[0].mean(dim=(0, 2, 3))
    std = train_t[0].std(dim=(0, 2, 3)).clamp_min(1e-6)
    return DataSplits(
        train=train_t,
        val=tensors(x_val, y_val),
        test=tensors(*test),
        task="classification",
        class_names=class_names,
        pixel_mean=mean.tolist(),
        pixel_std=std.tolist(),
    )

"""Data sources. Each loader returns a DataSplits whose splits are held in memory (InMemory) or read from files
batch by batch (dlx.data.streamed.Streamed); see README "Your own data"."""

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch

TaskKind = Literal["classification", "regression", "forecasting", "language_model", "seq2seq"]
Batch = tuple[torch.Tensor, torch.Tensor]
BatchIndex = torch.Tensor | slice  # the samples of one batch: indices (training) or a range (evaluation)
CHUNK_VALUES = 1 << 20  # pixels scaled at once (4 MiB as float32): several small batches, one large one
Inputs = Callable[[torch.Tensor], torch.Tensor]  # raw inputs -> what the model sees (a task's `inputs`)


@dataclass(frozen=True)
class Loading:
    """How streamed splits are read: trainer.num_workers, pin_memory, persistent_workers, prefetch_factor."""

    num_workers: int = 0
    pin_memory: bool = False
    persistent_workers: bool = True
    prefetch_factor: int = 2


class Split(Protocol):
    """One split as the loop and evaluation read it: its size, and its batches in the order asked for."""

    def __len__(self) -> int: ...

    @property
    def sample_shape(self) -> list[int]: ...

    def batches(self, indices: Sequence[BatchIndex]) -> Iterator[Batch]:
        """(x, y) for each batch of sample indices, in order: the same samples give the same numbers."""

    def prepared(self, inputs: Inputs, device: str, loading: Loading) -> "Split":
        """This split as the model sees it: on `device`, its inputs mapped by `inputs`."""

    def labels(self) -> torch.Tensor:
        """Every target of the split, in sample order (small: one value per sample)."""


def cache_folder(cache_dir: str | None, kind: str) -> Path:
    """Where a loader keeps what it decoded or encoded for the next run: dataset.cache_dir, or the user's cache
    folder, $XDG_CACHE_HOME/dlx/KIND (~/.cache/dlx/KIND)."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dlx" / kind


def scaled(x: torch.Tensor) -> torch.Tensor:
    """Inputs as numbers: uint8 pixels scaled to [0, 1] by the one float32 division every image path makes (so a
    byte gives the same number whichever path read it); anything else as it is."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


@dataclass
class InMemory:
    """A split held as two tensors: inputs (N, ...) and targets (N,) or (N, T).

    Images are held as they arrive when that is uint8 pixels (IDX files, image folders, CIFAR): a quarter of the
    memory of float32. Each batch is then scaled to [0, 1] (dlx.data.scaled) and, once prepared, mapped by the
    task's `inputs`, on the device; other inputs are mapped once, whole. The same numbers either way: the
    mapping is element-wise."""

    x: torch.Tensor
    y: torch.Tensor
    inputs: Inputs | None = None  # uint8 pixels, prepared: the task's mapping, which each batch goes through

    def __len__(self) -> int:
        return len(self.x)

    @property
    def sample_shape(self) -> list[int]:
        return list(self.x.shape[1:])

    def batches(self, indices: Sequence[BatchIndex]) -> Iterator[Batch]:
        if self.x.dtype != torch.uint8:
            return ((rows(self.x, index), rows(self.y, index)) for index in indices)
        return self.scaled_batches(indices)

    def scaled_batches(self, indices: Sequence[BatchIndex]) -> Iterator[Batch]:
        """Batches of uint8 pixels, scaled and mapped several at a time (up to CHUNK_VALUES values): the same
        numbers, as the mapping is element-wise, for a fraction of the operations. Gathering, converting,
        scaling and normalising took four operations per batch, a tenth of an FFN's step on MNIST."""
        inputs = self.inputs or (lambda x: x)
        tensors = [index for index in indices if isinstance(index, torch.Tensor)]
        if not tensors or len(tensors) < len(indices):  # evaluation's ranges: large batches already
            yield from ((inputs(scaled(rows(self.x, index))), rows(self.y, index)) for index in indices)
            return
        per_chunk = max(1, CHUNK_VALUES // (self.x[:1].numel() * len(tensors[0])))
        for start in range(0, len(tensors), per_chunk):
            chunk = tensors[start : start + per_chunk]
            sizes = [len(index) for index in chunk]
            index = torch.cat(chunk)
            yield from zip(inputs(scaled(rows(self.x, index))).split(sizes), rows(self.y, index).split(sizes))

    def prepared(self, inputs: Inputs, device: str, loading: Loading) -> "InMemory":
        x = standard_strides(self.x.to(device))
        if x.dtype == torch.uint8:
            return InMemory(x, self.y.to(device), inputs)
        return InMemory(inputs(x), self.y.to(device))

    def labels(self) -> torch.Tensor:
        return self.y


def rows(tensor: torch.Tensor, index: BatchIndex) -> torch.Tensor:
    """The rows of one batch. index_select, not tensor[index]: advanced indexing's general machinery cost 26 of the
    34 microseconds it took to gather a batch of 100 MNIST images on the CPU (index_select: 8)."""
    return tensor[index] if isinstance(index, slice) else torch.index_select(tensor, 0, index)


def standard_strides(x: torch.Tensor) -> torch.Tensor:
    """`x` laid out as a new tensor of its shape is. A dimension of size 1 may have any stride: numpy gives MNIST's
    images, (N, 1, 28, 28) picked out by fancy indexing, the strides (784, 1, 28, 1), which torch reads as
    channels-last. Slices of the split keep them (and batches gathered with x[index] did), a convolution follows
    its input's layout, and the whole network then ran channels-last: 1.5x slower on oneDNN, whose batch norm
    kernels for that layout parallelise poorly (bench/RESULTS.md)."""
    if x.stride() == torch.empty(x.shape, device="meta").stride():
        return x
    return torch.empty_like(x, memory_format=torch.contiguous_format).copy_(x)


def as_split(split: "Split | tuple[torch.Tensor, torch.Tensor]") -> Split:
    """A loader's split: a Split already, or an (x, y) pair of tensors (what loaders written for dlx 0.x return)."""
    if isinstance(split, tuple):
        return InMemory(*split)
    return split


@dataclass
class DataSplits:
    """Train, validation and test splits, and what a model and `dlx predict` need to know of them.

    Images have shape (N, C, H, W), as uint8 pixels (0..255, scaled to [0, 1] batch by batch: dlx.data.scaled)
    or float32 in [0, 1], and `pixel_mean`/`pixel_std` per channel, measured on the training split in [0, 1];
    the task normalises with them. Text is int64 token ids (N, length), padded with 0, with
    the `tokenizer` that made them. Tabular features come already standardised, with
    `preprocessing` recording how (plain values, saved in every checkpoint, so that new rows are treated as
    training's were). Classification targets are int64 class indices, regression targets float32 (N, T).
    """

    train: Split
    val: Split
    test: Split
    task: TaskKind = "classification"
    class_names: list[str] = field(default_factory=list)
    pixel_mean: list[float] | None = None
    pixel_std: list[float] | None = None
    preprocessing: dict[str, Any] | None = None  # a table's columns, statistics and categories
    tokenizer: str | None = None  # text: the tokenizer learnt from the training split, as its JSON (dlx.data.tokens)

    def __post_init__(self) -> None:
        self.train, self.val, self.test = (as_split(s) for s in (self.train, self.val, self.test))

    @property
    def input_shape(self) -> list[int]:
        return self.train.sample_shape

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_targets(self) -> int:
        """Outputs the data asks of a model: one per class, or one per regression target."""
        if self.task == "classification":
            return self.num_classes
        labels = self.train.labels()
        return 1 if labels.dim() == 1 else labels.shape[1]

    @property
    def vocab_size(self) -> int | None:
        """Text: the number of token ids the tokenizer gives, special tokens included (a model's embedding rows)."""
        if self.tokenizer is None:
            return None
        from dlx.data.tokens import tokenizer_from_json

        return int(tokenizer_from_json(self.tokenizer, "the data set").get_vocab_size())

    @property
    def target_length(self) -> int | None:
        """Seq2seq: the width of the target rows ([BOS] tokens [EOS], padded), the longest target a decoder writes."""
        if self.task != "seq2seq":
            return None
        return int(self.train.labels().shape[1])

    @property
    def is_image(self) -> bool:
        return self.pixel_mean is not None

    def split(self, name: str) -> Split:
        return {"train": self.train, "val": self.val, "test": self.test}[name]


def hold_out(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int, stratify: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split (x, y) into a kept part and a held-out `fraction`, the same way for the same seed.

    Stratified for classification so that every class keeps its share in both parts. (A few lines of
    NumPy rather than scikit-learn's train_test_split, whose import alone costs most of a second.)
    """
    generator = np.random.default_rng(seed)
    groups = [np.flatnonzero(y == label) for label in distinct(y)] if stratify else [np.arange(len(y))]
    held = [generator.permutation(group)[: round(len(group) * fraction)] for group in groups]
    out = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    keep = np.ones(len(y), dtype=bool)
    keep[out] = False
    return x[keep], y[keep], x[out], y[out]


def distinct(y: np.ndarray) -> np.ndarray:
    """np.unique(y): the sorted distinct values; for class indices (small non-negative integers) by counting them,
    ten times faster than np.unique's hashing on a million labels."""
    if y.ndim == 1 and y.dtype.kind in "iu" and len(y) and 0 <= y.min() and y.max() < 1 << 20:
        return np.flatnonzero(np.bincount(y)).astype(y.dtype)
    return np.unique(y)


def image_splits(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    val_fraction: float,
    split_seed: int,
    class_names: list[str],
    max_value: float = 255.0,
) -> DataSplits:
    """DataSplits from images (N, C, H, W) of values 0..max_value and integer labels, validation held out of
    train. uint8 pixels (max_value 255) are kept as they are (InMemory scales them batch by batch); others
    become float32 in [0, 1]."""
    x_train, y_train, x_val, y_val = hold_out(*train, val_fraction, split_seed, stratify=True)
    pixels = max_value == 255 and np.asarray(train[0]).dtype == np.uint8

    def tensors(x: np.ndarray, y: np.ndarray) -> InMemory:
        # Both copy (IDX arrays are read-only views of the file's bytes).
        images = torch.tensor(x) if pixels else torch.from_numpy(x.astype(np.float32)).div_(max_value)
        return InMemory(images, torch.from_numpy(np.asarray(y).astype(np.int64)))

    train_t = tensors(x_train, y_train)
    # Measured on the float32 values the model's inputs are made of, as they always were, so that the statistics
    # (which checkpoints record, and `dlx eval` compares) stay the same to the last bit; the copy is then freed.
    values = scaled(train_t.x)
    mean = values.mean(dim=(0, 2, 3))
    std = values.std(dim=(0, 2, 3)).clamp_min(1e-6)
    del values
    return DataSplits(
        train=train_t,
        val=tensors(x_val, y_val),
        test=tensors(*test),
        task="classification",
        class_names=class_names,
        pixel_mean=mean.tolist(),
        pixel_std=std.tolist(),
    )

"""`dataset=image_folder dataset.root=PATH`: a folder of image files, one sub-folder per class
(dlx.data.class_folders: ROOT/cat/0001.jpg, ...; or ROOT/train/cat/..., ROOT/val/..., ROOT/test/...).

Every image is read by dlx.data.images (EXIF orientation, 16-bit, transparency) to `channels` x `image_size`:
by default the size and mode all the images share. The training split's per-channel mean and standard
deviation are measured on (up to STATS_SAMPLE of) its images and saved in each checkpoint, so `dlx predict`
and `dlx export` prepare new images the same way.

In memory (the fast path), the decoded images are kept on disk as one uint8 array per folder state (file
names, sizes and modification times), so a second run of the same folder does not decode again. Streamed
(dataset.in_memory=false, or auto when the decoded images would not fit), DataLoader workers read the files
of each batch (dlx.data.streamed).
"""

import hashlib
import json
import logging
import os
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dlx.data import DataSplits, InMemory, Split, cache_folder
from dlx.data.class_folders import FileKind, LabelledFile, Layout, scan_class_folders, split_indices
from dlx.data.images import IMAGE_SUFFIXES, BadImage, Header, read_header, read_image
from dlx.data.memory import choose_in_memory
from dlx.data.streamed import Streamed, ignore_stop_signals, own_generator
from dlx.errors import DlxError
from dlx.store.files import atomic_file, read_json, write_json_atomically

logger = logging.getLogger("dlx")

STATS_SAMPLE = 5000  # training images the channel statistics are measured on: plenty for a mean to 3 digits
CACHE_FORMAT = 1  # bump when what the cache holds, or how images are decoded, changes
DECODE_BATCH = 256
SKIP_ADVICE = (" Replace or delete the file, or pass dataset.skip_bad_files=true to leave out the files that cannot "
               "be read (they are counted in the log and listed in the cache folder's bad_files.txt).")


def load_image_folder(root: str, image_size: Any = None, channels: int | None = None, val_fraction: float = 0.1,
                      test_fraction: float = 0.1, split_seed: int = 0, in_memory: Any = "auto",
                      skip_bad_files: bool = False, cache_dir: str | None = None) -> DataSplits:
    """The images under `root` as train, validation and test splits; see the module's docstring."""
    started = time.perf_counter()
    layout = scan_folder(Path(root).expanduser())
    cache = Cache(cache_folder(cache_dir, "image_folder"), layout)
    headers = cache.headers(layout, skip_bad_files)
    files = [each for each, header in zip(layout.files, headers) if header is not None]
    (height, width), channels = choose_shape([h for h in headers if h is not None], files, image_size, channels)
    reader = FileImages([str(each.path) for each in files], channels, height, width)
    pixels = None
    pixel_count = len(files) * channels * height * width
    # As held, uint8: the decoded array and the splits' copies of it (each batch is scaled on its own).
    if choose_in_memory(in_memory, 2 * pixel_count, "the decoded images", "streaming them from the files"):
        pixels, bad = cache.decoded(reader, skip_bad_files)
    else:  # a damaged file found only while training would stop the run: with skip_bad_files, look first
        bad = cache.undecodable(reader) if skip_bad_files else []
    if bad:
        keep = np.setdiff1d(np.arange(len(files)), bad)
        files, reader = [files[i] for i in keep], FileImages([reader.paths[i] for i in keep], channels, height, width)
        pixels = None if pixels is None else pixels[keep]
    if len(files) < len(layout.files):
        cache.list_bad(sorted({str(f.path) for f in layout.files} - set(reader.paths)))
        logger.info(f"dataset.skip_bad_files=true: left out {len(layout.files) - len(files):,} image file(s) that "
                    f"cannot be read (listed in {cache.folder / 'bad_files.txt'})")
    splits = split_indices(files, layout, val_fraction, test_fraction, split_seed)
    labels = torch.tensor([each.label for each in files], dtype=torch.int64)
    sample = stats_sample(splits["train"], split_seed)
    if pixels is not None:
        decoded = pixels
        parts: dict[str, Split] = {name: in_memory_split(decoded, labels, index) for name, index in splits.items()}
        mean, std = channel_statistics(lambda index: decoded[index], sample)
    else:
        parts = {name: streamed_split(reader, labels, index) for name, index in splits.items()}
        mean, std = cache.statistics(reader, sample)
    log_ready(layout, reader, "streamed from the files" if pixels is None else "in memory (decoded images from the "
              "cache)" if cache.hit else "in memory (decoded now, and cached)", time.perf_counter() - started)
    return DataSplits(train=parts["train"], val=parts["val"], test=parts["test"], task="classification",
                      class_names=layout.class_names, pixel_mean=mean, pixel_std=std)


def log_ready(layout: Layout, reader: "FileImages", where: str, seconds: float) -> None:
    mode = "grey" if reader.channels == 1 else "RGB"
    ignored = f"; {layout.ignored:,} other file(s) ignored" if layout.ignored else ""
    logger.info(f"Image folder {layout.root}: {len(reader):,} images of {len(layout.class_names)} classes, read as "
                f"{reader.channels}x{reader.height}x{reader.width} ({mode}), {where}, ready in {seconds:.2f} s"
                f"{ignored}")


IMAGES = FileKind("image files", IMAGE_SUFFIXES, "dataset.root", "1.jpg")


def scan_folder(root: Path) -> Layout:
    if root.is_file():
        raise DlxError(f"dataset.root={root} is a file, not a folder. dataset=image_folder reads a folder with one "
                       "sub-folder of images per class; for a table (CSV, TSV, Parquet) use dataset=table "
                       f"dataset.path={root}.")
    return scan_class_folders(root, IMAGES)


def choose_shape(headers: list[Header], files: list[LabelledFile], image_size: Any,
                 channels: int | None) -> tuple[tuple[int, int], int]:
    """(height, width) and channels: the ones asked for, or those that every image shares."""
    if channels is not None and channels not in (1, 3):
        raise DlxError(f"dataset.channels={channels}: images are read as 1 channel (grey) or 3 (RGB).")
    size = parse_size(image_size)
    sizes = Counter((h.height, h.width) for h in headers)
    modes = Counter(h.channels for h in headers)
    problems = []
    if size is None and len(sizes) > 1:
        (common, count), = sizes.most_common(1)
        odd = next(f.path for f, h in zip(files, headers) if (h.height, h.width) != common)
        problems.append(f"sizes: {count:,} of {len(headers):,} images are {common[0]}x{common[1]} (height x width), "
                        f"the others {len(sizes) - 1} other size(s), e.g. {odd}")
        suggestion = f"dataset.image_size={common[0]}" if common[0] == common[1] else \
            f"dataset.image_size=[{common[0]},{common[1]}]"
    if channels is None and len(modes) > 1:
        common_channels = modes.most_common(1)[0][0]
        odd = next(f.path for f, h in zip(files, headers) if h.channels != common_channels)
        problems.append(f"modes: {modes[3]:,} colour and {modes[1]:,} grey images, e.g. {odd}")
    if problems:
        fixes = []
        if size is None and len(sizes) > 1:
            fixes.append(suggestion)
        if channels is None and len(modes) > 1:
            fixes.append(f"dataset.channels={modes.most_common(1)[0][0]}")
        raise DlxError(f"The images of {files[0].path.parents[1]} differ in {'; and in '.join(problems)}. Say what "
                       f"the model should get, and every image will be resized and converted to it: "
                       f"{' '.join(fixes)} (the most common), or remove the odd images.")
    if size is None:
        size = next(iter(sizes))
    if channels is None:
        channels = next(iter(modes))
    return size, channels


def parse_size(image_size: Any) -> tuple[int, int] | None:
    """dataset.image_size: null (the images' own), N (square) or [height, width]."""
    if image_size is None or image_size == "auto":
        return None
    values = [image_size] if isinstance(image_size, int) else list(image_size) if isinstance(image_size, (list, tuple)) \
        else None
    if values is None or len(values) not in (1, 2) or not all(isinstance(v, int) and v > 0 for v in values):
        raise DlxError(f"dataset.image_size={image_size}: give one positive number of pixels (a square, e.g. 64) or "
                       "[height,width], e.g. dataset.image_size=[48,64].")
    return (values[0], values[-1])


class FileImages(Dataset):
    """Image files read one by one as (C, H, W) uint8 tensors, with their index (the label comes from the
    split). Plain values only, so DataLoader workers receive it however they start."""

    def __init__(self, paths: list[str], channels: int, height: int, width: int) -> None:
        self.paths = paths
        self.channels, self.height, self.width = channels, height, width

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(read_image(Path(self.paths[index]), self.channels, self.height, self.width)), index


class SplitOf(Dataset):
    """A split's samples of a FileImages: (pixels, label) of the split's i-th image."""

    def __init__(self, images: FileImages, labels: torch.Tensor, index: np.ndarray) -> None:
        self.images, self.labels, self.index = images, labels, index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        pixels, file_index = self.images[int(self.index[i])]
        return pixels, int(self.labels[file_index])


def in_memory_split(pixels: np.ndarray, labels: torch.Tensor, index: np.ndarray) -> InMemory:
    # uint8, scaled batch by batch as dlx.data.streamed scales a streamed batch: the same numbers either way.
    x = torch.from_numpy(np.ascontiguousarray(pixels[index]))
    return InMemory(x, labels[torch.from_numpy(index)])


def streamed_split(reader: FileImages, labels: torch.Tensor, index: np.ndarray) -> Streamed:
    def error(message: str) -> DlxError:
        return DlxError(f"{message} It was found while training (a streamed data set is read as it trains). "
                        "Replace or delete the file, or pass dataset.skip_bad_files=true to check every file "
                        "before training and leave out those that cannot be read.")

    return Streamed(SplitOf(reader, labels, index), labels[torch.from_numpy(index)],
                    [reader.channels, reader.height, reader.width], error)


def stats_sample(train: np.ndarray, seed: int) -> np.ndarray:
    """The training images the channel statistics come from: all, or STATS_SAMPLE drawn with the split seed."""
    if len(train) <= STATS_SAMPLE:
        return train
    return np.sort(np.random.default_rng(seed).choice(train, STATS_SAMPLE, replace=False))


def channel_statistics(images_at: Any, index: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of pixels in [0, 1], exact: from the counts of each uint8 value
    (so the in-memory and the streamed path, which read the same images, find the same numbers)."""
    counts: np.ndarray | None = None
    for begin in range(0, len(index), DECODE_BATCH):
        batch = np.asarray(images_at(index[begin : begin + DECODE_BATCH]))  # (B, C, H, W) uint8
        channels = batch.shape[1]
        each = np.stack([np.bincount(batch[:, c].ravel(), minlength=256) for c in range(channels)])
        counts = each if counts is None else counts + each
    if counts is None:
        raise DlxError("The training split has no images: lower dataset.val_fraction and dataset.test_fraction.")
    values = np.arange(256, dtype=np.float64) / 255.0
    total = counts.sum(axis=1)
    mean = (counts * values).sum(axis=1) / total
    variance = (counts * (values[None, :] - mean[:, None]) ** 2).sum(axis=1) / np.maximum(total - 1, 1)
    return mean.tolist(), np.maximum(np.sqrt(variance), 1e-6).tolist()


def decode_all(reader: FileImages, index: np.ndarray, bad: list[int] | None = None, keep: bool = True) -> np.ndarray:
    """The images at `index` decoded to one (N, C, H, W) uint8 array (keep=False: only checked), by worker
    processes when there are many. An unreadable file raises; or, given a `bad` list, is left black and its
    position added to the list."""
    out = np.zeros((len(index) if keep else 0, reader.channels, reader.height, reader.width), dtype=np.uint8)
    workers = min(os.cpu_count() or 1, 8) if len(index) >= 2 * DECODE_BATCH else 0
    batches = [list(range(begin, min(begin + DECODE_BATCH, len(index))))
               for begin in range(0, len(index), DECODE_BATCH)]
    loader = DataLoader(Tolerant(reader, index), batch_sampler=batches, num_workers=workers, collate_fn=list,
                        generator=own_generator(), worker_init_fn=ignore_stop_signals)
    for positions, batch in zip(batches, loader):
        for position, sample in zip(positions, batch):
            if isinstance(sample, str):
                if bad is None:
                    raise BadImage(sample + SKIP_ADVICE)
                bad.append(position)
            elif keep:
                out[position] = sample
    return out


class Tolerant(Dataset):
    """FileImages at `index`, an unreadable file's message returned in place of its pixels."""

    def __init__(self, reader: FileImages, index: np.ndarray) -> None:
        self.reader, self.index = reader, index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> np.ndarray | str:
        try:
            return self.reader[int(self.index[i])][0].numpy()
        except BadImage as err:
            return str(err)


class Cache:
    """What reading a folder found, kept for the next run of the same folder state: each file's header, the
    decoded images of each size, the channel statistics. One sub-folder per state, keyed by the files' names,
    sizes and modification times; a changed folder gets a new one and the old one is removed."""

    def __init__(self, base: Path, layout: Layout) -> None:
        stats = [(str(f.path.relative_to(layout.root)), *file_stamp(f.path)) for f in layout.files]
        key = hashlib.sha256(json.dumps([CACHE_FORMAT, str(layout.root), stats]).encode()).hexdigest()[:20]
        self.base = base
        self.folder = base / key
        self.root = layout.root
        self.usable = self.make_folder()
        self.hit = False  # whether decoded() found the images decoded

    def make_folder(self) -> bool:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            logger.warning(f"Warning: no image cache ({err}); the images are decoded in every run. Set "
                           "dataset.cache_dir to a writable folder.")
            return False
        if not (self.folder / "root.txt").exists():
            self.remove_stale()
            self.write_bytes("root.txt", str(self.root).encode())
        return True

    def remove_stale(self) -> None:
        """Earlier states of this folder: they will not be read again."""
        for other in self.base.iterdir():
            root_file = other / "root.txt"
            if other != self.folder and root_file.is_file() and root_file.read_text() == str(self.root):
                shutil.rmtree(other, ignore_errors=True)

    def write_bytes(self, name: str, data: bytes) -> None:
        with atomic_file(self.folder / name) as file:
            file.write(data)

    def headers(self, layout: Layout, skip_bad_files: bool) -> list[Header | None]:
        """Each file's header, None for an unreadable one (with skip_bad_files; else it raises)."""
        path = self.folder / "headers.json"
        stored = read_json(path) if self.usable else None
        if stored is None:
            stored = {"headers": [header_or_error(f.path) for f in layout.files]}
            if self.usable:
                write_json_atomically(path, stored)
        headers: list[Header | None] = []
        for value in stored["headers"]:
            if isinstance(value, str) and not skip_bad_files:
                raise BadImage(value + SKIP_ADVICE)
            headers.append(None if isinstance(value, str) else Header(*value))
        return headers

    def list_bad(self, paths: list[str]) -> None:
        if self.usable:
            self.write_bytes("bad_files.txt", "".join(f"{path}\n" for path in paths).encode())

    def decoded(self, reader: FileImages, skip_bad_files: bool) -> tuple[np.ndarray, list[int]]:
        """Every image decoded, (N, C, H, W) uint8, and the positions of those that could not be (left black):
        from the cache, or decoded now and cached."""
        name = f"decoded-{reader.channels}x{reader.height}x{reader.width}"
        array, bad_list = self.folder / f"{name}.npy", self.folder / f"{name}.bad.json"
        if self.usable and array.is_file() and bad_list.is_file():
            try:
                stored = read_json(bad_list)
                pixels = np.load(array, mmap_mode="r")
                if stored is not None and pixels.shape == (len(reader), reader.channels, reader.height, reader.width):
                    self.hit = True
                    return self.checked(pixels, stored["bad"], skip_bad_files, reader)
            except (OSError, ValueError):
                pass
            logger.warning(f"Warning: the image cache {array} is damaged; decoding the images again")
        bad: list[int] = []
        pixels = decode_all(reader, np.arange(len(reader)), bad)
        if self.usable:
            with atomic_file(array) as file:
                np.save(file, pixels)
            write_json_atomically(bad_list, {"bad": bad})
        return self.checked(pixels, bad, skip_bad_files, reader)

    def undecodable(self, reader: FileImages) -> list[int]:
        """The positions of the files that cannot be decoded (decoding all once; then cached)."""
        path = self.folder / f"undecodable-{reader.channels}x{reader.height}x{reader.width}.json"
        stored = read_json(path) if self.usable else None
        if stored is None:
            bad: list[int] = []
            decode_all(reader, np.arange(len(reader)), bad, keep=False)
            stored = {"bad": bad}
            if self.usable:
                write_json_atomically(path, stored)
        return stored["bad"]

    @staticmethod
    def checked(pixels: np.ndarray, bad: list[int], skip_bad_files: bool, reader: FileImages
                ) -> tuple[np.ndarray, list[int]]:
        if bad and not skip_bad_files:
            try:  # read again for its message: the cache keeps positions only
                reader[bad[0]]
                message = f"{reader.paths[bad[0]]} cannot be decoded."
            except BadImage as err:
                message = str(err)
            others = f" ({len(bad) - 1} other file(s) of the folder cannot be read either.)" if len(bad) > 1 else ""
            raise BadImage(message + others + SKIP_ADVICE)
        return pixels, bad

    def statistics(self, reader: FileImages, sample: np.ndarray) -> tuple[list[float], list[float]]:
        """The channel statistics of the training sample (streamed data: decoded once, then cached)."""
        key = hashlib.sha256(sample.tobytes()).hexdigest()[:12]
        path = self.folder / f"statistics-{reader.channels}x{reader.height}x{reader.width}-{key}.json"
        stored = read_json(path) if self.usable else None
        if stored is None:
            pixels = decode_all(reader, sample)
            mean, std = channel_statistics(lambda index: pixels[index], np.arange(len(sample)))
            stored = {"mean": mean, "std": std}
            if self.usable:
                write_json_atomically(path, stored)
        return stored["mean"], stored["std"]


def header_or_error(path: Path) -> list[int] | str:
    try:
        header = read_header(path)
        return [header.width, header.height, header.channels]
    except BadImage as err:
        return str(err)


def file_stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


"""MNIST-format data: the IDX files as they are distributed (gzip or plain), read straight into memory.

A folder that holds the four files works as it is, for example Debian's dataset-fashion-mnist in
/usr/share/datasets/fashion-mnist; so does torchvision's download layout (ROOT/MNIST/raw/...).
"""

import gzip
from pathlib import Path

import numpy as np

from dlx.data import DataSplits, image_splits
from dlx.errors import DlxError

# The third byte of an IDX file's magic number names the element type (big-endian on disk).
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MNIST_CLASSES = [str(c) for c in range(10)]
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"
]
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def read_idx(path: Path) -> np.ndarray:
    """The array stored in one IDX file, checked against the sizes its header declares."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as err:
        raise DlxError(f"Cannot read the IDX file {path}: {err}. The file is damaged or not what its name says; "
                       "delete it and download or copy it again.") from err
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES:
        raise DlxError(f"{path} is not an IDX file: its magic number is {data[:4].hex() or 'missing'}, expected "
                       "00 00 <type> <dims>. Replace it with the original MNIST-format file.")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = tuple(int(d) for d in np.frombuffer(data[4:header], dtype=">u4"))
    dtype = np.dtype(IDX_TYPES[data[2]])
    expected = header + int(np.prod(dims)) * dtype.itemsize
    if len(dims) != ndim or len(data) < expected:
        raise DlxError(f"{path} is truncated or corrupt: its header declares shape {dims} ({expected} bytes) but "
                       f"the file holds {len(data)} bytes. Replace it with a complete copy.")
    if len(data) > expected:
        raise DlxError(f"{path} is longer than its header says: it declares shape {dims} ({expected:,} bytes), and "
                       f"{len(data) - expected:,} more bytes follow (files joined, or data appended). Replace it "
                       "with the original file.")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)


def find_idx_file(root: Path, name: str, folder: str) -> Path | None:
    for directory in (root, root / folder / "raw", root / folder):
        for candidate in (directory / f"{name}.gz", directory / name):
            if candidate.is_file():
                return candidate
    return None


def download_with_torchvision(root: Path, folder: str) -> None:
    import torchvision.datasets

    dataset_class = {"MNIST": torchvision.datasets.MNIST, "FashionMNIST": torchvision.datasets.FashionMNIST}[folder]
    try:
        for train in (True, False):
            dataset_class(str(root), train=train, download=True)
    except Exception as err:  # torchvision raises plain RuntimeError/URLError subclasses
        raise DlxError(f"Downloading {folder} into {root} failed: {err}. Check the network connection, or copy "
                       f"the four IDX .gz files into {root} yourself and run again with dataset.download=false.") from err


def load_idx_folder(root: str, download: bool, val_fraction: float, split_seed: int, folder: str,
                    class_names: list[str]) -> DataSplits:
    root_path = Path(root).expanduser()
    if root_path.is_file():
        raise DlxError(f"dataset.root={root} is a file, not a folder: name the folder that holds the four {folder} "
                       f"IDX files ({', '.join(FILES.values())}, .gz or plain).")
    paths = {key: find_idx_file(root_path, name, folder) for key, name in FILES.items()}
    if None in paths.values() and download:
        download_with_torchvision(root_path, folder)
        paths = {key: find_idx_file(root_path, name, folder) for key, name in FILES.items()}
    missing = [FILES[key] for key, path in paths.items() if path is None]
    if missing:
        hint = ""
        if folder == "FashionMNIST" and DEBIAN_FASHION.is_dir():
            hint = f" Fashion-MNIST is installed on this machine: pass dataset.root={DEBIAN_FASHION}."
        elif folder == "FashionMNIST":
            hint = f" On Debian/Ubuntu, `apt-get install dataset-fashion-mnist` puts them in {DEBIAN_FASHION}."
        raise DlxError(f"{folder} files not found under {root_path.resolve()}: missing {', '.join(missing)} "
                       f"(.gz or plain). Set dataset.root to the folder that holds them, or pass "
                       f"dataset.download=true to download them with torchvision (needs a network).{hint}")
    arrays = {key: read_idx(path) for key, path in paths.items() if path is not None}  # none is missing now
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DlxError(f"{paths[f'{split}_images']} and {paths[f'{split}_labels']} do not match: images "
                           f"{images.shape}, labels {labels.shape}. Expected (N, H, W) images and N labels.")
        if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < len(class_names):
            raise DlxError(f"{paths[f'{split}_labels']} holds labels from {labels.min()} to {labels.max()}, but "
                           f"{folder} has {len(class_names)} classes (0 to {len(class_names) - 1}). The file is "
                           "corrupt or belongs to another data set; replace it with the original.")
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise DlxError(f"The training and test images differ in size: {paths['train_images']} holds "
                       f"{'x'.join(map(str, arrays['train_images'].shape[1:]))} images, {paths['test_images']} "
                       f"{'x'.join(map(str, arrays['test_images'].shape[1:]))}. A model takes one size: the files "
                       "come from different data sets; replace them with the four files of one.")
    return image_splits(
        (arrays["train_images"][:, None], arrays["train_labels"]),
        (arrays["test_images"][:, None], arrays["test_labels"]),
        val_fraction,
        split_seed,
        class_names,
    )


def load_mnist(root: str = "data", download: bool = False, val_fraction: float = 0.1, split_seed: int = 0) -> DataSplits:
    """MNIST handwritten digits: 60,000 training and 10,000 test images, 28x28."""
    return load_idx_folder(root, download, val_fraction, split_seed, "MNIST", MNIST_CLASSES)


def load_fashion_mnist(
    root: str = "data", download: bool = False, val_fraction: float = 0.1, split_seed: int = 0
) -> DataSplits:
    """Zalando's Fashion-MNIST: ten kinds of clothing, same sizes and format as MNIST."""
    return load_idx_folder(root, download, val_fraction, split_seed, "FashionMNIST", FASHION_CLASSES)

"""CIFAR-10 through torchvision (which downloads it for users with a network)."""

from pathlib import Path

import numpy as np

from dlx.data import DataSplits, image_splits
from dlx.errors import DlxError


def load_cifar10(root: str = "data", download: bool = False, val_fraction: float = 0.1, split_seed: int = 0) -> DataSplits:
    """CIFAR-10 through torchvision: 50,000 training and 10,000 test colour images, 32x32, ten classes."""
    import torchvision.datasets

    root_path = Path(root).expanduser()
    try:
        train = torchvision.datasets.CIFAR10(str(root_path), train=True, download=download)
        test = torchvision.datasets.CIFAR10(str(root_path), train=False, download=download)
    except Exception as err:  # RuntimeError when absent or corrupt, URLError without a network
        raise DlxError(f"CIFAR-10 could not be loaded from {root_path.resolve()}: {err}. Set dataset.root to the "
                       "folder that holds cifar-10-batches-py, or pass dataset.download=true (needs a network).") from err

    def arrays(split) -> tuple[np.ndarray, np.ndarray]:
        return split.data.transpose(0, 3, 1, 2), np.asarray(split.targets)  # (N, H, W, C) -> (N, C, H, W)

    return image_splits(arrays(train), arrays(test), val_fraction, split_seed, list(train.classes))

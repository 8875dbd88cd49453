"""Small real data sets that scikit-learn ships inside its package: they work offline, in seconds."""

import importlib.util
from pathlib import Path

import numpy as np
import torch

from dlx.data import DataSplits, InMemory, hold_out, image_splits


def load_digits(val_fraction: float = 0.1, test_fraction: float = 0.2, split_seed: int = 0) -> DataSplits:
    """1,797 handwritten digits, 8x8 pixels with values 0..16, ten classes."""
    x, y = read_digits()
    x_train, y_train, x_test, y_test = hold_out(x, y, test_fraction, split_seed, stratify=True)
    return image_splits(
        (x_train, y_train), (x_test, y_test), val_fraction, split_seed, [str(c) for c in range(10)], max_value=16.0
    )


def read_digits() -> tuple[np.ndarray, np.ndarray]:
    """The digits as images (N, 1, 8, 8) and labels, read from the CSV file in scikit-learn's package: a few
    milliseconds, where importing sklearn.datasets takes more than a second of every run on the default data.
    Through scikit-learn's own loader if a release keeps the file elsewhere."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            table = np.loadtxt(path, delimiter=",")
            return table[:, :-1].reshape(-1, 1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn import datasets

    digits = datasets.load_digits()
    return digits.images.reshape(-1, 1, 8, 8), digits.target


def tabular_splits(
    x: np.ndarray,
    y: np.ndarray,
    val_fraction: float,
    test_fraction: float,
    split_seed: int,
    class_names: list[str] | None,
) -> DataSplits:
    """Test and validation held out, then features (and regression targets) standardised with the
    training split's statistics only, so nothing about val or test leaks into training."""
    classification = class_names is not None
    x_rest, y_rest, x_test, y_test = hold_out(x, y, test_fraction, split_seed, stratify=classification)
    x_train, y_train, x_val, y_val = hold_out(x_rest, y_rest, val_fraction, split_seed, stratify=classification)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-8

    def features(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy((a - mean) / std).float()

    if classification:
        def targets(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(a).long()
    else:
        y_mean, y_std = y_train.mean(), y_train.std() + 1e-8

        def targets(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy((a - y_mean) / y_std).float().unsqueeze(1)

    return DataSplits(
        train=InMemory(features(x_train), targets(y_train)),
        val=InMemory(features(x_val), targets(y_val)),
        test=InMemory(features(x_test), targets(y_test)),
        task="classification" if classification else "regression",
        class_names=class_names or [],
    )


def load_breast_cancer(val_fraction: float = 0.1, test_fraction: float = 0.2, split_seed: int = 0) -> DataSplits:
    """569 tumours described by 30 features, malignant or benign: the perceptron's binary task."""
    from sklearn import datasets

    data = datasets.load_breast_cancer()
    return tabular_splits(data.data, data.target, val_fraction, test_fraction, split_seed, list(data.target_names))


def load_diabetes(val_fraction: float = 0.1, test_fraction: float = 0.2, split_seed: int = 0) -> DataSplits:
    """442 patients, 10 features, disease progression after one year: regression with MSE.
    Targets are standardised, so an MSE of 1.0 is what predicting the mean would score."""
    from sklearn import datasets

    data = datasets.load_diabetes()
    return tabular_splits(data.data, data.target, val_fraction, test_fraction, split_seed, None)

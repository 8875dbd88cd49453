"""MNIST-format IDX files the test writes itself, read by the loaders and trained on through the CLI; damaged
IDX files; and checkpoints from strangers, which `dlx eval` must refuse without running anything in them."""

import gzip
import json
import pathlib
import pickle
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ENV, dlx, latest_run, summary_of

from dlx.data.idx import FASHION_CLASSES, MNIST_CLASSES, load_fashion_mnist, load_mnist
from dlx.errors import DlxError
from dlx.store.metrics import read_metrics

USER_ERROR = 2
N_TRAIN, N_TEST = 200, 50


# --- writing IDX files ----------------------------------------------------------------------------------------

def idx_bytes(array: np.ndarray) -> bytes:
    """uint8 array as an IDX file: magic 00 00 08 NDIM, big-endian u32 sizes, then the bytes (0x803 images, 0x801 labels)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx(path: Path, array: np.ndarray) -> None:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def learnable_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 28, 28) uint8: dim noise plus a bright 7x7 block whose position is the label, so an MLP learns it at once."""
    images = rng.integers(0, 60, size=(len(labels), 28, 28), dtype=np.uint8)
    for image, label in zip(images, labels):
        row, col = (label // 4) * 7, (label % 4) * 7
        image[row:row + 7, col:col + 7] = 255
    return images


def write_mnist_folder(folder: Path, compressed: bool, seed: int = 0) -> dict[str, np.ndarray]:
    """The four MNIST files in `folder`; returns the arrays written."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    suffix = ".gz" if compressed else ""
    arrays = {}
    for split, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(labels)
        images = learnable_images(labels, rng)
        write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", labels)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    return arrays


# --- the loaders ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("compressed", [True, False], ids=["gz", "plain"])
def test_load_mnist_reads_idx_files(tmp_path: Path, compressed: bool) -> None:
    written = write_mnist_folder(tmp_path, compressed)
    data = load_mnist(root=str(tmp_path), val_fraction=0.1)
    n_val = round(0.1 * N_TRAIN)
    assert data.train.x.shape == (N_TRAIN - n_val, 1, 28, 28)
    assert data.val.x.shape == (n_val, 1, 28, 28)
    assert data.test.x.shape == (N_TEST, 1, 28, 28)
    assert data.input_shape == [1, 28, 28] and data.class_names == MNIST_CLASSES
    for split in (data.train, data.val, data.test):
        # Held as the files hold them, one byte a pixel (a quarter of float32's memory); batches come out in [0, 1].
        assert split.x.dtype == torch.uint8 and split.y.dtype == torch.int64
        x, _ = next(split.batches([slice(0, len(split))]))
        assert x.dtype == torch.float32 and x.min() >= 0 and x.max() == 1.0  # 255 -> 1
        assert set(split.y.tolist()) == set(range(10))  # stratified: every class in every split
    # The test split is the t10k files, in order.
    assert torch.equal(data.test.x[:, 0], torch.from_numpy(written["t10k_images"]))
    assert data.test.y.tolist() == written["t10k_labels"].tolist()


def test_validation_is_held_out_of_train(tmp_path: Path) -> None:
    write_mnist_folder(tmp_path, compressed=True)
    data = load_mnist(root=str(tmp_path), val_fraction=0.25, split_seed=3)
    assert len(data.train.x) + len(data.val.x) == N_TRAIN and len(data.val.x) == N_TRAIN // 4
    train_images = {bytes(image.numpy()) for image in data.train.x}
    assert not any(bytes(image.numpy()) in train_images for image in data.val.x)
    all_train = load_mnist(root=str(tmp_path), val_fraction=0.0)
    assert len(all_train.train.x) == N_TRAIN and len(all_train.val.x) == 0
    # The same seed splits the same way; pixel statistics come from the training part only.
    again = load_mnist(root=str(tmp_path), val_fraction=0.25, split_seed=3)
    assert torch.equal(again.val.x, data.val.x)
    assert data.pixel_mean == pytest.approx([data.train.x.float().mean().item() / 255], rel=1e-5)


def test_load_fashion_mnist_from_torchvision_layout(tmp_path: Path) -> None:
    written = write_mnist_folder(tmp_path / "FashionMNIST" / "raw", compressed=True)
    data = load_fashion_mnist(root=str(tmp_path))
    assert data.class_names == FASHION_CLASSES
    assert len(data.train.x) + len(data.val.x) == N_TRAIN
    assert data.test.y.tolist() == written["t10k_labels"].tolist()


# --- end to end on the written files ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(working folder, run folder) of one epoch of an FFN on the learnable IDX files in torchvision's layout."""
    cwd = tmp_path_factory.mktemp("mnist")
    write_mnist_folder(cwd / "idx" / "MNIST" / "raw", compressed=True)
    dlx("train", "dataset=mnist", "dataset.root=idx", "model=ffn", "trainer.max_epochs=1", "trainer.batch_size=16",
        cwd=cwd)
    return cwd, latest_run(cwd)


@pytest.mark.slow
def test_train_and_eval_on_idx_files(mnist_run: tuple[Path, Path]) -> None:
    cwd, run = mnist_run
    summary = summary_of(run)
    assert summary["status"] == "completed"
    assert summary["choices"]["dataset"] == "mnist"
    assert summary["test"]["acc"] > 0.8, summary
    result = dlx("eval", str(run / "checkpoints" / "best.ckpt"), "--json", cwd=cwd)
    evaluated = json.loads(result.stdout)
    assert evaluated["dataset"] == "dlx.data.idx.load_mnist" and evaluated["samples"] == N_TEST
    assert evaluated["metrics"] == summary["test"]


FLOAT_LOADER = """import numpy as np
import torch

from dlx.data import InMemory
from dlx.data.idx import load_mnist


def as_float(split):
    # As dlx.data.image_splits made them before it kept uint8: float32 in [0, 1], normalised whole when prepared.
    return InMemory(torch.from_numpy(split.x.numpy().astype(np.float32)).div_(255.0), split.y)


def load_float_mnist(root):
    data = load_mnist(root=root)
    data.train, data.val, data.test = (as_float(split) for split in (data.train, data.val, data.test))
    return data
"""


def test_uint8_images_train_the_same_weights_as_float_images(tmp_path: Path) -> None:
    """Pixels held as uint8 and scaled and normalised batch by batch give the model the same numbers as the
    float32 split normalised whole: the same losses, the same weights to the last bit, 300 steps on."""
    rng = np.random.default_rng(1)
    labels = (np.arange(2000) % 10).astype(np.uint8)
    rng.shuffle(labels)
    folder = tmp_path / "idx"
    folder.mkdir()
    for split, images, split_labels in (("train", learnable_images(labels, rng), labels),
                                        ("t10k", learnable_images(labels[:300], rng), labels[:300])):
        images[:, 20:, :] = rng.integers(0, 256, size=(len(images), 8, 28), dtype=np.uint8)  # every byte value
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", split_labels)
    (tmp_path / "float_idx.py").write_text(FLOAT_LOADER)
    (tmp_path / "my_conf" / "dataset").mkdir(parents=True)
    (tmp_path / "my_conf" / "dataset" / "float_mnist.yaml").write_text("_target_: float_idx.load_float_mnist\nroot: idx\n")
    common = ["model=ffn", "model.hidden_sizes=[64]", "trainer.max_steps=300", "trainer.eval_every=100",
              "trainer.batch_size=50", "trainer.log_every=10"]
    dlx("train", "dataset=mnist", "dataset.root=idx", *common, "hydra.run.dir=uint8", cwd=tmp_path)
    dlx("train", "--config-dir", "my_conf", "dataset=float_mnist", *common, "hydra.run.dir=float", cwd=tmp_path)
    held = [torch.load(tmp_path / run / "checkpoints" / "last.ckpt", weights_only=True) for run in ("uint8", "float")]
    assert held[0]["data"]["pixel_mean"] == held[1]["data"]["pixel_mean"]
    assert held[0]["model"].keys() == held[1]["model"].keys()
    assert all(torch.equal(held[0]["model"][key], held[1]["model"][key]) for key in held[0]["model"])

    def rows(run: str) -> list[tuple]:
        return [(r["step"], r["split"], r.get("loss"), r.get("acc")) for r in read_metrics(tmp_path / run / "metrics.jsonl")]

    assert rows("uint8") == rows("float") and len(rows("uint8")) > 30


# --- damaged IDX files ------------------------------------------------------------------------------------------

def damage(folder: Path, how: str) -> Path:
    """Damage the (plain) train-images file in `folder`; return its path."""
    path = folder / "train-images-idx3-ubyte"
    data = path.read_bytes()
    if how == "magic":
        path.write_bytes(b"\x12\x34\x08\x03" + data[4:])
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "not_gzip":
        path.unlink()
        path = folder / "train-images-idx3-ubyte.gz"
        path.write_bytes(data)  # an IDX file named .gz, not compressed
    return path


DAMAGE = {"magic": "is not an IDX file", "truncated": "is truncated or corrupt", "not_gzip": "Cannot read the IDX file"}


@pytest.mark.parametrize("how", DAMAGE)
def test_damaged_idx_file_is_named_in_the_error(tmp_path: Path, how: str) -> None:
    write_mnist_folder(tmp_path, compressed=False)
    path = damage(tmp_path, how)
    with pytest.raises(DlxError) as caught:
        load_mnist(root=str(tmp_path))
    assert str(path) in str(caught.value)
    assert DAMAGE[how] in str(caught.value)


@pytest.mark.parametrize("how", ["magic", "truncated"])
def test_damaged_idx_file_through_the_cli(tmp_path: Path, how: str) -> None:
    write_mnist_folder(tmp_path / "idx", compressed=False)
    path = damage(tmp_path / "idx", how)
    result = dlx("train", "dataset=mnist", f"dataset.root={tmp_path / 'idx'}", "trainer.smoke=true", cwd=tmp_path,
                 expect=USER_ERROR)
    assert "Traceback" not in result.stderr
    assert str(path) in result.stderr and DAMAGE[how] in result.stderr


def test_images_and_labels_that_do_not_match(tmp_path: Path) -> None:
    write_mnist_folder(tmp_path, compressed=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(N_TEST - 1, dtype=np.uint8))
    with pytest.raises(DlxError, match="do not match") as caught:
        load_mnist(root=str(tmp_path))
    assert "t10k-labels-idx1-ubyte" in str(caught.value)


def test_labels_outside_the_classes_through_the_cli(tmp_path: Path) -> None:
    write_mnist_folder(tmp_path / "idx", compressed=False)
    write_idx(tmp_path / "idx" / "train-labels-idx1-ubyte", np.full(N_TRAIN, 12, dtype=np.uint8))
    result = dlx("train", "dataset=mnist", "dataset.root=idx", "trainer.smoke=true", cwd=tmp_path, expect=None)
    assert result.returncode == USER_ERROR and "Traceback" not in result.stderr
    assert "train-labels-idx1-ubyte" in result.stderr


# --- checkpoints from strangers --------------------------------------------------------------------------------

class TouchOnLoad:
    """Unpickling this creates `marker`: the smallest proof that loading ran code of the file's choosing."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (pathlib.Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def smoke_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The payload of a real smoke run's last.ckpt, as weights_only loading sees it."""
    folder = tmp_path_factory.mktemp("smoke")
    dlx("train", "trainer.smoke=true", cwd=folder)
    return torch.load(latest_run(folder) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def refused(path: Path, cwd: Path, *args: str) -> str:
    result = dlx("eval", str(path), *args, cwd=cwd, expect=USER_ERROR)
    assert "Traceback" not in result.stderr
    assert "Refused" in result.stderr, result.stderr
    return result.stderr


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_malicious_pickle_is_refused_without_running(tmp_path: Path, smoke_checkpoint: dict, writer: str) -> None:
    probe = tmp_path / "PROBE"
    pickle.loads(pickle.dumps(TouchOnLoad(probe)))  # the payload does run when unpickled freely
    assert probe.exists()
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.ckpt"
    if writer == "pickle":
        path.write_bytes(pickle.dumps({"format_version": 1, "config": {}, "extra": TouchOnLoad(marker)}))
    else:  # a zip checkpoint like dlx writes, with one malicious object among the real contents
        torch.save({**smoke_checkpoint, "extra": TouchOnLoad(marker)}, path)
    stderr = refused(path, tmp_path)
    assert "evil.ckpt" in stderr and "do not trust" in stderr
    assert not marker.exists()


def plant(checkpoint: dict, where: tuple[str, ...], target: str, args: list) -> dict:
    """A copy of checkpoint whose config names `target` at `where` (an existing node keeps its other keys)."""
    payload = {**checkpoint, "config": json.loads(json.dumps(checkpoint["config"]))}  # deep copy of plain values
    node = payload["config"]
    for key in where[:-1]:
        node = node.setdefault(key, {})
    node[where[-1]] = {**node.get(where[-1], {}), "_target_": target, "_args_": args}
    return payload


@pytest.mark.parametrize("where, target, args", [
    (("model",), "os.system", ["touch {marker}"]),
    (("model",), "builtins.exec", ["open('{marker}', 'w')"]),
    (("dataset", "transform"), "pathlib.Path.touch", ["{marker}"]),  # nested below a trusted target
    (("optimizer", "extra", "inner"), "builtins.eval", ["open('{marker}', 'w')"]),
], ids=["model-os.system", "model-exec", "dataset.transform", "optimizer.extra.inner"])
def test_config_naming_an_unknown_target_is_refused(tmp_path: Path, smoke_checkpoint: dict,
                                                    where: tuple[str, ...], target: str, args: list[str]) -> None:
    marker = tmp_path / "MARKER"
    payload = plant(smoke_checkpoint, where, target, [arg.format(marker=marker) for arg in args])
    torch.save(payload, tmp_path / "tampered.ckpt")
    stderr = refused(tmp_path / "tampered.ckpt", tmp_path)
    assert f'_target_="{target}" at "{".".join(where)}"' in stderr
    assert f"--allow {target}" in stderr
    assert not marker.exists()


def test_target_hidden_in_an_interpolation_is_refused(tmp_path: Path, smoke_checkpoint: dict) -> None:
    marker = tmp_path / "MARKER"
    hidden = f"${{oc.create:{{_target_: pathlib.Path.touch, self: {marker}}}}}"
    payload = plant(smoke_checkpoint, ("loss",), smoke_checkpoint["config"]["loss"]["_target_"], [hidden])
    torch.save(payload, tmp_path / "tampered.ckpt")
    result = dlx("eval", str(tmp_path / "tampered.ckpt"), cwd=tmp_path, expect=None)
    assert not marker.exists(), "evaluating the checkpoint ran pathlib.Path.touch"
    assert result.returncode == USER_ERROR and "Refused" in result.stderr


# --- your own model class: trusted only when you say so ----------------------------------------------------------

MY_MODELS = '''
from torch import nn


class MyNet(nn.Module):
    def __init__(self, input_shape: list[int], num_outputs: int, hidden: int = 16) -> None:
        super().__init__()
        width = 1
        for size in input_shape:
            width *= size
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, num_outputs))

    def forward(self, x):
        return self.layers(x)
'''


@pytest.fixture(scope="module")
def own_model_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(working folder with mymodels.py and my_conf/, run folder) of a smoke run of the user's MyNet."""
    cwd = tmp_path_factory.mktemp("own")
    (cwd / "mymodels.py").write_text(MY_MODELS)
    (cwd / "my_conf" / "model").mkdir(parents=True)
    (cwd / "my_conf" / "model" / "mynet.yaml").write_text("_target_: mymodels.MyNet\nhidden: 12\n")
    dlx("train", "--config-dir", "my_conf", "model=mynet", "trainer.smoke=true", cwd=cwd)
    run = latest_run(cwd)
    assert summary_of(run)["choices"]["model"] == "mynet"
    return cwd, run


def test_own_model_checkpoint_is_refused_without_allow(own_model_run: tuple[Path, Path]) -> None:
    cwd, run = own_model_run
    stderr = refused(run / "checkpoints" / "best.ckpt", cwd)
    assert '_target_="mymodels.MyNet"' in stderr and "--allow mymodels.MyNet" in stderr


@pytest.mark.parametrize("trust", [["--config-dir", "my_conf"], ["--allow", "mymodels.MyNet"]])
def test_own_model_evaluates_when_trusted(own_model_run: tuple[Path, Path], trust: list[str]) -> None:
    cwd, run = own_model_run
    result = dlx("eval", str(run / "checkpoints" / "best.ckpt"), *trust, "--json", cwd=cwd)
    evaluated = json.loads(result.stdout)
    assert evaluated["model"] == "mymodels.MyNet"
    assert evaluated["metrics"] == summary_of(run)["test"]


def test_console_script_imports_own_model_from_the_working_folder(own_model_run: tuple[Path, Path]) -> None:
    cwd, _ = own_model_run
    script = shutil.which("dlx")
    assert script is not None, "the dlx console script is not on PATH (pip install -e .)"
    result = subprocess.run([script, "train", "--config-dir", "my_conf", "model=mynet", "trainer.smoke=true"],
                            cwd=cwd, capture_output=True, text=True, timeout=300, env=ENV, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr


def test_digits_read_from_the_package_file_equal_scikit_learns_loader() -> None:
    from sklearn import datasets

    from dlx.data.sklearn_sets import read_digits

    images, labels = read_digits()
    digits = datasets.load_digits()
    assert np.array_equal(images, digits.images.reshape(-1, 1, 8, 8))
    assert np.array_equal(labels, digits.target)

"""dataset=image_folder through the real CLI, on folders of real image files written here with Pillow: it
learns, evaluates, predicts and resumes; streamed and in-memory runs train the same weights; a run killed with
SIGKILL while its DataLoader workers read resumes to bit-identical weights; two DDP processes share a streamed
folder; bad folders and files get their one-paragraph errors."""

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import dlx, start_dlx, summary_of, wait_for_step
from PIL import Image

from dlx.store.checkpoint import load_checkpoint

CLASSES = ("circle", "cross", "square")
SIZE = 16


def shape_image(kind: str, generator: np.random.Generator) -> np.ndarray:
    """A bright ring, cross or square, moved by a pixel or two, on dark noise: easy to learn, not trivial."""
    pixels = (generator.random((SIZE, SIZE)) * 70).astype(np.uint8)
    dy, dx = generator.integers(-2, 3, size=2)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    yy, xx = yy - 8 - dy, xx - 8 - dx
    mask = {"circle": (yy**2 + xx**2 > 9) & (yy**2 + xx**2 < 25), "cross": (abs(yy) < 1.5) | (abs(xx) < 1.5),
            "square": (abs(yy) < 4) & (abs(xx) < 4)}[kind]
    pixels[mask] = 200 + generator.integers(0, 50)
    return pixels


def write_folder(root: Path, per_class: int, seed: int = 0, suffix: str = ".png") -> Path:
    generator = np.random.default_rng(seed)
    for kind in CLASSES:
        (root / kind).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            Image.fromarray(shape_image(kind, generator)).save(root / kind / f"{index:04d}{suffix}")
    return root


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_folder(tmp_path_factory.mktemp("shapes") / "shapes", per_class=70)


def train_args(root: Path, *more: str) -> list[str]:
    return ["train", "dataset=image_folder", f"dataset.root={root}", "model=cnn", "model.channels=[8,16]",
            "trainer.batch_size=16", "trainer.max_epochs=8", "optimizer=adam", "optimizer.lr=0.01", *more]


def weights(run_dir: Path, name: str = "last.ckpt") -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / name)["model"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"


@pytest.fixture(scope="module")
def in_memory_run(shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("in_memory")
    dlx(*train_args(shapes, "dataset.in_memory=true", f"dataset.cache_dir={folder / 'cache'}", "hydra.run.dir=run"),
        cwd=folder)
    return folder / "run"


def test_an_image_folder_trains_evaluates_and_predicts(in_memory_run: Path, shapes: Path) -> None:
    summary = summary_of(in_memory_run)
    assert summary["status"] == "completed"
    assert summary["test"]["acc"] >= 0.9  # three classes: chance is 1/3
    log = (in_memory_run / "train.log").read_text()
    assert "210 images of 3 classes, read as 1x16x16 (grey), in memory (decoded now, and cached)" in log
    checkpoint = load_checkpoint(in_memory_run / "checkpoints" / "best.ckpt")
    assert checkpoint["data"]["class_names"] == list(CLASSES)
    assert checkpoint["data"]["input_shape"] == [1, SIZE, SIZE]
    assert 0.1 < checkpoint["data"]["pixel_mean"][0] < 0.5

    # dlx eval rebuilds the folder's splits from the stored config: the same test numbers, exactly.
    evaluated = json.loads(dlx("eval", str(in_memory_run / "checkpoints" / "best.ckpt"), "--json",
                               cwd=in_memory_run).stdout)
    assert evaluated["metrics"] == summary["test"]

    # dlx predict reads a file as the folder's images were read.
    predicted = json.loads(dlx("predict", str(in_memory_run / "checkpoints" / "best.ckpt"),
                               str(shapes / "cross" / "0003.png"), str(shapes / "circle" / "0007.png"), "--json",
                               cwd=in_memory_run).stdout)
    assert [row["class"] for row in predicted["predictions"]] == ["cross", "circle"]


def test_predict_reads_16_bit_images_as_the_folder_reader_does(in_memory_run: Path, shapes: Path,
                                                               tmp_path: Path) -> None:
    # The same cross at 16 bits: clipped to 8 bits (as Pillow's own conversion does) it would be all white.
    cross = np.asarray(Image.open(shapes / "cross" / "0003.png")).astype(np.uint16) * 257
    Image.fromarray(cross).save(tmp_path / "cross16.png")
    assert Image.open(tmp_path / "cross16.png").mode.startswith("I")
    predicted = json.loads(dlx("predict", str(in_memory_run / "checkpoints" / "best.ckpt"),
                               str(tmp_path / "cross16.png"), "--json", cwd=tmp_path).stdout)
    assert predicted["predictions"][0]["class"] == "cross"


def predicted_probabilities(checkpoint: Path, files: list[Path], cwd: Path) -> list[list[float]]:
    result = json.loads(dlx("predict", str(checkpoint), *map(str, files), "--json", "--top-k", "3", cwd=cwd).stdout)
    return [sorted((t["class"], t["probability"]) for t in row["top_k"]) for row in result["predictions"]]


def test_predict_turns_a_photo_upright_by_its_exif_orientation(in_memory_run: Path, shapes: Path,
                                                               tmp_path: Path) -> None:
    # A camera stores the pixels as the sensor saw them and says "rotate me" in EXIF: a viewer, the folder
    # reader and predict show the upright picture. The noise makes each of the shapes lopsided enough that
    # reading the pixels as stored would give other probabilities.
    upright = Image.open(shapes / "cross" / "0005.png")
    sideways = upright.transpose(Image.Transpose.ROTATE_90)  # stored turned; orientation 6 turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways.save(tmp_path / "sideways.png", exif=exif)  # PNG's eXIf chunk: lossless, so exactly the same pixels
    upright.save(tmp_path / "upright.png")
    sideways.save(tmp_path / "sideways_no_exif.png")
    rotated, straight, ignored = predicted_probabilities(in_memory_run / "checkpoints" / "best.ckpt", [
        tmp_path / "sideways.png", tmp_path / "upright.png", tmp_path / "sideways_no_exif.png"], tmp_path)
    assert rotated == pytest.approx(straight, abs=1e-6)
    assert rotated != pytest.approx(ignored, abs=0.02)


def test_predict_shows_transparent_pixels_as_a_viewer_does(in_memory_run: Path, shapes: Path, tmp_path: Path) -> None:
    # Transparent pixels hold whatever colour the program that wrote them left there (here the bright cross);
    # a viewer shows the page (white) through them. Reading the colour and dropping the alpha would show the
    # cross; composited over white the picture is the square.
    square = np.asarray(Image.open(shapes / "square" / "0002.png"))
    cross = np.asarray(Image.open(shapes / "cross" / "0002.png"))
    alpha = np.where(square > 150, 0, 255).astype(np.uint8)  # the square's bright pixels are see-through
    Image.fromarray(np.stack([cross, cross, cross, alpha], axis=-1), "RGBA").save(tmp_path / "transparent.png")
    composited = np.where(alpha == 0, 255, cross).astype(np.uint8)
    Image.fromarray(composited).save(tmp_path / "composited.png")
    Image.fromarray(cross).save(tmp_path / "alpha_dropped.png")
    transparent, on_white, dropped = predicted_probabilities(in_memory_run / "checkpoints" / "best.ckpt", [
        tmp_path / "transparent.png", tmp_path / "composited.png", tmp_path / "alpha_dropped.png"], tmp_path)
    assert transparent == pytest.approx(on_white, abs=1e-6)
    assert transparent != pytest.approx(dropped, abs=0.02)


def test_predict_refuses_a_decompression_bomb_in_a_paragraph(in_memory_run: Path, tmp_path: Path) -> None:
    Image.new("1", (20_000, 20_000)).save(tmp_path / "bomb.png")  # a few kB on disk, 400 million pixels
    result = dlx("predict", str(in_memory_run / "checkpoints" / "best.ckpt"), str(tmp_path / "bomb.png"),
                 cwd=tmp_path, expect=2)
    assert "decompression bomb" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_the_decoded_cache_is_reused_and_rebuilt_when_a_file_changes(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "data", per_class=12)
    cache = tmp_path / "cache"
    args = train_args(root, f"dataset.cache_dir={cache}", "trainer.max_epochs=1", "dataset.in_memory=true")
    dlx(*args, "hydra.run.dir=first", cwd=tmp_path)
    [state] = list(cache.iterdir())
    decoded = state / "decoded-1x16x16.npy"
    written = decoded.stat().st_mtime_ns
    dlx(*args, "hydra.run.dir=second", cwd=tmp_path)
    assert decoded.stat().st_mtime_ns == written  # read, not decoded again
    assert "in memory (decoded images from the cache)" in (tmp_path / "second" / "train.log").read_text()
    assert_same_weights(weights(tmp_path / "first"), weights(tmp_path / "second"))

    Image.fromarray(np.full((SIZE, SIZE), 255, np.uint8)).save(root / "cross" / "0000.png")  # a file changes
    dlx(*args, "hydra.run.dir=third", cwd=tmp_path)
    [new_state] = list(cache.iterdir())  # a new state, and the old one removed
    assert new_state != state and (new_state / "decoded-1x16x16.npy").is_file()


@pytest.mark.slow
def test_streamed_and_in_memory_train_the_same_weights(in_memory_run: Path, shapes: Path, tmp_path: Path) -> None:
    dlx(*train_args(shapes, "dataset.in_memory=false", "trainer.num_workers=2", f"dataset.cache_dir={tmp_path}",
                    "hydra.run.dir=streamed"), cwd=tmp_path)
    assert "streamed from the files" in (tmp_path / "streamed" / "train.log").read_text()
    assert_same_weights(weights(in_memory_run), weights(tmp_path / "streamed"))
    assert summary_of(tmp_path / "streamed")["test"] == summary_of(in_memory_run)["test"]
    # The streamed run's checkpoint evaluates to the same test numbers through dlx eval, streamed too.
    evaluated = json.loads(dlx("eval", str(tmp_path / "streamed" / "checkpoints" / "best.ckpt"), "--json",
                               cwd=tmp_path).stdout)
    assert evaluated["metrics"] == summary_of(in_memory_run)["test"]


@pytest.mark.slow
def test_sigkill_mid_epoch_with_workers_reading_then_resume_is_bit_identical(in_memory_run: Path, shapes: Path,
                                                                          tmp_path: Path) -> None:
    args = train_args(shapes, "dataset.in_memory=false", "trainer.num_workers=2", f"dataset.cache_dir={tmp_path}",
                      "trainer.checkpoint_every=3", "trainer.log_every=1", "hydra.run.dir=killed")
    process = start_dlx(args, tmp_path)
    wait_for_step(process, tmp_path / "killed" / "metrics.jsonl", 40)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    state = load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.ckpt")["state"]
    steps_per_epoch = 11  # 170 training images in batches of 16
    assert 36 <= state["step"] < 8 * steps_per_epoch and 0 < state["batch_in_epoch"] < steps_per_epoch

    dlx(*args, "trainer.resume=auto", cwd=tmp_path)
    assert_same_weights(weights(in_memory_run), weights(tmp_path / "killed"))


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_to_the_process_group_saves_and_says_how_to_resume(signal_number: int, shapes: Path,
                                                                       tmp_path: Path) -> None:
    # A terminal's Ctrl-C, or a scheduler's SIGTERM, reaches the DataLoader workers too: the run must still
    # finish its step and save.
    args = train_args(shapes, "dataset.in_memory=false", "trainer.num_workers=2", f"dataset.cache_dir={tmp_path}",
                      "trainer.log_every=1", "hydra.run.dir=run")
    process = start_dlx(args, tmp_path, start_new_session=True)
    wait_for_step(process, tmp_path / "run" / "metrics.jsonl", 15)
    os.killpg(process.pid, signal_number)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal_number, stderr
    assert "Traceback" not in stderr and "Resume with: dlx train" in stderr
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["state"]["step"] >= 15


@pytest.mark.slow
def test_two_ddp_processes_share_a_streamed_folder(shapes: Path, tmp_path: Path) -> None:
    common = ["trainer.devices=2", "trainer.max_epochs=2", f"dataset.cache_dir={tmp_path / 'cache'}"]
    dlx(*train_args(shapes, *common, "dataset.in_memory=false", "trainer.num_workers=1", "hydra.run.dir=streamed"),
        cwd=tmp_path)
    dlx(*train_args(shapes, *common, "dataset.in_memory=true", "hydra.run.dir=in_memory"), cwd=tmp_path)
    streamed = summary_of(tmp_path / "streamed")
    assert streamed["distributed"]["world_size"] == 2
    assert len(set(streamed["distributed"]["weights_sha256_per_rank"])) == 1
    # Each rank read its own share of every epoch from the files: the same weights as from memory.
    assert_same_weights(weights(tmp_path / "streamed"), weights(tmp_path / "in_memory"))


def test_fixed_train_val_test_folders_are_used_as_they_are(tmp_path: Path) -> None:
    root = tmp_path / "split"
    write_folder(root / "train", per_class=20, seed=1)
    write_folder(root / "val", per_class=4, seed=2)
    write_folder(root / "test", per_class=6, seed=3)
    dlx(*train_args(root, "trainer.max_epochs=1", f"dataset.cache_dir={tmp_path / 'cache'}", "hydra.run.dir=run"),
        cwd=tmp_path)
    assert "60 training, 12 validation, 18 test samples" in (tmp_path / "run" / "train.log").read_text()


def test_colour_jpeg_webp_and_bmp_files_mix_in_one_folder(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    generator = np.random.default_rng(0)
    for label, suffix in enumerate((".jpg", ".webp", ".bmp")):
        folder = root / f"class{label}"
        folder.mkdir(parents=True)
        for index in range(8):
            rgb = (generator.random((12, 12, 3)) * 80).astype(np.uint8)
            rgb[..., label] += 150
            Image.fromarray(rgb).save(folder / f"{index}{suffix}")
    dlx(*train_args(root, "trainer.max_epochs=1", f"dataset.cache_dir={tmp_path / 'cache'}", "hydra.run.dir=run",
                    "dataset.val_fraction=0.2", "dataset.test_fraction=0.2"), cwd=tmp_path)
    assert "read as 3x12x12 (RGB)" in (tmp_path / "run" / "train.log").read_text()


# --- bad input: one paragraph, exit 2, nothing written -------------------------------------------------------


def bad_run(tmp_path: Path, root: Path, *more: str) -> str:
    result = dlx(*train_args(root, "trainer.max_epochs=1", f"dataset.cache_dir={tmp_path / 'cache'}", *more),
                 cwd=tmp_path, expect=2)
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").glob("*/*/checkpoints/*.ckpt"))
    return " ".join(result.stderr.split())


def test_a_corrupt_image_is_named_or_skipped_and_counted(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "data", per_class=10)
    (root / "cross" / "0004.png").write_bytes((root / "cross" / "0004.png").read_bytes()[:60])  # truncated
    message = bad_run(tmp_path, root)
    assert "cross/0004.png cannot be read as an image" in message and "dataset.skip_bad_files=true" in message

    dlx(*train_args(root, "trainer.max_epochs=1", f"dataset.cache_dir={tmp_path / 'cache'}", "hydra.run.dir=run",
                    "dataset.skip_bad_files=true"), cwd=tmp_path)
    log = (tmp_path / "run" / "train.log").read_text()
    assert "left out 1 image file(s) that cannot be read" in log and "29 images of 3 classes" in log


def test_a_file_that_breaks_only_when_decoded_stops_a_streamed_run_with_its_name(tmp_path: Path) -> None:
    # In val/, it is not among the training images decoded for the channel statistics: a streamed run meets
    # it at its first validation.
    root = tmp_path / "data"
    write_folder(root / "train", per_class=10)
    write_folder(root / "val", per_class=3, seed=1)
    damaged = bytearray((root / "val" / "square" / "0002.png").read_bytes())
    damaged[60:120] = bytes(60)  # the header is whole, the compressed pixels are not
    (root / "val" / "square" / "0002.png").write_bytes(damaged)
    message = bad_run(tmp_path, root, "dataset.in_memory=false", "trainer.num_workers=1")
    assert "val/square/0002.png cannot be read as an image" in message and "found while training" in message


def one_class(root: Path) -> None:
    write_folder(root.parent / "three", per_class=2)
    root.mkdir()
    (root.parent / "three" / "circle").rename(root / "circle")


def empty_classes(root: Path) -> None:
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)


@pytest.mark.parametrize(("make", "expected"), [
    (one_class, "has one class folder only (circle): a classifier needs two classes or more"),
    (empty_classes, "/cat holds no image files"),
    (lambda root: root.mkdir(), "has no sub-folders, so there are no classes"),
])
def test_folders_without_images_or_classes_are_refused(tmp_path: Path, make, expected: str) -> None:
    root = tmp_path / "data"
    make(root)
    assert expected in bad_run(tmp_path, root)


def test_an_empty_class_folder_among_others_is_named(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "data", per_class=5)
    (root / "triangle").mkdir()
    assert f"The class folder {root / 'triangle'} holds no image files" in bad_run(tmp_path, root)


def test_images_of_mixed_sizes_and_modes_ask_what_the_model_should_get(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "data", per_class=10)
    Image.new("RGB", (20, 24), "red").save(root / "circle" / "odd.png")
    message = bad_run(tmp_path, root)
    assert "differ in sizes: 30 of 31 images are 16x16" in message and "odd.png" in message
    assert "dataset.image_size=16 dataset.channels=1" in message
    dlx(*train_args(root, "trainer.max_epochs=1", f"dataset.cache_dir={tmp_path / 'cache'}", "hydra.run.dir=run",
                    "dataset.image_size=16", "dataset.channels=1"), cwd=tmp_path)


@pytest.mark.slow
def test_a_root_that_is_a_file_or_missing_says_so(tmp_path: Path) -> None:
    table = tmp_path / "rows.csv"
    table.write_text("a,b\n1,2\n")
    assert "is a file, not a folder" in bad_run(tmp_path, table) and "dataset=table" in bad_run(tmp_path, table)
    assert "does not exist" in bad_run(tmp_path, tmp_path / "nowhere")

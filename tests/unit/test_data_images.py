"""dlx.data.images and the pure parts of dlx.data.image_folder, on real image files written with Pillow."""

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dlx.data.class_folders import split_indices
from dlx.data.image_folder import channel_statistics, choose_shape, parse_size, scan_folder
from dlx.data.images import BadImage, Header, read_header, read_image
from dlx.errors import DlxError

EXIF_ORIENTATION = 0x0112


def test_a_16_bit_png_is_scaled_to_8_bits_not_clipped(tmp_path: Path) -> None:
    wide = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)  # 0, 1, 128 and 255 in 8 bits
    Image.fromarray(wide).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")  # really 16 bits on disk
    assert read_image(tmp_path / "deep.png", 1, 1, 4).tolist() == [[[0, 1, 128, 255]]]


def test_exif_orientation_turns_a_sideways_photo_upright(tmp_path: Path) -> None:
    # 40 wide and 20 tall as stored, left half white; orientation 6 says "rotate 90 degrees clockwise to view".
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = 255
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[EXIF_ORIENTATION] = 6
    image.save(tmp_path / "sideways.jpg", exif=exif.tobytes(), quality=95)
    assert read_header(tmp_path / "sideways.jpg") == Header(width=20, height=40, channels=3)
    upright = read_image(tmp_path / "sideways.jpg", 1, 40, 20)[0]
    assert upright.shape == (40, 20)
    # Turned clockwise, the stored left half (white) is now the top half.
    assert upright[:15].mean() > 200 and upright[25:].mean() < 50


def test_transparency_is_composited_over_white(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = [255, 0, 0, 255]  # opaque red; the rest fully transparent black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "logo.png")
    pixels = read_image(tmp_path / "logo.png", 3, 2, 2)
    assert pixels[:, 0, 0].tolist() == [255, 0, 0]
    assert pixels[:, 1, 1].tolist() == [255, 255, 255]


def test_palette_and_grey_images_convert_to_the_channels_asked_for(tmp_path: Path) -> None:
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 2] = 255  # blue
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(np.full((4, 4), 100, np.uint8)).save(tmp_path / "grey.png")
    assert read_header(tmp_path / "palette.png").channels == 3
    assert read_header(tmp_path / "grey.png").channels == 1
    assert read_image(tmp_path / "palette.png", 3, 4, 4)[:, 0, 0].tolist() == [0, 0, 255]
    assert read_image(tmp_path / "grey.png", 3, 4, 4)[:, 0, 0].tolist() == [100, 100, 100]
    assert read_image(tmp_path / "palette.png", 1, 4, 4)[0, 0, 0] == 29  # ITU-R 601 luma of pure blue


def test_shrinking_averages_and_enlarging_interpolates(tmp_path: Path) -> None:
    checker = np.indices((8, 8)).sum(axis=0) % 2 * 255
    Image.fromarray(checker.astype(np.uint8)).save(tmp_path / "checker.png")
    assert np.abs(read_image(tmp_path / "checker.png", 1, 4, 4).astype(int) - 128).max() <= 1  # 2x2 areas averaged
    assert read_image(tmp_path / "checker.png", 1, 16, 16).shape == (1, 16, 16)


def test_a_decompression_bomb_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.new("L", (100, 100)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # 10,000 pixels: more than 2x the limit
    with pytest.raises(BadImage, match="decompression bomb"):
        read_image(tmp_path / "bomb.png", 1, 8, 8)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6000)  # between 1x and 2x, where Pillow only warns
    with pytest.raises(BadImage, match="decompression bomb"):
        read_image(tmp_path / "bomb.png", 1, 8, 8)


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 30])
def test_files_that_are_not_images_raise_bad_image_naming_them(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "x.png").write_bytes(content)
    with pytest.raises(BadImage, match=r"x\.png cannot be read as an image"):
        read_header(tmp_path / "x.png")


# --- dlx.data.image_folder ----------------------------------------------------------------------------------


def test_channel_statistics_are_exact_from_value_counts() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, size=(700, 3, 5, 5), dtype=np.uint8)
    mean, std = channel_statistics(lambda index: pixels[index], np.arange(700))
    as_float = torch.from_numpy(pixels).double() / 255
    assert mean == pytest.approx(as_float.mean(dim=(0, 2, 3)).tolist(), rel=1e-12)
    assert std == pytest.approx(as_float.transpose(0, 1).reshape(3, -1).std(dim=1).tolist(), rel=1e-12)


def test_parse_size_takes_a_square_or_height_and_width() -> None:
    assert parse_size(None) is None and parse_size(32) == (32, 32) and parse_size([24, 40]) == (24, 40)
    for bad in (0, [1, 2, 3], "big", [10, -1]):
        with pytest.raises(DlxError, match="dataset.image_size"):
            parse_size(bad)


def write(root: Path, names: dict[str, int], size: tuple[int, int] = (4, 4)) -> None:
    for name, count in names.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            Image.new("L", size).save(root / name / f"{index}.png")


def test_held_out_splits_are_stratified_and_fixed_by_the_seed(tmp_path: Path) -> None:
    write(tmp_path, {"a": 40, "b": 20})
    layout = scan_folder(tmp_path)
    splits = split_indices(layout.files, layout, val_fraction=0.25, test_fraction=0.1, seed=3)
    labels = np.array([f.label for f in layout.files])
    assert sorted(np.concatenate(list(splits.values())).tolist()) == list(range(60))  # a partition
    assert [int((labels[splits["test"]] == c).sum()) for c in (0, 1)] == [4, 2]  # 10% of each class
    assert split_indices(layout.files, layout, 0.25, 0.1, seed=3)["val"].tolist() == splits["val"].tolist()
    assert split_indices(layout.files, layout, 0.25, 0.1, seed=4)["val"].tolist() != splits["val"].tolist()


def test_choose_shape_takes_the_shared_size_or_asks(tmp_path: Path) -> None:
    write(tmp_path, {"a": 2, "b": 1})
    layout = scan_folder(tmp_path)
    same = [Header(4, 6, 1)] * 3
    assert choose_shape(same, layout.files, None, None) == ((6, 4), 1)
    mixed = [Header(4, 6, 1), Header(4, 6, 1), Header(9, 9, 3)]
    with pytest.raises(DlxError, match=r"2 of 3 images are 6x4 .* dataset.image_size=\[6,4\] dataset.channels=1"):
        choose_shape(mixed, layout.files, None, None)
    assert choose_shape(mixed, layout.files, 8, 3) == ((8, 8), 3)  # asked for: every image resized to it


def test_in_memory_auto_streams_what_would_not_fit(monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    from dlx.data import memory

    caplog.set_level(logging.INFO, logger="dlx")
    # Caught even when dlx's logger does not propagate (after a run in this process set up its logging).
    monkeypatch.setattr(logging.getLogger("dlx"), "handlers", [caplog.handler])

    monkeypatch.setattr(memory, "available_memory", lambda: 10 * 2**30)  # 10 GiB available
    assert memory.choose_in_memory("auto", 5 * 2**30, "the images", "streaming them")  # fits in half
    assert not caplog.records
    assert not memory.choose_in_memory("auto", 5 * 2**30 + 1, "the images", "streaming them")
    assert "the images would take about 5.0 GiB of the 10.0 GiB available: streaming them" in caplog.text
    assert memory.choose_in_memory(True, 10**15, "", "") and not memory.choose_in_memory(False, 1, "", "")
    with pytest.raises(DlxError, match="dataset.in_memory=maybe"):
        memory.choose_in_memory("maybe", 1, "", "")

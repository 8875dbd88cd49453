"""augment.hflip and augment.shift: what they do to a batch, and how bad settings are refused.
(That a killed augmented run resumes to the same weights is in test_reliability.py.)"""

from pathlib import Path

import pytest
import torch
from conftest import dlx
from omegaconf import OmegaConf

from dlx.data.sklearn_sets import load_diabetes, load_digits
from dlx.errors import DlxError
from dlx.train.augment import build_augment, random_hflip, random_shift

USER_ERROR = 2


def distinct_images(n: int, channels: int = 2, size: int = 6) -> torch.Tensor:
    """Images whose every pixel value occurs once in the batch, so that each output pixel says where it came from."""
    return torch.arange(n * channels * size * size, dtype=torch.float32).view(n, channels, size, size)


def test_hflip_mirrors_about_half_of_the_images_and_leaves_the_rest() -> None:
    torch.manual_seed(0)
    images = distinct_images(400)
    out = random_hflip(images)
    mirrored = [torch.equal(o, i.flip(2)) for o, i in zip(out, images)]
    kept = [torch.equal(o, i) for o, i in zip(out, images)]
    assert all(m != k for m, k in zip(mirrored, kept))  # each image is one or the other
    assert 150 < sum(mirrored) < 250


@pytest.mark.parametrize("pixels", [1, 2])
def test_shift_moves_each_image_by_its_own_offset_within_range(pixels: int) -> None:
    torch.manual_seed(0)
    images = distinct_images(300)
    out = random_shift(images, pixels)
    assert out.shape == images.shape
    padded = torch.nn.functional.pad(images, (pixels,) * 4, mode="replicate")
    offsets = set()
    for n in range(len(images)):
        matches = [(top, left) for top in range(2 * pixels + 1) for left in range(2 * pixels + 1)
                   if torch.equal(out[n], padded[n, :, top : top + 6, left : left + 6])]
        assert len(matches) == 1, f"image {n} is not a shifted copy of its input"
        offsets.add(matches[0])
    assert len(offsets) == (2 * pixels + 1) ** 2  # every offset in range is drawn


def test_same_generator_state_gives_the_same_augmentation() -> None:
    augment = build_augment(OmegaConf.create({"hflip": True, "shift": 1}), load_digits())
    images = distinct_images(64, channels=1, size=8)
    torch.manual_seed(3)
    first = augment(images)
    torch.manual_seed(3)
    assert torch.equal(first, augment(images))
    assert not torch.equal(first, images)


def test_no_augmentation_is_none() -> None:
    assert build_augment(OmegaConf.create({"hflip": False, "shift": 0}), load_diabetes()) is None


def test_augmenting_tabular_data_is_refused() -> None:
    with pytest.raises(DlxError, match="not made of images"):
        build_augment(OmegaConf.create({"hflip": True, "shift": 0}), load_diabetes())


def test_shift_of_half_the_image_is_refused() -> None:
    with pytest.raises(DlxError, match="augment.shift=4 would move 8x8 images"):
        build_augment(OmegaConf.create({"hflip": False, "shift": 4}), load_digits())


def test_negative_shift_is_refused_before_training(workdir: Path) -> None:
    result = dlx("train", "model=cnn", "augment.shift=-1", cwd=workdir, expect=USER_ERROR)
    assert "augment.shift=-1 must be 0" in result.stderr
    assert not (workdir / "outputs").exists() or not list((workdir / "outputs").rglob("*.ckpt"))

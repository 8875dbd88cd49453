"""Data augmentation: random mirror images and small shifts of training images, drawn afresh for every sample of
every batch, on the device the batch is on.

Why not torchvision's transforms: on a batched tensor they draw one flip or one crop for the whole batch, and
per-sample transforms would need a Dataset/DataLoader round trip for data that already sits on the device.
The draws come from the device's default generator, which checkpoints save and restore: a resumed run draws
the same flips and shifts as an uninterrupted one.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from dlx.data import DataSplits
from dlx.errors import DlxError

Augment = Callable[[torch.Tensor], torch.Tensor]


def build_augment(settings: DictConfig, data: DataSplits) -> Augment | None:
    """The training-batch augmentation that `augment.hflip` and `augment.shift` ask for, or None for none."""
    if not (settings.hflip or settings.shift):
        return None
    if not data.is_image:
        raise DlxError(f"augment.hflip={settings.hflip} augment.shift={settings.shift} asks to flip or shift images, "
                       f"but this data set is not made of images (inputs of shape {data.input_shape}). Remove the "
                       "augment.* overrides, or choose an image data set.")
    height, width = data.input_shape[-2:]
    if settings.shift * 2 >= min(height, width):
        raise DlxError(f"augment.shift={settings.shift} would move {height}x{width} images by half their size or "
                       f"more; shifts of 1 to {max(1, min(height, width) // 8)} pixels are typical.")
    hflip, shift = settings.hflip, settings.shift

    def augment(images: torch.Tensor) -> torch.Tensor:
        if hflip:
            images = random_hflip(images)
        if shift:
            images = random_shift(images, shift)
        return images

    return augment


def random_hflip(images: torch.Tensor) -> torch.Tensor:
    """Each image (N, C, H, W) mirrored left to right with probability 1/2."""
    flip = torch.rand(len(images), device=images.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(3), images)


def random_shift(images: torch.Tensor, pixels: int) -> torch.Tensor:
    """Each image (N, C, H, W) moved by its own offsets in [-pixels, pixels] along both axes, the edge pixels
    repeated into the space it leaves (a background, for centred objects, whatever the normalisation)."""
    n, _, height, width = images.shape
    padded = F.pad(images, (pixels, pixels, pixels, pixels), mode="replicate")
    top = torch.randint(0, 2 * pixels + 1, (n, 1, 1), device=images.device)
    left = torch.randint(0, 2 * pixels + 1, (n, 1, 1), device=images.device)
    rows = top + torch.arange(height, device=images.device).view(1, -1, 1)  # (N, H, 1)
    cols = left + torch.arange(width, device=images.device).view(1, 1, -1)  # (N, 1, W)
    sample = torch.arange(n, device=images.device).view(-1, 1, 1)
    # One gather for the whole batch: (N, H+2p, W+2p, C) indexed per sample gives (N, H, W, C).
    return padded.permute(0, 2, 3, 1)[sample, rows, cols].permute(0, 3, 1, 2).contiguous()

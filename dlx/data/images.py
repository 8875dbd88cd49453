"""Image files read as a user expects, by every part of dlx that reads them (image folders, `dlx predict`).

Pillow decodes PNG, JPEG, WebP, BMP, GIF and TIFF. On the way to what a model takes, (C, H, W) uint8 in grey or
RGB at one size:
- EXIF orientation is applied, so a photo taken sideways is seen upright, as image viewers show it;
- 16-bit images are scaled to 8 bits (rather than clipped, which turns most of them white);
- transparency is composited over white, as a viewer shows it on a page (dropping the alpha channel would
  show whatever colour the transparent pixels happen to hold);
- a JPEG that is much larger than the size asked for is decoded at a reduced scale (Pillow's draft mode:
  the decoder skips detail that resizing would average away, several times faster);
- shrinking averages the area under each new pixel (as OpenCV's INTER_AREA does); enlarging is bilinear.
- an image with more pixels than Pillow's limit (Image.MAX_IMAGE_PIXELS, 89 million) is refused, since
  a small file that decodes to gigabytes (a decompression bomb) would otherwise exhaust memory.
"""

import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlx.errors import DlxError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
SIXTEEN_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
ROTATED_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that turn the picture by 90 degrees
EXIF_ORIENTATION = 0x0112


class BadImage(DlxError):
    """An image file that cannot be read: its path and why, in one sentence."""


def bad_image(path: Path, why: str) -> BadImage:
    return BadImage(f"{path} cannot be read as an image: {why}.")


def reason(err: Exception) -> str:
    """Why Pillow could not read a file, in words that do not repeat its path."""
    if isinstance(err, pillow().UnidentifiedImageError):
        return "it is not an image file Pillow reads (PNG, JPEG, WebP, BMP, GIF, TIFF), or its start is damaged"
    if isinstance(err, FileNotFoundError):
        return "it does not exist (any more)"
    return f"it is damaged or truncated ({err})"


@dataclass(frozen=True)
class Header:
    """What an image file's header says, without decoding its pixels: the size as it will be seen (after its
    EXIF orientation) and whether it is grey or colour."""

    width: int
    height: int
    channels: int  # 1 (grey) or 3 (colour)


def check_regular_file(path: Path) -> None:
    """A pipe, a socket or a device named like an image would block the reader, or never end: refused."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # missing or unreadable: Pillow's own error says which
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        raise bad_image(path, "it is not a regular file but a pipe, a socket or a device, which could be read forever")


def read_header(path: Path) -> Header:
    check_regular_file(path)
    image_module = pillow()
    try:
        with image_module.open(path) as image:
            width, height = image.size
            if orientation(image) in ROTATED_ORIENTATIONS:
                width, height = height, width
            return Header(width, height, 1 if image.mode in GREY_MODES else 3)
    except image_module.DecompressionBombError as err:
        raise bad_image(path, f"{err}; refused as a possible decompression bomb (resize the image)") from err
    except (image_module.UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise bad_image(path, reason(err)) from err


def orientation(image) -> int | None:  # a PIL.Image.Image, opened but not decoded
    """The EXIF orientation a header records. For a PNG only from an eXIf chunk before the pixels, where the
    format asks for it: Pillow would decode the whole image to look for one after them."""
    if image.format == "PNG" and "exif" not in image.info:
        return None
    return image.getexif().get(EXIF_ORIENTATION)


def read_image(path: Path, channels: int, height: int, width: int) -> np.ndarray:
    """The image in `path` as (channels, height, width) uint8: see the module's docstring for how."""
    from PIL import ImageOps

    check_regular_file(path)
    image_module = pillow()
    try:
        with warnings.catch_warnings():
            # Between 1x and 2x Pillow's pixel limit it only warns: refuse those too.
            warnings.simplefilter("error", image_module.DecompressionBombWarning)
            with image_module.open(path) as opened:
                if opened.format == "JPEG":
                    side = max(height, width)  # either orientation: the draft is at least this big both ways
                    opened.draft("L" if channels == 1 else "RGB", (side, side))
                upright = ImageOps.exif_transpose(opened)
                image = to_mode(upright, channels)
    except (image_module.DecompressionBombError, image_module.DecompressionBombWarning) as err:
        raise bad_image(path, f"{err}; refused as a possible decompression bomb (resize the image)") from err
    except (image_module.UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise bad_image(path, reason(err)) from err
    if image.size != (width, height):
        shrinking = image.width >= width and image.height >= height
        resampling = image_module.Resampling.BOX if shrinking else image_module.Resampling.BILINEAR
        image = image.resize((width, height), resampling)
    pixels = np.array(image, dtype=np.uint8)  # a copy of Pillow's buffer: writable, as torch wants its arrays
    return pixels[None] if channels == 1 else np.ascontiguousarray(pixels.transpose(2, 0, 1))  # (C, H, W)


def to_mode(image, channels: int):  # PIL.Image.Image in and out: Pillow is imported only where images are read
    """Grey ("L") or RGB, 8 bits, transparency composited over white."""
    image_module = pillow()
    if image.mode in SIXTEEN_BIT_MODES:
        # 0..65535 to 0..255, rounded; Pillow's own convert("L") clips at 255 instead.
        wide = np.asarray(image).astype(np.uint32)
        image = image_module.fromarray(((wide * 255 + 32767) // 65535).clip(0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        image = image_module.fromarray((np.asarray(image).clip(0, 1) * 255).round().astype(np.uint8), "L")
    if image.mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in image.info:
        white = image_module.new("RGBA", image.size, (255, 255, 255, 255))
        image = image_module.alpha_composite(white, image.convert("RGBA"))
    return image.convert("L" if channels == 1 else "RGB")


def pillow():
    from PIL import Image  # imported when the first image is read, not by every `dlx` command

    return Image

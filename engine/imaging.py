"""Decoding user images safely and fast.

Every image the app looks at comes through `load_image` (files) or `image_from_array` (webcam frames):
- EXIF orientation is applied, so a phone photo taken sideways is seen upright;
- JPEGs are decoded at reduced size when the caller says how small it may be (libjpeg's DCT scaling,
  several times faster than decoding the full image and resizing);
- decompression bombs (a small file claiming a gigantic size) are refused before any pixel is decoded;
- an empty, truncated, corrupt or mislabelled file raises InputFileError naming the file.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputFileError
from .filetypes import require_nonempty_file

# PIL's own default (about 89 megapixels, a 9459 x 9459 image): larger images are almost always bombs or
# scans far beyond what any model here can use, and decoding one would take gigabytes of memory.
MAX_PIXELS = 89_478_485


def load_image(path: Path | str, max_side: int | None = None, min_side: int | None = None) -> Image.Image:
    """An RGB image from a file, upright.

    min_side: the caller needs at least this many pixels on the short side (a classifier resizing to 256);
        JPEGs are then decoded at the smallest DCT scale that still has them.
    max_side: the caller wants at most this many pixels on the long side (previews, OCR); the image is
        decoded at reduced size where possible and shrunk to fit.
    """
    path = Path(path)
    require_nonempty_file(path, not_a_file="this is a folder, not an image file")
    try:
        with warnings.catch_warnings():
            # PIL only warns between MAX_IMAGE_PIXELS and twice that; treat both as a refusal.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                _check_pixels(path, image.size)
                _draft(image, max_side, min_side)
                image.load()
                upright = ImageOps.exif_transpose(image)
                rgb = to_rgb(upright, path)
    except InputFileError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputFileError(path, _bomb_problem(exc)) from None
    except UnidentifiedImageError:
        raise InputFileError(path, "this is not an image, or not a format the app can read "
                                   "(JPEG, PNG, WebP, BMP, TIFF, GIF)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputFileError(path, f"the image is truncated or corrupt ({exc})") from None
    if max_side and max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return rgb


def upright_size(path: Path | str) -> tuple[int, int]:
    """(width, height) of an image file as a person sees it (EXIF turns applied), from its header only."""
    with Image.open(path) as image:
        width, height = image.size
        if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF orientations that turn the picture by 90°
            width, height = height, width
    return width, height


def image_from_array(array: np.ndarray, name: str = "camera frame") -> Image.Image:
    """An RGB image from a frame: HxW (grey), HxWx3 (RGB) or HxWx4 (RGBA); uint8, or float in [0, 1]."""
    array = np.asarray(array)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)) or 0 in array.shape:
        raise InputFileError(name, f"an image must be HxW, HxWx3 or HxWx4, got shape {array.shape}")
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating):
            array = np.nan_to_num(array, nan=0.0)
            scale = 255.0 if float(array.max(initial=0.0)) <= 1.0 else 1.0
            array = np.clip(array * scale, 0, 255).astype(np.uint8)
        elif np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
            array = np.clip(array.astype(np.int64), 0, 255).astype(np.uint8)
        else:
            raise InputFileError(name, f"an image must hold numbers, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    return to_rgb(Image.fromarray(np.ascontiguousarray(array)), name)


def to_rgb(image: Image.Image, path: Path | str = "image") -> Image.Image:
    """RGB, with transparency flattened onto white (a transparent logo would otherwise turn black)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        return _high_depth_to_rgb(image, path)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


_OVER_THE_LIMIT = f"more than the {MAX_PIXELS / 1e6:.0f} megapixels the app opens (a decompression bomb or a huge scan)"


def _check_pixels(path: Path, size: tuple[int, int]) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise InputFileError(path, f"the image claims an impossible size {width}x{height}")
    if width * height > MAX_PIXELS:
        raise InputFileError(path, f"the image is {width}x{height} ({width * height / 1e6:.0f} megapixels), "
                                   + _OVER_THE_LIMIT)


def _bomb_problem(exc: Exception) -> str:
    """PIL refuses a header declaring over twice its limit before we see the size; say it as _check_pixels does."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    declared = f"declares {int(found.group(1)) / 1e6:.0f} megapixels" if found else "is too large"
    return f"the image {declared}, " + _OVER_THE_LIMIT


def _draft(image: Image.Image, max_side: int | None, min_side: int | None) -> None:
    """Ask libjpeg for a reduced-size decode; a no-op for other formats."""
    if image.format != "JPEG" or not (max_side or min_side):
        return
    if min_side:
        # draft() keeps both sides >= the request; the short side is what a resize-then-crop needs.
        short = min(image.size)
        scale = max(1.0, short / min_side)
        target = (int(image.size[0] / scale), int(image.size[1] / scale))
    else:
        # Keep twice the wanted size before the final resize: DCT scaling alone is blocky.
        scale = max(1.0, max(image.size) / (2 * max_side))
        target = (int(image.size[0] / scale), int(image.size[1] / scale))
    image.draft("RGB", target)


def _high_depth_to_rgb(image: Image.Image, path: Path | str) -> Image.Image:
    """16-bit and float images (scientific TIFFs, depth maps): stretch to 8 bits instead of clipping."""
    data = np.asarray(image, dtype=np.float64)
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        raise InputFileError(path, "the image has no valid pixel values")
    low, high = float(finite.min()), float(finite.max())
    scaled = np.zeros_like(data) if high <= low else (np.nan_to_num(data, nan=low) - low) / (high - low)
    grey = (np.clip(scaled, 0, 1) * 255).round().astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")

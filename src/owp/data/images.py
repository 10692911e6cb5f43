"""Image decoding: any file PIL reads becomes an RGB ``uint8`` array or a float tensor in 0..1.

Images over :data:`MAX_IMAGE_PIXELS` are refused before decoding. Grayscale, RGBA/LA (alpha
dropped), palette, CMYK and 1-bit images are converted to RGB;
16-bit and 32-bit integer grayscale images are scaled from their full range (not clipped at
255, which is what a plain ``Image.convert("RGB")`` would do). EXIF orientation is ignored, as
COCO annotations are given in stored pixel coordinates.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError
from PIL.Image import DecompressionBombError

from owp.errors import OwpInputError

if TYPE_CHECKING:
    import torch

MAX_IMAGE_PIXELS = 64_000_000
"""Images with more pixels (e.g. 8000 x 8000) are refused before decoding, in one line: a
detector resizes them to ~1 Mpx anyway, and decoding one costs gigabytes of memory. PIL's own
decompression-bomb check (and its two-line warning) is replaced by this one."""

_WIDE_INTEGER_MODES = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0}


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode ``path`` to an ``uint8`` array of shape ``[H, W, 3]``.

    Raises :class:`OwpInputError` naming the file when it is missing, truncated or not an image.
    """
    path = Path(path)
    if not path.is_file():
        raise OwpInputError("image file not found", path=path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                _check_pixels(image.size, path)
                image.load()
                return to_rgb_array(image)
    except OwpInputError:
        raise
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        DecompressionBombError,
    ) as err:
        reason = "truncated" if "truncated" in str(err) else "unreadable"
        raise OwpInputError(f"{reason} image ({_short(err)})", path=path) from None


def _check_pixels(size: tuple[int, int], path: Path) -> None:
    width, height = size
    if width * height > MAX_IMAGE_PIXELS:
        raise OwpInputError(
            f"image is {width}x{height} ({width * height / 1e6:.0f} Mpx), over owp's limit of "
            f"{MAX_IMAGE_PIXELS / 1e6:.0f} Mpx; downscale it first (a detector resizes it to "
            "about 1 Mpx anyway)",
            path=path,
        )


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """Convert a decoded PIL image of any mode to an ``uint8`` RGB array ``[H, W, 3]``."""
    if image.mode in _WIDE_INTEGER_MODES or image.mode == "I":
        values = np.asarray(image).astype(np.float64)
        full_scale = _WIDE_INTEGER_MODES.get(image.mode) or _integer_full_scale(values)
        gray = np.clip(np.round(values * (255.0 / full_scale)), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        scale = 255.0 if values.max(initial=0.0) > 1.0 else 1.0
        gray = np.clip(np.round(values * (255.0 / scale)), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "P":
        image = image.convert("RGBA")
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def read_image_tensor(path: str | Path) -> torch.Tensor:
    """Decode ``path`` to a float tensor ``[3, H, W]`` with values in ``[0, 1]``."""
    import torch  # here, so that reading images as arrays (owp data stats) needs no torch

    array = read_rgb(path)
    return torch.from_numpy(array).permute(2, 0, 1).contiguous().float().div_(255.0)


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` from the file header, without decoding the pixels."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise OwpInputError("image file not found", path=path) from None
    except (UnidentifiedImageError, OSError) as err:
        raise OwpInputError(f"unreadable image ({_short(err)})", path=path) from None


def _integer_full_scale(values: np.ndarray) -> float:
    """Mode "I" holds 16-bit PNGs as well as true 32-bit data: pick the smallest fitting range."""
    peak = values.max(initial=0.0)
    return 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else float(2**32 - 1)


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__

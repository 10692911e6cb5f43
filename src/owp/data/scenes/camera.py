"""Camera effects of the ``photo`` scene style: defocus blur, sensor noise, exposure and
JPEG compression at a random quality (the file is then written at the generator's fixed
quality, so compression artefacts are baked into the pixels)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter


def camera(rng: np.random.Generator, canvas: np.ndarray, scale: float) -> np.ndarray:
    """The picture a camera would take of ``canvas`` (float32 [S, S, 3]); uint8 [S, S, 3]."""
    exposure = np.float32(rng.uniform(0.8, 1.15))
    pixels = np.clip(canvas * exposure, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, mode="RGB")
    if rng.random() < 0.8:
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.4, 1.5)) * scale))
    noisy = np.asarray(image, dtype=np.float32)
    sigma = np.float32(rng.uniform(1, 7))
    noisy = noisy + rng.standard_normal(noisy.shape, dtype=np.float32) * sigma
    image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), mode="RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(rng.integers(35, 90)))
    buffer.seek(0)
    with Image.open(buffer) as compressed:
        return np.asarray(compressed.convert("RGB"), dtype=np.uint8).copy()

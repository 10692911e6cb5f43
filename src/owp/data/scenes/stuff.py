"""Backgrounds of the ``photo`` scene style: large irregular textured "stuff" regions and
non-object clutter, none of them annotated.

Layouts: ``outdoor`` (sky above a wavy horizon, ground below, sometimes a middle band),
``indoor`` (one or two walls above a floor line) and ``regions`` (3–6 irregular blobs from
competing noise fields). Each region gets a muted colour pair and a procedural texture.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from owp.data.scenes.textures import (
    PATTERNS,
    fractal_noise,
    natural_colour,
    near_colour,
    smooth_noise,
    texture,
)

LAYOUTS: tuple[str, ...] = ("outdoor", "indoor", "regions")


def _horizon(rng: np.random.Generator, size: int, level: float, roughness: float) -> np.ndarray:
    """A wavy boundary row per column: float32 [S]."""
    wave = fractal_noise(rng, 1, size, float(rng.uniform(2, 6)), octaves=3)[0] - 0.5
    return np.float32(level * size) + wave * np.float32(roughness * size)


def region_map(rng: np.random.Generator, size: int) -> np.ndarray:
    """Stuff region index of every pixel for a random layout; int8 [S, S]."""
    layout = LAYOUTS[int(rng.integers(len(LAYOUTS)))]
    rows = np.arange(size, dtype=np.float32)[:, None]
    if layout == "outdoor":
        regions = (rows > _horizon(rng, size, rng.uniform(0.25, 0.6), 0.25)[None, :]).astype(
            np.int8
        )
        if rng.random() < 0.5:
            band = _horizon(rng, size, rng.uniform(0.6, 0.9), 0.15)[None, :]
            regions[(rows > band) & (regions == 1)] = 2
        return regions
    if layout == "indoor":
        floor = _horizon(rng, size, rng.uniform(0.45, 0.75), 0.04)[None, :]
        regions = (rows > floor).astype(np.int8)
        if rng.random() < 0.6:
            corner = int(rng.uniform(0.2, 0.8) * size)
            cols = np.arange(size)[None, :]
            regions[(regions == 0) & (cols > corner)] = 2
        return regions
    count = int(rng.integers(3, 7))
    fields = np.stack(
        [smooth_noise(rng, size, size, float(rng.uniform(2, 4))) for _ in range(count)]
    )
    return np.argmax(fields, axis=0).astype(np.int8)


def stuff_background(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    """Textured stuff regions with soft lighting and slightly blurred boundaries; float32
    [S, S, 3] in [0, 255]."""
    regions = region_map(rng, size)
    canvas = np.zeros((size, size, 3), dtype=np.float32)
    for index in range(int(regions.max()) + 1):
        first = natural_colour(rng)
        second = near_colour(rng, first, float(rng.uniform(25, 130)))
        kind = PATTERNS[int(rng.integers(len(PATTERNS)))]
        fill = texture(rng, kind, size, size, first, second, scale)
        canvas[regions == index] = fill[regions == index]
    light = fractal_noise(rng, size, size, 2, octaves=2) - 0.5
    canvas *= 1 + light[..., None] * np.float32(rng.uniform(0.1, 0.5))
    radius = float(rng.uniform(0.5, 2.0)) * scale
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), mode="RGB")
    return np.asarray(image.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)


def add_clutter(rng: np.random.Generator, canvas: np.ndarray, scale: float) -> None:
    """Draw non-object clutter in place: irregular textured blobs, sticks and specks."""
    size = canvas.shape[0]
    for _ in range(int(rng.integers(10, 30))):
        extent = max(4, int(rng.uniform(6, 60) * scale))
        x0, y0 = (int(v) for v in rng.integers(-extent // 2, size - extent // 2, size=2))
        blob = fractal_noise(rng, extent, extent, 3, octaves=3)
        ys, xs = np.mgrid[0:extent, 0:extent].astype(np.float32) / np.float32(extent) - 0.5
        inside = blob - np.float32(1.6) * np.sqrt(xs * xs + ys * ys) > np.float32(0.05)
        first = natural_colour(rng)
        kind = PATTERNS[int(rng.integers(len(PATTERNS)))]
        fill = texture(rng, kind, extent, extent, first, near_colour(rng, first, 50), scale)
        _paste(canvas, fill, inside, x0, y0)
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 14))):
        cx, cy = rng.uniform(0, size, size=2)
        length = float(rng.uniform(10, 80)) * scale
        angle = float(rng.uniform(0, math.pi))
        end = (cx + length * math.cos(angle), cy + length * math.sin(angle))
        colour = tuple(int(c) for c in natural_colour(rng))
        draw.line([(cx, cy), end], fill=colour, width=max(1, round(rng.uniform(1, 4) * scale)))
    for _ in range(int(rng.integers(0, 40))):
        cx, cy = rng.uniform(0, size, size=2)
        radius = float(rng.uniform(0.6, 2.5)) * scale
        colour = tuple(int(c) for c in natural_colour(rng))
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour)
    canvas[...] = np.asarray(image, dtype=np.float32)


def _paste(canvas: np.ndarray, fill: np.ndarray, inside: np.ndarray, x0: int, y0: int) -> None:
    """Copy fill[inside] (float32 [h, w, 3], bool [h, w]) at (x0, y0), clipped to the canvas."""
    size = canvas.shape[0]
    height, width = inside.shape
    ix0, iy0 = max(x0, 0), max(y0, 0)
    ix1, iy1 = min(x0 + width, size), min(y0 + height, size)
    if ix0 >= ix1 or iy0 >= iy1:
        return
    window = inside[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
    region = canvas[iy0:iy1, ix0:ix1]
    region[window] = fill[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0][window]

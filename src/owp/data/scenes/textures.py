"""Procedural textures and colours of the ``photo`` scene style, vectorised over pixels.

Every pattern is a float32 field ``t`` in [0, 1] over an ``[H, W]`` grid; :func:`texture`
mixes two colours by it. Patterns: fractal (multi-octave value) noise, oriented stripes,
checks, dots, wood-like rings and marble-like veins. Written by hand because no maintained
library ships fast seeded 2-D procedural textures for numpy; the noise is bicubic interpolation
of random grids (Pillow's resampler), not Perlin noise.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np
from PIL import Image

PATTERNS: tuple[str, ...] = ("plain", "noise", "stripes", "checks", "dots", "wood", "marble")


def smooth_noise(rng: np.random.Generator, height: int, width: int, cells: float) -> np.ndarray:
    """Value noise with about ``cells`` random values across the longer side, bicubically
    interpolated; float32 [H, W], roughly in [0, 1]."""
    longer = max(height, width)
    grid_h = max(2, math.ceil(cells * height / longer) + 1)
    grid_w = max(2, math.ceil(cells * width / longer) + 1)
    grid = rng.random((grid_h, grid_w), dtype=np.float32)
    image = Image.fromarray(grid, mode="F").resize((width, height), Image.BICUBIC)
    return np.asarray(image, dtype=np.float32)


def fractal_noise(
    rng: np.random.Generator,
    height: int,
    width: int,
    cells: float,
    octaves: int = 4,
    persistence: float = 0.5,
) -> np.ndarray:
    """Sum of value-noise octaves (each twice as fine, ``persistence`` times as strong),
    rescaled to [0, 1]; float32 [H, W]."""
    total = np.zeros((height, width), dtype=np.float32)
    weight = 1.0
    for octave in range(octaves):
        total += np.float32(weight) * smooth_noise(rng, height, width, cells * 2**octave)
        weight *= persistence
    low, high = float(total.min()), float(total.max())
    return (total - np.float32(low)) / np.float32(max(high - low, 1e-6))


def along(height: int, width: int, angle: float) -> np.ndarray:
    """Coordinate along direction ``angle`` of every pixel; float32 [H, W]."""
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    return xs * np.float32(math.cos(angle)) + ys * np.float32(math.sin(angle))


def pattern(
    rng: np.random.Generator, kind: str, height: int, width: int, scale: float
) -> np.ndarray:
    """The named pattern at a random period and orientation; float32 [H, W] in [0, 1].

    ``scale`` is the image side over 320: periods are drawn in 320-px units.
    """
    angle = float(rng.uniform(0, math.pi))
    if kind == "plain":
        return np.zeros((height, width), dtype=np.float32)
    if kind == "noise":
        cells = float(rng.uniform(2, 12)) * max(height, width) / (160 * scale)
        return fractal_noise(rng, height, width, max(cells, 1.5), octaves=4)
    period = np.float32(rng.uniform(3, 14) * scale)
    u = along(height, width, angle)
    v = along(height, width, angle + math.pi / 2)
    if kind == "stripes":
        warp = fractal_noise(rng, height, width, 3, octaves=2) * np.float32(rng.uniform(0, 6))
        return 0.5 + 0.5 * np.sin((u + warp * period) * np.float32(2 * math.pi) / period)
    if kind == "checks":
        return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    if kind == "dots":
        du = (u / period) % 1 - 0.5
        dv = (v / period) % 1 - 0.5
        radius = np.float32(rng.uniform(0.18, 0.4))
        return (du * du + dv * dv < radius * radius).astype(np.float32)
    noise = fractal_noise(rng, height, width, float(rng.uniform(2, 5)), octaves=4)
    if kind == "wood":
        cx, cy = rng.uniform(-0.5, 1.5, size=2) * (width, height)
        ys = np.arange(height, dtype=np.float32)[:, None] - np.float32(cy)
        xs = np.arange(width, dtype=np.float32)[None, :] - np.float32(cx)
        rings = np.sqrt(xs * xs * np.float32(0.15) + ys * ys) / period + noise * np.float32(3)
        return (rings % 1).astype(np.float32) ** 2
    if kind == "marble":
        veins = np.sin(u / period + noise * np.float32(rng.uniform(4, 9)))
        return (np.abs(veins) ** np.float32(0.4)).astype(np.float32)
    raise ValueError(f"unknown pattern {kind!r}")


def texture(
    rng: np.random.Generator,
    kind: str,
    height: int,
    width: int,
    first: np.ndarray,
    second: np.ndarray,
    scale: float,
) -> np.ndarray:
    """Colours ``first`` and ``second`` (float32 [3]) mixed by the pattern; float32 [H, W, 3]."""
    t = pattern(rng, kind, height, width, scale)[..., None]
    return first + (second - first) * t


def natural_colour(rng: np.random.Generator) -> np.ndarray:
    """A colour as photos have them: mostly muted, sometimes saturated; float32 [3] in
    [0, 255]."""
    hue = float(rng.random())
    saturation = float(rng.beta(1.3, 2.2)) if rng.random() < 0.8 else float(rng.uniform(0.5, 1))
    value = float(rng.beta(2.2, 1.8))
    return np.array(colorsys.hsv_to_rgb(hue, saturation, value), dtype=np.float32) * 255


def near_colour(rng: np.random.Generator, colour: np.ndarray, spread: float) -> np.ndarray:
    """``colour`` moved by up to ``spread`` per channel, kept in [0, 255]; float32 [3]."""
    shift = rng.uniform(-spread, spread, size=3).astype(np.float32)
    return np.clip(colour + shift, 0, 255).astype(np.float32)

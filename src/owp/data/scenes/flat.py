"""The ``flat`` scene style: one flat-coloured or simply textured convex-ish shape per object.

The first generator of owp (format version 1), kept byte for byte so that the tables measured on
it can be reproduced: sixteen single-part shape families drawn on smooth, lightly cluttered
backgrounds. Bottom-up colour grouping finds these objects easily (Selective Search fast scores
about 70 AR@100 on them), which is why the ``photo`` style exists.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from owp.data.scenes.common import (
    SceneObject,
    SceneSettings,
    pick_families,
    sample_side,
    visible_objects,
)

BASE_FAMILIES: tuple[str, ...] = (
    "disc",
    "ring",
    "square",
    "triangle",
    "star",
    "cross",
    "pentagon",
    "heart",
)
NOVEL_FAMILIES: tuple[str, ...] = (
    "hexagon",
    "ellipse",
    "crescent",
    "arrow",
    "l_shape",
    "diamond",
    "trapezoid",
    "semicircle",
)
SHAPE_FAMILIES: tuple[str, ...] = BASE_FAMILIES + NOVEL_FAMILIES

_REFERENCE_SIZE = 320
# Probability of each COCO size bucket and the range of sqrt(mask area) at 320 px.
_SIZE_BUCKETS: tuple[tuple[float, float, float], ...] = (
    (0.30, 11.0, 30.0),
    (0.45, 36.0, 90.0),
    (0.25, 102.0, 160.0),
)
# Largest aspect stretch per family; small for families whose identity depends on proportions.
_MAX_STRETCH: dict[str, float] = {
    "disc": 1.15,
    "ring": 1.2,
    "pentagon": 1.2,
    "hexagon": 1.2,
    "ellipse": 1.25,
    "diamond": 1.25,
    "star": 1.3,
    "heart": 1.3,
    "crescent": 1.3,
    "semicircle": 1.3,
}
_DEFAULT_STRETCH = 1.6
_PLACEMENT_TRIES = 3


def render_flat(config: SceneSettings, image_id: int) -> tuple[np.ndarray, list[SceneObject]]:
    """Render one flat-style image: RGB uint8 [S, S, 3] pixels and its visible objects."""
    rng = np.random.default_rng([config.seed, image_id])
    size = config.image_size
    scale = size / _REFERENCE_SIZE
    canvas = _background(rng, size, scale)
    count = int(rng.integers(config.min_objects, config.max_objects + 1))
    families = pick_families(rng, count, BASE_FAMILIES, NOVEL_FAMILIES)
    sides = [sample_side(rng, _SIZE_BUCKETS, scale, 8.0) for _ in families]
    jitter = rng.uniform(0.7, 1.3, size=count)
    order = sorted(range(count), key=lambda i: -sides[i] * jitter[i])
    labels = np.zeros((size, size), dtype=np.int16)
    drawn: list[tuple[str, int, int, int, int, int]] = []
    for index in order:
        placed = _draw_object(rng, canvas, labels, families[index], sides[index], scale, len(drawn))
        if placed is not None:
            drawn.append((families[index], *placed))
    _finish(rng, canvas, scale)
    objects = visible_objects(labels, drawn)
    return np.clip(canvas, 0, 255).astype(np.uint8), objects


def _coords(height: int, width: int, angle: float) -> np.ndarray:
    """Coordinate along direction angle for every pixel of a height x width grid."""
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    return xs * np.float32(math.cos(angle)) + ys * np.float32(math.sin(angle))


def _background(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    """Textured, cluttered background as float32 HxWx3 in [0, 255]."""
    low, high = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
    ramp = _coords(size, size, rng.uniform(0, 2 * math.pi))
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1.0)
    canvas = low + (high - low) * ramp[..., None]
    octaves = ((int(rng.integers(3, 10)), 0.8, 0.5), (int(rng.integers(14, 40)), 0.5, 0.3))
    for cells, probability, strength in octaves:
        if rng.random() < probability:
            grid = rng.integers(0, 256, size=(cells, cells, 3), dtype=np.uint8)
            noise = np.asarray(Image.fromarray(grid).resize((size, size), Image.BICUBIC))
            weight = np.float32(rng.uniform(0.1, strength))
            canvas = canvas * (1 - weight) + noise.astype(np.float32) * weight
    if rng.random() < 0.35:
        period = rng.uniform(6, 40) * scale
        wave = np.sin(
            _coords(size, size, rng.uniform(0, math.pi)) * np.float32(2 * math.pi / period)
        )
        tint = rng.uniform(0.3, 1.0, size=3).astype(np.float32) * np.float32(rng.uniform(8, 30))
        canvas = canvas + wave[..., None] * tint
    if rng.random() < 0.6:
        canvas = _add_blobs(rng, canvas, size, scale)
    return _add_strokes(rng, canvas, size, scale)


def _add_blobs(rng: np.random.Generator, canvas: np.ndarray, size: int, scale: float) -> np.ndarray:
    """Faint, heavily blurred smudges (unannotated, shapeless)."""
    layer = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(layer)
    for _ in range(int(rng.integers(2, 7))):
        cx, cy = rng.uniform(0, size, size=2)
        rx, ry = rng.uniform(0.04, 0.2, size=2) * size
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=int(rng.integers(120, 256)))
    blurred = layer.filter(ImageFilter.GaussianBlur(float(rng.uniform(5, 12)) * scale))
    alpha = np.asarray(blurred, dtype=np.float32)[..., None] * np.float32(
        rng.uniform(0.12, 0.3) / 255
    )
    colour = rng.uniform(0, 255, size=3).astype(np.float32)
    return canvas * (1 - alpha) + colour * alpha


def _add_strokes(
    rng: np.random.Generator, canvas: np.ndarray, size: int, scale: float
) -> np.ndarray:
    """Thin polylines and small dots (unannotated clutter)."""
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(image)
    if rng.random() < 0.75:
        for _ in range(int(rng.integers(2, 12))):
            points = rng.uniform(-0.1, 1.1, size=(int(rng.integers(2, 5)), 2)) * size
            colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
            width = max(1, round(float(rng.uniform(1, 2.5)) * scale))
            draw.line([tuple(p) for p in points.tolist()], fill=colour, width=width)
    if rng.random() < 0.6:
        for _ in range(int(rng.integers(5, 60))):
            cx, cy = rng.uniform(0, size, size=2)
            radius = float(rng.uniform(0.7, 2.2)) * scale
            colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
            draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour)
    return np.array(image, dtype=np.float32)


def _finish(rng: np.random.Generator, canvas: np.ndarray, scale: float) -> None:
    """Sensor noise and, sometimes, a slight blur, in place."""
    if rng.random() < 0.3:
        image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), mode="RGB")
        radius = float(rng.uniform(0.4, 0.9)) * scale
        canvas[...] = np.asarray(image.filter(ImageFilter.GaussianBlur(radius)), np.float32)
    sigma = np.float32(rng.uniform(0, 6))
    canvas += rng.standard_normal(canvas.shape[:2], dtype=np.float32)[..., None] * sigma


def _circle(count: int = 64, radius: float = 1.0, cx: float = 0.0) -> np.ndarray:
    """Polygon approximating a circle."""
    angles = np.linspace(0, 2 * math.pi, count, endpoint=False)
    return np.stack([cx + radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def _regular(sides: int, radius: float = 1.0) -> np.ndarray:
    """Regular polygon with a vertex pointing up."""
    angles = -math.pi / 2 + np.arange(sides) * 2 * math.pi / sides
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def _shape_parts(family: str, rng: np.random.Generator) -> list[tuple[np.ndarray, bool]]:
    """Unit-sized polygons of a family: (points, True to fill / False to cut out)."""
    if family == "disc":
        return [(_circle(), True)]
    if family == "ring":
        return [(_circle(), True), (_circle(radius=rng.uniform(0.45, 0.65)), False)]
    if family == "square":
        return [(np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=float), True)]
    if family == "triangle":
        return [(_regular(3), True)]
    if family == "star":
        outer = _regular(10)
        outer[1::2] *= rng.uniform(0.38, 0.5)
        return [(outer, True)]
    if family == "cross":
        t = rng.uniform(0.28, 0.38)
        points = [(-t, -1), (t, -1), (t, -t), (1, -t), (1, t), (t, t)]
        points += [(t, 1), (-t, 1), (-t, t), (-1, t), (-1, -t), (-t, -t)]
        return [(np.array(points, dtype=float), True)]
    if family == "pentagon":
        return [(_regular(5), True)]
    if family == "heart":
        t = np.linspace(0, 2 * math.pi, 72, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        return [(np.stack([x, y], axis=1) / 16, True)]
    if family == "hexagon":
        return [(_regular(6), True)]
    if family == "ellipse":
        return [(_circle() * np.array([1.0, 0.55]), True)]
    if family == "crescent":
        cut = _circle(radius=rng.uniform(0.8, 0.95), cx=rng.uniform(0.35, 0.55))
        return [(_circle(), True), (cut, False)]
    if family == "arrow":
        w = rng.uniform(0.16, 0.28)
        points = [(-1, -w), (0.15, -w), (0.15, -0.6), (1, 0), (0.15, 0.6), (0.15, w), (-1, w)]
        return [(np.array(points, dtype=float), True)]
    if family == "l_shape":
        t = rng.uniform(0.55, 0.8)
        points = [(-0.8, -1), (-0.8 + t, -1), (-0.8 + t, 1 - t), (0.8, 1 - t), (0.8, 1), (-0.8, 1)]
        return [(np.array(points, dtype=float), True)]
    if family == "diamond":
        return [(np.array([[0, -1], [0.6, 0], [0, 1], [-0.6, 0]], dtype=float), True)]
    if family == "trapezoid":
        top = rng.uniform(0.35, 0.6)
        points = [(-1, 0.6), (1, 0.6), (top, -0.6), (-top, -0.6)]
        return [(np.array(points, dtype=float), True)]
    if family == "semicircle":
        angles = np.linspace(0, math.pi, 33)
        return [(np.stack([np.cos(angles), 0.4 - np.sin(angles)], axis=1), True)]
    raise ValueError(f"unknown shape family {family!r}")


def _rasterise(parts: list[tuple[np.ndarray, bool]], width: int, height: int) -> np.ndarray:
    """Boolean mask of polygons already in pixel coordinates of a width x height canvas."""
    layer = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(layer)
    for points, fill in parts:
        draw.polygon([tuple(p) for p in points.tolist()], fill=255 if fill else 0)
    return np.asarray(layer) > 0


def _unit_area(parts: list[tuple[np.ndarray, bool]]) -> float:
    """Area of unit-sized shape parts, measured by rasterising at 64 px per unit."""
    resolution = 64.0
    pixels = [(points * resolution + 1.25 * resolution, fill) for points, fill in parts]
    extent = int(2.5 * resolution)
    return max(float(_rasterise(pixels, extent, extent).sum()), 1.0) / resolution**2


def _draw_object(
    rng: np.random.Generator,
    canvas: np.ndarray,
    labels: np.ndarray,
    family: str,
    side: float,
    scale: float,
    number: int,
) -> tuple[int, int, int, int, int] | None:
    """Draw one object on top; return (mask pixels, clipped box x0, y0, x1, y1) or None."""
    size = canvas.shape[0]
    parts = _shape_parts(family, rng)
    factor = side / math.sqrt(_unit_area(parts))
    limit = math.log(_MAX_STRETCH.get(family, _DEFAULT_STRETCH))
    aspect = math.exp(rng.uniform(-limit, limit))
    angle = rng.uniform(0, 2 * math.pi)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    stretch = np.array([math.sqrt(aspect), 1 / math.sqrt(aspect)]) * factor
    parts = [((points * stretch) @ rotation.T, fill) for points, fill in parts]
    low = np.min([points.min(axis=0) for points, fill in parts if fill], axis=0) - 1
    high = np.max([points.max(axis=0) for points, fill in parts if fill], axis=0) + 1
    width, height = (int(v) for v in np.ceil(high - low))
    mask = _rasterise([(points - low, fill) for points, fill in parts], width, height)
    full = int(mask.sum())
    if full == 0:
        return None
    x0, y0 = _place(rng, labels, width, height)
    ix0, iy0 = max(x0, 0), max(y0, 0)
    ix1, iy1 = min(x0 + width, size), min(y0 + height, size)
    if ix0 >= ix1 or iy0 >= iy1:
        return None
    region = canvas[iy0:iy1, ix0:ix1]
    colour = _contrasting_colour(rng, region.reshape(-1, 3).mean(axis=0))
    texture = _texture(rng, height, width, colour, scale)
    if rng.random() < 0.35:
        _outline(rng, texture, mask, colour, scale)
    window = mask[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
    region[window] = texture[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0][window]
    labels[iy0:iy1, ix0:ix1][window] = number + 1
    return full, ix0, iy0, ix1, iy1


def _place(
    rng: np.random.Generator, labels: np.ndarray, width: int, height: int
) -> tuple[int, int]:
    """Top-left corner of the least crowded of a few random placements."""
    size = labels.shape[0]
    truncate = rng.random() < 0.3
    best: tuple[int, int] = (0, 0)
    best_overlap = -1
    for _ in range(_PLACEMENT_TRIES):
        corner = []
        for extent in (width, height):
            low = -0.35 * extent if truncate else 0.0
            high = size - (0.65 if truncate else 1.0) * extent
            corner.append(int(rng.uniform(low, high)) if high > low else int(size / 2 - extent / 2))
        x0, y0 = corner
        window = labels[max(y0, 0) : max(y0 + height, 0), max(x0, 0) : max(x0 + width, 0)]
        overlap = int(np.count_nonzero(window))
        if best_overlap < 0 or overlap < best_overlap:
            best, best_overlap = (x0, y0), overlap
    return best


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A random colour, re-drawn a few times to stand out from the local background."""
    best = rng.uniform(0, 255, size=3)
    for _ in range(6):
        if np.linalg.norm(best - background) >= 80:
            break
        candidate = rng.uniform(0, 255, size=3)
        if np.linalg.norm(candidate - background) > np.linalg.norm(best - background):
            best = candidate
    return best.astype(np.float32)


def _texture(
    rng: np.random.Generator, height: int, width: int, colour: np.ndarray, scale: float
) -> np.ndarray:
    """Object fill: solid, stripes, checker, gradient or speckle (float32 HxWx3)."""
    second = np.clip(colour + rng.uniform(-110, 110, size=3), 0, 255).astype(np.float32)
    kind = int(rng.integers(5))
    along = _coords(height, width, rng.uniform(0, 2 * math.pi))
    if kind == 0:
        span = max(float(np.ptp(along)), 1.0)
        shade = 1 + np.float32(rng.uniform(-0.25, 0.25)) * (along - along.min()) / span
        return colour * shade[..., None]
    if kind == 1:
        period = np.float32(rng.uniform(3, 12) * scale)
        stripes = (np.sin(along * (2 * np.pi / period)) > 0)[..., None]
        return np.where(stripes, colour, second)
    if kind == 2:
        period = np.float32(rng.uniform(3, 10) * scale)
        across = _coords(height, width, rng.uniform(0, 2 * math.pi))
        cells = (np.floor(along / period) + np.floor(across / period)) % 2
        return np.where(cells[..., None] > 0, colour, second)
    if kind == 3:
        t = ((along - along.min()) / max(float(np.ptp(along)), 1.0))[..., None]
        return colour + (second - colour) * t
    amount = np.float32(rng.uniform(12, 40))
    speckle = rng.standard_normal((height, width, 1), dtype=np.float32) * amount
    return np.broadcast_to(colour, (height, width, 3)) + speckle


def _outline(
    rng: np.random.Generator,
    texture: np.ndarray,
    mask: np.ndarray,
    colour: np.ndarray,
    scale: float,
) -> None:
    """Paint a darker or lighter rim along the inside of the mask, in place."""
    inner = mask.copy()
    for _ in range(max(1, round(float(rng.uniform(1, 2.5)) * scale))):
        shrunk = inner.copy()
        shrunk[1:] &= inner[:-1]
        shrunk[:-1] &= inner[1:]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        inner = shrunk
    edge = colour * 0.45 if rng.random() < 0.6 else colour * 0.5 + 127
    texture[mask & ~inner] = edge

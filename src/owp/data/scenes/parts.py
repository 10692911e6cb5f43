"""Object families of the ``photo`` scene style: each object is 2–4 parts.

A family builds its parts in unit coordinates (about [-1, 1] on both axes, y down), each part a
list of ``(polygon [N, 2], fill)`` (``fill`` False cuts a hole). The renderer gives every part
its own colour and texture, so bottom-up colour grouping sees parts, not objects. Base and novel
families differ both in shape and in part structure (which primitives, how many parts, how they
join).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

Polygon = tuple[np.ndarray, bool]
Part = list[Polygon]


def _ellipse(
    cx: float, cy: float, rx: float, ry: float, start: float = 0.0, stop: float = 360.0
) -> np.ndarray:
    """Polygon of an ellipse (or of its arc from start to stop degrees, closed by a chord)."""
    angles = np.radians(np.linspace(start, stop, 40, endpoint=stop - start < 360))
    return np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], axis=1)


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Polygon of an axis-aligned rectangle."""
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=float)


def _poly(*points: tuple[float, float]) -> np.ndarray:
    """Polygon from its vertices."""
    return np.array(points, dtype=float)


def _mushroom(rng: np.random.Generator) -> list[Part]:
    stem = rng.uniform(0.18, 0.3)
    return [
        [(_rect(-stem, -0.15, stem, 0.9), True)],
        [(_ellipse(0, -0.1, 1, rng.uniform(0.5, 0.8), 180, 360), True)],
    ]


def _snowman(rng: np.random.Generator) -> list[Part]:
    return [
        [(_ellipse(0, 0.5, 0.48, 0.45), True)],
        [(_ellipse(0, -0.15, 0.34, 0.32), True)],
        [(_ellipse(0, -0.65, rng.uniform(0.2, 0.26), 0.22), True)],
    ]


def _house(rng: np.random.Generator) -> list[Part]:
    return [
        [(_rect(-0.7, -0.1, 0.7, 0.9), True)],
        [(_poly((-0.9, -0.05), (0.9, -0.05), (0, -rng.uniform(0.7, 1.0))), True)],
        [(_rect(-0.16, 0.35, 0.16, 0.9), True)],
    ]


def _tree(rng: np.random.Generator) -> list[Part]:
    return [
        [(_rect(-0.14, 0.1, 0.14, 0.95), True)],
        [(_ellipse(0, -0.35, rng.uniform(0.55, 0.8), 0.6), True)],
    ]


def _bottle(rng: np.random.Generator) -> list[Part]:
    return [
        [(_rect(-0.35, -0.2, 0.35, 1.0), True)],
        [(_rect(-0.13, -0.78, 0.13, -0.15), True)],
        [(_rect(-0.17, -0.98, 0.17, -0.74), True)],
    ]


def _car(rng: np.random.Generator) -> list[Part]:
    top = rng.uniform(0.35, 0.5)
    return [
        [(_rect(-1.0, -0.1, 1.0, 0.4), True)],
        [(_poly((-0.55, -0.08), (0.5, -0.08), (0.3, -0.1 - top), (-0.35, -0.1 - top)), True)],
        [(_ellipse(-0.55, 0.4, 0.22, 0.22), True), (_ellipse(0.55, 0.4, 0.22, 0.22), True)],
    ]


def _flower(rng: np.random.Generator) -> list[Part]:
    count = int(rng.integers(5, 8))
    petals = []
    for k in range(count):
        angle = 2 * math.pi * k / count
        petals.append(
            (_ellipse(0.3 * math.cos(angle), -0.4 + 0.3 * math.sin(angle), 0.24, 0.24), True)
        )
    return [
        [(_rect(-0.06, -0.3, 0.06, 1.0), True)],
        petals,
        [(_ellipse(0, -0.4, 0.2, 0.2), True)],
    ]


def _hammer(rng: np.random.Generator) -> list[Part]:
    return [
        [(_rect(-0.1, -0.5, 0.1, 1.0), True)],
        [(_rect(-0.6, -0.85, rng.uniform(0.45, 0.7), -0.45), True)],
    ]


def _cup(rng: np.random.Generator) -> list[Part]:
    return [
        [(_ellipse(0.55, 0, 0.35, 0.38), True), (_ellipse(0.55, 0, 0.2, 0.22), False)],
        [(_poly((-0.6, -0.7), (0.6, -0.7), (0.45, 0.7), (-0.45, 0.7)), True)],
    ]


def _table(rng: np.random.Generator) -> list[Part]:
    return [
        [(_rect(-0.85, -0.3, -0.7, 0.7), True), (_rect(0.7, -0.3, 0.85, 0.7), True)],
        [(_rect(-1.0, -0.45, 1.0, -0.25), True)],
    ]


def _rocket(rng: np.random.Generator) -> list[Part]:
    return [
        [(_poly((-0.55, 0.9), (-0.25, 0.3), (-0.25, 0.9)), True)]
        + [(_poly((0.55, 0.9), (0.25, 0.3), (0.25, 0.9)), True)],
        [(_poly((-0.28, 0.85), (0.28, 0.85), (0.28, -0.4), (0, -1.0), (-0.28, -0.4)), True)],
        [(_ellipse(0, -0.1, 0.14, 0.14), True)],
    ]


def _ice_cream(rng: np.random.Generator) -> list[Part]:
    return [
        [(_poly((-0.42, -0.15), (0.42, -0.15), (0, 1.0)), True)],
        [(_ellipse(0, -0.42, 0.48, 0.42), True)],
        [(_ellipse(rng.uniform(-0.1, 0.1), -0.9, 0.13, 0.13), True)],
    ]


def _robot(rng: np.random.Generator) -> list[Part]:
    return [
        [(_rect(-0.35, 0.45, -0.12, 1.0), True), (_rect(0.12, 0.45, 0.35, 1.0), True)],
        [(_rect(-0.8, -0.3, -0.5, 0.3), True), (_rect(0.5, -0.3, 0.8, 0.3), True)],
        [(_rect(-0.5, -0.4, 0.5, 0.5), True)],
        [(_rect(-0.3, -0.95, 0.3, -0.45), True)],
    ]


def _kite(rng: np.random.Generator) -> list[Part]:
    tail = [
        (_poly((x, y), (x + 0.1, y + 0.02), (x + 0.25, y + 0.4), (x + 0.15, y + 0.38)), True)
        for x, y in ((-0.05, 0.45), (0.1, 0.8))
    ]
    return [tail, [(_poly((0, -1.0), (0.55, -0.25), (0, 0.5), (-0.55, -0.25)), True)]]


def _bird(rng: np.random.Generator) -> list[Part]:
    return [
        [(_ellipse(-0.1, 0.2, 0.75, 0.45), True)],
        [(_ellipse(0.6, -0.25, 0.28, 0.28), True)],
        [(_poly((0.82, -0.32), (1.05, -0.2), (0.82, -0.12)), True)],
        [(_poly((-0.5, 0.05), (0.3, 0.1), (-0.3, -0.55)), True)],
    ]


def _key(rng: np.random.Generator) -> list[Part]:
    return [
        [(_rect(-0.2, 0.0, 0.95, 0.14), True)],
        [(_rect(0.55, 0.14, 0.65, 0.35), True), (_rect(0.78, 0.14, 0.88, 0.3), True)],
        [(_ellipse(-0.5, 0.07, 0.38, 0.38), True), (_ellipse(-0.5, 0.07, 0.17, 0.17), False)],
    ]


BASE_BUILDERS: dict[str, Callable[[np.random.Generator], list[Part]]] = {
    "mushroom": _mushroom,
    "snowman": _snowman,
    "house": _house,
    "tree": _tree,
    "bottle": _bottle,
    "car": _car,
    "flower": _flower,
    "hammer": _hammer,
}
NOVEL_BUILDERS: dict[str, Callable[[np.random.Generator], list[Part]]] = {
    "cup": _cup,
    "table": _table,
    "rocket": _rocket,
    "ice_cream": _ice_cream,
    "robot": _robot,
    "kite": _kite,
    "bird": _bird,
    "key": _key,
}
BUILDERS = {**BASE_BUILDERS, **NOVEL_BUILDERS}


def _raster(parts: list[Part], offset: np.ndarray, width: int, height: int) -> np.ndarray:
    """Part index of every pixel (-1 outside the object; later parts on top); int8 [H, W]."""
    owner = np.full((height, width), -1, dtype=np.int8)
    for index, part in enumerate(parts):
        layer = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(layer)
        for points, fill in part:
            draw.polygon([tuple(p) for p in (points - offset).tolist()], fill=255 if fill else 0)
        owner[np.asarray(layer) > 0] = index
    return owner


def part_map(
    family: str, rng: np.random.Generator, side: float, angle: float, aspect: float
) -> np.ndarray:
    """An object of ``family`` whose mask covers about ``side``² pixels, rotated by ``angle``
    (radians) and stretched by ``aspect`` (width over height); int8 [H, W] of part indices,
    -1 outside (see :func:`_raster`)."""
    parts = BUILDERS[family](rng)
    unit = _raster([[(p * 32 + 48, f) for p, f in part] for part in parts], np.zeros(2), 96, 96)
    factor = side / math.sqrt(max(int((unit >= 0).sum()), 1) / 32**2)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    stretch = np.array([math.sqrt(aspect), 1 / math.sqrt(aspect)]) * factor
    moved = [[((points * stretch) @ rotation.T, fill) for points, fill in part] for part in parts]
    every = np.concatenate([points for part in moved for points, _ in part])
    low = every.min(axis=0) - 1
    width, height = (max(int(v), 1) for v in np.ceil(every.max(axis=0) + 1 - low))
    return _raster(moved, low, width, height)

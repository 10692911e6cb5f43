"""The ``photo`` scene style: images built to behave like real photos for proposal methods.

An image is a stuff background (:mod:`~owp.data.scenes.stuff`) with clutter, then 2–15 objects
of 2–4 parts each (:mod:`~owp.data.scenes.parts`), back to front from the largest, each part
with its own colour and texture (:mod:`~owp.data.scenes.textures`). Per object: a shading
gradient, sometimes a soft shadow, sometimes blurred edges, and one of three appearances:
``normal``, ``low-contrast`` (parts coloured near the local background) or ``camouflage``
(some parts filled with the background's own texture from elsewhere in the image). Then camera
blur, noise and JPEG (:mod:`~owp.data.scenes.camera`). Object sizes follow COCO's mix relative
to the image: at 640 px about 41 % small < 32², 34 % medium and 24 % large > 96² by visible
area; at 320 px the same objects at half the side.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageFilter

from owp.data.scenes.camera import camera
from owp.data.scenes.common import (
    SceneObject,
    SceneSettings,
    pick_families,
    sample_side,
    visible_objects,
)
from owp.data.scenes.parts import BASE_BUILDERS, NOVEL_BUILDERS, part_map
from owp.data.scenes.stuff import add_clutter, stuff_background
from owp.data.scenes.textures import PATTERNS, along, natural_colour, near_colour, texture

BASE_FAMILIES: tuple[str, ...] = tuple(BASE_BUILDERS)
NOVEL_FAMILIES: tuple[str, ...] = tuple(NOVEL_BUILDERS)
FAMILIES: tuple[str, ...] = BASE_FAMILIES + NOVEL_FAMILIES

_REFERENCE_SIZE = 320
# Probability of each size bucket and the range of sqrt(full mask area) on a 640-px image,
# COCO's size: objects keep COCO's size *relative to the image* at every image size, so a 640-px
# set has COCO's absolute mix (about 41 % small, 34 % medium, 24 % large by visible area) and a
# 320-px set the same objects at half the side. Relative size is what sets the no-learning
# floors (docs/decisions.md, issue 23).
_SIZE_BUCKETS: tuple[tuple[float, float, float], ...] = (
    (0.41, 9.0, 31.0),
    (0.34, 33.0, 96.0),
    (0.25, 97.0, 160.0),
)
_SIZE_REFERENCE = 640
_APPEARANCES: tuple[str, ...] = ("normal", "low-contrast", "camouflage")
_APPEARANCE_P: tuple[float, ...] = (0.45, 0.33, 0.22)
# Small (distant) objects are more often faint, as in photos.
_SMALL_APPEARANCE_P: tuple[float, ...] = (0.35, 0.45, 0.2)
_GROUP_P = 0.3
_PLACEMENT_TRIES = 3
_MAX_STRETCH = 1.7


def render_photo(config: SceneSettings, image_id: int) -> tuple[np.ndarray, list[SceneObject]]:
    """Render one photo-style image: RGB uint8 [S, S, 3] pixels and its visible objects."""
    rng = np.random.default_rng([config.seed, image_id, 2])
    size = config.image_size
    scale = size / _REFERENCE_SIZE
    canvas = stuff_background(rng, size, scale)
    add_clutter(rng, canvas, scale)
    spread = config.max_objects - config.min_objects
    count = config.min_objects + min(spread, int(rng.poisson(0.4 * spread)))
    families = pick_families(rng, count, BASE_FAMILIES, NOVEL_FAMILIES)
    sides = [sample_side(rng, _SIZE_BUCKETS, size / _SIZE_REFERENCE, 6.0) for _ in families]
    jitter = rng.uniform(0.8, 1.25, size=count)
    order = sorted(range(count), key=lambda i: -sides[i] * jitter[i])
    labels = np.zeros((size, size), dtype=np.int16)
    drawn: list[tuple[str, int, int, int, int, int]] = []
    anchors: list[tuple[float, float, float]] = []
    for index in order:
        placed = _draw_object(rng, canvas, labels, anchors, families[index], sides[index], scale)
        if placed is not None:
            drawn.append((families[index], *placed))
    return camera(rng, canvas, scale), visible_objects(labels, drawn)


def _place(
    rng: np.random.Generator,
    labels: np.ndarray,
    anchors: list[tuple[float, float, float]],
    width: int,
    height: int,
) -> tuple[int, int]:
    """Top-left corner of a width x height object: the least covered (by ``labels``) of a few
    candidates, each often next to an object already drawn (``anchors``: centre x, y and side;
    scenes have groups), otherwise anywhere. Sometimes truncated by the image border, never by
    more than 35 % a side.
    """
    size = labels.shape[0]
    truncate = rng.random() < 0.1
    best, best_overlap = (0, 0), -1
    for _ in range(_PLACEMENT_TRIES):
        if anchors and rng.random() < _GROUP_P:
            cx, cy, side = anchors[int(rng.integers(len(anchors)))]
            centre = np.array([cx, cy]) + rng.normal(0, 0.6 * side, size=2)
        else:
            centre = rng.uniform(0, size, size=2)
        corner = []
        for value, extent in zip(centre.tolist(), (width, height), strict=True):
            low = -0.35 * extent if truncate else 0.0
            high = size - (0.65 if truncate else 1.0) * extent
            corner.append(int(min(max(value - extent / 2, low), high)) if high > low else int(low))
        x0, y0 = corner
        window = labels[max(y0, 0) : max(y0 + height, 0), max(x0, 0) : max(x0 + width, 0)]
        overlap = int(np.count_nonzero(window))
        if best_overlap < 0 or overlap < best_overlap:
            best, best_overlap = (x0, y0), overlap
    return best


def _part_fill(
    rng: np.random.Generator,
    appearance: str,
    canvas: np.ndarray,
    box: tuple[int, int, int, int],
    local: np.ndarray,
    scale: float,
) -> np.ndarray:
    """Colour and texture of one part over the object's clipped box (x0, y0, x1, y1);
    float32 [h, w, 3]."""
    x0, y0, x1, y1 = box
    height, width = y1 - y0, x1 - x0
    if appearance == "camouflage" and rng.random() < 0.7:
        size = canvas.shape[0]
        sx = int(rng.integers(0, max(size - width, 0) + 1))
        sy = int(rng.integers(0, max(size - height, 0) + 1))
        tint = rng.uniform(0.85, 1.15, size=3).astype(np.float32)
        return canvas[sy : sy + height, sx : sx + width] * tint
    if appearance == "low-contrast":
        first = near_colour(rng, local, float(rng.uniform(20, 45)))
    else:
        first = natural_colour(rng)
    second = near_colour(rng, first, float(rng.uniform(20, 120)))
    kind = PATTERNS[int(rng.integers(len(PATTERNS)))]
    return texture(rng, kind, height, width, first, second, scale)


def _shadow(
    rng: np.random.Generator, canvas: np.ndarray, mask: np.ndarray, x0: int, y0: int, scale: float
) -> None:
    """Darken the canvas under a blurred, offset copy of the object mask, in place."""
    size = canvas.shape[0]
    dx, dy = (int(v * scale) for v in rng.uniform(1, 8, size=2))
    layer = np.zeros((size, size), dtype=np.uint8)
    height, width = mask.shape
    ax0, ay0 = max(x0 + dx, 0), max(y0 + dy, 0)
    ax1, ay1 = min(x0 + dx + width, size), min(y0 + dy + height, size)
    if ax0 >= ax1 or ay0 >= ay1:
        return
    layer[ay0:ay1, ax0:ax1] = mask[ay0 - y0 - dy : ay1 - y0 - dy, ax0 - x0 - dx : ax1 - x0 - dx]
    layer *= 255
    radius = float(rng.uniform(1.5, 5.0)) * scale
    soft = np.asarray(Image.fromarray(layer).filter(ImageFilter.GaussianBlur(radius)), np.float32)
    canvas *= (1 - soft * np.float32(rng.uniform(0.2, 0.55) / 255))[..., None]


def _draw_object(
    rng: np.random.Generator,
    canvas: np.ndarray,
    labels: np.ndarray,
    anchors: list[tuple[float, float, float]],
    family: str,
    side: float,
    scale: float,
) -> tuple[int, int, int, int, int] | None:
    """Draw one object on top and add it to ``anchors`` (see :func:`_place`); return (mask
    pixels, clipped box x0, y0, x1, y1) or None."""
    size = canvas.shape[0]
    upright = rng.random() < 0.85
    angle = float(rng.normal(0, 0.25)) if upright else float(rng.uniform(0, 2 * math.pi))
    aspect = math.exp(rng.uniform(-math.log(_MAX_STRETCH), math.log(_MAX_STRETCH)))
    owner = part_map(family, rng, side, angle, aspect)
    mask = owner >= 0
    full = int(mask.sum())
    if full == 0:
        return None
    height, width = owner.shape
    x0, y0 = _place(rng, labels, anchors, width, height)
    ix0, iy0 = max(x0, 0), max(y0, 0)
    ix1, iy1 = min(x0 + width, size), min(y0 + height, size)
    if ix0 >= ix1 or iy0 >= iy1:
        return None
    anchors.append((x0 + width / 2, y0 + height / 2, side))
    if rng.random() < 0.5:
        _shadow(rng, canvas, mask, x0, y0, scale)
    window = (slice(iy0 - y0, iy1 - y0), slice(ix0 - x0, ix1 - x0))
    owner, mask = owner[window], mask[window]
    region = canvas[iy0:iy1, ix0:ix1]
    local = region[mask].mean(axis=0) if mask.any() else region.reshape(-1, 3).mean(axis=0)
    small = side < 32 * scale
    weights = _SMALL_APPEARANCE_P if small else _APPEARANCE_P
    appearance = _APPEARANCES[int(rng.choice(len(_APPEARANCES), p=weights))]
    fill = region.copy()
    for part in range(int(owner.max()) + 1):
        texture_fill = _part_fill(rng, appearance, canvas, (ix0, iy0, ix1, iy1), local, scale)
        fill[owner == part] = texture_fill[owner == part]
    ramp = along(*mask.shape, float(rng.uniform(0, 2 * math.pi)))
    ramp = (ramp - ramp.min()) / np.float32(max(float(np.ptp(ramp)), 1.0)) - np.float32(0.5)
    fill *= (1 + ramp * np.float32(rng.uniform(0.15, 0.7)))[..., None]
    alpha = mask.astype(np.float32)
    if rng.random() < (0.6 if small else 0.35):
        layer = Image.fromarray(mask.astype(np.uint8) * 255)
        blurred = layer.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.6, 2.0)) * scale))
        alpha = np.asarray(blurred, dtype=np.float32) / 255
    region += (fill - region) * alpha[..., None]
    labels[iy0:iy1, ix0:ix1][mask] = len(anchors)
    return full, ix0, iy0, ix1, iy1

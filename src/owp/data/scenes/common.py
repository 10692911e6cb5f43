"""What every scene style shares: the settings it reads, the objects it reports, and how an
object's box and visible fraction come from the label map of a rendered image."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class SceneSettings(Protocol):
    """The generator settings a style reads (:class:`owp.data.synthetic.SynthConfig`)."""

    @property
    def seed(self) -> int: ...

    @property
    def image_size(self) -> int: ...

    @property
    def min_objects(self) -> int: ...

    @property
    def max_objects(self) -> int: ...


@dataclass(frozen=True)
class SceneObject:
    """One rendered object after all drawing: box ``(x, y, w, h)`` tight around its visible
    pixels, ``area`` the number of visible pixels, ``visible_fraction`` visible over full mask."""

    family: str
    bbox: tuple[float, float, float, float]
    area: int
    visible_fraction: float


def visible_objects(
    labels: np.ndarray, drawn: Sequence[tuple[str, int, int, int, int, int]]
) -> list[SceneObject]:
    """Objects of a label map (int [H, W], 0 = background, k = the k-th drawn object).

    ``drawn[k - 1]`` is ``(family, full mask pixels, x0, y0, x1, y1)``, the clipped box the
    object was drawn in; objects left with no visible pixel are dropped.
    """
    counts = np.bincount(labels.ravel(), minlength=len(drawn) + 1)
    objects = []
    for number, (family, full, x0, y0, x1, y1) in enumerate(drawn, start=1):
        visible = int(counts[number])
        if visible == 0:
            continue
        hit = labels[y0:y1, x0:x1] == number
        rows = np.flatnonzero(hit.any(axis=1))
        cols = np.flatnonzero(hit.any(axis=0))
        bbox = (
            float(x0 + cols[0]),
            float(y0 + rows[0]),
            float(cols[-1] - cols[0] + 1),
            float(rows[-1] - rows[0] + 1),
        )
        objects.append(SceneObject(family, bbox, visible, round(visible / full, 4)))
    return objects


def pick_families(
    rng: np.random.Generator, count: int, base: Sequence[str], novel: Sequence[str]
) -> list[str]:
    """Families of one image, drawn from ``base + novel``: at least one base and one novel
    when ``count >= 2``, in a random order."""
    every = [*base, *novel]
    families = [every[int(i)] for i in rng.integers(len(every), size=count)]
    if count >= 2:
        families[0] = base[int(rng.integers(len(base)))]
        families[1] = novel[int(rng.integers(len(novel)))]
    return [families[int(i)] for i in rng.permutation(count)]


def sample_side(
    rng: np.random.Generator,
    buckets: Sequence[tuple[float, float, float]],
    scale: float,
    minimum: float,
) -> float:
    """Square root of a target mask area: a ``(weight, low, high)`` bucket drawn by weight,
    a log-uniform side in it, times ``scale``, at least ``minimum`` pixels."""
    weights = [bucket[0] for bucket in buckets]
    _, low, high = buckets[int(rng.choice(len(buckets), p=weights))]
    return max(minimum, float(np.exp(rng.uniform(np.log(low), np.log(high)))) * scale)

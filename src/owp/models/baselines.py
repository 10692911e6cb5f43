"""Non-learned proposal baselines: what "no learning" scores on the open-world protocol.

Both follow the model output contract (DESIGN.md §3): a dict with ``boxes`` (float32
``[N, 4]`` xyxy pixels) and ``scores`` (float32 ``[N]``, descending), ``objectness`` equal to
``scores``. Written by hand: no library ships these trivial generators.
"""

from __future__ import annotations

import math

import torch

BASELINES: tuple[str, ...] = ("sliding-window", "random")


def sliding_window_proposals(
    width: int,
    height: int,
    num: int = 1000,
    *,
    min_size: float = 16.0,
    scales_per_octave: int = 2,
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0),
    overlap: float = 0.5,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Multi-scale sliding windows, ranked by a scale-interleaved random order.

    Window areas grow geometrically from ``min_size**2`` up to the image area
    (``scales_per_octave`` sizes per doubling of the side) for each aspect ratio (h / w); the
    stride is ``(1 - overlap)`` times the window side. Windows are ranked round-robin across
    sizes (a random order within each size, fixed by ``seed``) so that every budget k covers
    all scales. Scores fall linearly with rank from 1.
    """
    generator = torch.Generator().manual_seed(seed)
    per_size: list[torch.Tensor] = []
    max_side = float(max(width, height))
    octaves = max(math.log2(max_side / min_size), 0.0)
    for step in range(int(octaves * scales_per_octave) + 1):
        side = min_size * 2.0 ** (step / scales_per_octave)
        for ratio in aspect_ratios:
            w = min(side / math.sqrt(ratio), float(width))
            h = min(side * math.sqrt(ratio), float(height))
            windows = _tile(width, height, w, h, overlap)
            per_size.append(windows[torch.randperm(len(windows), generator=generator)])
    boxes = _round_robin(per_size)[:num]
    return _ranked(boxes)


def random_proposals(
    width: int, height: int, num: int = 1000, *, min_size: float = 8.0, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Uniformly placed boxes with log-uniform width and height in ``[min_size, image side]``."""
    generator = torch.Generator().manual_seed(seed)
    low = math.log(min_size)
    sides = torch.rand(num, 2, generator=generator)
    w = torch.exp(low + sides[:, 0] * (math.log(max(width, min_size)) - low)).clamp(max=width)
    h = torch.exp(low + sides[:, 1] * (math.log(max(height, min_size)) - low)).clamp(max=height)
    corner = torch.rand(num, 2, generator=generator)
    x0, y0 = corner[:, 0] * (width - w), corner[:, 1] * (height - h)
    return _ranked(torch.stack([x0, y0, x0 + w, y0 + h], dim=1))


def _tile(width: int, height: int, w: float, h: float, overlap: float) -> torch.Tensor:
    """All ``w x h`` windows on a grid with stride ``(1 - overlap) * side``, shape ``[N, 4]``."""
    xs = _starts(width, w, max((1.0 - overlap) * w, 1.0))
    ys = _starts(height, h, max((1.0 - overlap) * h, 1.0))
    y0, x0 = torch.meshgrid(ys, xs, indexing="ij")
    x0, y0 = x0.reshape(-1), y0.reshape(-1)
    return torch.stack([x0, y0, x0 + w, y0 + h], dim=1)


def _starts(extent: int, size: float, stride: float) -> torch.Tensor:
    """Window starts covering ``[0, extent]``, the last one flush with the far edge."""
    count = max(math.ceil((extent - size) / stride), 0) + 1
    return torch.linspace(0.0, max(extent - size, 0.0), count)


def _round_robin(groups: list[torch.Tensor]) -> torch.Tensor:
    """Interleave rows: first of every group, then second of every group, ..."""
    rank = torch.cat([torch.arange(len(g)) * len(groups) + i for i, g in enumerate(groups)])
    order = torch.argsort(rank, stable=True)
    return torch.cat(groups)[order]


def _ranked(boxes: torch.Tensor) -> dict[str, torch.Tensor]:
    boxes = boxes.float()
    scores = 1.0 - torch.arange(len(boxes), dtype=torch.float32) / max(len(boxes), 1)
    return {"boxes": boxes, "scores": scores, "objectness": scores.clone()}

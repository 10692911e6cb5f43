"""FCOS anchor points: where every feature-map location lies and which box sizes it takes.

At stride ``s`` the point of column ``col`` and row ``row`` lies at pixel ``(col * s, row * s)``;
points are row-major within a level and the levels are concatenated P3..P7 -- exactly the order
and centres of torchvision's FCOS anchors (``AnchorGenerator`` with sizes equal to the strides).
``P`` is the number of points of one (padded) image size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

FCOS_STRIDES: tuple[int, ...] = (8, 16, 32, 64, 128)
FCOS_SIZE_RANGES: tuple[tuple[float, float], ...] = (
    (0, 64),
    (64, 128),
    (128, 256),
    (256, 512),
    (512, math.inf),
)


@dataclass(frozen=True)
class Points:
    """All anchor points of one (padded) image size, shared by every image of a batch.

    Attributes:
        xy: ``[P, 2]`` float ``(x, y)`` pixel positions, levels concatenated, row-major within a
            level.
        stride: ``[P]`` float stride of each point's level.
        level: ``[P]`` int64 level index ``0 .. L-1``.
        size_range: ``[P, 2]`` float ``(lower, upper]`` bounds on ``max(l*, t*, r*, b*)``.
        num_per_level: ``L`` ints, the number of points of each level (``H_l * W_l``).
        feature_sizes: ``L`` pairs ``(H_l, W_l)``. :func:`assign` relies on each level being
            the product grid that :func:`make_points` builds (one stride and size range per
            level), which lets it work on rows and columns separately.
    """

    xy: Tensor
    stride: Tensor
    level: Tensor
    size_range: Tensor
    num_per_level: list[int]
    feature_sizes: list[tuple[int, int]]

    def __post_init__(self) -> None:
        if any(height < 1 or width < 1 for height, width in self.feature_sizes):
            raise ValueError(f"feature sizes must be positive, got {self.feature_sizes}")
        counts = [height * width for height, width in self.feature_sizes]
        if counts != list(self.num_per_level):
            raise ValueError(
                f"num_per_level {self.num_per_level} does not match feature_sizes "
                f"{self.feature_sizes}"
            )
        total = sum(counts)
        shapes = {
            "xy": (self.xy.shape, (total, 2)),
            "stride": (self.stride.shape, (total,)),
            "level": (self.level.shape, (total,)),
            "size_range": (self.size_range.shape, (total, 2)),
        }
        for name, (shape, expected) in shapes.items():
            if tuple(shape) != expected:
                raise ValueError(f"Points.{name} has shape {tuple(shape)}, expected {expected}")


def make_points(
    feature_sizes: Sequence[tuple[int, int]],
    strides: Sequence[float] = FCOS_STRIDES,
    size_ranges: Sequence[tuple[float, float]] = FCOS_SIZE_RANGES,
    *,
    image_size: tuple[int, int] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Points:
    """Anchor points of feature maps of sizes ``feature_sizes`` (``(H_l, W_l)`` per level).

    Points lie at ``(col * step_x, row * step_y)``. Without ``image_size`` the steps are the
    level's stride. With the padded batch size ``image_size = (H, W)`` they are
    ``W // W_l`` and ``H // H_l``, torchvision's ``AnchorGenerator`` convention, which
    differs from the stride on P6/P7 when ``H`` or ``W`` is not a multiple of 128 (e.g.
    ``800 // 13 = 61``); the stride still scales the regression, the center-sampling radius and
    the size ranges. FCOS-OWP uses the torchvision positions so that its checkpoints transfer.

    ``strides`` and ``size_ranges`` give one entry per level. A level accepts a box at a point
    when ``lower < max(l*, t*, r*, b*) <= upper``: half-open intervals, where torchvision uses
    open ones with the same bounds (the two differ only when ``m`` lies exactly on a bound).
    With the FCOS defaults the first lower bound is 0 and the last upper bound is infinite.
    """
    if not (len(feature_sizes) == len(strides) == len(size_ranges)):
        raise ValueError(
            f"need one stride and one size range per level: got {len(feature_sizes)} feature "
            f"sizes, {len(strides)} strides and {len(size_ranges)} size ranges"
        )
    xy, stride, level, size_range = [], [], [], []
    for index, ((height, width), step, bounds) in enumerate(
        zip(feature_sizes, strides, size_ranges, strict=True)
    ):
        step_y, step_x = (
            (step, step)
            if image_size is None
            else (
                image_size[0] // height,
                image_size[1] // width,
            )
        )
        rows = torch.arange(height, device=device, dtype=dtype) * step_y
        cols = torch.arange(width, device=device, dtype=dtype) * step_x
        grid_y, grid_x = torch.meshgrid(rows, cols, indexing="ij")
        xy.append(torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1))
        count = height * width
        stride.append(torch.full((count,), float(step), device=device, dtype=dtype))
        level.append(torch.full((count,), index, device=device, dtype=torch.int64))
        bounds_tensor = torch.tensor([float(b) for b in bounds], device=device, dtype=dtype)
        size_range.append(bounds_tensor.expand(count, 2))
    return Points(
        xy=torch.cat(xy),
        stride=torch.cat(stride),
        level=torch.cat(level),
        size_range=torch.cat(size_range),
        num_per_level=[height * width for height, width in feature_sizes],
        feature_sizes=[(int(height), int(width)) for height, width in feature_sizes],
    )

"""FCOS location-to-box assignment, with ignore (crowd) regions and pseudo boxes.

For a point ``(x, y)`` (:mod:`owp.models.fcos.points`) and a box ``(x0, y0, x1, y1)`` (xyxy
pixels) the regression target is ``(l*, t*, r*, b*) = (x - x0, y - y0, x1 - x, y1 - y)``.
Assignment (:func:`assign`) follows ``torchvision.models.detection.FCOS.compute_loss``: a point
is a candidate for a box when it lies strictly inside it (``min(l*, t*, r*, b*) > 0``), when
``m = max(l*, t*, r*, b*)`` fits its level's size range, and -- with center sampling -- when it
lies within ``center_radius * s`` of the box centre along both axes. Among several candidate
boxes the one with the smallest area wins. Ground truth is padded to ``M`` boxes per image
(:func:`pad_targets`) and the whole batch is assigned at once.

Everything works in pixels; the tensor shapes used throughout are ``B`` images, ``P`` points
and ``M`` (padded) boxes per image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from owp.models.fcos.points import Points

# matched index of a point assigned to no box, and of a point inside an ignore (crowd) region
BACKGROUND = -1
IGNORE = -2

# Boxes per int64 word in assign's bit-packed candidate search (bit 63 is the sign).
_WORD_BITS = 63


def pad_targets(
    boxes: list[Tensor],
    ignore: list[Tensor] | None = None,
    labels: list[Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Pad per-image ground truth to ``M = max_i M_i`` boxes.

    Args:
        boxes: ``B`` tensors ``[M_i, 4]`` xyxy pixels.
        ignore: ``B`` bool tensors ``[M_i]`` flagging ignore (crowd) boxes; ``None``: none.
        labels: ``B`` integer tensors ``[M_i]``; ``None``: zeros.

    Returns:
        ``boxes`` ``[B, M, 4]`` (zeros in the padding), ``valid`` ``[B, M]`` bool (True for a
        real box), ``ignore`` ``[B, M]`` bool and ``labels`` ``[B, M]`` int64.
    """
    if not boxes:
        raise ValueError("pad_targets needs at least one image")
    for index, image_boxes in enumerate(boxes):
        if image_boxes.dim() != 2 or image_boxes.shape[1] != 4:
            raise ValueError(
                f"boxes[{index}] has shape {tuple(image_boxes.shape)}, expected [M_i, 4]"
            )
    counts = [len(image_boxes) for image_boxes in boxes]
    device = boxes[0].device
    padded = pad_sequence(boxes, batch_first=True)
    length = torch.tensor(counts, device=device)
    valid = torch.arange(padded.shape[1], device=device)[None, :] < length[:, None]
    return (
        padded,
        valid,
        _pad_per_box("ignore", ignore, counts, valid, torch.bool),
        _pad_per_box("labels", labels, counts, valid, torch.int64),
    )


def pad_box_flags(flags: list[Tensor] | None, valid: Tensor) -> Tensor:
    """Pad ``B`` bool tensors ``[M_i]`` of per-box flags (e.g. ``pseudo``) to ``valid``'s
    ``[B, M]`` (from :func:`pad_targets`); ``None``: all False."""
    counts = [int(count) for count in valid.sum(dim=1).tolist()]
    return _pad_per_box("flags", flags, counts, valid, torch.bool)


def assigned_to_flagged(matched: Tensor, flags: Tensor) -> Tensor:
    """``[B, P]`` bool: the point is assigned (``matched >= 0``, from :func:`assign`) to a box
    whose flag in ``flags`` ``[B, M]`` is set (e.g. a pseudo box)."""
    if flags.shape[1] == 0:
        return torch.zeros_like(matched, dtype=torch.bool)
    return (matched >= 0) & flags.gather(1, matched.clamp(min=0))


def _pad_per_box(
    name: str, values: list[Tensor] | None, counts: list[int], valid: Tensor, dtype: torch.dtype
) -> Tensor:
    """Pad ``B`` tensors ``[M_i]`` to ``valid``'s ``[B, M]`` (zeros where ``values`` is None)."""
    if values is None:
        return torch.zeros(valid.shape, dtype=dtype, device=valid.device)
    if len(values) != len(counts):
        raise ValueError(f"{name} has {len(values)} entries for {len(counts)} images")
    for index, (image_values, count) in enumerate(zip(values, counts, strict=True)):
        if tuple(image_values.shape) != (count,):
            raise ValueError(
                f"{name}[{index}] has shape {tuple(image_values.shape)}, expected ({count},)"
            )
    return pad_sequence([v.to(dtype) for v in values], batch_first=True).to(valid.device)


def assign(
    points: Points,
    gt_boxes: Tensor,
    gt_valid: Tensor,
    gt_ignore: Tensor,
    *,
    center_radius: float | None = 1.5,
) -> Tensor:
    """Assign each point of each image to at most one ground-truth box (the FCOS rule).

    A point is a candidate for a valid box when it lies strictly inside the box, when
    ``lower < max(l*, t*, r*, b*) <= upper`` for its level (see :func:`make_points`) and,
    unless ``center_radius`` is None, when ``|x - cx| < center_radius * s`` and
    ``|y - cy| < center_radius * s`` for the box centre ``(cx, cy)`` (torchvision's center
    sampling; the inside test clips that square to the box). The candidate with the smallest
    area wins; equal areas go to the lower box index.

    Ignore (crowd) boxes never compete: every point strictly inside a crowd box that is not
    foreground for a regular box is marked :data:`IGNORE`, at every level and whatever the
    box size or center sampling — neither a positive nor a background sample, so it is left
    out of the classification loss, of unknown-object masking and of the ``all`` objectness
    samples (detectron2's and mmdetection's ignore-region semantics).

    The result equals torchvision's per-image ``[P, M]`` computation except where ``m`` lies
    exactly on a level bound (half-open here, open there), yet no ``[B, P, M]`` array is
    formed: on each level's grid the tests split into ``[B, W, M]`` column and ``[B, H, M]``
    row parts, combined per point as bit-packed int64 words of 63 boxes.

    Args:
        points: the anchor points (``P`` of them) from :func:`make_points`.
        gt_boxes: ``[B, M, 4]`` xyxy pixels, padded (:func:`pad_targets`).
        gt_valid: ``[B, M]`` bool, False for padding.
        gt_ignore: ``[B, M]`` bool, True for ignore (crowd) boxes.
        center_radius: center-sampling radius in strides; None disables center sampling.

    Returns:
        ``[B, P]`` int64: the index into ``M`` of the assigned box, :data:`BACKGROUND` or
        :data:`IGNORE`.
    """
    batch, num_boxes = gt_boxes.shape[:2]
    if gt_boxes.shape[2:] != (4,) or gt_valid.shape != (batch, num_boxes):
        raise ValueError(
            f"expected gt_boxes [B, M, 4] and gt_valid [B, M], got {tuple(gt_boxes.shape)} and "
            f"{tuple(gt_valid.shape)}"
        )
    if gt_ignore.shape != gt_valid.shape:
        raise ValueError(f"gt_ignore has shape {tuple(gt_ignore.shape)}, expected [B, M]")
    if gt_valid.dtype != torch.bool or gt_ignore.dtype != torch.bool:
        raise ValueError(
            f"gt_valid and gt_ignore must be bool, got {gt_valid.dtype} and {gt_ignore.dtype}"
        )
    num_points = points.xy.shape[0]
    if num_boxes == 0:
        return torch.full(
            (batch, num_points), BACKGROUND, dtype=torch.int64, device=gt_boxes.device
        )

    # Sort each image's boxes by area (padding last, ties kept in index order): the winner at a
    # point is then its first candidate in sorted order.
    widths = gt_boxes[..., 2] - gt_boxes[..., 0]
    heights = gt_boxes[..., 3] - gt_boxes[..., 1]
    area = (widths * heights).masked_fill(~gt_valid, math.inf)
    order = area.argsort(dim=-1, stable=True)
    sorted_boxes = gt_boxes.gather(1, order[..., None].expand(-1, -1, 4))
    sorted_valid = gt_valid.gather(1, order)
    x0, y0, x1, y1 = (coordinate[:, None, :] for coordinate in sorted_boxes.unbind(-1))

    cols, rows = _axis_tables(points, center_radius)
    fits_x, beyond_x = _axis_conditions(cols.coords, x0, x1, cols.lower, cols.upper, cols.radius)
    fits_y, beyond_y = _axis_conditions(rows.coords, y0, y1, rows.lower, rows.upper, rows.radius)
    fits_x &= (sorted_valid & ~gt_ignore.gather(1, order))[:, None, :]
    rank = _first_candidate(fits_x, beyond_x, fits_y, beyond_y, cols.slices, rows.slices)
    found = rank < num_boxes
    winner = order.gather(1, rank.clamp(max=num_boxes - 1))
    matched = torch.where(found, winner, BACKGROUND)
    in_crowd = _inside_any(points.xy, gt_boxes, gt_valid & gt_ignore)
    return matched.masked_fill(in_crowd & ~found, IGNORE)


def assign_targets(
    points: Points,
    gt_boxes: Tensor,
    gt_valid: Tensor,
    gt_ignore: Tensor,
    gt_pseudo: Tensor,
    *,
    center_radius: float | None = 1.5,
) -> Tensor:
    """:func:`assign` with pseudo boxes (self-training) that never take an annotated object's
    locations.

    Annotated boxes are assigned first, alone (:func:`assign` without the pseudo boxes). A
    pseudo box then claims only points that are :data:`BACKGROUND` for every annotated box —
    never an annotated box's foreground, never an ignore (crowd) point — by the same FCOS rule
    among the pseudo boxes (smallest area wins). Without pseudo boxes this is :func:`assign`.

    Args:
        points, gt_boxes, gt_valid, gt_ignore, center_radius: as for :func:`assign`.
        gt_pseudo: ``[B, M]`` bool, True for the pseudo boxes.

    Returns:
        ``[B, P]`` int64: the index into ``M`` of the assigned box (annotated or pseudo),
        :data:`BACKGROUND` or :data:`IGNORE`.
    """
    pseudo = gt_pseudo & gt_valid & ~gt_ignore
    annotated = assign(points, gt_boxes, gt_valid & ~pseudo, gt_ignore, center_radius=center_radius)
    if not bool(pseudo.any()):
        return annotated
    claimed = assign(
        points, gt_boxes, pseudo, torch.zeros_like(pseudo), center_radius=center_radius
    )
    return torch.where((annotated == BACKGROUND) & (claimed >= 0), claimed, annotated)


def inside_flagged(points: Points, gt_boxes: Tensor, flags: Tensor) -> Tensor:
    """``[B, P]`` bool: the point lies strictly inside a box ``gt_boxes`` ``[B, M, 4]`` whose
    flag in ``flags`` ``[B, M]`` is set (e.g. the valid pseudo boxes)."""
    return _inside_any(points.xy, gt_boxes, flags)


def _inside_any(xy: Tensor, boxes: Tensor, which: Tensor) -> Tensor:
    """``[B, P]`` bool: point ``xy[p]`` lies strictly inside some box ``boxes[b, m]`` with
    ``which[b, m]``. Only the flagged boxes are compared (crowd boxes are few per image)."""
    count = int(which.sum(dim=1).max()) if which.numel() else 0
    if count == 0:
        return torch.zeros(boxes.shape[0], xy.shape[0], dtype=torch.bool, device=xy.device)
    first = which.to(torch.int8).argsort(dim=1, descending=True, stable=True)[:, :count]
    picked = boxes.gather(1, first[..., None].expand(-1, -1, 4))  # [B, C, 4]
    picked_valid = which.gather(1, first)  # [B, C]
    x, y = xy[None, :, None, 0], xy[None, :, None, 1]
    x0, y0, x1, y1 = (picked[:, None, :, k] for k in range(4))
    inside = (x > x0) & (x < x1) & (y > y0) & (y < y1) & picked_valid[:, None, :]
    return inside.any(dim=2)


def _first_candidate(
    fits_x: Tensor,
    beyond_x: Tensor,
    fits_y: Tensor,
    beyond_y: Tensor,
    col_slices: list[slice],
    row_slices: list[slice],
) -> Tensor:
    """The first box (lowest index along ``M``) that is a candidate at each point.

    Args:
        fits_x, beyond_x: ``[B, X, M]`` bool conditions of the column table (every level's
            columns, see :func:`_axis_conditions`).
        fits_y, beyond_y: ``[B, Y, M]`` bool conditions of the row table.
        col_slices, row_slices: per level, its entries in the column and row tables; points
            are ordered level by level, row-major, as :func:`make_points` makes them.

    Returns:
        ``[B, P]`` int64 box index, ``M`` where no box is a candidate.

    The point at column ``c`` and row ``r`` is a candidate for box ``m`` when
    ``fits_x[c, m] & fits_y[r, m] & (beyond_x[c, m] | beyond_y[r, m])``. Rather than forming
    that ``[B, P, M]`` array, the flags of up to 63 boxes are packed into the bits of one int64
    per row or column, combined per point, and the lowest set bit gives the index.
    """
    num_boxes = fits_x.shape[2]
    powers = torch.ones((), dtype=torch.int64, device=fits_x.device) << torch.arange(
        _WORD_BITS, device=fits_x.device
    )
    sizes = [
        (c.stop - c.start) * (r.stop - r.start) for c, r in zip(col_slices, row_slices, strict=True)
    ]
    first = torch.full(
        (fits_x.shape[0], sum(sizes)), num_boxes, device=fits_x.device, dtype=torch.int64
    )
    # Later words first, so that an earlier word with a candidate overrides them.
    for start in reversed(range(0, num_boxes, _WORD_BITS)):
        bits = powers[: min(_WORD_BITS, num_boxes - start)]
        word_x, free_x, word_y, free_y = (
            (flags[..., start : start + len(bits)] * bits).sum(dim=-1)
            for flags in (fits_x, beyond_x, fits_y, beyond_y)
        )
        # Per level, broadcast the level's rows against its columns (cheaper than gathering
        # per point at large batches), then work on all points at once.
        word = torch.cat(
            [
                (
                    word_x[:, cx][:, None, :]
                    & word_y[:, ry][:, :, None]
                    & (free_x[:, cx][:, None, :] | free_y[:, ry][:, :, None])
                ).flatten(1)
                for cx, ry in zip(col_slices, row_slices, strict=True)
            ],
            dim=1,
        )
        # word & -word keeps the lowest set bit, 2**k; frexp gives k + 1 exactly.
        lowest = torch.frexp((word & -word).to(torch.float32)).exponent.to(torch.int64) - 1
        first = torch.where(word != 0, start + lowest, first)
    return first


@dataclass(frozen=True)
class _AxisTable:
    """Every level's distinct column (or row) coordinates, with their level's bounds.

    ``coords``, ``lower``, ``upper``, ``radius``: ``[1, N, 1]`` (radius ``None`` without center
    sampling); ``slices``: per level, its entries.
    """

    coords: Tensor
    lower: Tensor
    upper: Tensor
    radius: Tensor | None
    slices: list[slice]


def _axis_tables(points: Points, center_radius: float | None) -> tuple[_AxisTable, _AxisTable]:
    """The column and row tables of ``points`` (each level is a product grid)."""
    parts: dict[str, list[list[Tensor]]] = {"x": [[], [], []], "y": [[], [], []]}
    slices: dict[str, list[slice]] = {"x": [], "y": []}
    start, offsets = 0, {"x": 0, "y": 0}
    for height, width in points.feature_sizes:
        level = {
            "x": points.xy[start : start + width, 0],
            "y": points.xy[start : start + height * width : width, 1],
        }
        for axis, coords in level.items():
            count = len(coords)
            parts[axis][0].append(coords)
            parts[axis][1].append(points.size_range[start].expand(count, 2))
            parts[axis][2].append(points.stride[start].expand(count))
            slices[axis].append(slice(offsets[axis], offsets[axis] + count))
            offsets[axis] += count
        start += height * width
    tables = []
    for axis in ("x", "y"):
        coords, bounds, strides = (torch.cat(p) for p in parts[axis])
        radius = None if center_radius is None else (center_radius * strides)[None, :, None]
        tables.append(
            _AxisTable(
                coords=coords[None, :, None],
                lower=bounds[:, 0][None, :, None],
                upper=bounds[:, 1][None, :, None],
                radius=radius,
                slices=slices[axis],
            )
        )
    return tables[0], tables[1]


def _axis_conditions(
    coords: Tensor,
    low: Tensor,
    high: Tensor,
    lower: Tensor,
    upper: Tensor,
    radius: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """Column (or row) part of the candidate test.

    With ``coords`` ``[1, N, 1]`` (and per-entry ``lower``, ``upper``, ``radius`` of the same
    shape) and the box edges ``low``, ``high`` ``[B, 1, M]``, the
    distances are ``d0 = coords - low`` and ``d1 = high - coords``. Returns two ``[B, N, M]``
    bool tensors: ``fits`` (``min(d0, d1) > 0``, ``max(d0, d1) <= upper`` and, with a radius,
    ``|coords - centre| < radius``) and ``beyond`` (``max(d0, d1) > lower``). A point is a
    candidate when both axes fit and at least one axis is beyond the lower bound.
    """
    to_low = coords - low
    to_high = high - coords
    farthest = torch.maximum(to_low, to_high)
    fits = (torch.minimum(to_low, to_high) > 0) & (farthest <= upper)
    if radius is not None:
        fits &= (coords - (low + high) / 2).abs() < radius
    return fits, farthest > lower

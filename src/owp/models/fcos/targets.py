"""FCOS-OWP's per-location training targets: regression distances, centerness, the IoU of
the predicted box (IoU sampling) and the objectness sample sets.

The objectness branches learn centerness (:func:`centerness_targets`) or the IoU of the
predicted box (:func:`iou_targets`) at the points that :func:`objectness_samples` selects: the
center-sampling foreground, the whole foreground, or every point that is not ignored. Shapes:
``B`` images, ``P`` points, ``M`` (padded) boxes per image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from owp.models.fcos.assign import BACKGROUND, IGNORE
from owp.models.fcos.points import Points

SAMPLE_SETS: tuple[str, ...] = ("center", "foreground", "all")
_IOU_EPS = 1e-6


def check_labels(labels: Tensor, num_classes: int) -> None:
    """Raise ``ValueError`` naming both numbers when a label lies outside ``[0, num_classes)``.

    ``labels``: any shape, int64, the 0-based class of each (regular, non-padding) box.
    """
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        bad = int(labels.max()) if int(labels.max()) >= num_classes else int(labels.min())
        raise ValueError(
            f"target label {bad} is outside [0, {num_classes}): the model has num_classes="
            f"{num_classes}; labels must index the split's base classes"
        )


def ltrb_targets(points: Points, boxes: Tensor) -> Tensor:
    """Regression targets ``(x - x0, y - y0, x1 - x, y1 - y)``.

    Args:
        points: ``P`` anchor points.
        boxes: ``[B, P, 4]`` xyxy box per point (e.g. from :func:`gather_boxes`).

    Returns:
        ``[B, P, 4]`` ``(l*, t*, r*, b*)``.
    """
    xy = points.xy[None]
    return torch.cat([xy - boxes[..., :2], boxes[..., 2:] - xy], dim=-1)


def gather_boxes(gt_boxes: Tensor, matched: Tensor) -> Tensor:
    """The assigned box of every point: ``[B, M, 4]`` and ``[B, P]`` -> ``[B, P, 4]``.

    Points with ``matched < 0`` (background, ignore) get zeros.
    """
    batch, num_points = matched.shape
    if gt_boxes.shape[1] == 0:
        return gt_boxes.new_zeros((batch, num_points, 4))
    index = matched.clamp(min=0)[..., None].expand(-1, -1, 4)
    return gt_boxes.gather(1, index).masked_fill((matched < 0)[..., None], 0)


def centerness_targets(ltrb: Tensor) -> Tensor:
    """FCOS centerness ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))``.

    Args:
        ltrb: ``[..., 4]`` regression targets.

    Returns:
        ``[...]`` in ``[0, 1]``. Where a distance is not positive (a point outside its box, as
        for background) the result is 0 instead of NaN.
    """
    left, top, right, bottom = ltrb.unbind(-1)
    tiny = torch.finfo(ltrb.dtype).tiny
    horizontal = torch.minimum(left, right).clamp(min=0) / torch.maximum(left, right).clamp(
        min=tiny
    )
    vertical = torch.minimum(top, bottom).clamp(min=0) / torch.maximum(top, bottom).clamp(min=tiny)
    return torch.sqrt(horizontal * vertical)


def iou_targets(pred_ltrb: Tensor, target_ltrb: Tensor, *, threshold: float | None = 0.3) -> Tensor:
    """IoU between the predicted and the target box at each point, as a constant target.

    Both boxes share the point, so with ``I = (min(l, l*) + min(r, r*)) * (min(t, t*) +
    min(b, b*))`` and ``U = (l* + r*)(t* + b*) + (l + r)(t + b) - I`` the IoU is ``I / U``
    (``U`` clamped to at least 1e-6). IoU sampling: values below ``threshold`` become 0;
    ``threshold=None`` keeps them.

    Args:
        pred_ltrb: ``[..., 4]`` predicted distances (detached here: no gradient flows).
        target_ltrb: ``[..., 4]`` target distances.

    Returns:
        ``[...]`` IoU targets in ``[0, 1]`` for positive distances.
    """
    pred = pred_ltrb.detach()
    target = target_ltrb.detach()
    overlap = torch.minimum(pred, target)
    intersection = (overlap[..., 0] + overlap[..., 2]) * (overlap[..., 1] + overlap[..., 3])
    union = _area(target) + _area(pred) - intersection
    iou = intersection / union.clamp(min=_IOU_EPS)
    if threshold is None:
        return iou
    return iou.masked_fill(iou < threshold, 0)


def _area(ltrb: Tensor) -> Tensor:
    """Area ``(l + r) * (t + b)`` of ``[..., 4]`` distances: ``[...]``."""
    return (ltrb[..., 0] + ltrb[..., 2]) * (ltrb[..., 1] + ltrb[..., 3])


@dataclass(frozen=True)
class ObjectnessSamples:
    """Which points train the objectness branches, and against which box.

    Attributes:
        mask: ``[B, P]`` bool, the points that train the objectness branches.
        matched: ``[B, P]`` int64, the box whose targets apply; :data:`BACKGROUND` where the
            target is 0 and outside ``mask``.
    """

    mask: Tensor
    matched: Tensor


def objectness_samples(
    sample_set: str, matched_cs: Tensor, matched_no_cs: Tensor
) -> ObjectnessSamples:
    """Objectness training samples for one of :data:`SAMPLE_SETS`.

    * ``center``: the center-sampling foreground (FCOS default), targets w.r.t. its box.
    * ``foreground``: every point assigned without center sampling, targets w.r.t. that box.
    * ``all``: every point not marked :data:`IGNORE` by the assignment without center
      sampling; its foreground gets targets w.r.t. its box, every other point target 0.

    Crowd regions (:data:`IGNORE`, see :func:`assign`) are never samples. ``center`` is a subset
    of ``foreground``, which is a subset of ``all``.

    Args:
        sample_set: one of :data:`SAMPLE_SETS`.
        matched_cs: ``[B, P]`` from :func:`assign` with center sampling.
        matched_no_cs: ``[B, P]`` from :func:`assign` with ``center_radius=None``.
    """
    if sample_set not in SAMPLE_SETS:
        raise ValueError(
            f"unknown objectness sample set {sample_set!r}; expected one of "
            f"{', '.join(SAMPLE_SETS)}"
        )
    if matched_cs.shape != matched_no_cs.shape:
        raise ValueError(
            f"matched_cs {tuple(matched_cs.shape)} and matched_no_cs "
            f"{tuple(matched_no_cs.shape)} differ in shape"
        )
    assigned = matched_cs if sample_set == "center" else matched_no_cs
    foreground = assigned >= 0
    mask = assigned != IGNORE if sample_set == "all" else foreground
    return ObjectnessSamples(mask=mask, matched=torch.where(foreground, assigned, BACKGROUND))

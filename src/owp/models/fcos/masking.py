"""Unknown-object masking of FCOS-OWP's classification loss (the paper's pixel and area
variants): background locations that look like objects are left out."""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import nms

from owp.models.fcos.assign import BACKGROUND
from owp.models.fcos.points import Points


def unknown_object_mask(
    objectness: Tensor,
    matched: Tensor,
    threshold: float,
    *,
    points: Points | None = None,
    pred_boxes: Tensor | None = None,
    nms_thresh: float | None = None,
) -> Tensor:
    """Background locations to leave out of the classification loss (unknown-object masking).

    Pixel variant (``pred_boxes`` None): a background location (``matched == BACKGROUND``)
    whose predicted ``objectness`` exceeds ``threshold`` is masked — probably an unlabelled
    object that the classifier should not learn to call background. Area variant: each such
    location's predicted box (after class-agnostic NMS at ``nms_thresh`` when given) masks every
    background location strictly inside it. Assigned (foreground) and ignored locations are
    never masked. Written by hand: the paper's method, no library has it.

    Args:
        objectness: ``[B, P]`` predicted objectness in [0, 1] (detached by the caller).
        matched: ``[B, P]`` from :func:`assign`.
        threshold: objectness above which a background location counts as an unknown object.
        points: the anchor points (area variant).
        pred_boxes: ``[B, P, 4]`` predicted xyxy boxes (area variant).
        nms_thresh: area variant: suppress overlapping masking boxes first.

    Returns:
        ``[B, P]`` bool, True where the classification loss must skip the location.
    """
    background = matched == BACKGROUND
    seeds = background & (objectness > threshold)
    if pred_boxes is None:
        return seeds
    if points is None:
        raise ValueError("the area variant needs the points")
    mask = torch.zeros_like(seeds)
    # One image at a time: the seed count varies per image and is small.
    for image in range(seeds.shape[0]):
        where = seeds[image].nonzero(as_tuple=True)[0]
        if where.numel() == 0:
            continue
        boxes = pred_boxes[image, where]
        if nms_thresh is not None:
            boxes = boxes[nms(boxes, objectness[image, where], nms_thresh)]
        x, y = points.xy[:, 0], points.xy[:, 1]
        inside = (
            (x[None] > boxes[:, 0:1])
            & (x[None] < boxes[:, 2:3])
            & (y[None] > boxes[:, 1:2])
            & (y[None] < boxes[:, 3:4])
        ).any(dim=0)
        mask[image] = inside & background[image]
    return mask

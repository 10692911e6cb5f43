"""FCOS-OWP losses: sigmoid focal (classification), GIoU (regression), BCE (objectness).

Each loss is a sum divided by a normaliser that is all-reduced (averaged) across ranks when
``torch.distributed`` is initialised, so that every rank divides by the same number — the
global count of foreground locations (classification, regression) or of objectness samples.
With the ``center`` sample set the objectness normaliser equals the foreground count, which is
torchvision FCOS's loss exactly.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0


def global_normalizer(count: Tensor | int, device: torch.device) -> Tensor:
    """``count`` averaged over ranks (unchanged without distributed), at least 1."""
    value = torch.as_tensor(count, dtype=torch.float32, device=device).clone()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return value.clamp(min=1.0)


def classification_loss(
    logits: Tensor, labels: Tensor, foreground: Tensor, valid: Tensor, normalizer: Tensor
) -> Tensor:
    """Sigmoid focal loss over every valid location.

    Args:
        logits: ``[B, P, C]`` class logits.
        labels: ``[B, P]`` int64 class of each foreground location (ignored elsewhere).
        foreground: ``[B, P]`` bool; its locations get a one-hot target, the rest all zeros.
        valid: ``[B, P]`` bool; locations that contribute (False: ignore regions, masked
            unknown objects).
        normalizer: scalar, usually the global foreground count.
    """
    targets = torch.zeros_like(logits)
    fg_index = foreground.nonzero(as_tuple=True)
    targets[fg_index + (labels[fg_index],)] = 1.0
    loss = sigmoid_focal_loss(
        logits[valid], targets[valid], alpha=FOCAL_ALPHA, gamma=FOCAL_GAMMA, reduction="sum"
    )
    return loss / normalizer


def regression_loss(pred_boxes: Tensor, target_boxes: Tensor, normalizer: Tensor) -> Tensor:
    """GIoU loss summed over foreground boxes ``[N, 4]`` xyxy, divided by ``normalizer``."""
    if pred_boxes.numel() == 0:
        return pred_boxes.sum() * 0.0
    return generalized_box_iou_loss(pred_boxes, target_boxes, reduction="sum") / normalizer


def objectness_loss(logits: Tensor, targets: Tensor, normalizer: Tensor) -> Tensor:
    """BCE-with-logits against soft targets in [0, 1], summed over the samples ``[N]``."""
    if logits.numel() == 0:
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / normalizer

"""From head outputs to ranked boxes: scoring modes, per-level top-k, decoding, NMS.

Scoring modes:

* class-agnostic proposals: ``centerness`` = σ(ctr), ``iou`` = σ(iou),
  ``geomean`` = sqrt(σ(ctr)·σ(iou)); one score per location, boxes without extent dropped,
  one class-agnostic NMS;
* classifying detections: ``cls*centerness`` = sqrt(σ(cls_c)·σ(ctr)) (torchvision FCOS) and
  ``cls*iou`` = σ(cls_c)·σ(iou) (OWP-aware classification); one score per (location, class),
  NMS per class — exactly torchvision's ``FCOS.postprocess_detections`` for ``cls*centerness``.

Boxes are decoded as torchvision's ``BoxLinearCoder(normalize_by_size=True)`` does for FCOS:
``(x − l·s, y − t·s, x + r·s, y + b·s)`` with the point at ``(x, y)`` and its stride ``s``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import batched_nms, clip_boxes_to_image, nms, remove_small_boxes

MIN_OUTPUT_BOX_SIZE = 0.1
"""Smallest side (input pixels, after clipping) of a box a model emits: an empty box (e.g. one
clipped away outside the image) is dropped before NMS and the top-k, so that the budget k counts
real boxes and no box rounds to zero width in a results file."""

AGNOSTIC_SCORINGS: tuple[str, ...] = ("centerness", "iou", "geomean")
CLASS_SCORINGS: tuple[str, ...] = ("cls*centerness", "cls*iou")
SCORING_MODES: tuple[str, ...] = AGNOSTIC_SCORINGS + CLASS_SCORINGS
_BRANCHES_OF = {
    "centerness": ("bbox_ctrness",),
    "iou": ("bbox_iou",),
    "geomean": ("bbox_ctrness", "bbox_iou"),
    "cls*centerness": ("cls_logits", "bbox_ctrness"),
    "cls*iou": ("cls_logits", "bbox_iou"),
}


@dataclass(frozen=True)
class PostprocessConfig:
    """How head outputs become ranked boxes.

    Attributes:
        scoring: one of :data:`SCORING_MODES`.
        score_thresh: candidates at or below this score are dropped before the top-k.
        nms_thresh: IoU above which a lower-scored box is suppressed.
        pre_nms_top_n: candidates kept per level (highest scores) before NMS.
        post_nms_top_n: boxes kept per image after NMS.
    """

    scoring: str = "iou"
    score_thresh: float = 0.0
    nms_thresh: float = 0.6
    pre_nms_top_n: int = 2000
    post_nms_top_n: int = 100

    def __post_init__(self) -> None:
        if self.scoring not in SCORING_MODES:
            raise ValueError(
                f"unknown scoring {self.scoring!r}; use one of {', '.join(SCORING_MODES)}"
            )
        if self.pre_nms_top_n < 1 or self.post_nms_top_n < 1:
            raise ValueError("pre_nms_top_n and post_nms_top_n must be positive")
        if not 0.0 <= self.nms_thresh <= 1.0:
            raise ValueError(f"nms_thresh must lie in [0, 1], got {self.nms_thresh}")

    @property
    def classifying(self) -> bool:
        return self.scoring in CLASS_SCORINGS

    def detection_scoring(self) -> str:
        """The scoring used for base-class AP: this one if it classifies, else ``cls*<it>``."""
        return self.scoring if self.classifying else f"cls*{self.scoring}"

    def required_outputs(self) -> tuple[str, ...]:
        """The head outputs this scoring reads."""
        return _BRANCHES_OF[self.scoring]


def decode_boxes(points: Tensor, strides: Tensor, regression: Tensor) -> Tensor:
    """Boxes ``[..., P, 4]`` xyxy from points ``[P, 2]``, strides ``[P]`` and ltrb ``[..., P, 4]``
    in stride units."""
    distances = regression * strides[:, None]
    return torch.cat([points - distances[..., :2], points + distances[..., 2:]], dim=-1)


def location_objectness(outputs: dict[str, Tensor], scoring: str) -> Tensor:
    """Objectness per location ``[B, P]`` for a scoring mode (its non-class factor)."""
    branch = scoring.removeprefix("cls*")
    if branch == "geomean":
        return torch.sqrt(
            torch.sigmoid(outputs["bbox_ctrness"][..., 0])
            * torch.sigmoid(outputs["bbox_iou"][..., 0])
        )
    key = "bbox_ctrness" if branch == "centerness" else "bbox_iou"
    return torch.sigmoid(outputs[key][..., 0])


def postprocess(
    outputs: dict[str, Tensor],
    points: Tensor,
    strides: Tensor,
    num_per_level: list[int],
    image_sizes: list[tuple[int, int]],
    config: PostprocessConfig,
) -> list[dict[str, Tensor]]:
    """Ranked boxes per image, in the (resized) network input coordinates.

    Args:
        outputs: head outputs, each ``[B, P, K]`` (``bbox_regression`` K=4 in stride units).
        points: ``[P, 2]`` location coordinates; ``strides``: ``[P]``.
        num_per_level: locations per FPN level (sums to P), for the per-level top-k.
        image_sizes: ``(height, width)`` of each image before padding, for clipping.
        config: scoring and selection.

    Returns:
        Per image ``boxes [N, 4]``, ``scores [N]``, ``objectness [N]``, and when the model
        classifies ``labels [N]`` (0-based) and ``class_scores [N]``; sorted by score.
    """
    missing = [k for k in config.required_outputs() if k not in outputs]
    if missing:
        raise ValueError(f"scoring {config.scoring!r} needs head outputs {missing}, absent")
    objectness = location_objectness(outputs, config.scoring)
    class_probs = torch.sigmoid(outputs["cls_logits"]) if "cls_logits" in outputs else None
    results = []
    for index, image_size in enumerate(image_sizes):
        regression = outputs["bbox_regression"][index]
        probs = None if class_probs is None else class_probs[index]
        if config.classifying:
            result = _per_class(
                regression, probs, objectness[index], points, strides, num_per_level, config
            )
        else:
            result = _agnostic(
                regression, probs, objectness[index], points, strides, num_per_level, config
            )
        result["boxes"] = clip_boxes_to_image(result["boxes"], image_size)
        keep = remove_small_boxes(result["boxes"], MIN_OUTPUT_BOX_SIZE)
        results.append(_suppress({key: value[keep] for key, value in result.items()}, config))
    return results


def _agnostic(regression, probs, objectness, points, strides, num_per_level, config) -> dict:
    """One candidate per location, scored by its objectness."""
    keep = []
    offset = 0
    for count in num_per_level:
        scores = objectness[offset : offset + count]
        above = torch.where(scores > config.score_thresh)[0]
        top = scores[above].topk(min(config.pre_nms_top_n, above.numel())).indices
        keep.append(above[top] + offset)
        offset += count
    where = torch.cat(keep)
    result = {
        "boxes": decode_boxes(points[where], strides[where], regression[where]),
        "scores": objectness[where],
        "objectness": objectness[where],
    }
    if probs is not None:
        result["class_scores"], result["labels"] = probs[where].max(dim=1)
    return result


def _per_class(regression, probs, objectness, points, strides, num_per_level, config) -> dict:
    """One candidate per (location, class), as torchvision's FCOS postprocess."""
    num_classes = probs.shape[-1]
    combined = probs * objectness[:, None]
    if config.scoring == "cls*centerness":
        combined = torch.sqrt(combined)
    locations, labels, scores = [], [], []
    offset = 0
    for count in num_per_level:
        flat = combined[offset : offset + count].flatten()
        above = torch.where(flat > config.score_thresh)[0]
        top_scores, top = flat[above].topk(min(config.pre_nms_top_n, above.numel()))
        chosen = above[top]
        locations.append(torch.div(chosen, num_classes, rounding_mode="floor") + offset)
        labels.append(chosen % num_classes)
        scores.append(top_scores)
        offset += count
    where, labels = torch.cat(locations), torch.cat(labels)
    return {
        "boxes": decode_boxes(points[where], strides[where], regression[where]),
        "scores": torch.cat(scores),
        "labels": labels,
        "class_scores": probs[where, labels],
        "objectness": objectness[where],
    }


def _suppress(result: dict[str, Tensor], config: PostprocessConfig) -> dict[str, Tensor]:
    if config.classifying:
        keep = batched_nms(result["boxes"], result["scores"], result["labels"], config.nms_thresh)
    else:
        keep = nms(result["boxes"], result["scores"], config.nms_thresh)
    keep = keep[: config.post_nms_top_n]
    return {key: value[keep] for key, value in result.items()}

"""LVIS v1 specifics of evaluation: federated AP, and why class-agnostic recall is unchanged.

LVIS is *federated*: each category is exhaustively checked only on some images. An image lists
``neg_category_ids`` (verified absent) and ``not_exhaustive_category_ids`` (present, but not
every instance is boxed). LVIS's AP (lvis-api's ``LVISEval``, the reference) therefore

* keeps at most 300 detections per image, the highest scored (all categories together);
* drops the detections of a category on an image where it is neither annotated nor listed as
  verified absent — nobody knows whether it is there;
* ignores unmatched detections of a not-exhaustive category on that image;
* averages precision over categories with ``useCats``-style matching, without a per-category
  budget, and reports APr / APc / APf over the rare / common / frequent categories.

:func:`federated_ap` computes it with faster-coco-eval's ``lvis_style`` mode on the 300 best
detections of each image (lvis-api's own cut: a stable sort by score); the tests check it
against lvis-api on generated LVIS problems.

Novel-class AR on LVIS stays class-agnostic (the paper's protocol) and the two lists do not
change it: recall counts only the annotated novel objects a proposal matches, so a proposal
that matches nothing costs recall nothing whichever list its region's category is on (the
not-exhaustive rule only spares false positives, which recall never counts), and a class-
agnostic proposal has no category for the negative list to filter. Unannotated instances of a
not-exhaustive category are simply not counted, as in every COCO-style recall.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from owp.evaluation.cocoeval import AREA_NAMES
from owp.evaluation.matching import IOU_THRESHOLDS

LVIS_MAX_DETS = 300
"""Detections kept per image by LVIS's evaluation (``LVISResults(max_dets=300)``)."""
FREQUENCIES: tuple[str, ...] = ("r", "c", "f")


def top_per_image(
    detections: Sequence[Mapping[str, Any]], max_dets: int = LVIS_MAX_DETS
) -> list[Mapping[str, Any]]:
    """Each image's ``max_dets`` highest-scored detections, as lvis-api keeps them (a stable
    sort by descending score, so that the first listed wins a tie at the cut)."""
    by_image: dict[int, list[Mapping[str, Any]]] = {}
    for detection in detections:
        by_image.setdefault(detection["image_id"], []).append(detection)
    kept: list[Mapping[str, Any]] = []
    for items in by_image.values():
        if len(items) > max_dets:
            items = sorted(items, key=lambda d: d["score"], reverse=True)[:max_dets]
        kept.extend(items)
    return kept


def federated_ap(
    gt: Mapping[str, Any],
    detections: Sequence[Mapping[str, Any]],
    max_dets: int = LVIS_MAX_DETS,
) -> dict[str, float | None]:
    """LVIS's federated AP of class-labelled ``detections`` on ``gt`` (module docstring).

    Args:
        gt: an LVIS-style instances dict (``neg_category_ids`` / ``not_exhaustive_category_ids``
            on images, missing lists read as empty; annotations with ``area`` and ``iscrowd``).
        detections: results with ``image_id``, ``category_id``, ``bbox``, ``score``.
        max_dets: detections kept per image.

    Returns:
        ``AP``, ``AP50``, ``AP75``, ``AP_small``, ``AP_medium``, ``AP_large`` and ``APr``,
        ``APc``, ``APf`` (``None`` where no category has ground truth, and the last three
        ``None`` unless every category carries LVIS's ``frequency``), as fractions.
    """
    from faster_coco_eval import COCO, COCOeval_faster

    categories = [dict(c) for c in gt["categories"]]
    with_frequency = all(c.get("frequency") in FREQUENCIES for c in categories)
    for category in categories:
        category.setdefault("frequency", "f")  # faster-coco-eval needs one; not reported then
    kept = top_per_image(detections, max_dets)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = _index(COCO(), gt, categories, [dict(a) for a in gt["annotations"]])
        coco_dt = _index(COCO(), gt, categories, _as_results(kept))
        evaluator = COCOeval_faster(coco_gt, coco_dt, "bbox", lvis_style=True)
        evaluator.params.maxDets = [max_dets]
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"][..., 0]  # [T, R, K, A]
    metrics: dict[str, float | None] = {
        "AP": _mean(precision[..., 0]),
        "AP50": _mean(precision[_at(0.5), ..., 0]),
        "AP75": _mean(precision[_at(0.75), ..., 0]),
    }
    for index, area in enumerate(AREA_NAMES[1:], start=1):
        metrics[f"AP_{area}"] = _mean(precision[..., index])
    order = sorted(c["id"] for c in categories)
    frequency = {c["id"]: c["frequency"] for c in categories}
    for group in FREQUENCIES:
        members = [k for k, cid in enumerate(order) if frequency[cid] == group]
        value = _mean(precision[:, :, members, 0]) if members else None
        metrics[f"AP{group}"] = value if with_frequency else None
    return metrics


def _at(iou: float) -> int:
    return int(np.flatnonzero(np.isclose(IOU_THRESHOLDS, iou))[0])


def _mean(values: np.ndarray) -> float | None:
    """lvis-api's summary: the mean over entries > -1 (``None`` when there is none)."""
    values = values[values > -1]
    return float(np.mean(values)) if values.size else None


def _as_results(detections: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What ``LVISResults`` makes of box results: ids from 1, area = w*h."""
    return [
        {
            "id": index,
            "image_id": d["image_id"],
            "category_id": d["category_id"],
            "bbox": list(d["bbox"]),
            "score": d["score"],
            "area": d["bbox"][2] * d["bbox"][3],
            "iscrowd": 0,
        }
        for index, d in enumerate(detections, start=1)
    ]


def _index(coco, dataset: Mapping[str, Any], categories: list[dict], annotations: list[dict]):
    coco.dataset = {
        "images": list(dataset["images"]),
        "annotations": annotations,
        "categories": categories,
    }
    coco.createIndex()
    return coco

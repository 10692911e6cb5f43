"""Base-class AP of class-labelled detections: COCOeval on the base ground truth, or LVIS's
federated AP when the ground truth is LVIS-style (:mod:`owp.evaluation.lvis`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from owp.data.coco import find_annotation_file, is_federated, load_instances
from owp.data.splits import ClassSplit, SplitSpec, resolve_split
from owp.errors import OwpInputError
from owp.evaluation.cocoeval import AREA_NAMES, check_engine, run_cocoeval
from owp.evaluation.lvis import LVIS_MAX_DETS, federated_ap
from owp.evaluation.matching import IOU_THRESHOLDS
from owp.evaluation.results import Results, read_results

DETECTION_MAX_DETS: tuple[int, ...] = (1, 10, 100)


def evaluate_detections(
    gt: str | Path | Mapping[str, Any],
    detections: str | Path | Results,
    split: str | Path | SplitSpec | ClassSplit,
    *,
    engine: str = "owp",
) -> dict[str, Any]:
    """AP of detections on the split's base classes.

    Novel-class ground truth is deleted, and detections labelled with a non-base category are
    dropped (a base-class detector cannot be credited for them). On COCO-style ground truth the
    numbers are COCOeval's ``stats[0:6]`` (maxDets 100); on LVIS-style ground truth (images
    with ``neg_category_ids`` / ``not_exhaustive_category_ids``) they are LVIS's federated AP
    (300 detections per image, plus APr / APc / APf), as lvis-api computes it. Fractions.

    Args:
        engine: ``owp`` or ``faster-coco-eval`` (the same engine here), or ``pycocotools``
            (COCO ground truth only: it has no federated evaluation).

    Returns:
        ``{"AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "split", "num_images",
        "num_gt"}`` (LVIS: also ``"APr", "APc", "APf"`` and ``"federated": True``); an AP is
        ``None`` where no base ground truth exists in that bucket.
    """
    check_engine(engine)
    if isinstance(gt, str | Path):  # an instances JSON or a dataset folder (its val file)
        gt = find_annotation_file(gt)
    gt_name = gt if isinstance(gt, Path) else "ground truth"
    dataset = load_instances(gt)[0] if isinstance(gt, Path) else gt
    federated = is_federated(dataset)
    if federated and engine == "pycocotools":
        raise OwpInputError(
            "the ground truth is LVIS-style (federated), which pycocotools cannot evaluate; "
            "use --engine owp or faster-coco-eval",
            path=gt if isinstance(gt, str | Path) else None,
        )
    split = resolve_split(split, dataset["categories"], gt_name)
    if not split.base_ids:
        raise OwpInputError(f"split {split.name!r} has no base classes to compute AP on")
    base = set(split.base_ids)
    name = detections if isinstance(detections, str | Path) else "detections"
    results = read_results(
        detections,
        [img["id"] for img in dataset["images"]],
        category_ids=[c["id"] for c in dataset["categories"]],
        name=name,
    )
    base_gt = {
        "images": dataset["images"],
        "annotations": [a for a in dataset["annotations"] if a["category_id"] in base],
        "categories": [c for c in dataset["categories"] if c["id"] in base],
    }
    if isinstance(detections, str | Path):  # a file: a model's own output is what it is
        _refuse_class_agnostic(results, dataset, base, name)
    kept = [r for r in results if r["category_id"] in base]
    num_gt = sum(1 for a in base_gt["annotations"] if not a["iscrowd"])
    info = {"split": split.name, "num_images": len(dataset["images"]), "num_gt": num_gt}
    if federated:
        return {**federated_ap(base_gt, kept, LVIS_MAX_DETS), **info, "federated": True}
    precision = run_cocoeval(base_gt, kept, DETECTION_MAX_DETS, use_cats=True, engine=engine)[
        "precision"
    ]
    last = len(DETECTION_MAX_DETS) - 1
    metrics: dict[str, Any] = {
        "AP": _mean_precision(precision, "all", last),
        "AP50": _mean_precision(precision, "all", last, iou=0.5),
        "AP75": _mean_precision(precision, "all", last, iou=0.75),
    }
    for area in AREA_NAMES[1:]:
        metrics[f"AP_{area}"] = _mean_precision(precision, area, last)
    metrics.update(info)
    return metrics


def _refuse_class_agnostic(
    results: Results, dataset: Mapping[str, Any], base: set[int], name: str | Path
) -> None:
    """Refuse, in one line, a detection file whose results all carry one category while the
    ground truth has several base classes: class-agnostic proposals (``category_id`` 1,
    "object", which is COCO's person) would otherwise score a silent AP of about 0."""
    labelled = {r["category_id"] for r in results}
    present = {a["category_id"] for a in dataset["annotations"] if a["category_id"] in base}
    if len(labelled) != 1 or len(present) < 2:
        return
    (only,) = labelled
    names = {c["id"]: c.get("name", str(c["id"])) for c in dataset["categories"]}
    raise OwpInputError(
        f"all {len(results)} detections carry category_id {only} ({names.get(only, '?')}) while "
        f"the ground truth has {len(present)} base classes: class-agnostic proposals have no AP "
        "(evaluate them with owp eval-proposals)",
        path=name if isinstance(name, str | Path) else None,
    )


def _mean_precision(
    precision: np.ndarray, area: str, budget_index: int, iou: float | None = None
) -> float | None:
    """pycocotools' AP: mean of ``precision[T, R, K, A, M]`` over entries > -1."""
    values = precision[..., AREA_NAMES.index(area), budget_index]
    if iou is not None:
        values = values[np.flatnonzero(np.isclose(IOU_THRESHOLDS, iou))]
    values = values[values > -1]
    return float(np.mean(values)) if values.size else None

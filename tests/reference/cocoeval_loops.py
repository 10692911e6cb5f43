"""A slow, loop-for-loop reading of the reference evaluators, for differential tests.

Written from reading pycocotools' ``cocoeval.py`` (``COCOeval._prepare``, ``computeIoU``,
``evaluateImg``, ``accumulate``), its ``maskApi.c`` (``bbIou``) and OLN's
``mmdet/datasets/cocoeval_wrappers.py`` (``COCOEvalXclassWrapper.evaluateImg``), statement by
statement, with plain Python lists and floats, no numpy and no pycocotools: a second,
independent statement of the semantics that owp's vectorised engine must reproduce exactly.

Only what class-agnostic recall needs is kept: ``useCats=0``, recall (not precision), and the
wrapper's ``ignored_split`` handling. ``pool`` is the ``maxDet`` that ``evaluateImg`` cuts each
image's detections to (COCOeval's ``maxDets[-1]``); the budgets are the ``maxDets`` of
``accumulate``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

_STEP = (0.95 - 0.5) / 9
IOU_THRESHOLDS = [0.5 + i * _STEP for i in range(9)] + [0.95]
"""``Params.iouThrs``: ``np.linspace(.5, 0.95, 10)`` computes ``start + i * step`` and ends on
``stop``; the same doubles (checked in the tests)."""

AREA_RANGES = [
    ("all", 0.0, 1e5**2),
    ("small", 0.0, 32.0**2),
    ("medium", 32.0**2, 96.0**2),
    ("large", 96.0**2, 1e5**2),
]


def bb_iou(dt: Sequence[float], gt: Sequence[float], crowd: bool) -> float:
    """``maskApi.c``'s ``bbIou`` for one pair of xywh boxes (crowd: union = detection area)."""
    detection_area = dt[2] * dt[3]
    gt_area = gt[2] * gt[3]
    w = min(dt[2] + dt[0], gt[2] + gt[0]) - max(dt[0], gt[0])
    if w <= 0:
        return 0.0
    h = min(dt[3] + dt[1], gt[3] + gt[1]) - max(dt[1], gt[1])
    if h <= 0:
        return 0.0
    intersection = w * h
    union = detection_area if crowd else detection_area + gt_area - intersection
    return intersection / union


def _stable_order(keys: Sequence[Any]) -> list[int]:
    """``np.argsort(keys, kind='mergesort')``: ascending, ties in input order."""
    return sorted(range(len(keys)), key=lambda i: keys[i])


def evaluate_image(
    gt: list[dict],
    dt: list[dict],
    area_range: tuple[float, float],
    max_det: int,
    thresholds: Sequence[float],
    oln: bool,
) -> dict | None:
    """``evaluateImg`` for one image with ``useCats=0`` (``oln``: the wrapper's version).

    ``gt`` holds the image's boxes in COCOeval's order (category id, then file order) with
    ``id``, ``bbox``, ``area``, ``iscrowd`` and (``oln``) ``ignored_split``; ``dt`` its
    detections in results order with ``id``, ``bbox``, ``score``.
    """
    if len(gt) == 0 and len(dt) == 0:
        return None
    for g in gt:
        ignore = bool(g["iscrowd"])  # _prepare: gt['ignore'] = iscrowd
        g["_ignore"] = 1 if ignore or g["area"] < area_range[0] or g["area"] > area_range[1] else 0
        if oln and g.get("ignored_split") == 1:
            g["_ignore"] = 1
    # computeIoU ranks and cuts the detections; evaluateImg ranks and cuts them again (the same)
    gtind = _stable_order([g["_ignore"] for g in gt])
    gt = [gt[i] for i in gtind]
    dtind = _stable_order([-d["score"] for d in dt])
    dt = [dt[i] for i in dtind[:max_det]]
    iscrowd = [int(g["iscrowd"]) for g in gt]
    ious = [[bb_iou(d["bbox"], g["bbox"], bool(g["iscrowd"])) for g in gt] for d in dt]
    num_t, num_g, num_d = len(thresholds), len(gt), len(dt)
    gtm = [[0] * num_g for _ in range(num_t)]
    dtm = [[0] * num_d for _ in range(num_t)]
    gt_ig = [g["_ignore"] for g in gt]
    dt_ig = [[0] * num_d for _ in range(num_t)]
    gt_ig_split = [g.get("ignored_split", 0) for g in gt]
    dt_ig_split = [0] * num_d
    if num_g and num_d:
        for tind, t in enumerate(thresholds):
            for dind, d in enumerate(dt):
                iou = min(t, 1 - 1e-10)
                m = -1
                for gind in range(num_g):
                    if gtm[tind][gind] > 0 and not iscrowd[gind]:
                        continue
                    if m > -1 and gt_ig[m] == 0 and gt_ig[gind] == 1:
                        break
                    if ious[dind][gind] < iou:
                        continue
                    iou = ious[dind][gind]
                    m = gind
                if m == -1:
                    continue
                dt_ig[tind][dind] = gt_ig[m]
                dtm[tind][dind] = gt[m]["id"]
                gtm[tind][m] = d["id"]
                if oln and tind == 0:
                    dt_ig_split[dind] = gt_ig_split[m]
    for tind in range(num_t):
        for dind, d in enumerate(dt):
            outside = d["area"] < area_range[0] or d["area"] > area_range[1]
            dt_ig[tind][dind] = int(dt_ig[tind][dind] or (dtm[tind][dind] == 0 and outside))
    if oln and sum(dt_ig_split) > 0:
        kept = [i for i in range(num_d) if dt_ig_split[i] == 0]
        dtm = [[row[i] for i in kept] for row in dtm]
        dt_ig = [[row[i] for i in kept] for row in dt_ig]
        dt = [dt[i] for i in kept]
    return {"dtMatches": dtm, "dtIgnore": dt_ig, "dtScores": [d["score"] for d in dt],
            "gtIgnore": gt_ig}  # fmt: skip


def recall(evaluations: list[dict | None], budget: int, num_thresholds: int) -> list[float]:
    """``accumulate``'s ``recall[t, k=0, a, m]`` for one area range and budget: ``-1`` per
    threshold when no regular object exists."""
    images = [e for e in evaluations if e is not None]
    npig = sum(1 for e in images for ignored in e["gtIgnore"] if ignored == 0)
    if npig == 0:
        return [-1.0] * num_thresholds
    out = []
    for t in range(num_thresholds):
        tps = 0
        for e in images:
            for dind in range(min(budget, len(e["dtScores"]))):
                if e["dtMatches"][t][dind] != 0 and not e["dtIgnore"][t][dind]:
                    tps += 1
        out.append(tps / npig)
    return out


def mean_recall(values: list[float]) -> float | None:
    """``summarize``'s AR: mean of the entries > -1, ``None`` without any."""
    kept = [v for v in values if v > -1]
    return sum(kept) / len(kept) if kept else None


def class_agnostic_recall(
    gt: Mapping[str, Any],
    proposals: Sequence[Mapping[str, Any]],
    budgets: Sequence[int],
    *,
    pool: int,
    base_ids: Sequence[int] = (),
    oln: bool = False,
    size_budget: int = 100,
) -> dict[str, float | None]:
    """AR@k for each budget and size AR at ``size_budget``: COCOeval ``useCats=0`` over every
    annotation of ``gt`` (strict: pass the novel-only ground truth), or OLN's wrapper with the
    ``base_ids`` boxes marked ``ignored_split``. Detections get ids from 1 in input order, as
    ``loadRes`` gives them; images are taken in id order."""
    cat_ids = sorted(c["id"] for c in gt["categories"])
    by_image: dict[int, list[dict]] = {img["id"]: [] for img in gt["images"]}
    for cat in cat_ids:  # useCats=0: the image's boxes concatenated category by category
        for ann in gt["annotations"]:
            if ann["category_id"] == cat:
                box = dict(ann)
                box["ignored_split"] = int(ann["category_id"] in base_ids)
                by_image[ann["image_id"]].append(box)
    detections: dict[int, list[dict]] = {img["id"]: [] for img in gt["images"]}
    for index, p in enumerate(proposals, start=1):
        area = p["bbox"][2] * p["bbox"][3]
        detections[p["image_id"]].append({**p, "id": index, "area": area})
    out: dict[str, float | None] = {}
    for name, lo, hi in AREA_RANGES:
        evaluations = [
            evaluate_image(
                [dict(g) for g in by_image[i]], detections[i], (lo, hi), pool, IOU_THRESHOLDS, oln
            )
            for i in sorted(by_image)
        ]
        for k in budgets if name == "all" else [size_budget]:
            key = f"AR@{k}" if name == "all" else f"AR_{name}@{k}"
            out[key] = mean_recall(recall(evaluations, k, len(IOU_THRESHOLDS)))
    return out

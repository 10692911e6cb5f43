"""Class-agnostic average recall (AR@k) of object proposals on the novel classes of a split.

Two protocols (DESIGN.md §6), always named in the report:

* ``strict`` (the paper): base-class ground truth is deleted and every proposal counts in the
  budget. This is exactly COCOeval with ``useCats=0`` on the novel-only ground truth.
* ``oln`` (OLN, GGN, LDET, UDOS): base-class ground truth is ignored. Each image's proposals
  are ranked by score and cut to the largest budget; those overlapping a base-class box at
  IoU >= 0.5 (COCO's IoU: crowd regions by intersection over the proposal's area) are then
  removed, so they do not consume the budget k; the rest is evaluated as in ``strict``.

AR@k is the recall at ``maxDets=k`` averaged over IoU thresholds 0.50:0.05:0.95, as
pycocotools computes it. Per-category recall (:func:`per_category_recall`) is the strict protocol
restricted to one novel category's ground truth at a time: COCOeval with ``useCats=0`` on that
category's boxes alone, every proposal a candidate for them. The COCO engine is
faster-coco-eval; ``engine="pycocotools"`` runs the reference implementation instead (same
numbers, slower).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask

from owp.data.coco import find_annotation_file, load_instances
from owp.data.splits import ClassSplit, SplitSpec, resolve_split
from owp.errors import OwpInputError
from owp.evaluation.cocoeval import AREA_NAMES, AREA_RANGES, check_engine, run_cocoeval
from owp.evaluation.matching import (
    IOU_THRESHOLDS,
    candidate_pairs,
    first_matches,
    layout,
    recall_counts,
)
from owp.evaluation.results import ResultArrays, Results, read_result_arrays

log = logging.getLogger(__name__)

PROTOCOLS: tuple[str, ...] = ("strict", "oln")
DEFAULT_MAX_DETS: tuple[int, ...] = (10, 20, 50, 100, 300, 1000)
OLN_BASE_MATCH_IOU = 0.5


def evaluate_proposals(
    gt: str | Path | Mapping[str, Any],
    proposals: str | Path | Results,
    split: str | Path | SplitSpec | ClassSplit,
    *,
    protocol: str = "strict",
    max_dets: Sequence[int] = DEFAULT_MAX_DETS,
    engine: str = "owp",
    per_category: bool = False,
) -> dict[str, Any]:
    """Novel-class AR@k of class-agnostic proposals.

    Args:
        gt: instances JSON path (validated by :func:`owp.data.coco.load_instances`), dataset
            folder (its val file, :func:`owp.data.coco.find_annotation_file`) or a dict.
        proposals: COCO results (path or list); ``category_id`` is ignored.
        split: built-in name, split file, or split object naming base and novel classes.
        protocol: ``"strict"`` or ``"oln"`` (module docstring).
        max_dets: the budgets k, positive integers.
        engine: ``"owp"`` (owp's vectorised matcher), ``"faster-coco-eval"`` or
            ``"pycocotools"`` (COCOeval itself: the references, same numbers).
        per_category: also add ``"per_category"``: :func:`per_category_recall` at budget K
            (the strict protocol per category, whatever ``protocol`` is).

    Returns:
        ``{"AR@<k>": float for each k, "AR_small@K", "AR_medium@K", "AR_large@K", "protocol",
        "split", "num_images", "num_gt"}`` where K is 100, or the largest listed k below 100
        (the smallest k if all exceed 100). Recalls are fractions in [0, 1], ``None`` where no
        ground truth exists (e.g. no small novel objects); ``num_gt`` counts novel non-crowd boxes.
    """
    if protocol not in PROTOCOLS:
        raise OwpInputError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
    budgets = check_max_dets(max_dets)
    check_engine(engine)
    if isinstance(gt, str | Path):  # an instances JSON or a dataset folder (its val file)
        gt = find_annotation_file(gt)
    gt_name = gt if isinstance(gt, Path) else "ground truth"
    dataset = load_instances(gt)[0] if isinstance(gt, Path) else gt
    split = _with_novel_classes(resolve_split(split, dataset["categories"], gt_name))
    image_ids = [img["id"] for img in dataset["images"]]
    name = proposals if isinstance(proposals, str | Path) else "proposals"
    columns = read_result_arrays(proposals, image_ids, name=name)
    novel = set(split.novel_ids)
    gt_dataset = {
        "images": dataset["images"],
        "annotations": [a for a in dataset["annotations"] if a["category_id"] in novel],
        "categories": [c for c in dataset["categories"] if c["id"] in novel],
    }
    size_budget = category_budget(budgets)
    if engine == "owp":
        recalls = _owp_recalls(dataset, columns, split, protocol, budgets)
    else:
        recalls = _cocoeval_recalls(
            dataset, gt_dataset, columns.to_list(), split, protocol, budgets, engine
        )
    metrics: dict[str, Any] = {
        f"AR@{k}": mean_recall(recalls["all"], "all", budgets.index(k)) for k in budgets
    }
    for area in AREA_NAMES[1:]:
        metrics[f"AR_{area}@{size_budget}"] = mean_recall(
            recalls[area], area, budgets.index(size_budget)
        )
    metrics.update(
        protocol=protocol,
        split=split.name,
        num_images=len(image_ids),
        num_gt=sum(1 for a in gt_dataset["annotations"] if not a["iscrowd"]),
    )
    if per_category:
        metrics["per_category"] = _per_category(dataset, columns, split, size_budget, engine)
    return metrics


def category_budget(budgets: Sequence[int]) -> int:
    """The budget K of the size and per-category figures: 100, or the largest listed k below
    100 (the smallest k if all exceed 100)."""
    return max((k for k in budgets if k <= 100), default=min(budgets))


def per_category_recall(
    gt: str | Path | Mapping[str, Any],
    proposals: str | Path | Results,
    split: str | Path | SplitSpec | ClassSplit,
    *,
    budget: int = 100,
    engine: str = "owp",
) -> list[dict[str, Any]]:
    """Recall of class-agnostic proposals on each novel category's ground truth alone.

    For each novel category, the strict protocol restricted to its boxes: COCOeval with
    ``useCats=0`` on that category's ground truth (crowd regions ignored, as always) and all
    proposals, ``maxDets=budget``. Proposals on objects of other categories neither help nor
    hurt, except by taking budget.

    Returns:
        One dict per novel category, sorted by AR (best first; categories without ground truth
        last, then by name): ``{"category_id", "name", "count"`` (non-crowd boxes),
        ``"R50@<budget>"`` (recall at IoU 0.5), ``"AR@<budget>"`` (mean over IoU 0.50:0.95)``}``;
        recalls are fractions, ``None`` for a category without ground truth.
    """
    check_engine(engine)
    budget = check_max_dets([budget])[0]
    if isinstance(gt, str | Path):  # an instances JSON or a dataset folder (its val file)
        gt = find_annotation_file(gt)
    gt_name = gt if isinstance(gt, Path) else "ground truth"
    dataset = load_instances(gt)[0] if isinstance(gt, Path) else gt
    split = _with_novel_classes(resolve_split(split, dataset["categories"], gt_name))
    image_ids = [img["id"] for img in dataset["images"]]
    name = proposals if isinstance(proposals, str | Path) else "proposals"
    columns = read_result_arrays(proposals, image_ids, name=name)
    return _per_category(dataset, columns, split, budget, engine)


def _with_novel_classes(split: ClassSplit) -> ClassSplit:
    """``split`` when it names novel classes, else an :class:`OwpInputError`."""
    if not split.novel_ids:
        raise OwpInputError(
            f"split {split.name!r} has no novel classes to evaluate; name a split with novel "
            "classes (a split file with 'base: []' evaluates every class)"
        )
    return split


def _per_category(
    dataset: Mapping[str, Any],
    proposals: ResultArrays,
    split: ClassSplit,
    budget: int,
    engine: str,
) -> list[dict[str, Any]]:
    """:func:`per_category_recall` on loaded, checked inputs."""
    categories = sorted(split.novel_ids)
    if engine == "owp":
        matched, totals = _owp_category_counts(dataset, proposals, categories, budget)
    else:
        matched, totals = _cocoeval_category_counts(
            dataset, proposals.to_list(), categories, budget, engine
        )
    names = {c["id"]: c.get("name", str(c["id"])) for c in dataset["categories"]}
    rows = []
    for c, category in enumerate(categories):
        total = int(totals[c])
        recall = matched[:, c] / total if total else None
        rows.append(
            {
                "category_id": category,
                "name": names.get(category, str(category)),
                "count": total,
                f"R50@{budget}": None if recall is None else float(recall[0]),
                f"AR@{budget}": None if recall is None else float(np.mean(recall)),
            }
        )
    key = f"AR@{budget}"
    return sorted(rows, key=lambda r: (r[key] is None, -(r[key] or 0.0), r["name"]))


def _owp_category_counts(
    dataset: Mapping[str, Any],
    proposals: ResultArrays,
    categories: Sequence[int],
    budget: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-category matching by owp's matcher: ``([T, C] matched boxes within the budget,
    [C] non-crowd boxes)`` for ``categories`` (ascending ids).

    Each (image, category) pair with ground truth becomes a matching problem of its own (a
    "virtual image") holding that category's boxes and the image's best ``budget`` proposals,
    so that every category is matched on its own, as COCOeval on its ground truth alone, in
    one pass for all categories.
    """
    images = np.array([img["id"] for img in dataset["images"]], dtype=np.int64)
    by_id = np.argsort(images, kind="stable")
    index_of = lambda ids: by_id[np.searchsorted(images[by_id], ids)]  # noqa: E731
    anns = dataset["annotations"]
    category = np.array([a["category_id"] for a in anns], dtype=np.int64)
    crowd = np.array([bool(a["iscrowd"]) for a in anns], dtype=bool)
    picked = np.flatnonzero(np.isin(category, categories) & ~crowd)
    gt_image = index_of(np.array([anns[i]["image_id"] for i in picked], dtype=np.int64))
    column = np.searchsorted(categories, category[picked])
    det_image = index_of(proposals.image_ids)
    # The best `budget` of each image, back in input order (COCOeval breaks score ties by it).
    kept = np.sort(
        layout(
            len(images), gt_image, category[picked], det_image, proposals.scores, budget
        ).det_index
    )
    virtual, gt_virtual = np.unique(gt_image * len(categories) + column, return_inverse=True)
    per_image = np.bincount(virtual // len(categories), minlength=len(images))
    first = np.cumsum(per_image) - per_image
    copies = per_image[det_image[kept]]
    source = np.repeat(kept, copies)
    offset = np.arange(len(source)) - np.repeat(np.cumsum(copies) - copies, copies)
    det_virtual = first[det_image[source]] + offset
    lay = layout(
        len(virtual), gt_virtual, category[picked], det_virtual, proposals.scores[source], budget
    )
    gt_boxes = np.array([anns[i]["bbox"] for i in picked], dtype=np.float64).reshape(-1, 4)
    pairs = candidate_pairs(lay, proposals.boxes[source][lay.det_index], gt_boxes[lay.gt_index])
    regular = column[lay.gt_index][None, :] == np.arange(len(categories))[:, None]
    counts = recall_counts(pairs, lay.det_rank, regular, [budget])
    return counts[:, :, 0], regular.sum(axis=1)


def _cocoeval_category_counts(
    dataset: Mapping[str, Any],
    proposals: Results,
    categories: Sequence[int],
    budget: int,
    engine: str,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_owp_category_counts` from a COCO engine: one COCOeval per category."""
    matched = np.zeros((len(IOU_THRESHOLDS), len(categories)))
    totals = np.zeros(len(categories), dtype=np.int64)
    for c, category in enumerate(categories):
        anns = [a for a in dataset["annotations"] if a["category_id"] == category]
        totals[c] = sum(1 for a in anns if not a["iscrowd"])
        if not totals[c]:
            continue
        own = {
            "images": dataset["images"],
            "annotations": anns,
            "categories": [k for k in dataset["categories"] if k["id"] == category],
        }
        recall = run_cocoeval(
            own, proposals, [budget], use_cats=False, category_id=category, engine=engine
        )["recall"]
        matched[:, c] = recall[:, 0, 0, 0] * totals[c]
    return matched, totals


def _cocoeval_recalls(
    dataset: Mapping[str, Any],
    gt_dataset: Mapping[str, Any],
    proposals: Results,
    split: ClassSplit,
    protocol: str,
    budgets: list[int],
    engine: str,
) -> dict[str, np.ndarray]:
    """Area name -> COCOeval's ``recall[T, K, A, M]`` array holding that area's recall, from a
    COCO engine. strict: one evaluation. oln: the filter depends on the area range (as in OLN's
    own evaluation), so each area range is evaluated on its own filtered proposals."""
    if protocol == "strict":
        recall = run_cocoeval(
            gt_dataset,
            proposals,
            budgets,
            use_cats=False,
            category_id=split.novel_ids[0],
            engine=engine,
        )["recall"]
        return dict.fromkeys(AREA_NAMES, recall)
    recalls = {}
    for area in AREA_NAMES:
        kept = drop_base_matched(
            proposals, dataset["annotations"], split.base_ids, max(budgets), AREA_RANGES[area]
        )
        recalls[area] = run_cocoeval(
            gt_dataset, kept, budgets, use_cats=False, category_id=split.novel_ids[0], engine=engine
        )["recall"]
    return recalls


def _owp_recalls(
    dataset: Mapping[str, Any],
    proposals: ResultArrays,
    split: ClassSplit,
    protocol: str,
    budgets: list[int],
) -> dict[str, np.ndarray]:
    """:func:`_cocoeval_recalls` computed by owp's vectorised matcher (same numbers)."""
    images = np.array([img["id"] for img in dataset["images"]], dtype=np.int64)
    by_id = np.argsort(images, kind="stable")
    index_of = lambda ids: by_id[np.searchsorted(images[by_id], ids)]  # noqa: E731
    anns = dataset["annotations"]
    category = np.array([a["category_id"] for a in anns], dtype=np.int64)
    crowd = np.array([bool(a["iscrowd"]) for a in anns], dtype=bool)
    novel = np.isin(category, split.novel_ids)
    keep = novel & ~crowd if protocol == "strict" else np.ones(len(anns), dtype=bool)
    picked = np.flatnonzero(keep)
    gt_image = index_of(np.array([anns[i]["image_id"] for i in picked], dtype=np.int64))
    lay = layout(
        len(images),
        gt_image,
        category[picked],
        index_of(proposals.image_ids),
        proposals.scores,
        max(budgets),
    )
    picked = picked[lay.gt_index]
    boxes = np.array([anns[i]["bbox"] for i in picked], dtype=np.float64).reshape(-1, 4)
    area = np.array([anns[i]["area"] for i in picked], dtype=np.float64)
    category, crowd, novel = category[picked], crowd[picked], novel[picked]
    in_range = np.stack([(area >= lo) & (area <= hi) for lo, hi in AREA_RANGES.values()])
    det_boxes = proposals.boxes[lay.det_index]
    num_dets = len(lay.det_index)
    if protocol == "strict":
        pairs = candidate_pairs(lay, det_boxes, boxes)
        counts = recall_counts(pairs, lay.det_rank, in_range, budgets)
        totals = in_range.sum(axis=1)
        return {name: _as_cocoeval_recall(counts, totals, a) for a, name in enumerate(AREA_NAMES)}
    pairs = candidate_pairs(lay, det_boxes, boxes, crowd)
    is_base = np.isin(category, split.base_ids)
    matched = first_matches(pairs, num_dets, len(picked), ~is_base & ~crowd & in_range, crowd)
    on_base = (matched >= 0) & is_base[np.maximum(matched, 0)]
    countable = novel & ~crowd
    recalls = {}
    for a, name in enumerate(AREA_NAMES):
        survives = ~on_base[a]
        kept = pairs.subset(survives[pairs.det] & countable[pairs.gt])
        regular = (countable & in_range[a])[None]
        counts = recall_counts(kept, lay.rerank(survives), regular, budgets)
        totals = np.zeros(len(AREA_NAMES), dtype=np.int64)
        totals[a] = regular.sum()
        full = np.zeros((counts.shape[0], len(AREA_NAMES), counts.shape[2]), dtype=np.int64)
        full[:, a] = counts[:, 0]
        recalls[name] = _as_cocoeval_recall(full, totals, a)
    return recalls


def _as_cocoeval_recall(counts: np.ndarray, totals: np.ndarray, area: int) -> np.ndarray:
    """``[T, 1, A, K]`` recall as COCOeval's accumulate leaves it (``-1`` without objects),
    filled for one area range."""
    recall = -np.ones((counts.shape[0], 1, counts.shape[1], counts.shape[2]))
    if totals[area]:
        recall[:, 0, area] = counts[:, area] / totals[area]
    return recall


def mean_recall(recall: np.ndarray, area: str, budget_index: int) -> float | None:
    """pycocotools' AR: mean of ``recall[T, K, A, M]`` over IoU thresholds and categories.

    Entries of -1 (no ground truth) are left out; ``None`` when every entry is -1.
    """
    values = recall[:, :, AREA_NAMES.index(area), budget_index]
    values = values[values > -1]
    return float(np.mean(values)) if values.size else None


def drop_base_matched(
    proposals: Results,
    gt: Sequence[Mapping],
    base_ids: Collection[int],
    budget: int,
    area_range: tuple[float, float] = AREA_RANGES["all"],
) -> Results:
    """The OLN protocol's filter: rank, cut to ``budget``, drop proposals matched to base objects.

    Per image, proposals are ranked by score (stable, as COCOeval ranks them) and cut to
    ``budget``. They are then matched to the ground truth (novel and base) at IoU 0.5 exactly as
    COCOeval matches (and as OLN's evaluation wrapper does): in rank order, one-to-one except
    for crowd regions, preferring a not-yet-matched regular object (a novel box inside
    ``area_range``) over ignored ones (base boxes, crowd regions, novel boxes outside the area
    range), best IoU wins, later box on ties. Proposals whose match is a base-class box are
    removed. Returns the survivors in rank order.

    Args:
        proposals: results with ``image_id``, ``bbox`` (xywh) and ``score``.
        gt: every annotation of the images (``bbox``, ``area``, ``iscrowd``, ``category_id``).
        base_ids: the base category ids.
        budget: the largest k evaluated.
        area_range: the ``[min, max]`` annotation area that counts as regular (COCO's ranges).
    """
    base_ids = set(base_ids)
    by_image: dict[int, list[dict]] = defaultdict(list)
    for proposal in proposals:
        by_image[proposal["image_id"]].append(proposal)
    gt_by_image: dict[int, list[Mapping]] = defaultdict(list)
    for ann in sorted(gt, key=lambda a: a["category_id"]):  # COCOeval's useCats=0 order
        gt_by_image[ann["image_id"]].append(ann)
    kept: Results = []
    for image_id, items in by_image.items():
        order = np.argsort([-p["score"] for p in items], kind="mergesort")[:budget]
        ranked = [items[i] for i in order]
        anns = gt_by_image.get(image_id, [])
        if any(a["category_id"] in base_ids for a in anns):
            on_base = _matched_to_base(ranked, anns, base_ids, area_range)
            ranked = [p for p, hit in zip(ranked, on_base, strict=True) if not hit]
        kept.extend(ranked)
    return kept


def _matched_to_base(
    ranked: Results, anns: Sequence[Mapping], base_ids: set[int], area_range: tuple[float, float]
) -> np.ndarray:
    """COCOeval's greedy matching at IoU 0.5 for one image; True where the match is a base box."""
    is_base = np.array([a["category_id"] in base_ids for a in anns])
    crowd = np.array([bool(a["iscrowd"]) for a in anns])
    area = np.array([float(a["area"]) for a in anns])
    ignored = is_base | crowd | (area < area_range[0]) | (area > area_range[1])
    gt_order = np.argsort(ignored, kind="mergesort")  # regular objects first, as COCOeval
    is_base, crowd, ignored = is_base[gt_order], crowd[gt_order], ignored[gt_order]
    ious = np.asarray(
        coco_mask.iou(
            [p["bbox"] for p in ranked],
            [anns[i]["bbox"] for i in gt_order],
            [int(c) for c in crowd],
        )
    ).reshape(len(ranked), len(anns))
    taken = np.zeros(len(anns), dtype=bool)
    on_base = np.zeros(len(ranked), dtype=bool)
    for d in np.flatnonzero((ious >= OLN_BASE_MATCH_IOU).any(axis=1)):
        free = ~taken | crowd
        for group in (free & ~ignored, free & ignored):
            candidates = np.flatnonzero(group & (ious[d] >= OLN_BASE_MATCH_IOU))
            if candidates.size:
                best = candidates[ious[d, candidates] == ious[d, candidates].max()][-1]
                taken[best] = True
                on_base[d] = is_base[best]
                break
    return on_base


def check_max_dets(max_dets: Sequence[int] | str) -> list[int]:
    """Parse and check budgets: positive integers (a comma-separated string is accepted)."""
    values = max_dets.split(",") if isinstance(max_dets, str) else list(max_dets)
    parsed: list[int] = []
    for value in values:
        try:
            number = int(str(value).strip())
        except ValueError:
            number = 0
        if number <= 0 or str(number) != str(value).strip():
            raise OwpInputError(f"--max-dets must be positive integers, got {value!r}")
        parsed.append(number)
    if not parsed:
        raise OwpInputError("--max-dets must list at least one positive integer")
    return sorted(set(parsed))

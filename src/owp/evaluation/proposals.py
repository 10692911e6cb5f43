"""Class-agnostic average recall (AR@k) of object proposals on the novel classes of a split.

Two protocols (docs/reference/protocols.md), always named in the report:

* ``strict`` (the paper): base-class ground truth is deleted and every proposal counts in the
  budget. This is exactly COCOeval with ``useCats=0`` on the novel-only ground truth.
* ``oln`` (OLN and its followers), exactly as ``COCOEvalXclassWrapper`` in OLN's
  ``mmdet/datasets/cocoeval_wrappers.py`` (github.com/mcahny/object_localization_network)
  computes it: each image's proposals are ranked by score and cut to the **pool** (the
  wrapper's ``maxDets[-1]``: 1500 in OLN, 500 in GOOD, 100 in LDET and UDOS); they are matched
  by COCOeval's greedy rules, at every IoU threshold and with every proposal present, against
  all ground truth with base-class boxes ignored; the proposals whose match at IoU 0.5 is a
  base-class box are then removed, *keeping the matches made while they were present* (a
  removed proposal may hold a novel box at a higher threshold, which no later proposal then
  takes); the budget k counts the survivors. Size recalls apply the rules per area range, as
  the wrapper evaluates each range on its own.

Categories on neither side of a split (possible with a split file listing both sides) are left
out of both protocols: their boxes are treated as unannotated, neither recalled nor ignored.

AR@k is the recall at ``maxDets=k`` averaged over IoU thresholds 0.50:0.05:0.95, as
pycocotools computes it. Per-category recall (:func:`per_category_recall`) is the strict protocol
restricted to one novel category's ground truth at a time: COCOeval with ``useCats=0`` on that
category's boxes alone, every proposal a candidate for them. The default engine is owp's
vectorised matcher (:mod:`owp.evaluation.matching`); ``engine="pycocotools"`` runs
pycocotools' COCOeval (for ``oln``, subclassed with the wrapper's rules:
:func:`owp.evaluation.cocoeval.run_oln_cocoeval`), ``"faster-coco-eval"`` its C++ port
(``strict`` only: the wrapper's rules live in Python).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from owp.data.coco import find_annotation_file, load_instances
from owp.data.splits import ClassSplit, SplitSpec, resolve_split
from owp.errors import OwpInputError
from owp.evaluation.cocoeval import (
    AREA_NAMES,
    AREA_RANGES,
    check_engine,
    run_cocoeval,
    run_oln_cocoeval,
)
from owp.evaluation.matching import (
    IOU_THRESHOLDS,
    NOT_COUNTED,
    candidate_pairs,
    first_matches,
    layout,
    recall_counts,
)
from owp.evaluation.results import ResultArrays, Results, read_result_arrays

log = logging.getLogger(__name__)

PROTOCOLS: tuple[str, ...] = ("strict", "oln")
DEFAULT_MAX_DETS: tuple[int, ...] = (10, 20, 50, 100, 300, 1000)
DEFAULT_OLN_POOL = 1500
"""OLN's own pool: its wrapper's ``maxDets[-1]``."""


@dataclass(frozen=True)
class Convention:
    """A published way of reporting novel AR: the protocol, the ``oln`` pool, who used it."""

    protocol: str
    pool: int | None
    used_by: str

    @property
    def label(self) -> str:
        return protocol_label(self.protocol, self.pool)


PUBLISHED_CONVENTIONS: tuple[Convention, ...] = (
    Convention("strict", None, "FCOS-OWP (Konan et al.): every proposal counts"),
    Convention("oln", 1500, "OLN (Kim et al.)"),
    Convention("oln", 500, "GOOD (Huang et al.)"),
    Convention("oln", 100, "LDET (Saito et al.), UDOS (Kalluri et al.)"),
)
"""The conventions :func:`evaluate_conventions` reports side by side."""


def protocol_label(protocol: str, pool: int | None = None) -> str:
    """How tables and metrics name a protocol: ``strict`` or ``oln (pool 1500)``."""
    return protocol if protocol == "strict" else f"{protocol} (pool {pool})"


def evaluate_proposals(
    gt: str | Path | Mapping[str, Any],
    proposals: str | Path | Results,
    split: str | Path | SplitSpec | ClassSplit,
    *,
    protocol: str = "strict",
    max_dets: Sequence[int] = DEFAULT_MAX_DETS,
    engine: str = "owp",
    per_category: bool = False,
    oln_pool: int = DEFAULT_OLN_POOL,
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
        oln_pool: the ``oln`` protocol's pool: proposals kept per image before those on base
            objects are removed (module docstring); ignored by ``strict``.

    Returns:
        ``{"AR@<k>": float for each k, "AR_small@K", "AR_medium@K", "AR_large@K", "protocol",
        "protocol_label", "split", "num_images", "num_gt"}`` (``oln``: also ``"oln_pool"``)
        where K is 100, or the largest listed k below 100 (the smallest k if all exceed 100).
        Recalls are fractions in [0, 1], ``None`` where no ground truth exists (e.g. no small
        novel objects); ``num_gt`` counts novel non-crowd boxes.
    """
    if protocol not in PROTOCOLS:
        raise OwpInputError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
    budgets = check_max_dets(max_dets)
    pool = check_pool(oln_pool)
    check_engine(engine)
    if protocol == "oln" and engine == "faster-coco-eval":
        raise OwpInputError(
            "the oln protocol runs on engine owp or pycocotools (OLN's wrapper subclasses "
            "pycocotools' COCOeval in Python; faster-coco-eval's C++ cannot take its rules)"
        )
    if isinstance(gt, str | Path):  # an instances JSON or a dataset folder (its val file)
        gt = find_annotation_file(gt)
    gt_name = gt if isinstance(gt, Path) else "ground truth"
    dataset = load_instances(gt)[0] if isinstance(gt, Path) else gt
    split = _with_novel_classes(resolve_split(split, dataset["categories"], gt_name))
    dataset = _on_either_side(dataset, split)
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
        recalls = _owp_recalls(dataset, columns, split, protocol, budgets, pool)
    else:
        recalls = _cocoeval_recalls(
            dataset, gt_dataset, columns.to_list(), split, protocol, budgets, pool, engine
        )
    metrics: dict[str, Any] = {
        f"AR@{k}": mean_recall(recalls["all"], "all", budgets.index(k)) for k in budgets
    }
    for area in AREA_NAMES[1:]:
        metrics[f"AR_{area}@{size_budget}"] = mean_recall(
            recalls[area], area, budgets.index(size_budget)
        )
    metrics.update(protocol=protocol, protocol_label=protocol_label(protocol, pool))
    if protocol == "oln":
        metrics["oln_pool"] = pool
    metrics.update(
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


def evaluate_conventions(
    gt: str | Path | Mapping[str, Any],
    proposals: str | Path | Results,
    split: str | Path | SplitSpec | ClassSplit,
    *,
    max_dets: Sequence[int] = DEFAULT_MAX_DETS,
    engine: str = "owp",
    conventions: Sequence[Convention] = PUBLISHED_CONVENTIONS,
) -> list[dict[str, Any]]:
    """:func:`evaluate_proposals` under each published convention (strict, and ``oln`` at
    pools 1500, 500 and 100), the files read once: one metrics dict per convention, with its
    ``"convention"`` label and ``"used_by"``."""
    if isinstance(gt, str | Path):  # an instances JSON or a dataset folder (its val file)
        gt = find_annotation_file(gt)
    gt_name = gt if isinstance(gt, Path) else "ground truth"
    dataset = load_instances(gt)[0] if isinstance(gt, Path) else gt
    image_ids = [img["id"] for img in dataset["images"]]
    name = proposals if isinstance(proposals, str | Path) else "proposals"
    columns = read_result_arrays(proposals, image_ids, name=name)
    resolved = resolve_split(split, dataset["categories"], gt_name)
    rows = []
    for convention in conventions:
        metrics = evaluate_proposals(
            dataset,
            columns,
            resolved,
            protocol=convention.protocol,
            max_dets=max_dets,
            engine=engine,
            oln_pool=convention.pool or DEFAULT_OLN_POOL,
        )
        rows.append({"convention": convention.label, "used_by": convention.used_by, **metrics})
    return rows


def check_pool(pool: int) -> int:
    """``pool`` when it is a positive integer, else an :class:`OwpInputError`."""
    if isinstance(pool, bool) or not isinstance(pool, int | np.integer) or pool < 1:
        raise OwpInputError(f"the oln pool must be a positive integer, got {pool!r}")
    return int(pool)


def _on_either_side(dataset: Mapping[str, Any], split: ClassSplit) -> Mapping[str, Any]:
    """``dataset`` without the boxes of categories on neither side of ``split``: both protocols
    treat them as unannotated (OLN's wrapper has no such case)."""
    sides = set(split.base_ids) | set(split.novel_ids)
    if all(a["category_id"] in sides for a in dataset["annotations"]):
        return dataset
    return {
        **dataset,
        "annotations": [a for a in dataset["annotations"] if a["category_id"] in sides],
        "categories": [c for c in dataset["categories"] if c["id"] in sides],
    }


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
    pool: int,
    engine: str,
) -> dict[str, np.ndarray]:
    """Area name -> COCOeval's ``recall[T, K, A, M]`` array holding that area's recall, from a
    COCO engine: COCOeval on the novel ground truth (strict), or OLN's wrapper on all of it."""
    if protocol == "strict":
        recall = run_cocoeval(
            gt_dataset,
            proposals,
            budgets,
            use_cats=False,
            category_id=split.novel_ids[0],
            engine=engine,
        )["recall"]
    else:
        recall = run_oln_cocoeval(dataset, proposals, budgets, base_ids=split.base_ids, pool=pool)[
            "recall"
        ]
    return dict.fromkeys(AREA_NAMES, recall)


def _owp_recalls(
    dataset: Mapping[str, Any],
    proposals: ResultArrays,
    split: ClassSplit,
    protocol: str,
    budgets: list[int],
    pool: int,
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
        max(budgets) if protocol == "strict" else pool,
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
    countable = novel & ~crowd
    regular = countable & in_range
    # Which box each proposal takes at IoU 0.5, with every box present (base boxes and crowd
    # regions ignored): those taking a base box leave the budget.
    matched = first_matches(pairs, num_dets, len(picked), regular, crowd)
    on_base = np.zeros(matched.shape, dtype=bool)
    on_base[matched >= 0] = is_base[matched[matched >= 0]]
    # Every proposal of the pool still takes part in the matching of the novel boxes.
    novel_pairs = pairs.subset(countable[pairs.gt])
    recalls = {}
    for a, name in enumerate(AREA_NAMES):
        survives = ~on_base[a]
        rank = np.where(survives, lay.rerank(survives), NOT_COUNTED)
        counts = recall_counts(novel_pairs, rank, regular[a][None], budgets)
        totals = np.zeros(len(AREA_NAMES), dtype=np.int64)
        totals[a] = regular[a].sum()
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

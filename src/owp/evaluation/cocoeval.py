"""One doorway to the COCO box evaluator: faster-coco-eval by default, pycocotools on request.

Both engines get identical inputs (ground truth and detections as in-memory dicts) and return
COCOeval's accumulated ``eval`` dict (``precision[T, R, K, A, M]``, ``recall[T, K, A, M]``).

The engine names of owp's evaluators are :data:`ENGINES`: ``owp`` (the default) computes
class-agnostic recall with owp's vectorised matcher (:mod:`owp.evaluation.matching`) and AP
with faster-coco-eval; ``faster-coco-eval`` and ``pycocotools`` run everything on that COCO
engine (the references: the same numbers, slower).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from owp.errors import OwpInputError

ENGINES: tuple[str, ...] = ("owp", "faster-coco-eval", "pycocotools")
AREA_RANGES: dict[str, tuple[float, float]] = {
    "all": (0.0, 1e5**2),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e5**2),
}
"""COCOeval's default area ranges (pixels², inclusive bounds), in its order."""
AREA_NAMES: tuple[str, ...] = tuple(AREA_RANGES)


def run_cocoeval(
    gt: Mapping[str, Any],
    detections: Sequence[Mapping[str, Any]],
    max_dets: Sequence[int],
    *,
    use_cats: bool,
    category_id: int | None = None,
    engine: str = "owp",
) -> dict[str, Any]:
    """Evaluate ``bbox`` detections against ``gt`` and return COCOeval's ``eval`` dict.

    Args:
        gt: COCO dict with ``images``, ``annotations`` (with ``id``, ``area``, ``iscrowd``) and
            ``categories``; it is not modified.
        detections: results ``{"image_id", "category_id", "bbox", "score"}``; not modified.
        max_dets: ascending budgets, COCOeval's ``params.maxDets``.
        use_cats: COCOeval's ``params.useCats`` (False: class-agnostic matching).
        category_id: when given, used for every detection instead of its own ``category_id``.
        engine: one of :data:`ENGINES` (``owp`` is faster-coco-eval here).
    """
    check_engine(engine)
    if engine in ("owp", "faster-coco-eval"):
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as COCOeval
    else:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):  # both engines print progress chatter
        coco_gt = _index(COCO(), gt, [dict(a) for a in gt["annotations"]])  # COCOeval mutates
        coco_dt = _index(COCO(), gt, _as_result_annotations(detections, category_id))
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.params.useCats = int(use_cats)
        evaluator.params.maxDets = list(max_dets)
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator.eval


def run_oln_cocoeval(
    gt: Mapping[str, Any],
    proposals: Sequence[Mapping[str, Any]],
    max_dets: Sequence[int],
    *,
    base_ids: Collection[int],
    pool: int,
) -> dict[str, Any]:
    """OLN's ``COCOEvalXclassWrapper`` on pycocotools: class-agnostic COCOeval of
    ``proposals`` against all of ``gt``, base-class boxes ignored, and per image the proposals
    whose match at IoU 0.5 is a base box removed after matching (their matches stay made).

    Written from the wrapper's ``evaluateImg`` (``mmdet/datasets/cocoeval_wrappers.py`` in
    github.com/mcahny/object_localization_network): its two changes to pycocotools are marking
    base boxes ignored (``ignored_split``) and, after the greedy matching, dropping the
    detections matched to them at the first threshold (``dtIgSplit``). Here they are applied
    around pycocotools' own ``_prepare`` and ``evaluateImg``. The wrapper's pool is its
    ``maxDets[-1]``; here each image's proposals are cut to ``pool`` first (stable by score, as
    COCOeval ranks them), so the pool is independent of the budgets ``max_dets``.

    Returns COCOeval's accumulated ``eval`` dict for ``maxDets = max_dets``.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    base = set(base_ids)
    base_gt_ids = {a["id"] for a in gt["annotations"] if a["category_id"] in base}

    class OlnWrapper(COCOeval):
        def _prepare(self) -> None:
            super()._prepare()
            for boxes in self._gts.values():
                for box in boxes:
                    if box["category_id"] in base:
                        box["ignore"] = 1  # the wrapper's ignored_split

        def evaluateImg(self, imgId, catId, aRng, maxDet):  # noqa: N802, N803 (COCOeval's)
            result = super().evaluateImg(imgId, catId, aRng, maxDet)
            if result is None:
                return None
            keep = ~np.isin(result["dtMatches"][0], list(base_gt_ids))
            if not keep.all():
                result["dtMatches"] = result["dtMatches"][:, keep]
                result["dtIgnore"] = result["dtIgnore"][:, keep]
                result["dtIds"] = [d for d, k in zip(result["dtIds"], keep, strict=True) if k]
                result["dtScores"] = [s for s, k in zip(result["dtScores"], keep, strict=True) if k]
            return result

    category = min(c["id"] for c in gt["categories"])
    budgets = sorted({*max_dets, pool})
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = _index(COCO(), gt, [dict(a) for a in gt["annotations"]])
        coco_dt = _index(COCO(), gt, _as_result_annotations(_cut(proposals, pool), category))
        evaluator = OlnWrapper(coco_gt, coco_dt, "bbox")
        evaluator.params.useCats = 0
        evaluator.params.maxDets = budgets
        evaluator.evaluate()
        evaluator.accumulate()
    wanted = [budgets.index(k) for k in max_dets]
    result = dict(evaluator.eval)
    result["recall"] = evaluator.eval["recall"][..., wanted]
    result["precision"] = evaluator.eval["precision"][..., wanted]
    return result


def _cut(proposals: Sequence[Mapping[str, Any]], pool: int) -> list[Mapping[str, Any]]:
    """Each image's best ``pool`` proposals, best first (ties in input order, as COCOeval)."""
    by_image: dict[Any, list[Mapping[str, Any]]] = {}
    for proposal in proposals:
        by_image.setdefault(proposal["image_id"], []).append(proposal)
    kept: list[Mapping[str, Any]] = []
    for items in by_image.values():
        order = np.argsort([-p["score"] for p in items], kind="mergesort")[:pool]
        kept.extend(items[i] for i in order)
    return kept


def check_engine(engine: str) -> str:
    """``engine`` when it is one of :data:`ENGINES`, else an :class:`OwpInputError`."""
    if engine not in ENGINES:
        raise OwpInputError(
            f"unknown evaluation engine {engine!r}; use one of {', '.join(ENGINES)}"
        )
    return engine


def _as_result_annotations(
    detections: Sequence[Mapping[str, Any]], category_id: int | None
) -> list[dict[str, Any]]:
    """What ``COCO.loadRes`` makes of box results (ids from 1, area = w*h, not crowd), without
    the unused polygon it also attaches to each one."""
    return [
        {
            "id": index,
            "image_id": d["image_id"],
            "category_id": d["category_id"] if category_id is None else category_id,
            "bbox": d["bbox"],
            "score": d["score"],
            "area": d["bbox"][2] * d["bbox"][3],
            "iscrowd": 0,
        }
        for index, d in enumerate(detections, start=1)
    ]


def _index(coco, dataset: Mapping[str, Any], annotations: list[dict[str, Any]]):
    coco.dataset = {
        "images": list(dataset["images"]),
        "annotations": annotations,
        "categories": list(dataset["categories"]),
    }
    coco.createIndex()
    return coco

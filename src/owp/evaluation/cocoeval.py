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
from collections.abc import Mapping, Sequence
from typing import Any

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

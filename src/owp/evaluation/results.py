"""Reading prediction files in COCO results format, with clear errors for malformed input.

A results file is a JSON list of ``{"image_id", "bbox": [x, y, w, h], "score"}`` objects, plus
``"category_id"`` for class-labelled detections (optional and ignored for proposals). The
document ``owp predict --format coco`` writes (a dict whose ``annotations`` are such a list) is
read as its ``annotations``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from owp.checks import is_finite_number, is_int
from owp.data.coco import read_json
from owp.errors import OwpInputError

log = logging.getLogger(__name__)

Results = list[dict[str, Any]]


@dataclass
class ResultArrays:
    """Results as columns: ``image_ids`` int64 ``[N]``, ``boxes`` float64 ``[N, 4]`` (xywh),
    ``scores`` float64 ``[N]``, ``category_ids`` int64 ``[N]`` or ``None``."""

    image_ids: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    category_ids: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.image_ids)

    def to_list(self) -> Results:
        """The COCO results list ``[{"image_id", "bbox", "score"[, "category_id"]}, ...]``."""
        cleaned = [
            {"image_id": i, "bbox": b, "score": s}
            for i, b, s in zip(
                self.image_ids.tolist(), self.boxes.tolist(), self.scores.tolist(), strict=True
            )
        ]
        if self.category_ids is not None:
            for result, category in zip(cleaned, self.category_ids.tolist(), strict=True):
                result["category_id"] = category
        return cleaned


def read_results(
    source: str | Path | Results | ResultArrays,
    image_ids: Iterable[int],
    *,
    category_ids: Iterable[int] | None = None,
    name: str | Path = "results",
) -> Results:
    """Validate COCO-format results against the ground truth's image (and category) ids.

    Args:
        source: a JSON file path or an already loaded list.
        image_ids: the ground truth's image ids; results naming others are an error.
        category_ids: when given, every result needs a ``category_id`` among these.
        name: how to name the input in error messages (defaults to the path).

    Returns:
        Clean copies ``{"image_id", "bbox", "score"[, "category_id"]}`` with float boxes and
        scores. Boxes with non-positive width or height are dropped with one counted warning.
    """
    return read_result_arrays(source, image_ids, category_ids=category_ids, name=name).to_list()


def read_result_arrays(
    source: str | Path | Results | ResultArrays,
    image_ids: Iterable[int],
    *,
    category_ids: Iterable[int] | None = None,
    name: str | Path = "results",
) -> ResultArrays:
    """:func:`read_results` as columns (no per-result objects: what the fast evaluator reads)."""
    if isinstance(source, str | Path):
        name = source
        source = read_json(source, "results file")
    if isinstance(source, dict) and isinstance(source.get("annotations"), list):
        source = source["annotations"]  # what owp predict --format coco writes
    with_category = category_ids is not None
    if isinstance(source, ResultArrays):
        if with_category and source.category_ids is None:
            raise OwpInputError("results have no 'category_id'", path=name)
        columns = (
            source.image_ids,
            source.boxes,
            source.scores,
            source.category_ids if with_category else None,
        )
    else:
        if not isinstance(source, list):
            raise OwpInputError(
                "a results file must be a JSON list of {image_id, bbox, score} (or owp predict's "
                "COCO document)",
                path=name,
            )
        columns = _columns(source, with_category=with_category)
        if columns is None:
            _raise_first_problem(source, name, with_category=with_category)
    ids, boxes, scores, categories = columns
    known_images = np.fromiter(set(image_ids), dtype=np.int64)
    unknown = ~np.isin(ids, known_images)
    if unknown.any():
        shown = ", ".join(str(i) for i in np.unique(ids[unknown])[:5])
        raise OwpInputError(
            f"{len(np.unique(ids[unknown]))} image ids are not in the ground truth (e.g. {shown}); "
            "is this the right ground-truth file?",
            path=name,
        )
    if categories is not None:
        known_categories = np.fromiter(set(category_ids), dtype=np.int64)
        wrong = np.flatnonzero(~np.isin(categories, known_categories))
        if wrong.size:
            raise OwpInputError(
                f"entry {wrong[0]} has category_id {categories[wrong[0]]}, "
                "not a category of the ground truth",
                path=name,
            )
    valid = (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
    if valid.all():
        return ResultArrays(ids, boxes, scores, categories)
    log.warning(
        "%s: dropped %d results with non-positive width or height", name, int((~valid).sum())
    )
    return ResultArrays(
        ids[valid], boxes[valid], scores[valid], None if categories is None else categories[valid]
    )


def _columns(
    source: list, *, with_category: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None] | None:
    """The results as arrays (ids ``[N]``, boxes ``[N, 4]``, scores ``[N]``, categories), or
    None when any entry is malformed (the slow path then finds and names it)."""
    try:
        ids = np.array([e["image_id"] for e in source])
        boxes = np.array([e["bbox"] for e in source])
        scores = np.array([e["score"] for e in source])
        categories = np.array([e["category_id"] for e in source]) if with_category else None
    except (TypeError, KeyError, ValueError):
        return None
    count = len(source)
    if count == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, np.zeros((0, 4)), np.zeros(0), empty if with_category else None
    integral = ids.dtype.kind in "iu" and (categories is None or categories.dtype.kind in "iu")
    numeric = boxes.dtype.kind in "iuf" and scores.dtype.kind in "iuf"
    if not (integral and numeric and boxes.shape == (count, 4) and scores.shape == (count,)):
        return None
    boxes, scores = boxes.astype(np.float64), scores.astype(np.float64)
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
        return None
    if categories is not None:
        categories = categories.astype(np.int64)
    return ids.astype(np.int64), boxes, scores, categories


def _raise_first_problem(source: list, name: str | Path, *, with_category: bool) -> None:
    """Find the first malformed entry and raise an error naming it."""
    for index, entry in enumerate(source):
        if not isinstance(entry, dict):
            raise OwpInputError(f"entry {index} is not an object", path=name)
        bbox, score = entry.get("bbox"), entry.get("score")
        if not is_int(entry.get("image_id")):
            raise OwpInputError(f"entry {index} has no integer 'image_id'", path=name)
        if (
            not isinstance(bbox, list | tuple)
            or len(bbox) != 4
            or not all(map(is_finite_number, bbox))
        ):
            raise OwpInputError(
                f"entry {index} has no valid 'bbox' [x, y, width, height]", path=name
            )
        if not is_finite_number(score):
            raise OwpInputError(f"entry {index} has no finite numeric 'score'", path=name)
        if with_category and not is_int(entry.get("category_id")):
            raise OwpInputError(f"entry {index} has no integer 'category_id'", path=name)
    raise OwpInputError("results are malformed (mixed types across entries)", path=name)

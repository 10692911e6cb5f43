"""Reading prediction files in COCO results format, with clear errors for malformed input.

A results file is a JSON list of ``{"image_id", "bbox": [x, y, w, h], "score"}`` objects, plus
``"category_id"`` for class-labelled detections (optional and ignored for proposals).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from owp.data.coco import read_json
from owp.errors import OwpInputError

log = logging.getLogger(__name__)

Results = list[dict[str, Any]]


def read_results(
    source: str | Path | Results,
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
    if isinstance(source, str | Path):
        name = source
        source = read_json(source, "results file")
    if not isinstance(source, list):
        raise OwpInputError(
            "a results file must be a JSON list of {image_id, bbox, score}", path=name
        )
    known_images = set(image_ids)
    known_categories = None if category_ids is None else set(category_ids)
    cleaned: Results = []
    unknown_images: set = set()
    degenerate = 0
    for index, entry in enumerate(source):
        if not isinstance(entry, dict):
            raise OwpInputError(f"entry {index} is not an object", path=name)
        bbox, score, image_id = entry.get("bbox"), entry.get("score"), entry.get("image_id")
        if not _is_int(image_id):
            raise OwpInputError(f"entry {index} has no integer 'image_id'", path=name)
        if not isinstance(bbox, list | tuple) or len(bbox) != 4 or not all(map(_is_finite, bbox)):
            raise OwpInputError(
                f"entry {index} has no valid 'bbox' [x, y, width, height]", path=name
            )
        if not _is_finite(score):
            raise OwpInputError(f"entry {index} has no finite numeric 'score'", path=name)
        if image_id not in known_images:
            unknown_images.add(image_id)
            continue
        if bbox[2] <= 0 or bbox[3] <= 0:
            degenerate += 1
            continue
        result = {"image_id": image_id, "bbox": [float(v) for v in bbox], "score": float(score)}
        if known_categories is not None:
            category = entry.get("category_id")
            if category not in known_categories:
                raise OwpInputError(
                    f"entry {index} has category_id {category!r}, "
                    "not a category of the ground truth",
                    path=name,
                )
            result["category_id"] = category
        cleaned.append(result)
    if unknown_images:
        shown = ", ".join(str(i) for i in sorted(unknown_images)[:5])
        raise OwpInputError(
            f"{len(unknown_images)} image ids are not in the ground truth (e.g. {shown}); "
            "is this the right ground-truth file?",
            path=name,
        )
    if degenerate:
        log.warning("%s: dropped %d results with non-positive width or height", name, degenerate)
    return cleaned


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)

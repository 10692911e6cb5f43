"""Running a proposal generator over a dataset and writing COCO results."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from tqdm import tqdm

from owp.models.baselines import random_proposals, sliding_window_proposals

Results = list[dict[str, Any]]
SizeProposer = Callable[[int, int], dict[str, torch.Tensor]]


def to_coco_results(image_id: int, output: Mapping[str, torch.Tensor]) -> Results:
    """One image's model output (``boxes`` xyxy ``[N, 4]``, ``scores`` ``[N]``) as COCO results.

    ``labels`` (when present) are written as ``category_id`` unchanged; callers that map
    contiguous labels to dataset ids do so before.
    """
    boxes = output["boxes"].detach().cpu().double()
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
    scores = output["scores"].detach().cpu().tolist()
    labels = output.get("labels")
    results = [
        {"image_id": int(image_id), "bbox": [round(v, 2) for v in box], "score": round(s, 5)}
        for box, s in zip(xywh, scores, strict=True)
    ]
    if labels is not None:
        for result, label in zip(results, labels.tolist(), strict=True):
            result["category_id"] = int(label)
    return results


def baseline_proposer(method: str, num: int, seed: int = 0) -> SizeProposer:
    """A function ``(width, height) -> output`` for the named non-learned baseline."""
    if method == "sliding-window":
        return lambda w, h: sliding_window_proposals(w, h, num, seed=seed)
    if method == "random":
        return lambda w, h: random_proposals(w, h, num, seed=seed)
    raise ValueError(f"unknown baseline {method!r}")


def propose_for_images(
    images: Sequence[Mapping[str, Any]], proposer: SizeProposer, *, progress: bool = False
) -> Results:
    """Run a size-only proposer on every COCO ``images`` entry; results in COCO format."""
    results: Results = []
    for info in tqdm(images, desc="proposing", unit="img", disable=not progress):
        output = proposer(int(info["width"]), int(info["height"]))
        results.extend(to_coco_results(info["id"], output))
    return results

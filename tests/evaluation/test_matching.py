"""owp's vectorised matcher: the exact numbers of pycocotools' COCOeval on hard cases."""

from __future__ import annotations

import numpy as np
import pytest

from owp.data.splits import SplitSpec
from owp.evaluation.matching import IOU_THRESHOLDS, greedy_match
from owp.evaluation.proposals import evaluate_proposals

SPLIT = SplitSpec("hard", base=(1,), novel=(2, 3))  # category 4 is on neither side


def hard_problem(seed: int, num_images: int = 25) -> tuple[dict, list[dict]]:
    """Integer boxes on a small canvas: duplicated and nested objects (detections with several
    candidates), crowd regions, areas on the size-bucket edges, IoUs exactly on thresholds,
    quarter-step scores (many ties) and images without objects or proposals."""
    rng = np.random.default_rng(seed)
    images, annotations, proposals = [], [], []
    for image_id in range(1, num_images + 1):
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": 64, "height": 64})
        boxes: list[list[float]] = []
        for _ in range(int(rng.integers(0, 12))):
            if boxes and rng.random() < 0.3:
                box = list(boxes[int(rng.integers(len(boxes)))])
            else:
                x, y = rng.integers(0, 40, size=2)
                w, h = rng.integers(4, 24, size=2)
                box = [float(x), float(y), float(w), float(h)]
            boxes.append(box)
            area = rng.choice([box[2] * box[3], 32.0**2, 96.0**2, 0.7 * box[2] * box[3]])
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(rng.integers(1, 5)),
                    "bbox": box,
                    "area": float(area),
                    "iscrowd": int(rng.random() < 0.15),
                }
            )
        for _ in range(int(rng.integers(0, 80))):
            if boxes and rng.random() < 0.7:
                x, y, w, h = boxes[int(rng.integers(len(boxes)))]
                dx, dy, dw, dh = (int(v) for v in rng.integers(-3, 4, size=4))
                box = [x + dx, y + dy, max(1.0, w + dw), max(1.0, h + dh)]
            else:
                x, y = rng.integers(0, 50, size=2)
                w, h = rng.integers(1, 30, size=2)
                box = [float(x), float(y), float(w), float(h)]
            score = float(rng.integers(0, 5)) / 4
            proposals.append({"image_id": image_id, "bbox": box, "score": score})
    categories = [{"id": c, "name": f"c{c}"} for c in range(1, 5)]
    return {"images": images, "annotations": annotations, "categories": categories}, proposals


@pytest.mark.parametrize("protocol", ["strict", "oln"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_hard_cases_equal_pycocotools(seed: int, protocol: str) -> None:
    gt, proposals = hard_problem(seed)
    budgets = [1, 5, 10, 100]
    ours = evaluate_proposals(gt, proposals, SPLIT, protocol=protocol, max_dets=budgets)
    reference = evaluate_proposals(
        gt, proposals, SPLIT, protocol=protocol, max_dets=budgets, engine="pycocotools"
    )
    assert ours == reference  # exactly: same matches, same float operations


@pytest.mark.parametrize("protocol", ["strict", "oln"])
def test_every_class_novel_and_no_proposals(protocol: str) -> None:
    gt, proposals = hard_problem(5, num_images=10)
    every = SplitSpec("every", base=(), novel=None)
    for items in (proposals, []):
        ours = evaluate_proposals(gt, items, every, protocol=protocol, max_dets=[3, 30])
        reference = evaluate_proposals(
            gt, items, every, protocol=protocol, max_dets=[3, 30], engine="pycocotools"
        )
        assert ours == reference


def test_greedy_match_follows_the_rank_order_through_a_chain() -> None:
    # One image, boxes 0 and 1; detection 0 prefers box 0 (IoU 0.9 > 0.8), detection 1 can only
    # take box 0, detection 2 prefers box 0 then box 1. COCOeval: 0 -> box 0, 1 -> nothing,
    # 2 -> box 1. A round-based matcher must not let detection 1 or 2 take box 0 first.
    det = np.array([0, 0, 1, 2, 2])
    gt = np.array([0, 1, 0, 0, 1])
    iou = np.array([0.9, 0.8, 0.95, 0.99, 0.6])
    problem, d, g = greedy_match(np.zeros(5, dtype=np.int64), det, gt, iou, 3, 2)
    assert sorted(zip(d.tolist(), g.tolist(), strict=True)) == [(0, 0), (2, 1)]
    assert (problem == 0).all()


def test_greedy_match_prefers_regular_boxes_and_reuses_crowds() -> None:
    # Box 1 is a crowd region (ignored, never used up), box 0 an ignored regular-size box.
    det = np.array([0, 0, 1, 1, 2])
    gt = np.array([0, 1, 0, 1, 1])
    iou = np.array([0.9, 0.7, 0.9, 0.7, 0.6])
    preferred = np.array([False, False, False, False, False])
    crowd = np.array([False, True, False, True, True])
    _, d, g = greedy_match(np.zeros(5, dtype=np.int64), det, gt, iou, 3, 2, preferred, crowd)
    assert sorted(zip(d.tolist(), g.tolist(), strict=True)) == [(0, 0), (1, 1), (2, 1)]


def test_thresholds_are_pycocotools_params() -> None:
    from pycocotools.cocoeval import Params

    assert np.array_equal(IOU_THRESHOLDS, np.minimum(Params().iouThrs, 1 - 1e-10))

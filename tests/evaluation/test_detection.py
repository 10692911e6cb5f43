"""Base-class AP: parity with pycocotools' COCOeval on the base-only ground truth."""

import contextlib
import copy
import io
import json

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from owp.data.splits import SplitSpec
from owp.errors import OwpInputError
from owp.evaluation.detection import evaluate_detections
from owp.testing import random_coco_problem

SPLIT = SplitSpec("test", base=(1, 2, 3), novel=None)


def pycocotools_stats(gt, detections, base_ids):
    base_gt = COCO()
    base_gt.dataset = {
        "images": gt["images"],
        "annotations": [
            copy.deepcopy(a) for a in gt["annotations"] if a["category_id"] in base_ids
        ],
        "categories": [c for c in gt["categories"] if c["id"] in base_ids],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        base_gt.createIndex()
        kept = [copy.deepcopy(d) for d in detections if d["category_id"] in base_ids]
        evaluator = COCOeval(base_gt, base_gt.loadRes(kept), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


@pytest.mark.parametrize("seed", [0, 3])
def test_base_ap_equals_pycocotools(seed):
    gt, detections = random_coco_problem(60, max_dets=150, crowd_fraction=0.1, seed=seed)
    ours = evaluate_detections(gt, detections, SPLIT)
    stats = pycocotools_stats(gt, detections, {1, 2, 3})
    keys = ["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large"]
    for key, value in zip(keys, stats[:6], strict=True):
        assert ours[key] == pytest.approx(value, abs=1e-9), key
    assert 0.0 < ours["AP50"] <= 1.0


def test_perfect_detections_score_one_and_novel_labels_are_not_credited():
    gt, _ = random_coco_problem(10, crowd_fraction=0.0, seed=5)
    perfect = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 1.0,
        }
        for a in gt["annotations"]
    ]
    assert evaluate_detections(gt, perfect, SPLIT)["AP"] == pytest.approx(1.0)
    relabelled = [{**d, "category_id": 4 + i % 2} for i, d in enumerate(perfect)]
    assert evaluate_detections(gt, relabelled, SPLIT)["AP"] == 0.0


def test_detections_need_known_category_ids():
    gt, detections = random_coco_problem(3, seed=1)
    with pytest.raises(OwpInputError, match="category_id"):
        evaluate_detections(gt, [{**detections[0], "category_id": 99}], SPLIT)
    with pytest.raises(OwpInputError, match="no base classes"):
        evaluate_detections(gt, detections, SplitSpec("none", base=(), novel=None))


def test_class_agnostic_proposals_are_refused_in_one_line(tmp_path) -> None:
    gt = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 20], "area": 400,
             "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [50, 50, 20, 20], "area": 400,
             "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "bicycle"}],
    }  # fmt: skip
    proposals = [
        {"image_id": 1, "category_id": 1, "bbox": box, "score": 0.5}
        for box in ([0, 0, 20, 20], [50, 50, 20, 20])
    ]
    split = SplitSpec("both", base=(1, 2), novel=())
    path = tmp_path / "proposals.json"
    path.write_text(json.dumps(proposals))
    with pytest.raises(OwpInputError, match="class-agnostic proposals have no AP") as info:
        evaluate_detections(gt, path, split)
    assert "category_id 1 (person)" in str(info.value)
    # A model's own output in memory is scored as it is (a weak classifier may say one class).
    assert evaluate_detections(gt, proposals, split)["AP"] < 1.0
    labelled = [{**proposals[0]}, {**proposals[1], "category_id": 2}]
    assert evaluate_detections(gt, labelled, split)["AP"] == pytest.approx(1.0)

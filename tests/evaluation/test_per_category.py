"""Per-category recall: parity with pycocotools on each category's ground truth alone, hand
cases, and the ``owp eval-proposals --per-category`` output."""

import contextlib
import copy
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from owp.cli import main
from owp.data.splits import SplitSpec
from owp.errors import OwpInputError
from owp.evaluation.proposals import evaluate_proposals, per_category_recall
from owp.testing import random_coco_problem

SPLIT = SplitSpec("test", base=(1, 2), novel=None)  # novel = 3, 4, 5, 6


def pycocotools_category_recall(gt, proposals, category_id, budget=100):
    """recall[T] at ``budget`` from pycocotools' COCOeval (useCats=0) on one category's GT."""
    own = COCO()
    own.dataset = {
        "images": gt["images"],
        "annotations": [
            copy.deepcopy(a) for a in gt["annotations"] if a["category_id"] == category_id
        ],
        "categories": [c for c in gt["categories"] if c["id"] == category_id],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        own.createIndex()
        dets = own.loadRes([{**p, "category_id": category_id} for p in copy.deepcopy(proposals)])
        evaluator = COCOeval(own, dets, "bbox")
        evaluator.params.useCats = 0
        evaluator.params.maxDets = [1, 10, budget]
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator.eval["recall"][:, 0, 0, -1]


@pytest.mark.parametrize("engine", ["owp", "faster-coco-eval", "pycocotools"])
@pytest.mark.parametrize("seed", [0, 1])
def test_each_category_equals_pycocotools_on_its_ground_truth_alone(engine, seed):
    gt, proposals = random_coco_problem(
        50, num_categories=6, max_gt=20, max_dets=250, crowd_fraction=0.15, seed=seed
    )
    rows = per_category_recall(gt, proposals, SPLIT, budget=100, engine=engine)
    assert sorted(r["category_id"] for r in rows) == [3, 4, 5, 6]
    for row in rows:
        reference = pycocotools_category_recall(gt, proposals, row["category_id"])
        own = [a for a in gt["annotations"] if a["category_id"] == row["category_id"]]
        count = sum(1 for a in own if not a["iscrowd"])
        assert row["count"] == count > 0
        assert row["name"] == f"c{row['category_id']}"
        assert row["AR@100"] == pytest.approx(float(np.mean(reference)), abs=1e-12)
        assert row["R50@100"] == pytest.approx(float(reference[0]), abs=1e-12)
    assert [r["AR@100"] for r in rows] == sorted((r["AR@100"] for r in rows), reverse=True)


def test_small_budget_cuts_each_image_before_matching():
    gt, proposals = random_coco_problem(30, num_categories=6, max_gt=20, max_dets=60, seed=4)
    rows = per_category_recall(gt, proposals, SPLIT, budget=10)
    for row in rows:
        reference = pycocotools_category_recall(gt, proposals, row["category_id"], budget=10)
        assert row["AR@10"] == pytest.approx(float(np.mean(reference)), abs=1e-12)


def _two_boxes_one_proposal():
    """One image: a class-3 box and a class-4 box; the one proposal is the class-3 box itself
    (IoU 1) and overlaps the class-4 box at IoU 100/120 = 0.833."""
    gt = {
        "images": [{"id": 1, "width": 50, "height": 50}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10], "area": 100,
             "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 4, "bbox": [0, 0, 10, 12], "area": 120,
             "iscrowd": 0},
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [20, 20, 10, 10], "area": 100,
             "iscrowd": 0},
        ],
        "categories": [{"id": c, "name": f"c{c}"} for c in (1, 2, 3, 4, 5)],
    }  # fmt: skip
    proposals = [{"image_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9}]
    return gt, proposals


@pytest.mark.parametrize("engine", ["owp", "pycocotools"])
def test_hand_case_each_category_may_use_the_same_proposal(engine):
    gt, proposals = _two_boxes_one_proposal()
    split = SplitSpec("hand", base=(1, 2), novel=None)  # novel 3, 4, 5
    rows = {r["category_id"]: r for r in per_category_recall(gt, proposals, split, engine=engine)}
    assert rows[3]["AR@100"] == 1.0 and rows[3]["R50@100"] == 1.0
    # IoU 0.833 passes the thresholds 0.50 ... 0.80: 7 of 10.
    assert rows[4]["AR@100"] == pytest.approx(0.7) and rows[4]["R50@100"] == 1.0
    assert rows[5] == {"category_id": 5, "name": "c5", "count": 0, "R50@100": None,
                       "AR@100": None}  # fmt: skip
    assert [r["category_id"] for r in per_category_recall(gt, proposals, split)] == [3, 4, 5]
    # Pooled (the strict protocol on all novel boxes), the proposal finds only one of the two.
    pooled = evaluate_proposals(gt, proposals, split, max_dets=[100], engine=engine)
    assert pooled["AR@100"] == pytest.approx(0.5)


def test_evaluate_proposals_adds_per_category_at_the_size_budget():
    gt, proposals = _two_boxes_one_proposal()
    split = SplitSpec("hand", base=(1, 2), novel=None)
    metrics = evaluate_proposals(
        gt, proposals, split, protocol="oln", max_dets=[10, 50], per_category=True
    )
    first = metrics["per_category"][0]
    assert set(first) == {"category_id", "name", "count", "R50@50", "AR@50"}
    assert "per_category" not in evaluate_proposals(gt, proposals, split, max_dets=[10])


def test_a_split_without_novel_classes_is_refused():
    gt, proposals = _two_boxes_one_proposal()
    with pytest.raises(OwpInputError, match="no novel classes"):
        per_category_recall(gt, proposals, SplitSpec("all", base=(1, 2, 3, 4, 5), novel=()))


def test_cli_prints_the_table_writes_json_and_a_bar_plot(tmp_path, capsys):
    gt, proposals = random_coco_problem(20, num_categories=6, seed=3)
    gt_file, proposals_file = tmp_path / "gt.json", tmp_path / "p.json"
    gt_file.write_text(json.dumps(gt))
    proposals_file.write_text(json.dumps(proposals))
    split_file = tmp_path / "split.yaml"
    split_file.write_text("name: t\nbase: [1, 2]\n")
    out = tmp_path / "metrics.json"
    code = main(
        ["eval-proposals", "--gt", str(gt_file), "--proposals", str(proposals_file),
         "--split", str(split_file), "--per-category", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    metrics = json.loads(out.read_text())
    rows = metrics["per_category"]
    assert [r["category_id"] for r in rows] == [
        r["category_id"] for r in per_category_recall(gt, proposals, split_file)
    ]
    lines = [line.split() for line in printed.splitlines()]
    names = [line[0] for line in lines if line and line[0] in {"c3", "c4", "c5", "c6"}]
    assert names == [r["name"] for r in rows]
    plot = out.with_name("metrics_per_category.png")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

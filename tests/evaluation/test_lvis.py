"""LVIS v1 evaluation: federated AP against lvis-api, class-agnostic recall against pycocotools.

lvis-api (``pip install lvis``, in the ``dev`` extra) is the reference for LVIS's AP; it still
calls ``np.float``, which numpy removed, so that alias is set here, in the test only.
"""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest

from owp.data.splits import SplitSpec
from owp.errors import OwpInputError
from owp.evaluation.detection import evaluate_detections
from owp.evaluation.lvis import federated_ap, top_per_image
from owp.evaluation.proposals import evaluate_proposals
from owp.testing import random_lvis_problem

lvis = pytest.importorskip("lvis")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # lvis-api's logger.warn

KEYS = {
    "AP": "AP",
    "AP50": "AP50",
    "AP75": "AP75",
    "AP_small": "APs",
    "AP_medium": "APm",
    "AP_large": "APl",
    "APr": "APr",
    "APc": "APc",
    "APf": "APf",
}


def lvis_api_results(gt: dict, detections: list[dict]) -> dict[str, float]:
    """lvis-api's LVISEval (bbox) on in-memory ground truth and results."""
    if not hasattr(np, "float"):
        np.float = float  # lvis-api 0.5.3 uses the alias numpy 1.24 removed
    reference = lvis.LVIS.__new__(lvis.LVIS)
    reference.logger = logging.getLogger("lvis-reference")
    reference.dataset = copy.deepcopy(gt)
    reference._create_index()
    results = lvis.LVISResults(reference, copy.deepcopy(detections), max_dets=300)
    evaluator = lvis.LVISEval(reference, results, "bbox")
    evaluator.run()
    return {key: float(value) for key, value in evaluator.results.items()}


@pytest.mark.parametrize("seed", [0, 1])
def test_federated_ap_equals_lvis_api(seed: int) -> None:
    # 350 detections per image: the 300 cut matters, and two-decimal scores tie at it.
    gt, detections = random_lvis_problem(16, num_categories=10, proposals_per_image=320, seed=seed)
    ours = federated_ap(gt, detections)
    reference = lvis_api_results(gt, detections)
    for key, theirs in KEYS.items():
        assert ours[key] == pytest.approx(reference[theirs], abs=1e-12), key
    assert 0.0 < ours["AP"] < 1.0


def test_base_class_ap_on_lvis_is_federated_ap_of_the_base_classes() -> None:
    gt, detections = random_lvis_problem(16, num_categories=12, proposals_per_image=100, seed=4)
    for annotation in gt["annotations"]:
        annotation["iscrowd"] = 0  # what load_instances adds
    split = SplitSpec("lvis-test", base=None, novel=(3, 7, 11))
    ours = evaluate_detections(gt, detections, split)
    base = [c["id"] for c in gt["categories"] if c["id"] not in (3, 7, 11)]
    base_gt = {
        "images": gt["images"],
        "annotations": [a for a in gt["annotations"] if a["category_id"] in base],
        "categories": [c for c in gt["categories"] if c["id"] in base],
    }
    reference = lvis_api_results(base_gt, [d for d in detections if d["category_id"] in base])
    for key, theirs in KEYS.items():
        assert ours[key] == pytest.approx(reference[theirs], abs=1e-12), key
    assert ours["federated"] is True and ours["split"] == "lvis-test"
    assert ours["num_gt"] == len(base_gt["annotations"])


def test_federated_rules_by_hand() -> None:
    box = [10.0, 10.0, 40.0, 40.0]
    other = [100.0, 100.0, 30.0, 30.0]
    gt = {
        "images": [
            {
                "id": 1,
                "width": 200,
                "height": 200,
                "neg_category_ids": [2],
                "not_exhaustive_category_ids": [1],
            },
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": box, "area": 1600.0, "iscrowd": 0}
        ],
        "categories": [
            {"id": 1, "name": "a", "frequency": "f"},
            {"id": 2, "name": "b", "frequency": "r"},
            {"id": 3, "name": "c", "frequency": "c"},
        ],
    }
    hit = {"image_id": 1, "category_id": 1, "bbox": box, "score": 0.5}
    # A higher-scored miss of a not-exhaustive category is ignored, and category 3 (neither
    # annotated nor verified absent here) is not evaluated at all: AP stays 1.
    spared = [
        {"image_id": 1, "category_id": 1, "bbox": other, "score": 0.9},
        {"image_id": 1, "category_id": 3, "bbox": other, "score": 0.9},
    ]
    assert federated_ap(gt, [hit, *spared])["AP"] == pytest.approx(1.0)
    # Category 2 is verified absent, so its detection is evaluated — with no ground truth of
    # its own it has no AP, and category 1's AP is unchanged.
    absent = {"image_id": 1, "category_id": 2, "bbox": box, "score": 0.9}
    assert federated_ap(gt, [hit, absent])["AP"] == pytest.approx(1.0)
    # Once category 1 is exhaustive, the higher-scored miss costs precision.
    gt["images"][0]["not_exhaustive_category_ids"] = []
    assert federated_ap(gt, [hit, spared[0]])["AP"] < 0.6


def test_top_per_image_keeps_the_first_listed_on_a_tie() -> None:
    detections = [{"image_id": 1, "score": s, "tag": i} for i, s in enumerate([0.5, 0.9, 0.5])]
    kept = top_per_image(detections, max_dets=2)
    assert [d["tag"] for d in kept] == [1, 0]
    assert top_per_image(detections, max_dets=3) == detections


def test_lvis_recall_is_class_agnostic_and_ignores_the_federated_lists() -> None:
    gt, proposals = random_lvis_problem(20, num_categories=12, proposals_per_image=150, seed=2)
    for annotation in gt["annotations"]:
        annotation["iscrowd"] = 0
    split = SplitSpec("lvis-test", base=None, novel=(2, 5, 9))
    plain = copy.deepcopy(gt)
    for image in plain["images"]:
        image["neg_category_ids"], image["not_exhaustive_category_ids"] = [], []
    for protocol in ("strict", "oln"):
        ours = evaluate_proposals(gt, proposals, split, protocol=protocol)
        reference = evaluate_proposals(
            gt, proposals, split, protocol=protocol, engine="pycocotools"
        )
        assert ours == reference
        assert evaluate_proposals(plain, proposals, split, protocol=protocol) == ours
    assert 0.0 < ours["AR@100"] < 1.0


def test_pycocotools_cannot_compute_federated_ap() -> None:
    gt, detections = random_lvis_problem(3, num_categories=4, proposals_per_image=5, seed=1)
    for annotation in gt["annotations"]:
        annotation["iscrowd"] = 0
    with pytest.raises(OwpInputError, match="federated"):
        evaluate_detections(gt, detections, "all", engine="pycocotools")

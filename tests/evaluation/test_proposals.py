"""Novel-class AR@k: parity with pycocotools (strict), hand-computed cases (both protocols)."""

import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from owp.data.splits import SplitSpec
from owp.errors import OwpInputError
from owp.evaluation.proposals import check_max_dets, evaluate_proposals
from owp.testing import random_coco_problem

BUDGETS = [10, 20, 50, 100, 300, 1000]
SPLIT = SplitSpec("test", base=(1, 2), novel=None)  # novel = 3, 4, 5


def pycocotools_recalls(gt, proposals, novel_ids, budgets):
    """AR straight from pycocotools' COCOeval (useCats=0) on the novel-only ground truth."""
    novel_gt = COCO()
    novel_gt.dataset = {
        "images": gt["images"],
        "annotations": [
            copy.deepcopy(a) for a in gt["annotations"] if a["category_id"] in novel_ids
        ],
        "categories": [c for c in gt["categories"] if c["id"] in novel_ids],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        novel_gt.createIndex()
        dets = novel_gt.loadRes(
            [{**p, "category_id": novel_ids[0]} for p in copy.deepcopy(proposals)]
        )
        evaluator = COCOeval(novel_gt, dets, "bbox")
        evaluator.params.useCats = 0
        evaluator.params.maxDets = budgets
        evaluator.evaluate()
        evaluator.accumulate()
    recall = evaluator.eval["recall"]

    def mean(area_index, budget_index):
        values = recall[:, :, area_index, budget_index]
        return float(np.mean(values[values > -1]))

    out = {f"AR@{k}": mean(0, i) for i, k in enumerate(budgets)}
    m = budgets.index(100)
    out.update(
        {"AR_small@100": mean(1, m), "AR_medium@100": mean(2, m), "AR_large@100": mean(3, m)}
    )
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_strict_equals_pycocotools_cocoeval(seed):
    gt, proposals = random_coco_problem(60, max_dets=400, crowd_fraction=0.15, seed=seed)
    ours = evaluate_proposals(gt, proposals, SPLIT, protocol="strict", max_dets=BUDGETS)
    reference = pycocotools_recalls(gt, proposals, [3, 4, 5], BUDGETS)
    assert set(reference) <= set(ours)
    for key, value in reference.items():
        assert ours[key] == pytest.approx(value, abs=1e-9), key
    assert 0.0 < ours["AR@100"] < 1.0
    assert ours["num_gt"] == sum(
        1 for a in gt["annotations"] if a["category_id"] in (3, 4, 5) and not a["iscrowd"]
    )
    assert ours["num_images"] == 60 and ours["protocol"] == "strict" and ours["split"] == "test"


@pytest.mark.parametrize("protocol", ["strict", "oln"])
def test_engines_agree(protocol):
    gt, proposals = random_coco_problem(40, seed=7)
    fast = evaluate_proposals(gt, proposals, SPLIT, protocol=protocol)
    reference = evaluate_proposals(gt, proposals, SPLIT, protocol=protocol, engine="pycocotools")
    assert fast == pytest.approx(reference, abs=1e-12)


def one_image(annotations, width=200, height=200):
    """A ground truth of one image; annotations are (category_id, [x, y, w, h], iscrowd)."""
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "width": width, "height": height}],
        "annotations": [
            {
                "id": i + 1,
                "image_id": 1,
                "category_id": c,
                "bbox": b,
                "area": b[2] * b[3],
                "iscrowd": z,
            }
            for i, (c, b, z) in enumerate(annotations)
        ],
        "categories": [{"id": 1, "name": "base"}, {"id": 2, "name": "novel"}],
    }


HAND_SPLIT = SplitSpec("hand", base=(1,), novel=(2,))
BASE_BOX = [10.0, 10.0, 50.0, 50.0]
NOVEL_BOX = [100.0, 100.0, 60.0, 60.0]


def proposal(box, score):
    return {"image_id": 1, "bbox": box, "score": score}


def test_exact_and_shifted_proposal_by_hand():
    gt = one_image([(2, NOVEL_BOX, 0)])
    exact = evaluate_proposals(gt, [proposal(NOVEL_BOX, 0.5)], HAND_SPLIT, max_dets=[100])
    assert exact["AR@100"] == pytest.approx(1.0)
    # Shifted right by 15 px: IoU = 45*60 / (2*3600 - 45*60) = 0.6: matched at 0.50, 0.55, 0.60.
    shifted = evaluate_proposals(
        gt, [proposal([115.0, 100.0, 60.0, 60.0], 0.5)], HAND_SPLIT, max_dets=[100]
    )
    assert shifted["AR@100"] == pytest.approx(0.3)
    assert shifted["AR_medium@100"] == pytest.approx(0.3)  # 60x60 = 3600 px² is medium
    assert shifted["AR_small@100"] is None and shifted["AR_large@100"] is None


def test_base_proposal_consumes_the_budget_only_under_strict():
    gt = one_image([(1, BASE_BOX, 0), (2, NOVEL_BOX, 0)])
    proposals = [proposal(BASE_BOX, 0.9), proposal(NOVEL_BOX, 0.8)]
    strict = evaluate_proposals(gt, proposals, HAND_SPLIT, protocol="strict", max_dets=[1, 10])
    oln = evaluate_proposals(gt, proposals, HAND_SPLIT, protocol="oln", max_dets=[1, 10])
    assert strict["AR@1"] == 0.0 and strict["AR@10"] == 1.0
    assert oln["AR@1"] == 1.0 and oln["AR@10"] == 1.0
    assert strict["num_gt"] == oln["num_gt"] == 1


def test_oln_cuts_each_image_to_the_pool_before_removing():
    gt = one_image([(1, BASE_BOX, 0), (2, NOVEL_BOX, 0)])
    proposals = [proposal(BASE_BOX, 0.9), proposal(NOVEL_BOX, 0.8)]
    for engine in ("owp", "pycocotools"):
        # Pool 1: only the base proposal is in the pool, then it is removed: nothing left.
        cut = evaluate_proposals(
            gt, proposals, HAND_SPLIT, protocol="oln", max_dets=[1], oln_pool=1, engine=engine
        )
        assert cut["AR@1"] == 0.0 and cut["oln_pool"] == 1
        assert cut["protocol_label"] == "oln (pool 1)"
        # OLN's own pool (1500): the base proposal leaves the budget, the novel one takes k=1.
        full = evaluate_proposals(gt, proposals, HAND_SPLIT, protocol="oln", max_dets=[1])
        assert full["AR@1"] == 1.0 and full["protocol_label"] == "oln (pool 1500)"


def test_oln_keeps_the_matches_of_removed_proposals():
    """OLN's wrapper matches with every pooled proposal present, then removes those matched to
    a base box at IoU 0.5, keeping the boxes they took at the other thresholds (owp <= 0.1
    matched the survivors again, which here gave AR@2 1.0)."""
    base = [0.0, 0.0, 100.0, 100.0]
    novel = [0.0, 0.0, 100.0, 48.0]  # IoU with base 0.48
    gt = one_image([(1, base, 0), (2, novel, 0)])
    # F: novel 48/84 = 0.571, base 0.84: takes the novel box at 0.50 and 0.55; kept.
    f = proposal([0.0, 0.0, 100.0, 84.0], 0.9)
    # R: novel 48/53 = 0.906, base 0.53. At 0.50 the novel box is F's, so R takes the base box
    # and is removed; at 0.60..0.90 (F out of reach) R takes the novel box and keeps it.
    r = proposal([0.0, 0.0, 100.0, 53.0], 0.8)
    # L: exact on the novel box, base 0.48 (no base match): kept; takes the novel box only
    # at 0.95, where R's 0.906 falls short.
    later = proposal(novel, 0.7)
    for engine in ("owp", "pycocotools"):
        result = evaluate_proposals(
            gt, [f, r, later], HAND_SPLIT, protocol="oln", max_dets=[1, 2], engine=engine
        )
        # Survivors F (k=1: 2 thresholds) and L (k=2: 1 more threshold) of 10.
        assert result["AR@1"] == pytest.approx(0.2), engine
        assert result["AR@2"] == pytest.approx(0.3), engine


def test_oln_on_ground_truth_without_annotations_equals_strict():
    gt = one_image([])
    proposals = [proposal(NOVEL_BOX, 0.5)]
    for engine in ("owp", "pycocotools"):
        strict = evaluate_proposals(gt, proposals, HAND_SPLIT, max_dets=[1], engine=engine)
        oln = evaluate_proposals(
            gt, proposals, HAND_SPLIT, protocol="oln", max_dets=[1], engine=engine
        )
        assert oln["AR@1"] is None and strict["AR@1"] is None
        assert oln["num_gt"] == strict["num_gt"] == 0


def test_categories_on_neither_side_are_left_out_of_both_protocols():
    split = SplitSpec("sides", base=(1,), novel=(2,))
    other = [10.0, 10.0, 50.0, 45.0]  # IoU 0.9 with BASE_BOX
    gt = one_image([(1, BASE_BOX, 0), (2, NOVEL_BOX, 0), (3, other, 0)])
    gt["categories"].append({"id": 3, "name": "neither"})
    on_other = proposal(other, 0.9)
    found = proposal(NOVEL_BOX, 0.8)
    # The category-3 box is as if unannotated. strict: the proposal on it recalls nothing and
    # uses the first slot. oln: it is matched to the base box (IoU 0.9), so it is removed (as
    # a regular object, the category-3 box would have kept it in the budget).
    expected = {"strict": (0.0, 1.0), "oln": (1.0, 1.0)}
    for protocol in ("strict", "oln"):
        for engine in ("owp", "pycocotools"):
            result = evaluate_proposals(
                gt, [on_other, found], split, protocol=protocol, max_dets=[1, 2], engine=engine
            )
            assert (result["AR@1"], result["AR@2"]) == expected[protocol], (protocol, engine)
            assert result["num_gt"] == 1


def test_oln_pool_must_be_a_positive_integer():
    gt = one_image([(2, NOVEL_BOX, 0)])
    for bad in (0, -5, 1.5, True):
        with pytest.raises(OwpInputError, match="pool must be a positive integer"):
            evaluate_proposals(gt, [], HAND_SPLIT, protocol="oln", oln_pool=bad)


def test_oln_refuses_the_faster_coco_eval_engine():
    gt = one_image([(2, NOVEL_BOX, 0)])
    with pytest.raises(OwpInputError, match="owp or pycocotools"):
        evaluate_proposals(gt, [], HAND_SPLIT, protocol="oln", engine="faster-coco-eval")


def test_oln_removal_is_one_to_one_for_regular_base_boxes():
    proposals = [
        proposal(BASE_BOX, 0.9),
        proposal([12.0, 10.0, 50.0, 50.0], 0.85),
        proposal(NOVEL_BOX, 0.8),
    ]
    regular = one_image([(1, BASE_BOX, 0), (2, NOVEL_BOX, 0)])
    oln = evaluate_proposals(regular, proposals, HAND_SPLIT, protocol="oln", max_dets=[1, 2, 10])
    # The first proposal takes the base box and is removed; the second finds it taken, is not
    # matched to anything, stays and uses the first slot.
    assert (oln["AR@1"], oln["AR@2"]) == (0.0, 1.0)
    crowd = one_image([(1, BASE_BOX, 1), (2, NOVEL_BOX, 0)])
    oln = evaluate_proposals(crowd, proposals, HAND_SPLIT, protocol="oln", max_dets=[1, 2, 10])
    # A crowd region can be matched any number of times: both proposals on it are removed.
    assert (oln["AR@1"], oln["AR@2"]) == (1.0, 1.0)


def test_oln_prefers_the_novel_match():
    # The proposal overlaps the base box at IoU 0.8 and the novel box at IoU 0.6: COCO's
    # matching prefers the regular (novel) object, so it is kept and credited at 0.50..0.60.
    base = [0.0, 0.0, 100.0, 100.0]
    novel = [0.0, 0.0, 100.0, 60.0]  # IoU(novel, base) = 0.6
    gt = one_image([(1, base, 0), (2, novel, 0)])
    hit = [0.0, 0.0, 100.0, 80.0]  # IoU with base 0.8, with novel 60/80 = 0.75
    result = evaluate_proposals(gt, [proposal(hit, 0.9)], HAND_SPLIT, protocol="oln", max_dets=[1])
    assert result["AR@1"] == pytest.approx(0.6)  # thresholds 0.50..0.75: 6 of 10


def test_proposal_category_is_ignored():
    gt = one_image([(2, NOVEL_BOX, 0)])
    labelled = [{**proposal(NOVEL_BOX, 0.5), "category_id": 1}]
    assert evaluate_proposals(gt, labelled, HAND_SPLIT, max_dets=[1])["AR@1"] == 1.0


def test_size_recall_uses_largest_budget_not_above_100():
    gt = one_image([(2, NOVEL_BOX, 0)])
    metrics = evaluate_proposals(gt, [proposal(NOVEL_BOX, 0.5)], HAND_SPLIT, max_dets=[10, 50, 300])
    assert set(metrics) >= {
        "AR@10",
        "AR@50",
        "AR@300",
        "AR_small@50",
        "AR_medium@50",
        "AR_large@50",
    }


def test_no_proposals_gives_zero_recall():
    gt = one_image([(2, NOVEL_BOX, 0)])
    assert evaluate_proposals(gt, [], HAND_SPLIT, max_dets=[10])["AR@10"] == 0.0


@pytest.mark.parametrize("bad", ["0", "-5", "ten", "10,x", "1.5", ""])
def test_max_dets_must_be_positive_integers(bad):
    with pytest.raises(OwpInputError, match="max-dets"):
        check_max_dets(bad)


def test_bad_protocol_split_and_proposals():
    gt = one_image([(2, NOVEL_BOX, 0)])
    with pytest.raises(OwpInputError, match="unknown protocol"):
        evaluate_proposals(gt, [], HAND_SPLIT, protocol="nope")
    with pytest.raises(OwpInputError, match="no novel classes"):
        evaluate_proposals(gt, [], "all")
    with pytest.raises(OwpInputError, match="not in the ground truth"):
        evaluate_proposals(gt, [{"image_id": 99, "bbox": NOVEL_BOX, "score": 1.0}], HAND_SPLIT)
    with pytest.raises(OwpInputError, match="score"):
        evaluate_proposals(gt, [{"image_id": 1, "bbox": NOVEL_BOX}], HAND_SPLIT)
    with pytest.raises(OwpInputError, match="bbox"):
        evaluate_proposals(gt, [{"image_id": 1, "bbox": [1, 2, 3], "score": 1.0}], HAND_SPLIT)
    with pytest.raises(OwpInputError, match="absent from the dataset"):
        evaluate_proposals(gt, [], SplitSpec("x", base=(7,), novel=None))

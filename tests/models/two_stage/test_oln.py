"""OLN: centerness targets for anchors, the objectness sampling, RoI IoU targets, final score."""

import math

import pytest
import torch
from torchvision.ops import box_iou

from owp.models.registry import create_model, model_config
from owp.models.two_stage.oln import (
    OLNRPN,
    anchor_centerness_targets,
    oln_num_total_samples,
    oln_score,
    roi_iou_targets,
)


def test_anchor_centerness_targets_by_hand():
    anchors = torch.tensor(
        [
            [0.0, 0.0, 20.0, 20.0],  # centre (10, 10)
            [20.0, 0.0, 40.0, 20.0],  # centre (30, 10)
            [60.0, 60.0, 80.0, 80.0],  # centre (70, 70): outside the box
        ]
    )
    box = torch.tensor([[0.0, 0.0, 40.0, 20.0]]).expand(3, 4)
    # centre (10, 10): l=10 r=30 t=10 b=10 -> sqrt(10/30 * 10/10); centre (30, 10): l=30 r=10.
    expected = torch.tensor([math.sqrt(1 / 3), math.sqrt(1 / 3), 0.0])
    assert torch.allclose(anchor_centerness_targets(anchors, box), expected)
    # At the exact centre of the box the target is 1.
    centred = anchor_centerness_targets(torch.tensor([[10.0, 0.0, 30.0, 20.0]]), box[:1])
    assert centred.item() == pytest.approx(1.0)


def oln_rpn(**overrides):
    return OLNRPN(model_config("oln_tiny", **overrides))


def anchors_with_ious(num_high: int, num_mid: int, num_low: int) -> torch.Tensor:
    """Anchors against box [0, 0, 100, 100]: IoU 0.81 (high), 0.2 (between 0.1 and 0.3), 0."""
    high = torch.tensor([[0.0, 0.0, 90.0, 90.0]]).repeat(num_high, 1)
    mid = torch.tensor([[0.0, 0.0, 20.0, 100.0]]).repeat(num_mid, 1)
    low = torch.tensor([[200.0, 200.0, 260.0, 260.0]]).repeat(num_low, 1)
    return torch.cat([high, mid, low])


def test_objectness_labels_follow_the_iou_thresholds():
    rpn = oln_rpn()
    anchors = anchors_with_ious(5, 7, 11)
    target = {"boxes": torch.tensor([[0.0, 0.0, 100.0, 100.0]])}
    labels, matched = rpn.assign_objectness([anchors], [target])
    assert labels[0][:5].eq(1).all()  # IoU 0.81 >= 0.3
    assert labels[0][5:12].eq(-1).all()  # IoU 0.2: neither positive nor negative
    assert labels[0][12:].eq(0).all()  # IoU 0 < 0.1
    assert torch.equal(matched[0][:5], target["boxes"].expand(5, 4))


@pytest.mark.parametrize(
    ("num_high", "expected_positive", "expected_negative"),
    [(400, 256, 0), (100, 100, 156)],  # at most 256 positives; negatives only fill the rest
)
def test_objectness_sampling_takes_256_anchors_positives_first(
    num_high, expected_positive, expected_negative
):
    torch.manual_seed(0)
    rpn = oln_rpn()
    anchors = anchors_with_ious(num_high, 50, 600)
    labels, _ = rpn.assign_objectness(
        [anchors], [{"boxes": torch.tensor([[0.0, 0.0, 100.0, 100.0]])}]
    )
    positive, negative = rpn.objectness_sampler(labels)
    assert int(positive[0].sum()) == expected_positive
    assert int(negative[0].sum()) == expected_negative
    assert labels[0][positive[0].bool()].eq(1).all()
    assert labels[0][negative[0].bool()].eq(0).all()


def test_rpn_iou_loss_is_zero_for_exact_boxes_and_centerness_loss_is_l1():
    rpn = oln_rpn(objectness_batch_size=4)
    anchors = torch.tensor(
        [[0.0, 0.0, 32.0, 32.0], [4.0, 4.0, 36.0, 36.0], [100.0, 100.0, 132.0, 132.0]]
    )
    box = torch.tensor([[2.0, 1.0, 34.0, 30.0]])
    deltas = rpn.box_coder.encode(anchors, box.expand(3, 4))
    logits = torch.zeros(3, 1)  # sigmoid 0.5 everywhere
    losses = rpn.compute_losses([anchors], logits, deltas, [{"boxes": box}])
    assert losses["rpn_box_iou"].item() == pytest.approx(0.0, abs=1e-6)
    # Centerness samples: the two overlapping anchors (targets = their centerness) and the far
    # one (0). OLN divides by the *box* sampler's count: anchor 0 (IoU 0.80) is its positive,
    # anchor 1 (IoU 0.67) lies between 0.3 and 0.7, anchor 2 is its negative: 1 + 1 = 2.
    targets = torch.cat([anchor_centerness_targets(anchors[:2], box.expand(2, 4)), torch.zeros(1)])
    expected = (0.5 - targets).abs().sum() / 2
    assert losses["rpn_centerness"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_rpn_normaliser_counts_each_image_at_least_once_per_side():
    # OLN's get_targets: sum_i max(pos_i, 1) + sum_i max(neg_i, 1).
    positive = torch.tensor([0, 0, 0, 0, 1, 1, 0, 0], dtype=torch.bool)
    negative = torch.tensor([1, 1, 1, 0, 0, 0, 0, 0], dtype=torch.bool)
    assert oln_num_total_samples(positive, negative, num_images=2) == 1 + 2 + 3 + 1


def test_roi_iou_loss_is_divided_by_every_sampled_roi():
    torch.manual_seed(0)
    model = create_model("oln_tiny", min_size=128, max_size=128)
    predictor = model.roi_heads.box_predictor
    torch.nn.init.zeros_(predictor.bbox_score.weight)
    torch.nn.init.zeros_(predictor.bbox_score.bias)  # predicted IoU 0.5 for every RoI
    image_list, _ = model.transform([torch.rand(3, 128, 128)])
    features = model.backbone(image_list.tensors)
    gt = torch.tensor([[10.0, 10.0, 60.0, 60.0]])
    proposals = [
        torch.tensor(
            [[10.0, 10.0, 60.0, 50.0], [70.0, 70.0, 120.0, 120.0], [0.0, 80.0, 40.0, 120.0]]
        )
    ]
    losses = model.roi_heads.losses(
        features, proposals, image_list.image_sizes, [{"boxes": gt, "labels": torch.ones(1)}]
    )
    # Sampled RoIs: the three proposals and the ground truth torchvision appends (4, all kept
    # at 512 per image); positives: the ground truth (IoU 1) and the first proposal (IoU 0.8).
    expected = (abs(0.5 - 1.0) + abs(0.5 - 0.8)) / 4
    assert losses["roi_iou"].item() == pytest.approx(expected, rel=1e-5)


def test_roi_iou_targets_by_hand():
    rois = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    boxes = torch.tensor([[5.0, 0.0, 15.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    assert torch.allclose(roi_iou_targets(rois, boxes), torch.tensor([50 / 150, 1.0]))


def test_final_score_is_the_geometric_mean_of_rpn_centerness_and_roi_iou():
    score = oln_score(torch.tensor([0.64, 1.0]), torch.tensor([0.25, 0.0]))
    assert score.tolist() == pytest.approx([0.4, 0.0])
    torch.manual_seed(0)
    model = create_model(
        "oln_tiny", min_size=128, max_size=128, nms_thresh=1.0, post_nms_top_n=100_000
    ).eval()
    image = torch.rand(3, 128, 128)
    with torch.no_grad():
        output = model([image])[0]
        image_list, _ = model.transform([image])
        features = model.backbone(image_list.tensors)
        proposals, centerness, _ = model.rpn(image_list, features)
        _, iou = model.roi_heads.predict(features, proposals, image_list.image_sizes)
    expected = torch.sqrt(centerness[0] * iou[0]).sort(descending=True).values
    assert len(output["scores"]) == len(expected)
    assert torch.allclose(output["scores"], expected)
    assert torch.equal(output["objectness"], output["scores"])


def test_rpn_starts_by_proposing_its_anchors():
    torch.manual_seed(0)
    model = create_model("oln_tiny", min_size=128, max_size=128).eval()
    torch.nn.init.zeros_(model.rpn.head.bbox_pred.weight)
    with torch.no_grad():
        image_list, _ = model.transform([torch.rand(3, 128, 128)])
        features = model.backbone(image_list.tensors)
        proposals, _, _ = model.rpn(image_list, features)
        anchors = model.rpn.anchor_generator(image_list, list(features.values()))[0]
    clipped = anchors.clamp(min=0, max=128)
    assert (box_iou(proposals[0], clipped).max(dim=1).values > 0.999).all()


def test_rpn_keeps_the_top_per_level_without_nms_at_test_time():
    torch.manual_seed(0)
    model = create_model(
        "oln_tiny",
        min_size=128,
        max_size=128,
        rpn_pre_nms_top_n_test=50,
        rpn_post_nms_top_n_test=10_000,
    ).eval()
    with torch.no_grad():
        image_list, _ = model.transform([torch.rand(3, 128, 128)])
        features = model.backbone(image_list.tensors)
        proposals, scores, _ = model.rpn(image_list, features)
    # One anchor per location; P2..P6 of a 128x128 input have 32², 16², 8², 4², 2² locations.
    per_level = [min(50, side * side) for side in (32, 16, 8, 4, 2)]
    assert len(proposals[0]) == sum(per_level)  # nothing suppressed
    assert torch.all(scores[0][:-1] >= scores[0][1:])


def test_oln_options_are_checked():
    with pytest.raises(Exception, match="one anchor per location"):
        model_config("oln_tiny", aspect_ratios=[0.5, 1.0])
    with pytest.raises(Exception, match="class-agnostic"):
        model_config("oln_tiny", num_classes=3)
    with pytest.raises(Exception, match="unknown scoring 'cls'"):
        model_config("oln_tiny", scoring="cls")

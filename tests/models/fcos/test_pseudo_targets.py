"""Pseudo boxes (self-training) in the losses: positives for regression and objectness, weighted
by ``pseudo_weight``; ignore regions for classification; RPN/RoI positives or ignored RoIs in
the two-stage models. Hand-made layouts, FCOS-OWP losses computed on hand-made head outputs."""

import math

import pytest
import torch

import owp
from owp.models.fcos.assign import (
    BACKGROUND,
    IGNORE,
    assign,
    assign_targets,
    assigned_to_flagged,
    pad_targets,
)
from owp.models.fcos.points import make_points
from owp.models.registry import create_model

# One 8 x 8 level at stride 8 (points at 0, 8, ..., 56), every box size accepted.
POINTS = make_points([(8, 8)], strides=(8,), size_ranges=((0, math.inf),))
ANNOTATED = [4.0, 4.0, 28.0, 28.0]  # strictly holds the 9 points x, y in {8, 16, 24}
PSEUDO = [36.0, 36.0, 60.0, 60.0]  # strictly holds the 9 points x, y in {40, 48, 56}
INSIDE_PSEUDO = [row * 8 + col for row in (5, 6, 7) for col in (5, 6, 7)]
INSIDE_ANNOTATED = [row * 8 + col for row in (1, 2, 3) for col in (1, 2, 3)]


def model(num_classes=None, **options):
    torch.manual_seed(0)
    return create_model(
        "fcos_owp_tiny",
        num_classes=num_classes,
        objectness=["iou"],
        scoring="cls*iou" if num_classes else "iou",
        **options,
    ).train()


def target(boxes, *, pseudo=(), crowd=(), labels=None):
    count = len(boxes)
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels if labels is not None else [0] * count),
        "ignore": torch.tensor([i in crowd for i in range(count)]),
        "pseudo": torch.tensor([i in pseudo for i in range(count)]),
    }


def outputs(num_classes=None, seed=1):
    generator = torch.Generator().manual_seed(seed)
    result = {
        "bbox_regression": torch.rand(1, 64, 4, generator=generator) * 2 + 0.1,
        "bbox_iou": torch.randn(1, 64, 1, generator=generator),
    }
    if num_classes:
        result["cls_logits"] = torch.randn(1, 64, num_classes, generator=generator)
    return result


def losses(net, out, tgt):
    return {k: float(v) for k, v in net.compute_losses(out, POINTS, [tgt]).items()}


def test_pseudo_boxes_are_positives_for_regression_and_ignored_for_classification():
    boxes, valid, ignore, _ = pad_targets([torch.tensor([ANNOTATED, PSEUDO])])
    pseudo = torch.tensor([[False, True]])
    matched = assign(POINTS, boxes, valid, ignore, center_radius=None)
    assert sorted(matched[0].eq(1).nonzero().flatten().tolist()) == INSIDE_PSEUDO
    assert assigned_to_flagged(matched, pseudo)[0].nonzero().flatten().tolist() == INSIDE_PSEUDO
    # The classifier's assignment: pseudo boxes are ignore regions, never positives.
    for_classes = assign(POINTS, boxes, valid, ignore | pseudo, center_radius=None)
    assert sorted(for_classes[0].eq(IGNORE).nonzero().flatten().tolist()) == INSIDE_PSEUDO
    assert sorted(for_classes[0].eq(0).nonzero().flatten().tolist()) == INSIDE_ANNOTATED
    assert int((for_classes[0] == -1).sum()) == 64 - 18


def test_classification_loss_by_hand_leaves_the_pseudo_region_out():
    """Zero logits: per class a background location costs (1-a) p^g (-log(1-p)) and a positive
    a (1-p)^g (-log p), with p = 1/2, a = 0.25, g = 2; normalised by the 9 positives."""
    net = model(num_classes=3)
    out = outputs(3)
    out["cls_logits"] = torch.zeros(1, 64, 3)
    background, positive = 0.75 * 0.25 * math.log(2), 0.25 * 0.25 * math.log(2)
    per_positive = 2 * background + positive
    with_pseudo = losses(net, out, target([ANNOTATED, PSEUDO], pseudo=[1], labels=[2, -1]))
    assert with_pseudo["classification"] == pytest.approx(
        (46 * 3 * background + 9 * per_positive) / 9, rel=1e-5
    )
    without = losses(net, out, target([ANNOTATED], labels=[2]))
    assert without["classification"] == pytest.approx(
        (55 * 3 * background + 9 * per_positive) / 9, rel=1e-5
    )


def test_focal_loss_with_a_pseudo_box_equals_it_as_a_crowd_region():
    """Random logits: a classifying model's focal loss changes only by the ignored locations,
    exactly as a crowd box there would make it change."""
    net = model(num_classes=3, center_radius=None)
    out = outputs(3)
    with_pseudo = losses(net, out, target([ANNOTATED, PSEUDO], pseudo=[1], labels=[1, -1]))
    as_crowd = losses(net, out, target([ANNOTATED, PSEUDO], crowd=[1], labels=[1, 0]))
    without = losses(net, out, target([ANNOTATED], labels=[1]))
    assert with_pseudo["classification"] == pytest.approx(as_crowd["classification"], rel=1e-6)
    assert with_pseudo["classification"] != pytest.approx(without["classification"], rel=1e-3)
    # ... while regression and objectness learn the pseudo box as an object.
    as_annotated = losses(net, out, target([ANNOTATED, PSEUDO], labels=[1, 0]))
    for name in ("bbox_regression", "bbox_iou"):
        assert with_pseudo[name] == pytest.approx(as_annotated[name], rel=1e-6)
        assert abs(with_pseudo[name] - without[name]) > 1e-4


@pytest.mark.parametrize("samples", ["center", "foreground"])
def test_pseudo_weight_scales_exactly_the_pseudo_part_of_the_loss(samples):
    """L(w) = (S_a + w S_p) / (N_a + w N_p), with S and N the sums and counts of the annotated
    and pseudo locations: w = 0 drops the box, w = 1 is an annotated box."""
    net = model(objectness_samples=samples)
    out = outputs()
    with_pseudo = target([ANNOTATED, PSEUDO], pseudo=[1])
    dropped = losses(net, out, target([ANNOTATED]))
    alone = losses(net, out, target([PSEUDO]))
    count = 9  # both boxes hold 9 points, all within 1.5 strides of their centres
    for weight, expected in (
        (0.0, dropped),
        (1.0, losses(net, out, target([ANNOTATED, PSEUDO]))),
        (2.0, {k: (dropped[k] + 2 * alone[k]) / 3 for k in dropped}),
        (0.5, {k: (dropped[k] + 0.5 * alone[k]) / 1.5 for k in dropped}),
    ):
        net.pseudo_weight = weight
        got = losses(net, out, with_pseudo)
        assert got == pytest.approx(expected, rel=1e-5), weight
    assert count == len(INSIDE_PSEUDO) == len(INSIDE_ANNOTATED)


def test_unknown_masking_never_counts_a_pseudo_region_as_background():
    """Threshold 0 masks every background location: 46 of them, not the pseudo box's 9."""
    net = model(
        num_classes=2,
        center_radius=None,
        unknown_mask="pixel",
        unknown_mask_thresh=0.0,
    )
    net.iteration = 1
    losses(net, outputs(2), target([ANNOTATED, PSEUDO], pseudo=[1], labels=[0, -1]))
    assert net.last_masked == 64 - 18
    losses(net, outputs(2), target([ANNOTATED], labels=[0]))
    assert net.last_masked == 64 - 9


def test_a_pseudo_label_is_not_checked_as_a_class_but_an_annotated_one_is():
    net = model(num_classes=2)
    losses(net, outputs(2), target([ANNOTATED, PSEUDO], pseudo=[1], labels=[1, -1]))
    with pytest.raises(ValueError, match="outside"):
        losses(net, outputs(2), target([ANNOTATED, PSEUDO], labels=[1, -1]))


def two_stage_targets(name):
    torch.manual_seed(0)
    net = create_model(name, min_size=64, max_size=64)
    tgt = target([ANNOTATED, PSEUDO, [0.0, 0.0, 64.0, 64.0]], pseudo=[1], crowd=[2])
    tgt["labels"] = torch.tensor([1, -1, 0])
    return net, net._rcnn_targets([tgt])[0]


@pytest.mark.parametrize("name", ["rpn_tiny", "oln_tiny"])
def test_class_agnostic_two_stage_models_take_pseudo_boxes_as_objects(name):
    _, converted = two_stage_targets(name)
    assert converted["boxes"].tolist() == [ANNOTATED, PSEUDO]  # the crowd box is dropped
    assert converted["labels"].tolist() == [1, 1]


def test_double_head_samples_no_roi_of_a_pseudo_box_for_its_class_losses():
    net, converted = two_stage_targets("double_head_tiny")
    assert converted["boxes"].tolist() == [ANNOTATED, PSEUDO]
    assert converted["labels"].tolist() == [2, -1]
    proposals = [
        torch.tensor(
            [
                [36.0, 36.0, 58.0, 58.0],  # IoU 0.84 with the pseudo box: neither class nor bg
                [4.0, 4.0, 26.0, 26.0],  # an object of class 2
                [0.0, 40.0, 20.0, 60.0],  # background
            ]
        )
    ]
    rois, _, labels, _ = net.roi_heads.select_training_samples(proposals, [converted])
    drawn = {tuple(box) for box in rois[0].tolist()}
    assert labels[0].min() >= 0  # no RoI labelled with the pseudo box's -1 is drawn
    assert (36.0, 36.0, 58.0, 58.0) not in drawn and tuple(PSEUDO) not in drawn
    assert (4.0, 4.0, 26.0, 26.0) in drawn and (0.0, 40.0, 20.0, 60.0) in drawn


# The repro: a pseudo box inside an annotated one (IoU 0.16), on FCOS's five levels of a
# 160 x 160 input.
BIG = [20.0, 20.0, 120.0, 120.0]
PART = [50.0, 50.0, 90.0, 90.0]
FCOS_POINTS = make_points([(20, 20), (10, 10), (5, 5), (3, 3), (2, 2)], image_size=(160, 160))


def test_annotated_boxes_are_assigned_first_and_a_pseudo_box_takes_only_their_background():
    off_centre = [24.0, 24.0, 56.0, 56.0]  # also inside BIG, around a point BIG leaves alone
    boxes, valid, ignore, _ = pad_targets([torch.tensor([BIG, PART, off_centre])])
    pseudo = torch.tensor([[False, True, True]])
    alone = assign(FCOS_POINTS, boxes[:, :1], valid[:, :1], ignore[:, :1])
    with_pseudo = assign_targets(FCOS_POINTS, boxes, valid, ignore, pseudo)
    assert int((alone == 0).sum()) == 14
    # The annotated box keeps every one of its locations ...
    assert torch.equal(with_pseudo == 0, alone == 0)
    # ... PART shares BIG's centre, so every location it could take is BIG's: it gets none;
    assert int((with_pseudo == 1).sum()) == 0
    # ... the off-centre box gets locations that were background, and only those.
    claimed = with_pseudo == 2
    assert int(claimed.sum()) > 0
    assert bool((alone[claimed] == BACKGROUND).all())
    # Plain FCOS (smallest box wins) gives the annotated box 5 of its 14 locations.
    plain = assign(FCOS_POINTS, boxes[:, :2], valid[:, :2], ignore[:, :2])
    assert int((plain == 0).sum()) == 5


def test_a_pseudo_box_never_claims_a_crowd_region():
    crowd = [0.0, 0.0, 160.0, 80.0]
    boxes, valid, ignore, _ = pad_targets(
        [torch.tensor([crowd, [10.0, 10.0, 50.0, 50.0]])], [torch.tensor([True, False])]
    )
    pseudo = torch.tensor([[False, True]])
    matched = assign_targets(FCOS_POINTS, boxes, valid, ignore, pseudo)
    inside = assign(FCOS_POINTS, boxes[:, :1], valid[:, :1], ignore[:, :1]) == IGNORE
    assert bool(inside.any()) and bool((matched[inside] == IGNORE).all())
    assert int((matched == 1).sum()) == 0  # the pseudo box lies wholly in the crowd region


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"objectness_samples": "all"},
        {"num_classes": 3, "unknown_mask": "pixel", "unknown_mask_thresh": 0.0},
        {"num_classes": 3, "objectness_samples": "foreground"},
    ],
    ids=["agnostic", "all-samples", "classifying-masked", "classifying-foreground"],
)
def test_pseudo_weight_zero_gives_the_losses_without_pseudo_boxes_bit_for_bit(options):
    """Through the public API: a training-mode forward of ``owp.create_model``."""
    torch.manual_seed(0)
    net = owp.create_model(
        "fcos_owp_tiny",
        min_size=160,
        max_size=160,
        scoring="cls*iou" if options.get("num_classes") else "iou",
        **options,
    ).train()
    images = [torch.rand(3, 160, 160, generator=torch.Generator().manual_seed(3))]
    annotated = {"boxes": torch.tensor([BIG]), "labels": torch.tensor([1])}
    pseudo_boxes = [PART, [100.0, 110.0, 150.0, 150.0], [4.0, 120.0, 40.0, 156.0]]
    with_pseudo = {
        "boxes": torch.tensor([BIG, *pseudo_boxes]),
        "labels": torch.tensor([1, -1, -1, -1]),
        "pseudo": torch.tensor([False, True, True, True]),
    }
    net.iteration = 1
    without = net(images, [annotated])
    net.pseudo_weight = 0.0
    zero = net(images, [with_pseudo])
    assert zero.keys() == without.keys()
    for name in without:
        assert torch.equal(zero[name], without[name]), name
    net.pseudo_weight = 1.0
    one = net(images, [with_pseudo])
    assert not torch.equal(one["bbox_regression"], without["bbox_regression"])

"""FCOS assignment and objectness targets: hand-computed toy cases and torchvision parity."""

import math

import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

from owp.models.fcos.assign import BACKGROUND, IGNORE, assign, pad_targets
from owp.models.fcos.points import FCOS_SIZE_RANGES, FCOS_STRIDES, Points, make_points
from owp.models.fcos.targets import (
    SAMPLE_SETS,
    centerness_targets,
    gather_boxes,
    iou_targets,
    ltrb_targets,
    objectness_samples,
)

# A 128 x 128 image on all five FCOS levels.
SIZES_128 = [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]


def _assign_one(boxes, ignore=None, *, center_radius=1.5):
    """Assign one 128 x 128 image's boxes (xyxy lists); return (points, matched [P])."""
    points = make_points(SIZES_128)
    gt = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    flags = None if ignore is None else [torch.tensor(ignore, dtype=torch.bool)]
    gt_boxes, valid, gt_ignore, _ = pad_targets([gt], flags)
    matched = assign(points, gt_boxes, valid, gt_ignore, center_radius=center_radius)
    return points, matched[0]


def _where(points, matched, value):
    """The (level, x, y) of every point whose matched entry equals ``value``."""
    hits = (matched == value).nonzero().flatten().tolist()
    return {(int(points.level[i]), int(points.xy[i, 0]), int(points.xy[i, 1])) for i in hits}


def _grid(level, xs, ys):
    return {(level, x, y) for x in xs for y in ys}


def test_make_points_values_and_row_major_order():
    points = make_points([(2, 3), (1, 2)], strides=(8, 16), size_ranges=((0, 64), (64, math.inf)))
    expected_xy = [[0, 0], [8, 0], [16, 0], [0, 8], [8, 8], [16, 8], [0, 0], [16, 0]]
    assert points.xy.dtype == torch.float32
    assert points.xy.tolist() == expected_xy
    assert points.level.tolist() == [0] * 6 + [1] * 2
    assert points.level.dtype == torch.int64
    assert points.stride.tolist() == [8.0] * 6 + [16.0] * 2
    assert points.size_range.tolist() == [[0.0, 64.0]] * 6 + [[64.0, math.inf]] * 2
    assert points.num_per_level == [6, 2]
    assert points.feature_sizes == [(2, 3), (1, 2)]


def test_make_points_rejects_mismatched_levels():
    with pytest.raises(ValueError, match="one stride and one size range per level"):
        make_points([(2, 3), (1, 2)])
    with pytest.raises(ValueError, match="positive"):
        make_points([(0, 3)], strides=(8,), size_ranges=((0, math.inf),))


def test_make_points_matches_torchvision_anchor_centres():
    sizes = [(32, 48), (16, 24), (8, 12), (4, 6), (2, 3)]  # a 256 x 384 image
    generator = AnchorGenerator(
        sizes=tuple((s,) for s in FCOS_STRIDES), aspect_ratios=((1.0,),) * 5
    )
    images = ImageList(torch.zeros(1, 3, 256, 384), [(256, 384)])
    features = [torch.zeros(1, 1, h, w) for h, w in sizes]
    anchors = generator(images, features)[0]
    points = make_points(sizes)
    assert torch.equal((anchors[:, :2] + anchors[:, 2:]) / 2, points.xy)
    assert torch.equal(anchors[:, 2] - anchors[:, 0], points.stride)


def test_40px_box_is_assigned_only_on_p3():
    _, matched = _assign_one([[20, 20, 60, 60]], center_radius=None)
    points = make_points(SIZES_128)
    # P3 points strictly inside: x, y in 24..56; m <= 36. P4 points inside have m <= 28 < 64.
    assert _where(points, matched, 0) == _grid(0, range(24, 57, 8), range(24, 57, 8))
    _, matched = _assign_one([[20, 20, 60, 60]])
    # Center sampling: |x - 40| < 12 and |y - 40| < 12.
    assert _where(points, matched, 0) == _grid(0, (32, 40, 48), (32, 40, 48))


def test_132px_tall_box_is_assigned_only_on_p4():
    # y from 2 to 134: every P3 row has m = max(y - 2, 134 - y) in [70, 126] (> 64), every P4
    # row 16..112 has m in [70, 118], and no P5 row reaches m > 128.
    box = [50, 2, 70, 134]
    points, matched = _assign_one([box], center_radius=None)
    assert _where(points, matched, 0) == _grid(1, (64,), range(16, 113, 16))
    points, matched = _assign_one([box])
    # Center (60, 68), P4 radius 24: y in 48, 64, 80.
    assert _where(points, matched, 0) == _grid(1, (64,), (48, 64, 80))


def test_size_range_is_half_open():
    # Box x 0..160, y -8..8 on the y = 0 row. Level 0 (stride 32, (64, 128]) points x = 32, 64,
    # 96, 128 have m = 128, 96, 96, 128: all accepted, although torchvision's open intervals
    # reject m = 128. Level 1 (stride 64, (128, 256]) points x = 64, 128 have m = 96, 128: none.
    points = make_points([(2, 6), (1, 3)], strides=(32, 64), size_ranges=((64, 128), (128, 256)))
    gt_boxes = torch.tensor([[[0.0, -8.0, 160.0, 8.0]]])
    flags = torch.zeros(1, 1, dtype=torch.bool)
    matched = assign(points, gt_boxes, ~flags, flags, center_radius=None)[0]
    assert _where(points, matched, 0) == _grid(0, (32, 64, 96, 128), (0,))


def test_smallest_area_wins_whatever_the_order():
    big, small = [0, 0, 60, 60], [20, 20, 50, 50]
    points, matched = _assign_one([big, small], center_radius=None)
    inner = _grid(0, (24, 32, 40, 48), (24, 32, 40, 48))
    assert _where(points, matched, 1) == inner
    assert _where(points, matched, 0) == _grid(0, range(8, 57, 8), range(8, 57, 8)) - inner
    points, matched = _assign_one([small, big], center_radius=None)
    assert _where(points, matched, 0) == inner
    # Equal areas: the lower index wins.
    points, matched = _assign_one([small, small], center_radius=None)
    assert _where(points, matched, 0) == inner
    assert _where(points, matched, 1) == set()


def test_center_sampling_radius():
    box = [4, 4, 60, 44]  # centre (32, 24), m <= 52: P3 only
    points, matched = _assign_one([box], center_radius=None)
    assert _where(points, matched, 0) == _grid(0, range(8, 57, 8), range(8, 41, 8))
    points, matched = _assign_one([box])
    assert _where(points, matched, 0) == _grid(0, (24, 32, 40), (16, 24, 32))
    points, matched = _assign_one([box], center_radius=0.5)
    assert _where(points, matched, 0) == _grid(0, (32,), (24,))


def test_center_region_is_clipped_to_the_box():
    box = [4, 4, 14, 60]  # centre (9, 32): |x - 9| < 12 allows x = 0, 8, 16 but only 8 is inside
    points, matched = _assign_one([box])
    assert _where(points, matched, 0) == _grid(0, (8,), (24, 32, 40))


def test_crowd_region_is_ignored_at_every_level_except_regular_foreground():
    # Crowd [0, 0, 64, 64] with a person inside. Points strictly inside the crowd box: P3 (stride
    # 8) x, y in 8..56, P4 (16) x, y in 16..48, P5 (32) the point (32, 32); P6/P7 points lie on
    # its border or outside. The person's P3 foreground stays foreground; the rest is IGNORE,
    # whatever the crowd box's size range or center sampling.
    crowd, person = [0, 0, 64, 64], [16, 16, 40, 40]
    inner = _grid(0, (24, 32), (24, 32))
    crowd_region = (
        _grid(0, range(8, 57, 8), range(8, 57, 8))
        | _grid(1, (16, 32, 48), (16, 32, 48))
        | _grid(2, (32,), (32,))
    )
    for order in ([crowd, person], [person, crowd]):
        flags = [box is crowd for box in order]
        person_index = order.index(person)
        for radius in (None, 1.5):
            points, matched = _assign_one(order, flags, center_radius=radius)
            person_fg = _where(points, matched, person_index)
            assert person_fg == (inner if radius is None else person_fg) and person_fg
            assert _where(points, matched, IGNORE) == crowd_region - person_fg
            assert _where(points, matched, 1 - person_index) == set()  # a crowd box never wins
    # A crowd box inside a regular box takes nothing from it; only its points at the levels
    # where the person is not foreground, (32, 32) on P4 and P5, are ignored.
    points, matched = _assign_one([person, [20, 20, 36, 36]], [False, True], center_radius=None)
    assert _where(points, matched, 0) == inner
    assert _where(points, matched, IGNORE) == {(1, 32, 32), (2, 32, 32)}
    # A crowd box alone: everything strictly inside it is ignored, nothing is foreground.
    points, matched = _assign_one([crowd], [True])
    assert _where(points, matched, IGNORE) == crowd_region
    assert (matched >= 0).sum() == 0


def test_empty_ground_truth_is_all_background():
    points = make_points(SIZES_128)
    gt_boxes, valid, ignore, labels = pad_targets([torch.zeros(0, 4), torch.zeros(0, 4)])
    assert gt_boxes.shape == (2, 0, 4) and valid.shape == ignore.shape == labels.shape == (2, 0)
    for radius in (1.5, None):
        matched = assign(points, gt_boxes, valid, ignore, center_radius=radius)
        assert matched.shape == (2, points.xy.shape[0]) and matched.dtype == torch.int64
        assert (matched == BACKGROUND).all()
    assert gather_boxes(gt_boxes, matched).shape == (2, points.xy.shape[0], 4)
    assert not gather_boxes(gt_boxes, matched).any()


def test_pad_targets_and_batch_equals_single_images():
    generator = torch.Generator().manual_seed(1)
    boxes = [_random_boxes(n, 128, 128, generator) for n in (3, 0, 1)]
    ignore = [torch.tensor([False, True, False]), torch.zeros(0, dtype=torch.bool)]
    ignore.append(torch.tensor([False]))
    labels = [torch.tensor([1, 2, 3]), torch.zeros(0, dtype=torch.int64), torch.tensor([7])]
    gt_boxes, valid, gt_ignore, gt_labels = pad_targets(boxes, ignore, labels)
    assert gt_boxes.shape == (3, 3, 4)
    assert valid.tolist() == [[True] * 3, [False] * 3, [True, False, False]]
    assert gt_ignore.tolist() == [[False, True, False], [False] * 3, [False] * 3]
    assert gt_labels.tolist() == [[1, 2, 3], [0, 0, 0], [7, 0, 0]]
    assert torch.equal(gt_boxes[0], boxes[0]) and not gt_boxes[1:, 1:].any()
    points = make_points(SIZES_128)
    for radius in (1.5, None):
        batched = assign(points, gt_boxes, valid, gt_ignore, center_radius=radius)
        for i in range(3):
            alone = pad_targets([boxes[i]], [ignore[i]])
            assert torch.equal(batched[i], assign(points, *alone[:3], center_radius=radius)[0])
    assert (batched[1] == BACKGROUND).all()


def test_pad_targets_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"boxes\[0\]"):
        pad_targets([torch.zeros(3)])
    with pytest.raises(ValueError, match=r"ignore\[0\]"):
        pad_targets([torch.zeros(2, 4)], [torch.zeros(3, dtype=torch.bool)])
    with pytest.raises(ValueError, match="labels has 2 entries"):
        pad_targets([torch.zeros(2, 4)], labels=[torch.zeros(2), torch.zeros(2)])


def test_assign_and_points_reject_bad_inputs():
    points = make_points(SIZES_128)
    boxes, valid = torch.zeros(1, 2, 4), torch.ones(1, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match="gt_valid"):
        assign(points, boxes, valid[:, :1], valid)
    with pytest.raises(ValueError, match="must be bool"):
        assign(points, boxes, valid, valid.long())
    with pytest.raises(ValueError, match="num_per_level"):
        Points(points.xy, points.stride, points.level, points.size_range, [1], [(16, 16)])
    with pytest.raises(ValueError, match=r"Points.stride has shape \(341,\), expected \(3,\)"):
        Points(points.xy[:3], points.stride, points.level[:3], points.size_range[:3], [3], [(1, 3)])


def test_ltrb_and_gather_boxes():
    points = make_points([(1, 2)], strides=(8,), size_ranges=((0, math.inf),))
    gt_boxes = torch.tensor([[[-2.0, -5.0, 10.0, 5.0]]])
    matched = torch.tensor([[BACKGROUND, 0]])
    boxes = gather_boxes(gt_boxes, matched)
    assert boxes.tolist() == [[[0.0] * 4, [-2.0, -5.0, 10.0, 5.0]]]
    assert ltrb_targets(points, boxes)[0, 1].tolist() == [10.0, 5.0, 2.0, 5.0]


def test_centerness_targets():
    ltrb = torch.tensor([[2.0, 5.0, 8.0, 5.0], [3.0, 3.0, 3.0, 3.0], [0.0, 0.0, 0.0, 0.0]])
    assert torch.allclose(centerness_targets(ltrb), torch.tensor([0.5, 1.0, 0.0]))
    outside = centerness_targets(torch.tensor([-8.0, -3.0, 16.0, 5.0]))
    assert outside.item() == 0.0


def test_iou_targets():
    pred = torch.tensor([1.0, 1.0, 1.0, 1.0], requires_grad=True)
    target = torch.tensor([2.0, 2.0, 2.0, 2.0])
    # I = (1 + 1) * (1 + 1) = 4, U = 16 + 4 - 4 = 16.
    assert iou_targets(pred, target, threshold=None).item() == pytest.approx(0.25)
    assert iou_targets(pred, target).item() == 0.0
    assert iou_targets(pred, target, threshold=0.2).item() == pytest.approx(0.25)
    same = iou_targets(target[None].expand(3, 4), target[None].expand(3, 4))
    assert torch.allclose(same, torch.ones(3))
    # Shifted: pred (1, 2, 3, 2) vs target (2, 2, 2, 2): I = (1 + 2) * 4 = 12, U = 16 + 16 - 12.
    shifted = iou_targets(torch.tensor([1.0, 2.0, 3.0, 2.0]), target, threshold=None)
    assert shifted.item() == pytest.approx(12 / 20)
    assert not iou_targets(pred, target, threshold=None).requires_grad
    assert iou_targets(torch.zeros(4), torch.zeros(4)).item() == 0.0


def test_objectness_sample_sets():
    # Two overlapping boxes and one crowd box in a 128 x 128 image.
    boxes = [[4, 4, 60, 44], [30, 20, 90, 100], [96, 96, 124, 124]]
    points, matched_cs = _assign_one(boxes, [False, False, True])
    _, matched_no_cs = _assign_one(boxes, [False, False, True], center_radius=None)
    samples = {
        name: objectness_samples(name, matched_cs[None], matched_no_cs[None])
        for name in SAMPLE_SETS
    }
    center, foreground, every = (samples[name].mask[0] for name in SAMPLE_SETS)
    assert center.any() and (center & ~foreground).sum() == 0
    assert (foreground & ~every).sum() == 0 and (foreground != every).any()
    assert torch.equal(center, matched_cs >= 0)
    assert torch.equal(foreground, matched_no_cs >= 0)
    assert torch.equal(every, matched_no_cs != IGNORE) and (matched_no_cs == IGNORE).any()
    assert torch.equal(samples["center"].matched[0][center], matched_cs[center])
    for name in ("foreground", "all"):
        chosen = samples[name].matched[0]
        assert torch.equal(chosen[foreground], matched_no_cs[foreground])
        assert (chosen[~foreground] == BACKGROUND).all()
    corner = 16 * 1 + 15  # P3 point (120, 8), outside every box: a background sample of "all"
    assert points.xy[corner].tolist() == [120.0, 8.0] and matched_no_cs[corner] == BACKGROUND
    assert samples["all"].mask[0, corner] and samples["all"].matched[0, corner] == BACKGROUND
    with pytest.raises(ValueError, match="unknown objectness sample set 'near'"):
        objectness_samples("near", matched_cs[None], matched_no_cs[None])


def _random_boxes(count, height, width, generator):
    """``count`` float boxes with log-uniform sides from 4 px to twice the image size."""
    size = torch.tensor([width, height], dtype=torch.float32)
    centre = torch.rand(count, 2, generator=generator) * size
    largest = 2 * size.max().item()
    side = torch.exp(torch.rand(count, 2, generator=generator) * math.log(largest / 4)) * 4
    return torch.cat([centre - side / 2, centre + side / 2], dim=1)


def _torchvision_rule(points_xy, strides, boxes, center_radius):
    """Reference: torchvision FCOS matching for one image, pairwise [P, M], open intervals."""
    if len(boxes) == 0:
        return torch.full((len(points_xy),), -1, dtype=torch.int64)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    x, y = points_xy[:, 0, None], points_xy[:, 1, None]
    dist = torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y], 2)
    match = dist.min(dim=2).values > 0
    if center_radius is not None:
        offset = (points_xy[:, None, :] - centres[None]).abs().max(dim=2).values
        match &= offset < center_radius * strides[:, None]
    lower, upper = strides * 4, strides * 8
    lower[strides == strides.min()] = 0
    upper[strides == strides.max()] = math.inf
    largest = dist.max(dim=2).values
    match &= (largest > lower[:, None]) & (largest < upper[:, None])
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    cost = torch.where(match, area[None], math.inf)
    best, index = cost.min(dim=1)
    return torch.where(best < math.inf, index, -1)


@pytest.mark.parametrize("center_radius", [1.5, None])
def test_parity_with_torchvision_matching_on_random_boxes(center_radius):
    generator = torch.Generator().manual_seed(0)
    sizes = [(40, 64), (20, 32), (10, 16), (5, 8), (3, 4)]  # a 320 x 512 image
    points = make_points(sizes)
    boxes = [_random_boxes(n, 320, 512, generator) for n in (0, 1, 7, 63, 64, 150)]
    gt_boxes, valid, ignore, _ = pad_targets(boxes)
    matched = assign(points, gt_boxes, valid, ignore, center_radius=center_radius)
    positive_levels = points.level.expand_as(matched)[matched >= 0]
    assert positive_levels.unique().tolist() == [0, 1, 2, 3, 4]
    for i, image_boxes in enumerate(boxes):
        expected = _torchvision_rule(points.xy, points.stride, image_boxes, center_radius)
        assert torch.equal(matched[i], expected)


def test_default_constants():
    assert FCOS_STRIDES == (8, 16, 32, 64, 128)
    assert FCOS_SIZE_RANGES[0] == (0, 64) and FCOS_SIZE_RANGES[-1] == (512, math.inf)
    assert SAMPLE_SETS == ("center", "foreground", "all")
    assert (BACKGROUND, IGNORE) == (-1, -2)

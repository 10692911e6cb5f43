"""Postprocess: every scoring mode, per-level top-k, thresholds, NMS, decoding — by hand."""

import math

import pytest
import torch

from owp.models.fcos.postprocess import PostprocessConfig, decode_boxes, postprocess


def logit(p: float) -> float:
    return math.log(p / (1 - p))


# Two levels: level 0 has points at (0, 0) and (8, 0) with stride 8; level 1 one point at
# (16, 16) with stride 16. All predict the same ltrb (1, 1, 1, 1) in stride units.
POINTS = torch.tensor([[0.0, 0.0], [8.0, 0.0], [16.0, 16.0]])
STRIDES = torch.tensor([8.0, 8.0, 16.0])
LEVELS = [2, 1]
SIZES = [(100, 100)]


def outputs(ctr, iou, cls=None):
    out = {
        "bbox_regression": torch.ones(1, 3, 4),
        "bbox_ctrness": torch.tensor([[logit(p) for p in ctr]])[..., None],
        "bbox_iou": torch.tensor([[logit(p) for p in iou]])[..., None],
    }
    if cls is not None:
        out["cls_logits"] = torch.tensor([[[logit(p) for p in row] for row in cls]])
    return out


def test_decode_is_point_minus_and_plus_stride_scaled_distances():
    boxes = decode_boxes(POINTS, STRIDES, torch.tensor([[[1.0, 2.0, 3.0, 4.0]] * 3]))
    assert boxes[0, 2].tolist() == [16 - 16.0, 16 - 32.0, 16 + 48.0, 16 + 64.0]


@pytest.mark.parametrize(
    ("scoring", "expected"),
    [
        ("centerness", [0.9, 0.4, 0.6]),
        ("iou", [0.2, 0.8, 0.5]),
        ("geomean", [math.sqrt(0.18), math.sqrt(0.32), math.sqrt(0.30)]),
    ],
)
def test_agnostic_scores(scoring, expected):
    config = PostprocessConfig(scoring=scoring, nms_thresh=1.0)
    result = postprocess(
        outputs([0.9, 0.4, 0.6], [0.2, 0.8, 0.5]), POINTS, STRIDES, LEVELS, SIZES, config
    )[0]
    assert sorted(result["scores"].tolist(), reverse=True) == pytest.approx(
        sorted(expected, reverse=True)
    )
    assert result["scores"].tolist() == pytest.approx(result["objectness"].tolist())
    assert "labels" not in result


def test_classifying_scores_and_labels():
    cls = [[0.5, 0.1], [0.2, 0.9], [0.3, 0.3]]
    out = outputs([0.8, 0.8, 0.8], [0.5, 0.5, 0.5], cls)
    by_iou = postprocess(
        out, POINTS, STRIDES, LEVELS, SIZES, PostprocessConfig("cls*iou", nms_thresh=1.0)
    )[0]
    # One candidate per (location, class): 6, each p_c * iou.
    assert sorted(by_iou["scores"].tolist()) == pytest.approx(
        sorted(p * 0.5 for row in cls for p in row)
    )
    top = by_iou["scores"].argmax()
    assert by_iou["labels"][top] == 1 and by_iou["class_scores"][top] == pytest.approx(0.9)
    by_ctr = postprocess(
        out, POINTS, STRIDES, LEVELS, SIZES, PostprocessConfig("cls*centerness", nms_thresh=1.0)
    )[0]
    assert by_ctr["scores"].max() == pytest.approx(math.sqrt(0.9 * 0.8))


def test_threshold_and_per_level_top_k():
    out = outputs([0.9, 0.4, 0.6], [0.5, 0.5, 0.5])
    config = PostprocessConfig("centerness", score_thresh=0.5, pre_nms_top_n=1, nms_thresh=1.0)
    result = postprocess(out, POINTS, STRIDES, LEVELS, SIZES, config)[0]
    assert result["scores"].tolist() == pytest.approx([0.9, 0.6])  # 0.4 below the threshold
    config = PostprocessConfig("centerness", pre_nms_top_n=1, nms_thresh=1.0)
    assert (
        len(postprocess(out, POINTS, STRIDES, LEVELS, SIZES, config)[0]["scores"]) == 2
    )  # 1 per level


def test_nms_is_class_agnostic_for_proposals_and_per_class_for_detections():
    # Points 0 and 1 give 16 x 16 boxes shifted by 8 px: IoU = 1/3.
    out = outputs([0.9, 0.8, 0.01], [0.5, 0.5, 0.5], [[0.9, 0.01], [0.01, 0.8], [0.01, 0.01]])
    agnostic = postprocess(
        out, POINTS, STRIDES, LEVELS, SIZES, PostprocessConfig("centerness", nms_thresh=0.3)
    )[0]
    assert len(agnostic["boxes"]) == 2  # the 0.8 box is suppressed, the far one stays
    per_class = postprocess(
        out,
        POINTS,
        STRIDES,
        LEVELS,
        SIZES,
        PostprocessConfig("cls*centerness", score_thresh=0.3, nms_thresh=0.3),
    )[0]
    assert per_class["labels"].tolist() == [0, 1]  # different classes: both kept


def test_boxes_are_clipped_and_post_nms_top_n_applies():
    out = outputs([0.9, 0.8, 0.7], [0.5, 0.5, 0.5])
    config = PostprocessConfig("centerness", nms_thresh=1.0, post_nms_top_n=2)
    result = postprocess(out, POINTS, STRIDES, LEVELS, [(20, 20)], config)[0]
    assert len(result["boxes"]) == 2
    assert result["boxes"].min() >= 0 and result["boxes"].max() <= 20


def test_missing_branch_and_bad_config():
    out = outputs([0.9, 0.4, 0.6], [0.2, 0.8, 0.5])
    with pytest.raises(ValueError, match="cls_logits"):
        postprocess(out, POINTS, STRIDES, LEVELS, SIZES, PostprocessConfig("cls*iou"))
    with pytest.raises(ValueError, match="scoring"):
        PostprocessConfig("objectness")
    with pytest.raises(ValueError, match="positive"):
        PostprocessConfig("iou", post_nms_top_n=0)


@pytest.mark.parametrize("scoring", ["iou", "cls*iou"])
def test_empty_boxes_are_dropped_before_the_top_k(scoring):
    # The two best points predict boxes that clipping leaves empty: the first with zero width
    # (distances 0 left/right), the second entirely left of the image (clipped to x = 0).
    regression = torch.ones(1, 3, 4)
    regression[0, 0, [0, 2]] = 0.0
    out = outputs([0.5] * 3, [0.9, 0.8, 0.3], cls=[[0.9], [0.9], [0.9]])
    out["bbox_regression"] = regression
    shifted = torch.tensor([[-50.0, 0.0], [-30.0, 0.0], [16.0, 16.0]])
    config = PostprocessConfig(scoring=scoring, post_nms_top_n=1, nms_thresh=1.0)
    result = postprocess(out, shifted, STRIDES, LEVELS, SIZES, config)[0]
    assert result["boxes"].tolist() == [[0.0, 0.0, 32.0, 32.0]]  # the third point's box
    assert result["objectness"].tolist() == pytest.approx([0.3])


def test_two_stage_selection_drops_empty_boxes_before_the_top_k():
    from owp.models.two_stage.base import RCNNPostprocessConfig, select_boxes

    boxes = torch.tensor([[10.0, 10.0, 10.0, 30.0], [-20.0, 0.0, -5.0, 10.0], [0.0, 0.0, 5.0, 5.0]])
    scores = torch.tensor([0.9, 0.8, 0.1])
    config = RCNNPostprocessConfig(scoring="rpn", post_nms_top_n=1, choices=("rpn",))
    result = select_boxes(boxes, scores, (50, 50), config, objectness=scores)
    assert result["boxes"].tolist() == [[0.0, 0.0, 5.0, 5.0]]

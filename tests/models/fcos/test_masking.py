"""Unknown-object masking on hand-made objectness maps, and its use in the classification loss."""

import pytest
import torch

from owp.errors import OwpInputError
from owp.models.fcos.assign import BACKGROUND, IGNORE
from owp.models.fcos.masking import unknown_object_mask
from owp.models.fcos.points import make_points
from owp.models.registry import create_model, model_config

# One 4 x 4 level at stride 8: points at x, y in {0, 8, 16, 24}.
POINTS = make_points([(4, 4)], strides=(8,), size_ranges=((0, float("inf")),))


def maps(values):
    return torch.tensor(values, dtype=torch.float32).reshape(1, 16)


def test_pixel_variant_masks_confident_background_only():
    objectness = maps([0.99] * 4 + [0.5] * 4 + [0.93] * 4 + [0.1] * 4)
    matched = torch.full((1, 16), BACKGROUND)
    matched[0, 0] = 0  # a ground-truth location: never masked, however confident
    matched[0, 8] = IGNORE  # an ignore region: already out of the loss, not "masked"
    mask = unknown_object_mask(objectness, matched, 0.925)
    expected = torch.zeros(1, 16, dtype=torch.bool)
    expected[0, [1, 2, 3, 9, 10, 11]] = True
    assert torch.equal(mask, expected)


def test_area_variant_masks_background_inside_the_predicted_box():
    objectness = maps([0.1] * 16)
    objectness[0, 5] = 0.99  # the point (8, 8)
    matched = torch.full((1, 16), BACKGROUND)
    matched[0, 10] = 0  # (16, 16) is a ground-truth location
    boxes = torch.zeros(1, 16, 4)
    boxes[0, 5] = torch.tensor([4.0, 4.0, 20.0, 20.0])  # covers (8,8) (16,8) (8,16) (16,16)
    mask = unknown_object_mask(objectness, matched, 0.925, points=POINTS, pred_boxes=boxes)
    covered = {5, 6, 9}  # (16, 16) is foreground: never masked
    assert set(mask[0].nonzero().flatten().tolist()) == covered
    pixel = unknown_object_mask(objectness, matched, 0.925)
    assert pixel[0].nonzero().flatten().tolist() == [5]


def test_area_variant_nms_drops_overlapping_seeds():
    objectness = maps([0.1] * 16)
    objectness[0, 0], objectness[0, 15] = 0.99, 0.98
    matched = torch.full((1, 16), BACKGROUND)
    boxes = torch.zeros(1, 16, 4)
    boxes[0, 0] = torch.tensor([-1.0, -1.0, 9.0, 9.0])  # covers (0,0) (8,0) (0,8) (8,8)
    boxes[0, 15] = torch.tensor([-1.0, -1.0, 17.0, 10.0])  # IoU 100/198 > 0.5, adds (16,0) (16,8)
    kept = unknown_object_mask(
        objectness, matched, 0.9, points=POINTS, pred_boxes=boxes, nms_thresh=0.5
    )
    assert set(kept[0].nonzero().flatten().tolist()) == {0, 1, 4, 5}  # seed 15 suppressed
    unsuppressed = unknown_object_mask(objectness, matched, 0.9, points=POINTS, pred_boxes=boxes)
    assert set(unsuppressed[0].nonzero().flatten().tolist()) == {0, 1, 2, 4, 5, 6}


def classifying_model(**options):
    torch.manual_seed(0)
    return create_model(
        "fcos_owp_tiny", num_classes=2, min_size=64, max_size=64, unknown_mask_thresh=0.0, **options
    ).train()


@pytest.mark.parametrize("variant", ["pixel", "area"])
def test_masking_starts_at_its_iteration_and_lowers_the_classification_loss(variant):
    image = [torch.rand(3, 64, 64)]
    target = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([1])}]
    plain = classifying_model()(image, target)["classification"]
    model = classifying_model(unknown_mask=variant, unknown_mask_start=5)
    model.iteration = 4
    assert torch.allclose(model(image, target)["classification"], plain)
    assert model.last_masked == 0
    model.iteration = 5
    masked = model(image, target)["classification"]
    # Threshold 0: every background location is masked, only the foreground keeps its loss.
    assert model.last_masked > 0 and masked < plain


def test_masking_options_are_checked():
    with pytest.raises(OwpInputError, match="unknown_mask"):
        model_config("fcos_owp_tiny", unknown_mask="everything")
    with pytest.raises(OwpInputError, match="needs the iou branch"):
        model_config("fcos_owp_tiny", objectness=["centerness"], unknown_mask="pixel")

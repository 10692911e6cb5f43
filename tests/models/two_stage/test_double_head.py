"""Double-Head R-CNN: branch shapes, which branch each loss reads, score fusion, outputs."""

import pytest
import torch

from owp.models.registry import create_model, model_config
from owp.models.two_stage.double_head import DoubleHeadBoxHead, DoubleHeadPredictor

NUM_CLASSES = 3


def test_branch_shapes_forward_and_backward():
    head = DoubleHeadBoxHead(in_channels=16, representation_size=32, conv_channels=24, num_blocks=2)
    predictor = DoubleHeadPredictor(32, 24, NUM_CLASSES + 1, complementary=True)
    rois = torch.rand(5, 16, 7, 7, requires_grad=True)
    fc, conv = head(rois)
    assert fc.shape == (5, 32) and conv.shape == (5, 24)
    logits, deltas = predictor((fc, conv))
    assert logits.shape == (5, NUM_CLASSES + 1) and deltas.shape == (5, 4 * (NUM_CLASSES + 1))
    conv_logits, fc_deltas = predictor.complementary((fc, conv))
    assert conv_logits.shape == logits.shape and fc_deltas.shape == deltas.shape
    (logits.sum() + deltas.sum()).backward()
    assert rois.grad.shape == rois.shape and rois.grad.abs().sum() > 0


def training_losses(**overrides):
    torch.manual_seed(0)
    model = create_model(
        "double_head_tiny", num_classes=NUM_CLASSES, min_size=128, max_size=128, **overrides
    ).train()
    images = [torch.rand(3, 128, 128), torch.rand(3, 120, 140)]
    targets = [
        {"boxes": torch.tensor([[10.0, 12.0, 70.0, 90.0]]), "labels": torch.tensor([2])},
        {
            "boxes": torch.tensor([[30.0, 20.0, 100.0, 60.0], [5.0, 5.0, 40.0, 50.0]]),
            "labels": torch.tensor([0, 1]),
        },
    ]
    return model, model(images, targets)


def branch_gradients(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    box_head = model.roi_heads.box_head

    def total(module):
        return sum(p.grad.abs().sum() for p in module.parameters() if p.grad is not None)

    return total(box_head.fc_branch), total(box_head.conv_branch)


def test_classification_reads_the_fc_branch_and_regression_the_conv_branch():
    model, losses = training_losses()
    assert set(losses) == {
        "rpn_objectness",
        "rpn_box_regression",
        "roi_classification",
        "roi_box_regression",
    }
    fc, conv = branch_gradients(model, losses["roi_classification"])
    assert fc > 0 and conv == 0
    fc, conv = branch_gradients(model, losses["roi_box_regression"])
    assert fc == 0 and conv > 0


def test_complementary_losses_train_both_branches_for_both_tasks():
    model, losses = training_losses(complementary=True)
    assert {"roi_classification_conv", "roi_box_regression_fc"} <= set(losses)
    fc, conv = branch_gradients(model, losses["roi_classification_conv"])
    assert fc == 0 and conv > 0
    fc, conv = branch_gradients(model, losses["roi_box_regression_fc"])
    assert fc > 0 and conv == 0


def test_complementary_scores_fuse_as_s_fc_plus_s_conv_times_one_minus_s_fc():
    model, _ = training_losses(complementary=True)
    model.eval()
    heads = model.roi_heads
    features = {
        name: torch.rand(1, 64, size, size)
        for name, size in zip("0123", (32, 16, 8, 4), strict=True)
    }
    proposals = [torch.tensor([[0.0, 0.0, 50.0, 60.0], [20.0, 10.0, 90.0, 100.0]])]
    with torch.no_grad():
        probabilities, boxes = heads.predict(features, proposals, [(128, 128)])
        branches = heads.box_head(heads.box_roi_pool(features, proposals, [(128, 128)]))
        fc = torch.softmax(heads.box_predictor(branches)[0], -1)
        conv = torch.softmax(heads.box_predictor.complementary(branches)[0], -1)
    assert torch.allclose(probabilities[0], fc + conv * (1 - fc))
    assert boxes[0].shape == (2, NUM_CLASSES + 1, 4)


def test_detections_proposals_and_their_scores():
    model, _ = training_losses()
    model.eval()
    image = torch.rand(3, 100, 150)
    with torch.no_grad():
        detections = model([image])[0]
    assert set(detections) == {"boxes", "scores", "objectness", "labels", "class_scores"}
    assert detections["labels"].min() >= 0 and detections["labels"].max() < NUM_CLASSES
    assert torch.equal(detections["scores"], detections["class_scores"])
    assert (detections["scores"] > 0.05).all()  # detection_score_thresh
    assert detections["objectness"].min() >= 0 and detections["objectness"].max() <= 1
    assert detections["boxes"][:, 2].max() <= 150 + 1e-3
    assert detections["boxes"][:, 3].max() <= 100 + 1e-3


def test_double_head_options_are_checked():
    with pytest.raises(Exception, match="give num_classes"):
        model_config("double_head_tiny", num_classes=None)
    with pytest.raises(Exception, match="multiple of 4"):
        model_config("double_head_tiny", conv_channels=30)
    assert create_model("double_head_tiny").config.num_classes == 80  # builds with defaults

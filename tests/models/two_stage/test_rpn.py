"""owp.rpn_proposals and the RPN proposer against torchvision's own Faster R-CNN."""

import pytest
import torch
from torchvision.models.detection import fasterrcnn_resnet50_fpn
from torchvision.ops import box_iou

import owp
from owp.models.registry import create_model, model_config


@pytest.fixture(scope="module")
def faster_rcnn():
    torch.manual_seed(0)
    return fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, min_size=224, max_size=320
    ).eval()


@pytest.fixture(scope="module")
def images():
    generator = torch.Generator().manual_seed(1)
    return [
        torch.rand(3, 180, 240, generator=generator),
        torch.rand(3, 300, 200, generator=generator),
    ]


def torchvision_rpn_boxes(model, images):
    """What torchvision's ``model.rpn`` returns, mapped back to the original image sizes."""
    with torch.no_grad():
        image_list, _ = model.transform(images)
        features = model.backbone(image_list.tensors)
        boxes, _ = model.rpn(image_list, features)
    resized = model.transform.postprocess(
        [{"boxes": b} for b in boxes],
        image_list.image_sizes,
        [tuple(image.shape[-2:]) for image in images],
    )
    return [r["boxes"] for r in resized]


def test_rpn_proposals_are_torchvisions_rpn_boxes_with_objectness(faster_rcnn, images):
    ours = owp.rpn_proposals(faster_rcnn, images, nms_thresh=None)
    theirs = torchvision_rpn_boxes(faster_rcnn, images)
    for mine, reference, image in zip(ours, theirs, images, strict=True):
        assert torch.equal(mine["boxes"], reference)
        scores = mine["scores"]
        assert len(scores) == len(reference) > 0
        assert scores.min() >= 0 and scores.max() <= 1
        assert torch.all(scores[:-1] >= scores[1:])
        assert mine["boxes"][:, 2].max() <= image.shape[-1] + 1e-3
        assert mine["boxes"][:, 3].max() <= image.shape[-2] + 1e-3


def test_rpn_proposals_class_agnostic_nms_and_top_n(faster_rcnn, images):
    raw = owp.rpn_proposals(faster_rcnn, images, nms_thresh=None)
    kept = owp.rpn_proposals(faster_rcnn, images, nms_thresh=0.5, top_n=30)
    for before, after in zip(raw, kept, strict=True):
        assert len(after["boxes"]) == 30
        overlaps = box_iou(after["boxes"], after["boxes"]).fill_diagonal_(0)
        assert overlaps.max() <= 0.5 + 1e-6
        # Every kept box is one of torchvision's boxes, with its score.
        matches = box_iou(after["boxes"], before["boxes"]).argmax(dim=1)
        assert torch.allclose(after["boxes"], before["boxes"][matches], atol=1e-4)
        assert torch.allclose(after["scores"], before["scores"][matches])


def test_rpn_proposals_restores_the_mode_and_rejects_bad_input(faster_rcnn, images):
    faster_rcnn.train()
    owp.rpn_proposals(faster_rcnn, images[:1])
    assert faster_rcnn.training
    faster_rcnn.eval()
    with pytest.raises(TypeError, match="torchvision Faster R-CNN"):
        owp.rpn_proposals(torch.nn.Linear(2, 2), images)
    with pytest.raises(TypeError, match="got OLNRPN"):
        owp.rpn_proposals(create_model("oln_tiny"), images)
    with pytest.raises(ValueError, match=r"Tensor\[3, H, W\]"):
        owp.rpn_proposals(faster_rcnn, torch.rand(2, 3, 64, 64))


def test_rpn_proposer_with_torchvision_weights_gives_the_same_proposals(faster_rcnn, images):
    model = create_model(
        "rpn_r50_fpn", min_size=224, max_size=320, nms_thresh=0.7, post_nms_top_n=1000
    ).eval()
    result = model.load_state_dict(faster_rcnn.state_dict(), strict=False)
    assert not result.missing_keys
    assert all(key.startswith("roi_heads.") for key in result.unexpected_keys)
    with torch.no_grad():
        ours = model(images)
    reference = owp.rpn_proposals(faster_rcnn, images, nms_thresh=0.7, top_n=1000)
    for mine, theirs in zip(ours, reference, strict=True):
        assert torch.allclose(mine["boxes"], theirs["boxes"])
        assert torch.equal(mine["scores"], mine["objectness"])
        assert torch.allclose(mine["scores"], theirs["scores"])


def test_rpn_options_are_checked():
    with pytest.raises(Exception, match="needs roi_heads"):
        model_config("rpn_tiny", scoring="roi")
    with pytest.raises(Exception, match="class-agnostic"):
        model_config("rpn_tiny", num_classes=4)
    assert model_config("rpn_tiny", roi_heads=True, scoring="roi").scoring == "roi"

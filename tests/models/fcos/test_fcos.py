"""FCOS-OWP end to end: torchvision parity, output contract, losses, a short training run."""

import pytest
import torch
import torchvision

from owp.errors import OwpInputError
from owp.models.fcos.postprocess import MIN_OUTPUT_BOX_SIZE
from owp.models.registry import create_model, list_models, model_config


@pytest.fixture(scope="module")
def torchvision_fcos():
    torch.manual_seed(0)
    model = torchvision.models.detection.fcos_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=91
    )
    with torch.no_grad():  # move the head off its init so that many scores pass 0.2
        model.head.classification_head.cls_logits.bias.zero_()
        for parameter in model.head.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.01)
    return model.eval()


def test_torchvision_checkpoint_loads_and_gives_torchvision_detections(torchvision_fcos):
    model = create_model(
        "fcos_owp_r50_fpn",
        num_classes=91,
        scoring="cls*centerness",
        score_thresh=0.2,
        nms_thresh=0.6,
        post_nms_top_n=100,
        pre_nms_top_n=1000,
    )
    result = model.load_state_dict(torchvision_fcos.state_dict(), strict=False)
    assert set(result.missing_keys) == {
        "head.regression_head.bbox_iou.weight",
        "head.regression_head.bbox_iou.bias",
    }
    assert result.unexpected_keys == []
    model.eval()
    generator = torch.Generator().manual_seed(1)
    images = [
        torch.rand(3, 240, 320, generator=generator),
        torch.rand(3, 200, 200, generator=generator),
    ]
    with torch.no_grad():
        expected, ours = torchvision_fcos(images), model(images)
    for image, theirs, mine in zip(images, expected, ours, strict=True):
        # torchvision also returns boxes that clipping left (near) empty; owp drops boxes with
        # a side below MIN_OUTPUT_BOX_SIZE input pixels before NMS (an empty box suppresses
        # nothing), so its detections are torchvision's non-empty ones, in the same order.
        height, width = image.shape[-2:]
        scale = min(800 / min(height, width), 1333 / max(height, width))
        sides = theirs["boxes"][:, 2:] - theirs["boxes"][:, :2]
        real = (sides * scale >= MIN_OUTPUT_BOX_SIZE).all(dim=1)
        count = int(real.sum())
        assert count > 10
        torch.testing.assert_close(mine["boxes"][:count], theirs["boxes"][real], atol=1e-4, rtol=0)
        torch.testing.assert_close(
            mine["scores"][:count], theirs["scores"][real], atol=1e-4, rtol=0
        )
        assert torch.equal(mine["labels"][:count], theirs["labels"][real])
        mine_sides = mine["boxes"][:, 2:] - mine["boxes"][:, :2]
        assert (mine_sides * scale >= MIN_OUTPUT_BOX_SIZE - 1e-4).all()


def tiny(**overrides):
    torch.manual_seed(0)
    return create_model("fcos_owp_tiny", min_size=128, max_size=128, **overrides)


def boxes_target(boxes, labels, ignore=None):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    target = {"boxes": boxes, "labels": torch.tensor(labels, dtype=torch.int64)}
    if ignore is not None:
        target["ignore"] = torch.tensor(ignore)
    return target


@pytest.mark.parametrize("num_classes", [None, 3])
def test_output_contract(num_classes):
    scoring = "iou" if num_classes is None else "cls*iou"
    model = tiny(num_classes=num_classes, scoring=scoring, post_nms_top_n=50).eval()
    with torch.no_grad():
        outputs = model([torch.rand(3, 100, 150), torch.rand(3, 90, 60)])
    keys = {"boxes", "scores", "objectness"} | (
        {"labels", "class_scores"} if num_classes else set()
    )
    for output, (height, width) in zip(outputs, [(100, 150), (90, 60)], strict=True):
        assert set(output) == keys
        assert output["boxes"].shape[1] == 4 and len(output["boxes"]) <= 50
        assert (output["boxes"][:, 2] <= width + 1e-3).all() and (
            output["boxes"][:, 3] <= height + 1e-3
        ).all()
        assert (output["scores"][:-1] >= output["scores"][1:]).all()


def test_losses_are_finite_without_objects():
    model = tiny(num_classes=2, objectness=("centerness", "iou")).train()
    losses = model([torch.rand(3, 128, 128)], [boxes_target([], [])])
    assert set(losses) == {"classification", "bbox_regression", "bbox_ctrness", "bbox_iou"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()


@pytest.mark.parametrize("samples", ["center", "foreground", "all"])
def test_losses_per_sample_set(samples):
    model = tiny(objectness=("iou",), objectness_samples=samples).train()
    losses = model([torch.rand(3, 128, 128)], [boxes_target([[10, 10, 70, 90]], [0])])
    assert set(losses) == {"bbox_regression", "bbox_iou"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())


def test_twenty_training_steps_lower_the_loss():
    torch.manual_seed(0)
    model = tiny(num_classes=2, objectness=("centerness", "iou")).train()
    images = [torch.rand(3, 128, 128) * 0.2 for _ in range(2)]
    images[0][:, 20:80, 30:100] += 0.7
    images[1][:, 60:120, 10:50] += 0.7
    targets = [boxes_target([[30, 20, 100, 80]], [0]), boxes_target([[10, 60, 50, 120]], [1])]
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(parameters, lr=0.005, momentum=0.9)
    totals = []
    for _ in range(20):
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        totals.append(loss.item())
    # Measured: 3.50 at the start, about 1.8 after 20 steps.
    assert sum(totals[-5:]) / 5 < 0.7 * totals[0]


def test_names_and_bad_options():
    assert {"fcos_owp_r50_fpn", "fcos_owp_r18_fpn", "fcos_owp_tiny"} <= set(list_models())
    with pytest.raises(OwpInputError, match="fcos_owp_tiny"):
        model_config("fcos_owp_huge")
    with pytest.raises(OwpInputError, match="unknown option"):
        model_config("fcos_owp_tiny", colour="red")
    with pytest.raises(OwpInputError, match="scoring"):
        model_config("fcos_owp_tiny", scoring="magic")
    with pytest.raises(OwpInputError, match="objectness_samples"):
        model_config("fcos_owp_tiny", objectness_samples="some")

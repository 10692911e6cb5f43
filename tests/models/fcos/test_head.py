"""FCOS-OWP head: torchvision parity, output shapes, objectness branches, gradients, errors."""

import math

import pytest
import torch
from torch import nn
from torchvision.models.detection.fcos import FCOSHead

from owp.errors import OwpInputError
from owp.models.fcos.head import OBJECTNESS_BRANCHES, FCOSOWPHead

SIZES = [(16, 20), (8, 10), (4, 5), (2, 3), (1, 2)]
LOCATIONS = sum(h * w for h, w in SIZES)


def _features(channels: int, batch: int = 2, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, channels, h, w, generator=generator) for h, w in SIZES]


def test_torchvision_fcos_head_state_dict_loads_and_outputs_match():
    torch.manual_seed(0)
    reference = FCOSHead(in_channels=256, num_anchors=1, num_classes=91, num_convs=4)
    # Move every parameter away from its init so that a wrong mapping would show.
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    head = FCOSOWPHead(256, 91, objectness=("centerness", "iou"))
    result = head.load_state_dict(reference.state_dict(), strict=False)
    assert sorted(result.missing_keys) == [
        "regression_head.bbox_iou.bias",
        "regression_head.bbox_iou.weight",
    ]
    assert result.unexpected_keys == []

    features = _features(256)
    with torch.no_grad():
        expected, actual = reference(features), head(features)
    assert set(expected) == {"cls_logits", "bbox_regression", "bbox_ctrness"}
    assert set(actual) == set(expected) | {"bbox_iou"}
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=1e-6, atol=1e-6)


def test_state_dict_names_match_torchvision_for_the_shared_parts():
    reference = FCOSHead(in_channels=64, num_anchors=1, num_classes=5, num_convs=2)
    head = FCOSOWPHead(64, 5, num_convs=2)
    assert set(head.state_dict()) == set(reference.state_dict())
    assert {k: v.shape for k, v in head.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }


@pytest.mark.parametrize("num_classes", [None, 3])
@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("objectness", [("centerness",), ("iou",), ("centerness", "iou")])
def test_output_shapes(num_classes, conditional, objectness):
    head = FCOSOWPHead(64, num_classes, objectness=objectness, conditional=conditional)
    out = head(_features(64))
    branch_keys = {"centerness": "bbox_ctrness", "iou": "bbox_iou"}
    expected = {"bbox_regression": (2, LOCATIONS, 4)}
    expected |= {branch_keys[name]: (2, LOCATIONS, 1) for name in objectness}
    if num_classes is not None:
        expected["cls_logits"] = (2, LOCATIONS, num_classes)
    assert {k: tuple(v.shape) for k, v in out.items()} == expected
    assert (out["bbox_regression"] >= 0).all()


def test_locations_are_flattened_level_by_level_row_major():
    head = FCOSOWPHead(32, 2, num_convs=0, norm_groups=8)
    features = _features(32, batch=1)
    out = head(features)
    # Location (y=1, x=2) of level 1 comes after all of level 0, at row-major offset 1*10+2.
    index = SIZES[0][0] * SIZES[0][1] + 1 * SIZES[1][1] + 2
    window = features[1][:, :, 0:3, 1:4]  # the 3x3 neighbourhood around (1, 2)
    cls = head.classification_head.cls_logits
    expected = (cls.weight * window).sum(dim=(1, 2, 3)) + cls.bias
    torch.testing.assert_close(out["cls_logits"][0, index], expected)


def test_class_agnostic_head_has_no_classification_parameters():
    head = FCOSOWPHead(64, None, objectness=("iou",))
    assert head.classification_head is None
    assert not any(name.startswith("classification_head") for name in head.state_dict())
    assert "cls_logits" not in head(_features(64))


def test_absent_branches_have_no_modules():
    head = FCOSOWPHead(64, 3, objectness=("iou",))
    assert head.regression_head.bbox_ctrness is None
    assert not any("bbox_ctrness" in name for name in head.state_dict())
    head = FCOSOWPHead(64, 3, objectness="centerness")
    assert head.regression_head.bbox_iou is None
    assert head.objectness == ("centerness",)


@pytest.mark.parametrize("conditional", [False, True])
def test_branch_input_channels(conditional):
    head = FCOSOWPHead(64, 3, objectness=OBJECTNESS_BRANCHES, conditional=conditional)
    channels = 64 + 4 if conditional else 64
    for branch in (head.regression_head.bbox_ctrness, head.regression_head.bbox_iou):
        assert branch.in_channels == channels and branch.out_channels == 1
    assert head.regression_head.bbox_reg.in_channels == 64


def _iou_loss_grads(detach: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    torch.manual_seed(0)
    head = FCOSOWPHead(
        32, None, objectness=("iou",), conditional=True, conditional_detach=detach, norm_groups=8
    )
    head(_features(32))["bbox_iou"].sum().backward()
    return head.regression_head.bbox_reg.weight.grad, head.regression_head.conv[0].weight.grad


def test_detached_conditioning_stops_objectness_gradients_at_the_regression():
    reg_grad, tower_grad = _iou_loss_grads(detach=True)
    assert reg_grad is None or not reg_grad.any()
    assert tower_grad is not None and tower_grad.abs().sum() > 0


def test_attached_conditioning_trains_the_regression_from_objectness():
    reg_grad, tower_grad = _iou_loss_grads(detach=False)
    assert reg_grad is not None and reg_grad.abs().sum() > 0
    assert tower_grad is not None and tower_grad.abs().sum() > 0


def test_conditioning_input_is_the_regression_output():
    torch.manual_seed(0)
    head = FCOSOWPHead(32, None, objectness=("iou",), conditional=True, num_convs=1, norm_groups=8)
    features = _features(32)
    # The IoU conv's last four input channels read the relu'd regression map: zeroing the
    # tower-feature part of its weight leaves a conv over the regression alone.
    regression_head = head.regression_head
    with torch.no_grad():
        regression_head.bbox_iou.weight[:, :32] = 0
        level = features[0]
        regression = torch.relu(regression_head.bbox_reg(regression_head.conv(level)))
        expected = regression_head.bbox_iou(torch.cat([torch.zeros_like(level), regression], 1))
        actual = head(features)["bbox_iou"][:, : SIZES[0][0] * SIZES[0][1]]
    torch.testing.assert_close(actual, expected.permute(0, 2, 3, 1).reshape(2, -1, 1))


def test_initialisation_follows_torchvision():
    torch.manual_seed(0)
    head = FCOSOWPHead(256, 80, objectness=OBJECTNESS_BRANCHES, prior_probability=0.01)
    bias = head.classification_head.cls_logits.bias
    torch.testing.assert_close(bias, torch.full_like(bias, -math.log(99.0)))
    convs = [m for m in head.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 2 * 4 + 4  # two towers, cls_logits, bbox_reg, ctrness, iou
    for conv in convs:
        assert abs(conv.weight.std().item() - 0.01) < 0.002
        if conv is not head.classification_head.cls_logits:
            assert not conv.bias.any()
    norms = [m for m in head.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) == 8 and all(m.num_groups == 32 for m in norms)


def test_narrow_heads_and_group_counts():
    assert FCOSOWPHead(64, 3)(_features(64))["cls_logits"].shape == (2, LOCATIONS, 3)
    narrow = FCOSOWPHead(48, 3, norm_groups=16)
    assert narrow(_features(48))["bbox_regression"].shape == (2, LOCATIONS, 4)
    with pytest.raises(ValueError, match="48 channels cannot form 32 groups"):
        FCOSOWPHead(48, 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"objectness": ("centerness", "quality")}, "unknown objectness branch 'quality'"),
        ({"objectness": ()}, "objectness needs at least one branch"),
        ({"objectness": ("iou", "iou")}, "objectness branches repeat"),
        ({"num_classes": 0}, "num_classes must be at least 1"),
        ({"num_convs": -1}, "num_convs must be 0 or more"),
        ({"prior_probability": 1.0}, r"prior_probability must be in \(0, 1\)"),
        ({"norm_groups": 0}, "GroupNorm needs in_channels divisible by norm_groups"),
        ({"in_channels": 0}, "in_channels must be positive"),
    ],
)
def test_bad_arguments(kwargs, message):
    arguments = {"in_channels": 64, "num_classes": 3} | kwargs
    with pytest.raises(OwpInputError, match=message):
        FCOSOWPHead(**arguments)


def test_no_feature_levels():
    with pytest.raises(OwpInputError, match="at least one feature level"):
        FCOSOWPHead(64, 3)([])

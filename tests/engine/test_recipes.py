"""Recipes: which parameters train and at which learning rate, after a real optimiser step."""

import pytest
import torch

from owp.engine.recipes import list_recipes, parameter_groups
from owp.errors import OwpInputError
from owp.models.factory import create_model


def step_and_diff(recipe):
    torch.manual_seed(0)
    model = create_model("fcos_owp_tiny", num_classes=3, min_size=64, max_size=64).train()
    groups = parameter_groups(model, recipe, base_lr=0.01)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD(groups, lr=0.01)
    target = {"boxes": torch.tensor([[5.0, 5.0, 40.0, 50.0]]), "labels": torch.tensor([1])}
    sum(model([torch.rand(3, 64, 64)], [target]).values()).backward()
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    return model, groups, changed


def test_owp_recipe_freezes_classification_only():
    model, groups, changed = step_and_diff("owp")
    names = dict(model.named_parameters())
    assert not any(n.startswith("head.classification_head.") for n in changed)
    assert all(
        not names[n].requires_grad for n in names if n.startswith("head.classification_head.")
    )
    for part in (
        "backbone.body.layer4",
        "backbone.fpn",
        "head.regression_head.conv",
        "bbox_reg",
        "bbox_ctrness",
        "bbox_iou",
    ):
        assert any(part in n for n in changed), part
    assert [g["lr"] for g in groups] == [0.01]


def test_joint_recipe_trains_everything():
    model, groups, changed = step_and_diff("joint")
    assert any(n.startswith("head.classification_head.cls_logits") for n in changed)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and [g["lr"] for g in groups] == [0.01]


def test_unknown_recipe():
    assert set(list_recipes()) >= {"owp", "joint"}
    with pytest.raises(OwpInputError, match="unknown recipe 'fancy'"):
        parameter_groups(create_model("fcos_owp_tiny"), "fancy", 0.01)


@pytest.mark.parametrize(
    ("recipe", "frozen_parts", "lr_of"),
    [
        (
            "finetune",
            [],
            {"head.classification_head.": 0.01, "head.regression_head.": 0.001, "backbone.": 0.001},
        ),
        (
            "frozen",
            ["head.regression_head."],
            {"head.classification_head.": 0.01, "backbone.": 0.01},
        ),
        ("joint_fb", ["backbone."], {"head.": 0.01}),
        ("owp_fb", ["backbone.", "head.classification_head."], {"head.regression_head.": 0.01}),
        (
            "finetune_fb",
            ["backbone."],
            {"head.classification_head.": 0.01, "head.regression_head.": 0.001},
        ),
        ("frozen_fb", ["backbone.", "head.regression_head."], {"head.classification_head.": 0.01}),
    ],
)
def test_recipe_groups_and_frozen_parts(recipe, frozen_parts, lr_of):
    model, groups, changed = step_and_diff(recipe)
    for name, parameter in model.named_parameters():
        if any(name.startswith(part) for part in frozen_parts):
            assert not parameter.requires_grad and name not in changed, name
    lr_by_parameter = {id(p): g["lr"] for g in groups for p in g["params"]}
    for name, parameter in model.named_parameters():
        for prefix, lr in lr_of.items():
            if name.startswith(prefix) and parameter.requires_grad:
                assert lr_by_parameter[id(parameter)] == pytest.approx(lr), name
    assert changed

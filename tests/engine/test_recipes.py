"""Recipes: which parameters train and at which learning rate, after a real optimiser step."""

import pytest
import torch

from owp.engine.recipes import list_recipes, parameter_groups
from owp.errors import OwpInputError
from owp.models.registry import create_model


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


def _tiny_batch():
    generator = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 64, 64, generator=generator) for _ in range(2)]
    targets = [
        {"boxes": torch.tensor([[5.0, 5.0, 40.0, 50.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.tensor([[10.0, 20.0, 60.0, 60.0]]), "labels": torch.tensor([2])},
    ]
    return images, targets


def test_owp_recipe_sends_no_focal_gradient_into_the_trunk(tmp_path):
    from owp.config import ModelConfig, RunConfig, TrainConfig
    from owp.engine.recipes import trained_losses
    from owp.engine.trainer import Trainer

    config = RunConfig(
        model=ModelConfig("fcos_owp_tiny", {"num_classes": 3, "min_size": 64, "max_size": 64}),
        train=TrainConfig(recipe="owp", batch_size=2, amp=False, device="cpu", clip_grad_norm=None),
    )
    torch.manual_seed(0)
    trainer = Trainer(config, tmp_path, progress=False)
    model = trainer.model.train()
    assert trained_losses(model, "owp") >= {"bbox_regression", "bbox_iou", "bbox_ctrness"}
    assert "classification" not in trained_losses(model, "owp")
    images, targets = _tiny_batch()
    trunk = [p for n, p in model.named_parameters() if n.startswith("backbone.")]
    losses = model(images, targets)
    localization = sum(v for k, v in losses.items() if k != "classification")
    expected = torch.autograd.grad(localization, trunk, retain_graph=True)
    assert not losses["classification"].requires_grad  # logged, never backpropagated
    for group in trainer.optimizer.param_groups:
        group["lr"] = 0.0  # the step keeps the weights: compare the gradients only
    trainer.run_step(images, targets)
    for parameter, gradient in zip(trunk, expected, strict=True):
        assert torch.allclose(parameter.grad, gradient, rtol=1e-5, atol=1e-8)


def test_frozen_backbone_batch_norm_keeps_its_statistics_across_train():
    from torchvision.ops.misc import FrozenBatchNorm2d

    torch.manual_seed(0)
    model = create_model("fcos_owp_tiny", min_size=64, max_size=64)  # trainable BN: from scratch
    parameter_groups(model, "owp_fb", base_lr=0.01)
    norms = [m for n, m in model.named_modules() if n.startswith("backbone.body") and "bn" in n]
    assert norms and all(type(m) is FrozenBatchNorm2d for m in norms)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images, targets = _tiny_batch()
    model.train()
    model(images, targets)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    # The frozen model's checkpoint loads into a freshly built one and gives the same output.
    fresh = create_model("fcos_owp_tiny", min_size=64, max_size=64)
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        a, b = model.eval()([images[0]])[0], fresh.eval()([images[0]])[0]
    assert torch.allclose(a["boxes"], b["boxes"], atol=1e-4)
    assert torch.allclose(a["scores"], b["scores"], atol=1e-6)


def test_trainable_layers_below_five_freeze_the_batch_norm_of_frozen_stages():
    from torchvision.ops.misc import FrozenBatchNorm2d

    model = create_model("fcos_owp_tiny", backbone_norm="batch", trainable_layers=2)
    body = model.backbone.body
    assert type(body.bn1) is FrozenBatchNorm2d
    assert type(body.layer1[0].bn1) is FrozenBatchNorm2d
    assert type(body.layer2[0].bn1) is FrozenBatchNorm2d
    assert (
        type(body.layer3[0].bn1) is torch.nn.BatchNorm2d and body.layer3[0].bn1.weight.requires_grad
    )
    assert type(body.layer4[0].bn1) is torch.nn.BatchNorm2d


@pytest.mark.parametrize("name", ["fcos_owp_tiny", "double_head_tiny"])
def test_a_label_beyond_num_classes_names_both_numbers(name):
    model = create_model(name, num_classes=3, min_size=64, max_size=64).train()
    target = {"boxes": torch.tensor([[5.0, 5.0, 40.0, 50.0]]), "labels": torch.tensor([3])}
    with pytest.raises(ValueError, match=r"label 3 is outside \[0, 3\).*num_classes=3"):
        model([torch.rand(3, 64, 64)], [target])


@pytest.mark.parametrize(
    ("name", "frozen_loss"),
    [("fcos_owp_tiny", "classification"), ("double_head_tiny", "roi_classification")],
)
def test_a_frozen_parts_loss_carries_no_gradient_out_of_the_model(name, frozen_loss):
    """A user's own loop sums every loss (torchvision's idiom): the trunk gets exactly the
    gradient of the losses the recipe trains; the frozen part's loss is still returned."""
    torch.manual_seed(0)
    options = {"num_classes": 3, "min_size": 64, "max_size": 64}
    if name == "fcos_owp_tiny":
        options["scoring"] = "cls*iou"
    model = create_model(name, **options).train()
    parameter_groups(model, "owp", base_lr=0.01)
    images, targets = _tiny_batch()
    trunk = [p for n, p in model.named_parameters() if n.startswith("backbone.fpn")]
    torch.manual_seed(1)
    losses = model(images, targets)
    assert frozen_loss in losses and float(losses[frozen_loss]) > 0
    assert not losses[frozen_loss].requires_grad
    trained = sum(v for k, v in losses.items() if k != frozen_loss)
    expected = torch.autograd.grad(trained, trunk, retain_graph=True)
    sum(losses.values()).backward()
    for parameter, gradient in zip(trunk, expected, strict=True):
        assert torch.allclose(parameter.grad, gradient, rtol=1e-5, atol=1e-9)


def test_objectness_recipe_trains_the_objectness_branches_only():
    model, groups, changed = step_and_diff("objectness")
    branches = ("head.regression_head.bbox_ctrness.", "head.regression_head.bbox_iou.")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if n.startswith(branches)}
    assert {n.split(".")[2] for n in changed} == {"bbox_ctrness", "bbox_iou"}
    assert [g["lr"] for g in groups] == [0.01] and groups[0]["name"] == "objectness"


def test_objectness_recipe_on_a_model_without_objectness_branches():
    model = create_model("rpn_tiny")
    with pytest.raises(OwpInputError, match="recipe 'objectness' leaves no parameter to train"):
        parameter_groups(model, "objectness", 0.01)

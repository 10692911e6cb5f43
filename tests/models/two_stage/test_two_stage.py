"""The two-stage references under the owp contract: outputs, training, recipes, CLI."""

import json
from dataclasses import replace

import pytest
import torch
from torchvision.models.detection import fasterrcnn_resnet50_fpn

from owp.cli import main
from owp.config import apply_overrides, load_preset
from owp.engine.recipes import parameter_groups
from owp.engine.runs import load
from owp.engine.trainer import train
from owp.models.backbones import resnet_fpn_backbone
from owp.models.registry import create_model, list_models

TWO_STAGE = ("rpn_tiny", "oln_tiny", "double_head_tiny")
PRESET_OF = {
    "rpn_tiny": "synth-rpn",
    "oln_tiny": "synth-oln",
    "double_head_tiny": "synth-double-head",
}


def test_every_two_stage_name_is_listed_and_builds_with_random_weights():
    names = set(list_models())
    for family in ("rpn", "oln", "double_head"):
        assert {f"{family}_r50_fpn", f"{family}_r18_fpn", f"{family}_tiny"} <= names
    model = create_model("oln_r18_fpn")
    assert model.config.depth == 18 and model.backbone.out_channels == 256


def test_p2_p6_backbone_has_torchvisions_faster_rcnn_names_and_shapes():
    ours = resnet_fpn_backbone(50, levels="p2-p6").state_dict()
    theirs = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).backbone.state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    features = resnet_fpn_backbone(18, out_channels=8, levels="p2-p6")(torch.rand(1, 3, 64, 96))
    assert list(features) == ["0", "1", "2", "3", "pool"]
    assert [tuple(f.shape[-2:]) for f in features.values()] == [
        (16, 24),
        (8, 12),
        (4, 6),
        (2, 3),
        (1, 2),
    ]


@pytest.mark.parametrize("name", TWO_STAGE)
def test_outputs_follow_the_contract_in_original_coordinates(name):
    torch.manual_seed(0)
    # 3 classes: at random init 80 classes share the probability below the 0.05 threshold.
    classes = {"num_classes": 3} if name.startswith("double_head") else {}
    model = create_model(name, min_size=128, max_size=160, post_nms_top_n=25, **classes).eval()
    images = [torch.rand(3, 90, 120), torch.rand(3, 200, 140)]
    with torch.no_grad():
        outputs = model(images)
    for output, image in zip(outputs, images, strict=True):
        keys = {"boxes", "scores", "objectness"}
        if model.postprocess_config.classifying:
            keys |= {"labels", "class_scores"}
        assert set(output) == keys
        count = len(output["boxes"])
        assert 0 < count <= 25
        assert all(len(value) == count for value in output.values())
        assert torch.all(output["scores"][:-1] >= output["scores"][1:])
        boxes = output["boxes"]
        assert boxes.min() >= 0
        assert boxes[:, 2].max() <= image.shape[-1] + 1e-3
        assert boxes[:, 3].max() <= image.shape[-2] + 1e-3


@pytest.mark.parametrize("name", TWO_STAGE)
def test_losses_are_finite_with_crowd_only_and_empty_images(name):
    torch.manual_seed(0)
    model = create_model(name, min_size=96, max_size=96).train()
    targets = [
        {
            "boxes": torch.tensor([[10.0, 10.0, 60.0, 70.0]]),
            "labels": torch.tensor([0]),
            "ignore": torch.tensor([True]),
        },
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
    ]
    losses = model([torch.rand(3, 96, 96), torch.rand(3, 96, 96)], targets)
    assert losses and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    with pytest.raises(ValueError, match="needs targets"):
        model([torch.rand(3, 96, 96)])


def test_owp_recipe_freezes_double_head_classification_and_frozen_its_localization():
    model = create_model("double_head_tiny", num_classes=3)
    parameter_groups(model, "owp", 0.01)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(
        n.startswith(("roi_heads.box_head.fc_branch.", "roi_heads.box_predictor.cls_score"))
        for n in frozen
    )
    model = create_model("double_head_tiny", num_classes=3)
    parameter_groups(model, "frozen", 0.01)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert any(n.startswith("rpn.") for n in frozen)
    assert any(n.startswith("roi_heads.box_head.conv_branch.") for n in frozen)
    assert not any(n.startswith("roi_heads.box_head.fc_branch.") for n in frozen)


@pytest.fixture(scope="module")
def mini_set(synthetic_set_factory):
    return synthetic_set_factory(num_train=16, num_val=4, image_size=128, seed=4)


def mini_config(name, folder, max_iters):
    config = apply_overrides(
        load_preset(PRESET_OF[name]),
        [
            f"data.train={folder}",
            f"data.val={folder}",
            "data.num_workers=0",
            "model.min_size=128",
            "model.max_size=128",
            # Fewer RoIs than the papers' 2000 / 512 keep the CPU test quick.
            "model.rpn_post_nms_top_n_train=300",
            "model.rpn_post_nms_top_n_test=300",
            "model.box_batch_size_per_image=128",
            "train.batch_size=4",
            "train.warmup_iters=2",
            "train.log_period=1",
            "train.base_lr=0.02",
            "eval.max_dets=[10, 100]",
        ],
    )
    return replace(config, train=replace(config.train, max_iters=max_iters, checkpoint_period=100))


@pytest.fixture(scope="module")
def four_images(synthetic_set_factory):
    return synthetic_set_factory(num_train=4, num_val=4, image_size=128, seed=4)


@pytest.mark.parametrize("name", TWO_STAGE)
def test_twenty_steps_lower_the_loss(name, four_images, tmp_path):
    # The same four unflipped images every step: the loss must fall as the model fits them
    # (on fresh batches a 20-step two-stage total is too noisy to show a trend).
    torch.manual_seed(0)
    config = apply_overrides(
        mini_config(name, four_images, 20), ["data.horizontal_flip=0", "train.base_lr=0.04"]
    )
    result = train(config, tmp_path / "run", progress=False)
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    totals = [float(row.split(",")[header.index("total")]) for row in rows[1:]]
    assert len(totals) == 20
    # At least 5 % in 20 steps (OLN's losses, with its own normalisers, fall ~7 %).
    assert sum(totals[-5:]) / 5 < 0.95 * sum(totals[:5]) / 5
    assert {"AR@10", "AR@100"} <= set(result.metrics)
    assert type(load(tmp_path / "run")).__name__ == type(create_model(name)).__name__


@pytest.mark.parametrize("name", TWO_STAGE)
def test_eval_and_predict_through_the_cli(name, mini_set, tmp_path, capsys):
    run = tmp_path / "run"
    train(mini_config(name, mini_set, 2), run, progress=False)
    scoring = "rpn"
    assert main(["eval", str(run), "--data", str(mini_set), "--scoring", scoring,
                 "--out", str(tmp_path / "eval")]) == 0  # fmt: skip
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["scoring"] == scoring and "AR@100" in metrics
    if name == "double_head_tiny":
        assert metrics["detection_scoring"] == "cls" and "AP" in metrics
        # Without --scoring the run's own eval settings apply: RPN proposals, class detections.
        assert main(["eval", str(run), "--data", str(mini_set), "--out", str(tmp_path / "e2")]) == 0
        metrics = json.loads((tmp_path / "e2" / "metrics.json").read_text())
        assert (metrics["scoring"], metrics["detection_scoring"]) == ("rpn", "cls")
    out = tmp_path / "pred"
    assert main(["predict", str(run), str(mini_set / "val"), "--out", str(out)]) == 0
    records = json.loads(next(out.glob("*.json")).read_text())
    assert records and all({"bbox", "score", "objectness"} <= set(r) for r in records)
    if name == "double_head_tiny":
        assert all("label" in r and "class_score" in r for r in records)
    assert main(["eval", str(run), "--data", str(mini_set), "--scoring", "magic"]) == 2
    assert "unknown scoring 'magic'" in capsys.readouterr().err

"""Several scorings (or proposals and detections) from one forward pass: the same results as one
pass per scoring, with the backbone run once per batch."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from owp.data.coco import CocoDetection
from owp.engine.batching import inference_batches, input_shape_of
from owp.engine.inference import evaluate_model, predict_dataset, predict_dataset_per_config
from owp.models.factory import create_model
from owp.testing import random_coco_problem

SIZES = {"min_size": 64, "max_size": 96}


@pytest.fixture(scope="module")
def dataset_files(tmp_path_factory):
    """6 noise images with COCO annotations of 2 categories, every one novel."""
    root = tmp_path_factory.mktemp("scorings")
    gt, _ = random_coco_problem(6, num_categories=2, max_gt=4, crowd_fraction=0.0, seed=3)
    rng = np.random.default_rng(1)
    (root / "images").mkdir()
    for info in gt["images"]:
        pixels = rng.integers(0, 256, size=(info["height"], info["width"], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / info["file_name"], quality=95)
    (root / "val.json").write_text(json.dumps(gt))
    (root / "split.yaml").write_text("name: novel-only\nbase: []\n")
    return root / "val.json", root / "images", root / "split.yaml"


def fcos_two_branches() -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("fcos_owp_tiny", objectness=["centerness", "iou"], **SIZES)
    with torch.no_grad():  # real boxes from random weights: spread the regression
        model.head.regression_head.bbox_reg.bias.fill_(1.0)
    return model.eval()


def oln() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("oln_tiny", **SIZES).eval()


def num_batches(model: torch.nn.Module, dataset: CocoDetection, batch_size: int) -> int:
    sizes = [(info["height"], info["width"]) for info in dataset.images]
    return len(inference_batches(sizes, batch_size, input_shape_of(model)))


def count_backbone_calls(model: torch.nn.Module) -> list[int]:
    calls = [0]
    model.backbone.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize(
    ("make_model", "scorings"),
    [(fcos_two_branches, ("iou", "centerness", "geomean")), (oln, ("oln", "rpn"))],
    ids=["fcos", "oln"],
)
def test_one_pass_per_config_equals_one_pass_per_scoring(dataset_files, make_model, scorings):
    ann_file, images, _ = dataset_files
    dataset = CocoDetection(images, ann_file, "all", training=False)
    model = make_model()
    configs = [replace(model.postprocess_config, scoring=s, post_nms_top_n=50) for s in scorings]
    calls = count_backbone_calls(model)
    together = predict_dataset_per_config(model, dataset, configs, batch_size=3, num_workers=0)
    assert calls[0] == num_batches(model, dataset, 3) < len(dataset)  # not once per scoring
    assert model.postprocess_config.scoring == scorings[0]  # the model's own config is kept
    for config, results in zip(configs, together, strict=True):
        model.postprocess_config = config
        alone = predict_dataset(model, dataset, batch_size=3, num_workers=0)
        assert len(results) > 0
        assert results == alone
    first, second = together[0], together[1]
    assert [r["score"] for r in first] != [r["score"] for r in second]  # really re-scored


def test_extra_scorings_are_evaluated_from_the_same_pass(dataset_files, tmp_path):
    ann_file, images, split = dataset_files
    model = fcos_two_branches()
    batches = num_batches(model, CocoDetection(images, ann_file, split, training=False), 3)
    calls = count_backbone_calls(model)
    budgets = {"max_dets": (10, 100), "batch_size": 3}
    metrics = evaluate_model(model, ann_file, images, split, **budgets, out_dir=tmp_path,
                             extra_proposal_scorings=["centerness", "iou"])  # fmt: skip
    assert calls[0] == batches
    assert metrics["scoring"] == "iou"
    assert sorted((tmp_path).glob("proposals*.json")) == [
        tmp_path / "proposals.centerness.json",
        tmp_path / "proposals.json",
    ]  # the model's own scoring is not evaluated twice
    alone = evaluate_model(model, ann_file, images, split, **budgets, out_dir=tmp_path / "alone",
                           proposal_scoring="centerness")  # fmt: skip
    same = (tmp_path / "alone" / "proposals.json").read_text()
    assert (tmp_path / "proposals.centerness.json").read_text() == same
    assert (tmp_path / "proposals.json").read_text() != same
    for key in ("AR@10", "AR@100", "AR_small@100"):
        assert metrics[f"centerness/{key}"] == alone[key]
    assert "iou/AR@10" not in metrics
    again = evaluate_model(model, ann_file, images, split, **budgets, out_dir=tmp_path,
                           extra_proposal_scorings=["centerness"], reuse=True)  # fmt: skip
    assert again["reused"] == ["proposals.json", "proposals.centerness.json"]
    assert calls[0] == 2 * batches  # the `alone` evaluation; the reused one ran nothing
    assert again["centerness/AR@100"] == metrics["centerness/AR@100"]

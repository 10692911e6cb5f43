"""Batched inference: batches of one padded input shape, results independent of the batch size
(eval, predict), in input order; several scorings (or proposals and detections) from one
forward pass, with the same results as one pass per scoring."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from owp.data.coco import CocoDetection
from owp.engine.batching import inference_batches, input_shape_of
from owp.engine.inference import evaluate_model, predict_dataset, predict_dataset_per_config
from owp.models.registry import create_model
from owp.testing import random_coco_problem
from owp.workflows.predict import aspect_batches, predict_images_to_files

SIZES = {"min_size": 64, "max_size": 96}


@pytest.fixture(scope="module")
def dataset_files(tmp_path_factory):
    """12 noise images of 200..640 px a side (many aspect ratios) with COCO annotations."""
    root = tmp_path_factory.mktemp("mixed")
    gt, _ = random_coco_problem(12, num_categories=2, max_gt=4, crowd_fraction=0.0, seed=5)
    rng = np.random.default_rng(0)
    (root / "images").mkdir()
    for info in gt["images"]:
        pixels = rng.integers(0, 256, size=(info["height"], info["width"], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / info["file_name"], quality=95)
    (root / "val.json").write_text(json.dumps(gt))
    (root / "split.yaml").write_text("name: novel-only\nbase: []\n")
    return root / "val.json", root / "images"


def fcos_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("fcos_owp_tiny", **SIZES)
    with torch.no_grad():  # real boxes from random weights: spread the regression
        model.head.regression_head.bbox_reg.bias.fill_(1.0)
    return model.eval()


def two_stage_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("oln_tiny", **SIZES).eval()


def test_input_shape_follows_torchvisions_resize_and_padding():
    model = fcos_model()
    shape = input_shape_of(model)
    for height, width in [(200, 640), (427, 640), (640, 480), (333, 333), (201, 599)]:
        with torch.inference_mode():
            padded = model.transform([torch.zeros(3, height, width)])[0].tensors.shape[-2:]
        assert shape(height, width) == tuple(padded), (height, width)
    no_transform = SimpleNamespace(transform=None)  # e.g. an ONNX graph: the image size
    assert input_shape_of(no_transform)(10, 20) == (10, 20)


def test_batches_hold_one_input_shape_in_first_seen_order():
    sizes = [(100, 200), (50, 50), (100, 200), (100, 200), (50, 50)]
    assert inference_batches(sizes, 2) == [[0, 2], [3], [1, 4]]
    assert inference_batches(sizes, 1) == [[0], [2], [3], [1], [4]]
    assert inference_batches(sizes, 8, lambda h, w: (1, 1)) == [[0, 1, 2, 3, 4]]
    with pytest.raises(ValueError, match="at least 1"):
        inference_batches(sizes, 0)


def by_image_and_score(results):
    """Results per image, best first; boxes of one (rounded) score by position: a batch may
    swap two boxes whose scores tie."""
    position = {}
    for r in results:
        position.setdefault(r["image_id"], len(position))
    return sorted(results, key=lambda r: (position[r["image_id"]], -r["score"], r["bbox"]))


def assert_same_results(single, batched):
    assert [r["image_id"] for r in batched] == [r["image_id"] for r in single]
    assert len(single) > 0
    single, batched = by_image_and_score(single), by_image_and_score(batched)
    got = torch.tensor([r["bbox"] + [r["score"]] for r in batched], dtype=torch.float64)
    expected = torch.tensor([r["bbox"] + [r["score"]] for r in single], dtype=torch.float64)
    # Results are rounded to 0.01 px and 1e-5 score: a value on a rounding edge may differ by one
    # step, otherwise they agree within 1e-4.
    torch.testing.assert_close(got[:, 4], expected[:, 4], rtol=0, atol=1e-4 + 1e-5)
    torch.testing.assert_close(got[:, :4], expected[:, :4], rtol=0, atol=1e-4 + 0.01)


@pytest.mark.parametrize("make_model", [fcos_model, two_stage_model], ids=["fcos", "oln"])
def test_batched_predictions_equal_one_at_a_time(dataset_files, make_model):
    ann_file, images = dataset_files
    dataset = CocoDetection(images, ann_file, "all", training=False)
    model = make_model()
    sizes = [(info["height"], info["width"]) for info in dataset.images]
    batches = inference_batches(sizes, 4, input_shape_of(model))
    assert max(len(b) for b in batches) > 1 and len(batches) > 1  # real batches, several shapes
    single = predict_dataset(model, dataset, batch_size=1, num_workers=0)
    batched = predict_dataset(model, dataset, batch_size=4, num_workers=0)
    assert [r["image_id"] for r in single][0] == dataset.images[0]["id"]  # dataset order
    assert_same_results(single, batched)


def test_eval_metrics_do_not_depend_on_the_batch_size_and_are_reused(dataset_files, tmp_path):
    ann_file, images = dataset_files
    split = ann_file.parent / "split.yaml"
    model = fcos_model()
    one = evaluate_model(model, ann_file, images, split, max_dets=(10, 100), batch_size=1,
                         out_dir=tmp_path)  # fmt: skip
    four = evaluate_model(model, ann_file, images, split, max_dets=(10, 100), batch_size=4,
                          out_dir=tmp_path, reuse=True)  # fmt: skip
    assert four["reused"] == ["proposals.json"]  # the batch size is not part of the key
    fresh = evaluate_model(model, ann_file, images, split, max_dets=(10, 100), batch_size=4)
    for key in ("AR@10", "AR@100"):
        assert fresh[key] == pytest.approx(one[key], abs=1e-4)


def test_predict_images_batched_equals_one_at_a_time(dataset_files, tmp_path):
    _, images = dataset_files
    paths = sorted(images.glob("*.jpg"))
    model = fcos_model()
    batches = aspect_batches(paths, 3, input_shape_of(model))
    assert sorted(i for b in batches for i in b) == list(range(len(paths)))
    assert max(len(b) for b in batches) > 1
    single = predict_images_to_files(model, paths, tmp_path / "one", batch_size=1)
    batched = predict_images_to_files(model, paths, tmp_path / "three", batch_size=3)
    assert [p.name for p in batched.overlays] == [p.name for p in single.overlays]
    assert [p.stem for p in single.files] == [p.stem for p in paths]  # input order
    for first, second in zip(single.files, batched.files, strict=True):
        a, b = json.loads(first.read_text()), json.loads(second.read_text())
        assert len(a) == len(b) > 0
        a, b = (sorted(r, key=lambda r: (-r["score"], r["bbox"])) for r in (a, b))
        for x, y in zip(a, b, strict=True):
            assert x["bbox"] == pytest.approx(y["bbox"], abs=1e-4 + 0.01)
            assert x["score"] == pytest.approx(y["score"], abs=1e-4 + 1e-5)


def fcos_two_branches() -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("fcos_owp_tiny", objectness=["centerness", "iou"], **SIZES)
    with torch.no_grad():  # real boxes from random weights: spread the regression
        model.head.regression_head.bbox_reg.bias.fill_(1.0)
    return model.eval()


def num_batches(model: torch.nn.Module, dataset: CocoDetection, batch_size: int) -> int:
    sizes = [(info["height"], info["width"]) for info in dataset.images]
    return len(inference_batches(sizes, batch_size, input_shape_of(model)))


def count_backbone_calls(model: torch.nn.Module) -> list[int]:
    calls = [0]
    model.backbone.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize(
    ("make_model", "scorings"),
    [(fcos_two_branches, ("iou", "centerness", "geomean")), (two_stage_model, ("oln", "rpn"))],
    ids=["fcos", "oln"],
)
def test_one_pass_per_config_equals_one_pass_per_scoring(dataset_files, make_model, scorings):
    ann_file, images = dataset_files
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
    ann_file, images = dataset_files
    split = ann_file.parent / "split.yaml"
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

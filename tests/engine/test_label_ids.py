"""Labels travel as dataset category ids, through the model's own ids, end to end."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

import owp
from owp.config import apply_overrides, load_preset
from owp.data.coco import CocoDetection, read_coco_json
from owp.data.splits import resolve_split
from owp.engine.inference import evaluate_model, predict_dataset
from owp.engine.trainer import train
from owp.errors import OwpInputError
from owp.models.registry import create_model


@pytest.fixture(scope="module")
def mini_set(synthetic_set_factory):
    return synthetic_set_factory(num_train=8, num_val=3, image_size=96, seed=4)


def base_split(folder):
    coco = read_coco_json(folder / "val.json")
    return resolve_split(folder / "split.yaml", coco["categories"], folder / "val.json")


def classifier(num_classes: int):
    model = create_model(
        "fcos_owp_tiny", num_classes=num_classes, min_size=96, max_size=96, scoring="cls*iou"
    )
    return model.eval()


def test_labels_map_through_the_models_ids_not_the_split(mini_set) -> None:
    split = base_split(mini_set)
    dataset = CocoDetection(mini_set / "val", mini_set / "val.json", split, training=False)
    model = classifier(len(split.base_ids))
    model.category_ids = list(split.base_ids)
    in_order = predict_dataset(model, dataset, num_workers=0)
    model.category_ids = list(reversed(split.base_ids))
    reversed_ids = predict_dataset(model, dataset, num_workers=0)
    assert len(in_order) == len(reversed_ids) > 0
    for a, b in zip(in_order, reversed_ids, strict=True):
        label = split.base_ids.index(a["category_id"])
        assert b["category_id"] == model.category_ids[label]
        assert (a["image_id"], a["bbox"], a["score"]) == (b["image_id"], b["bbox"], b["score"])
    assert {r["category_id"] for r in in_order} <= set(split.base_ids)


def test_a_classifier_without_category_ids_is_refused(mini_set) -> None:
    split = base_split(mini_set)
    dataset = CocoDetection(mini_set / "val", mini_set / "val.json", split, training=False)
    with pytest.raises(OwpInputError, match="no dataset category ids"):
        predict_dataset(classifier(len(split.base_ids)), dataset, num_workers=0)


def test_a_classifier_of_other_classes_is_refused_naming_both(mini_set) -> None:
    split = base_split(mini_set)
    model = classifier(len(split.base_ids))
    model.category_ids = list(split.base_ids)
    model.class_names = [f"not-{name}" for name in split.base_names]
    with pytest.raises(OwpInputError) as info:
        evaluate_model(model, mini_set / "val.json", mini_set / "val", mini_set / "split.yaml")
    message = str(info.value)
    assert "not this dataset's" in message and "\n" not in message
    first = split.base_ids[0]
    assert f"{first} not-{split.base_names[0]}" in message
    assert f"{first} {split.base_names[0]}" in message


def test_a_trained_run_keeps_its_ids_and_evaluates_with_another_split(mini_set, tmp_path) -> None:
    config = apply_overrides(
        load_preset("synth-t1-joint"),
        [
            f"data.train={mini_set}",
            f"data.val={mini_set}",
            f"data.split={mini_set / 'split.yaml'}",
            "data.num_workers=0",
            "model.min_size=96",
            "model.max_size=96",
            "train.batch_size=2",
            "train.warmup_iters=1",
            "train.max_iters=1",
            "eval.max_dets=[10]",
        ],
    )
    config = replace(config, train=replace(config.train, device="cpu"))
    train(config, tmp_path / "run", progress=False)
    split = base_split(mini_set)
    model = owp.load(tmp_path / "run")
    assert model.category_ids == list(split.base_ids)
    assert model.class_names == list(split.base_names)
    # Evaluated with a split whose base side is a subset: labels still map through the run's
    # own ids (the split's contiguous indices would rename them).
    other = tmp_path / "other.yaml"
    other.write_text(f"base: {list(split.base_ids[2:])}\nnovel: rest\n")
    out = tmp_path / "eval"
    evaluate_model(
        model, mini_set / "val.json", mini_set / "val", other, max_dets=[10], out_dir=out
    )
    detections = json.loads((out / "detections.json").read_text())
    assert detections and {d["category_id"] for d in detections} <= set(split.base_ids)

"""The compact training index gives the targets the dict-based index gave, image by image.

The reference below is how ``CocoDetection`` built its targets before :mod:`owp.data.records`:
from the cleaned annotation dicts, per image, in Python.
"""

from __future__ import annotations

import json
import pickle
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import COCO_MINI
from owp.data.coco import BoxColumns, image_path, load_box_columns, load_instances, read_coco_json
from owp.data.dataset import CocoDetection
from owp.data.records import ImageRecords, build_records
from owp.data.splits import lvis_v1_novel_ids, resolve_split
from owp.data.synthetic import SynthConfig, generate_synthetic_dataset
from owp.errors import OwpInputError
from owp.testing import random_coco_problem, random_lvis_problem, write_lvis_dataset


def reference_targets(ann_file, split, training, pseudo_boxes=None, keep_empty=None):
    """(image entry, target) per item, computed from the dicts as before the records."""
    coco = read_coco_json(ann_file)
    split = resolve_split(split, coco["categories"], ann_file)
    per_image = defaultdict(list)
    for ann in coco["annotations"]:
        if split.is_base(ann["category_id"]):
            per_image[ann["image_id"]].append(ann)
    pseudo_boxes = pseudo_boxes or {}
    keep_empty = (not training) if keep_empty is None else keep_empty
    items = []
    for info in coco["images"]:
        anns = per_image[info["id"]]
        pseudo = pseudo_boxes.get(info["id"], [])
        if not (keep_empty or any(not a["iscrowd"] for a in anns) or pseudo):
            continue
        xyxy = [[x, y, x + w, y + h] for x, y, w, h in [a["bbox"] for a in anns] + pseudo]
        iscrowd = torch.tensor([int(a["iscrowd"]) for a in anns] + [0] * len(pseudo))
        labels = [split.label_of(a["category_id"]) for a in anns] + [-1] * len(pseudo)
        target = {
            "boxes": torch.tensor(xyxy, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "iscrowd": iscrowd.to(torch.int64),
            "ignore": iscrowd.bool(),
            "pseudo": torch.tensor([False] * len(anns) + [True] * len(pseudo), dtype=torch.bool),
            "image_id": int(info["id"]),
            "orig_size": torch.tensor([info["height"], info["width"]], dtype=torch.int64),
        }
        items.append((info, target))
    return items


def assert_same_targets(dataset: CocoDetection, reference) -> None:
    assert len(dataset) == len(reference)
    for index, (info, expected) in enumerate(reference):
        target = dataset.target_of(index)
        assert target.keys() == expected.keys()
        for key, value in expected.items():
            if isinstance(value, torch.Tensor):
                assert target[key].dtype == value.dtype, key
                assert torch.equal(target[key], value), (index, key)
            else:
                assert target[key] == value
        assert image_path(dataset.images_dir, dataset.images[index]) == image_path(
            dataset.images_dir, info
        )
    assert dataset.aspect_ratios() == [info["width"] / info["height"] for info, _ in reference]


def some_pseudo_boxes(ann_file: Path) -> dict[int, list[list[float]]]:
    """Pseudo boxes on every third image (also on images without a base box)."""
    images = read_coco_json(ann_file)["images"]
    return {
        img["id"]: [[1.5, 2.25, 10.1, 7.3], [0.0, 0.0, img["width"] / 3, img["height"] / 7]]
        for img in images[::3]
    }


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("pseudo", [False, True])
def test_coco_mini(training: bool, pseudo: bool) -> None:
    if not COCO_MINI.is_dir():
        pytest.skip("coco-mini is not here (../shared/data/coco-mini)")
    ann_file = COCO_MINI / "annotations.json"
    boxes = some_pseudo_boxes(ann_file) if pseudo else None
    dataset = CocoDetection(
        COCO_MINI / "images", ann_file, "coco-voc", training=training, pseudo_boxes=boxes
    )
    assert_same_targets(dataset, reference_targets(ann_file, "coco-voc", training, boxes))
    image, target = dataset[0]
    assert image.shape[-2:] == tuple(target["orig_size"].tolist())


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("synth")
    generate_synthetic_dataset(folder, SynthConfig(num_train=12, num_val=2, image_size=64, seed=2))
    return folder


@pytest.mark.parametrize("keep_empty", [None, True, False])
def test_synthetic_set(synthetic: Path, keep_empty: bool | None) -> None:
    ann_file = synthetic / "train.json"
    split = synthetic / "split.yaml"
    boxes = some_pseudo_boxes(ann_file)
    dataset = CocoDetection(
        synthetic / "train", ann_file, split, keep_empty=keep_empty, pseudo_boxes=boxes
    )
    assert_same_targets(dataset, reference_targets(ann_file, split, True, boxes, keep_empty))


def test_generated_coco_file_with_crowd_and_empty_images(tmp_path: Path) -> None:
    gt, _ = random_coco_problem(40, num_categories=6, crowd_fraction=0.4, max_dets=0, seed=4)
    ann_file = tmp_path / "train.json"
    ann_file.write_text(json.dumps(gt))
    split = tmp_path / "split.yaml"
    split.write_text("base: [2, 4, 5]\nnovel: rest\n")
    dataset = CocoDetection(tmp_path, ann_file, split)
    reference = reference_targets(ann_file, split, True)
    assert len(reference) < len(gt["images"])  # images with crowd or no base box are skipped
    assert_same_targets(dataset, reference)


def test_lvis_style_file(tmp_path: Path) -> None:
    novel = lvis_v1_novel_ids()[:3]
    gt, _ = random_lvis_problem(
        15, category_ids=sorted((1, 2, 3, 5) + novel), mean_gt=5, image_sizes=(48, 96), seed=1
    )
    ann_file = write_lvis_dataset(tmp_path, gt, part="train")
    assert "file_name" not in read_coco_json(ann_file)["images"][0]
    for images in (tmp_path / "coco", tmp_path / "coco" / "train2017"):
        dataset = CocoDetection(images, ann_file, "lvis-v1", training=True)
        assert_same_targets(dataset, reference_targets(ann_file, "lvis-v1", True))
        assert "coco_url" in dataset.images[0]


def test_one_read_only_buffer_that_pickles_once() -> None:
    images = [
        {"id": 7, "file_name": "a.jpg", "width": 10, "height": 20},
        {"id": 3, "coco_url": "http://x/val2017/b.jpg", "width": 30, "height": 15},
        {"id": 9, "file_name": "ü.jpg", "width": 5, "height": 5},
    ]
    annotations = [
        {"image_id": 3, "category_id": 2, "bbox": [1, 2, 3, 4], "iscrowd": 0},
        {"image_id": 7, "category_id": 5, "bbox": [0.5, 0.5, 1, 1], "iscrowd": 1},
        {"image_id": 3, "category_id": 5, "bbox": [2, 2, 2, 2], "iscrowd": 0},
        {"image_id": 9, "category_id": 4, "bbox": [1, 1, 1, 1], "iscrowd": 0},  # not base
    ]
    records = build_records(
        images,
        BoxColumns.of(annotations),
        (5, 2),
        keep_empty=False,
        pseudo_boxes={9: [[0, 0, 2, 2]], 4: [[1, 1, 1, 1]]},  # image 4 is not listed
    )
    assert len(records) == 2  # image 7 holds only a crowd box
    assert [records.info(i) for i in range(2)] == [
        {"id": 3, "width": 30, "height": 15, "coco_url": "http://x/val2017/b.jpg"},
        {"id": 9, "width": 5, "height": 5, "file_name": "ü.jpg"},
    ]
    assert records.boxes[records.rows(0)].tolist() == [[1, 2, 3, 4], [2, 2, 2, 2]]
    assert records.labels.tolist() == [1, 0, -1]  # label i is base_ids[i]
    assert records.pseudo.tolist() == [False, False, True]
    for name in ImageRecords.COLUMNS:
        column = getattr(records, name)
        assert column.base is records._buffer and not column.flags.writeable
    copy = pickle.loads(pickle.dumps(records))
    assert len(pickle.dumps(records)) < records.nbytes + 2000
    for name in ImageRecords.COLUMNS:
        assert np.array_equal(getattr(copy, name), getattr(records, name))
    assert list(copy.images) == list(records.images)


def quirky_file() -> dict:
    """Every repair and default the cleaning applies, and numbers of every JSON kind."""
    images = [
        {"id": 5, "file_name": "a.jpg", "width": 100, "height": 80},
        {"id": -2, "file_name": "b.jpg", "width": 50, "height": 50},
    ]
    annotations = [
        {"id": 10, "image_id": 5, "category_id": 1, "bbox": [10, 10, 20, 20], "iscrowd": 0},
        {"image_id": 5, "category_id": 1, "bbox": [-3.5, 70.25, 30, 20]},  # clipped, no id
        {"id": None, "image_id": -2, "category_id": 2, "bbox": [0.4, 0.2, 50, 49.9]},
        {"id": -7, "image_id": -2, "category_id": 2, "bbox": [1, 1, 0, 5], "area": 3},  # w = 0
        {"id": 11, "image_id": -2, "category_id": 1, "bbox": [60, 1, 5, 5]},  # outside
        {"id": 12, "image_id": 5, "category_id": 2, "bbox": [1e-3, 2, 3, 4], "iscrowd": None},
        {"id": 13, "image_id": 5, "category_id": 2, "bbox": [1, 2, 3, 4], "iscrowd": 1,
         "area": 7.5, "segmentation": {"counts": "abc", "size": [80, 100]}},
    ]  # fmt: skip
    categories = [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}]
    return {"images": images, "annotations": annotations, "categories": categories}


@pytest.mark.parametrize(
    "change",
    [
        None,
        lambda d: d["annotations"][0].update(iscrowd=True),  # typed read refuses; dicts read it
        # NaN in a segmentation: msgspec refuses the file, the standard library reads it
        lambda d: d["annotations"][1].update(segmentation=[[float("nan")] * 6]),
    ],
)
def test_typed_reading_equals_the_dicts(tmp_path: Path, change, monkeypatch) -> None:
    data = quirky_file()
    if change:
        change(data)
    path = tmp_path / "quirky.json"
    path.write_text(json.dumps(data))
    with monkeypatch.context() as patch:
        if change is None:  # the typed reading alone, without the dicts
            patch.setattr("owp.data.coco.read_coco_json", None)
        coco, columns = load_box_columns(path)
    expected, _ = load_instances(path)
    assert coco["images"] == expected["images"] and coco["categories"] == expected["categories"]
    reference = BoxColumns.of(expected["annotations"])
    for name in ("image_ids", "category_ids", "boxes", "iscrowd"):
        assert np.array_equal(getattr(columns, name), getattr(reference, name)), name
    assert columns.boxes.dtype == np.float64 and columns.iscrowd.dtype == np.int64


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["annotations"][2].update(image_id=99),
        lambda d: d["annotations"][2].update(category_id=3),
        lambda d: d["annotations"][2].update(id=10),
        lambda d: d["annotations"][2].update(bbox=[1, 2, 3]),
        lambda d: d["annotations"][2].update(area=-1),
        lambda d: d["annotations"][2].update(iscrowd="x"),
        lambda d: d["images"][1].update(width=0),
        lambda d: d.pop("categories"),
    ],
)
def test_typed_reading_words_errors_as_the_dicts(tmp_path: Path, change) -> None:
    data = quirky_file()
    change(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(OwpInputError) as expected:
        load_instances(path)
    with pytest.raises(OwpInputError) as got:
        load_box_columns(path)
    assert str(got.value) == str(expected.value)


def test_a_subset_is_the_chosen_items(tmp_path: Path) -> None:
    gt, _ = random_coco_problem(12, num_categories=3, crowd_fraction=0.3, max_dets=0, seed=6)
    ann_file = tmp_path / "train.json"
    ann_file.write_text(json.dumps(gt))
    dataset = CocoDetection(tmp_path, ann_file, training=False)
    chosen = [5, 0, 11, 3]
    subset = dataset.subset(chosen)
    assert len(subset) == 4 and len(dataset) == 12
    for position, index in enumerate(chosen):
        expected, got = dataset.target_of(index), subset.target_of(position)
        assert all(
            torch.equal(got[k], v) if isinstance(v, torch.Tensor) else got[k] == v
            for k, v in expected.items()
        )
        assert subset.images[position] == dataset.images[index]
    assert len(dataset.subset([])) == 0

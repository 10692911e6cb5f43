"""Tests of COCO annotation reading, box repairs, the split-aware dataset and file discovery."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from owp.data.coco import (
    BoxRepairs,
    CocoDetection,
    find_annotation_file,
    find_image_folder,
    image_path,
    load_instances,
    read_coco_json,
    subset_categories,
)
from owp.data.splits import SplitSpec, builtin_split
from owp.errors import OwpInputError

CATEGORIES = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "kite"}]


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def minimal() -> dict[str, Any]:
    """One 100x80 image with one cat box."""
    return {
        "images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 80}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]}],
        "categories": [{"id": 1, "name": "cat"}],
    }


def with_boxes(*boxes: list[float]) -> dict[str, Any]:
    """The minimal file with one cat annotation (no id) per box."""
    data = minimal()
    data["annotations"] = [{"image_id": 1, "category_id": 1, "bbox": box} for box in boxes]
    return data


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(OwpInputError) as info:
        call(*args, **kwargs)
    return str(info.value)


# --- reading and validation --------------------------------------------------------------------


def test_read_valid_file_fills_defaults(tmp_path: Path) -> None:
    data = minimal()
    data["info"] = {"year": 2024}
    path = write_json(tmp_path / "a.json", data)
    coco = read_coco_json(path)
    assert coco["info"] == {"year": 2024}
    assert coco["images"] == data["images"]
    assert coco["categories"] == data["categories"]
    (ann,) = coco["annotations"]
    assert ann == {
        "id": 1,
        "image_id": 1,
        "category_id": 1,
        "bbox": [10, 10, 20, 20],
        "area": 400.0,
        "iscrowd": 0,
    }


def test_given_area_and_iscrowd_are_kept(tmp_path: Path) -> None:
    data = minimal()
    data["annotations"][0].update(area=123.5, iscrowd=1)
    data["annotations"].append(
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 4], "iscrowd": None}
    )
    data["annotations"].append(
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 4], "iscrowd": True}
    )
    anns = read_coco_json(write_json(tmp_path / "a.json", data))["annotations"]
    assert [a["area"] for a in anns] == [123.5, 20.0, 20.0]
    assert [a["iscrowd"] for a in anns] == [1, 0, 1]


def test_missing_annotation_ids_are_assigned(tmp_path: Path) -> None:
    data = with_boxes([0, 0, 5, 5], [1, 1, 5, 5], [2, 2, 5, 5], [3, 3, 5, 5])
    data["annotations"][0]["id"] = 5
    data["annotations"][2]["id"] = 3
    anns = read_coco_json(write_json(tmp_path / "a.json", data))["annotations"]
    assert [a["id"] for a in anns] == [5, 6, 3, 7]
    assert [a["bbox"][0] for a in anns] == [0, 1, 2, 3]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    assert error_of(read_coco_json, path) == f"{path}: annotation file not found"


def test_folder_instead_of_file(tmp_path: Path) -> None:
    message = error_of(load_instances, tmp_path)
    assert message == f"{tmp_path}: is a folder, expected an annotation file"


def test_malformed_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n"images": []\n"annotations": []}', encoding="utf-8")
    message = error_of(read_coco_json, path)
    assert message == f"{path}: malformed JSON at line 3 column 1: Expecting ',' delimiter"


def test_json_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bin.json"
    path.write_bytes(b'{"images": "\xff"}')
    assert error_of(read_coco_json, path) == f"{path}: malformed JSON: not UTF-8 text"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([minimal()], "not a COCO instances file (top level is not an object)"),
        ("text", "not a COCO instances file (top level is not an object)"),
        ({"annotations": [], "categories": []}, "not a COCO instances file: missing 'images'"),
        ({"images": [], "categories": []}, "not a COCO instances file: missing 'annotations'"),
        ({"images": [], "annotations": []}, "not a COCO instances file: missing 'categories'"),
        ({"images": {}, "annotations": [], "categories": []}, "'images' must be a list"),
    ],
    ids=["list", "string", "no-images", "no-annotations", "no-categories", "images-dict"],
)
def test_structure_errors(tmp_path: Path, data: Any, expected: str) -> None:
    path = write_json(tmp_path / "s.json", data)
    assert error_of(read_coco_json, path) == f"{path}: {expected}"


def _set(section: str, index: int, **changes: Any):
    def change(data: dict[str, Any]) -> None:
        data[section][index].update(changes)

    return change


def _append(section: str, entry: Any):
    def change(data: dict[str, Any]) -> None:
        data[section].append(entry)

    return change


def _drop(section: str, index: int, key: str):
    def change(data: dict[str, Any]) -> None:
        del data[section][index][key]

    return change


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_set("annotations", 0, image_id=99), "annotation 1 refers to image id 99, which is not"),
        (_drop("annotations", 0, "image_id"), "annotation 1 refers to image id None"),
        (_set("annotations", 0, category_id=7), "annotation 1 has unknown category id 7"),
        (_set("annotations", 0, bbox=[1, 2, 3]), "annotation 1 has no valid 'bbox'"),
        (_set("annotations", 0, bbox=[1, 2, 3, float("nan")]), "annotation 1 has no valid 'bbox'"),
        (_set("annotations", 0, bbox=[1, 2, float("inf"), 3]), "annotation 1 has no valid 'bbox'"),
        (_set("annotations", 0, bbox="1,2,3,4"), "annotation 1 has no valid 'bbox'"),
        (_set("annotations", 0, bbox=["1", 2, 3, 4]), "annotation 1 has no valid 'bbox'"),
        (_set("annotations", 0, bbox=[True, 2, 3, 4]), "annotation 1 has no valid 'bbox'"),
        (_drop("annotations", 0, "bbox"), "annotation 1 has no valid 'bbox'"),
        (_append("annotations", [1, 2]), "annotations[1] is not an object"),
        (
            _append("annotations", {"image_id": 1, "category_id": 1, "bbox": [0, 0, 1]}),
            "annotation #1 has no valid 'bbox'",
        ),
        (
            _append("annotations", {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0] * 4}),
            "duplicate annotation id 1",
        ),
        (_append("images", {"id": 1, "file_name": "b.png", "width": 5, "height": 5}), "id 1 in"),
        (_append("categories", {"id": 1, "name": "cat2"}), "duplicate id 1 in 'categories'"),
        (_drop("images", 0, "id"), "'images'[0] has no integer 'id'"),
        (_set("images", 0, id="1"), "'images'[0] has no integer 'id'"),
        (_set("images", 0, file_name=""), "image 1 has an invalid 'file_name'"),
        (_set("images", 0, coco_url=7), "image 1 has an invalid 'coco_url'"),
        (_set("images", 0, neg_category_ids=[1, "x"]), "invalid 'neg_category_ids'"),
        (_set("images", 0, not_exhaustive_category_ids=3), "invalid 'not_exhaustive_category_ids'"),
        (_set("images", 0, width=0), "image 1 has no positive integer 'width'"),
        (_set("images", 0, height=8.5), "image 1 has no positive integer 'height'"),
        (_drop("categories", 0, "name"), "category 1 has no 'name'"),
        (_set("annotations", 0, area="big"), "annotation 1 has an invalid 'area'"),
        (_set("annotations", 0, area=-4), "annotation 1 has an invalid 'area'"),
        (_set("annotations", 0, area=float("nan")), "annotation 1 has an invalid 'area'"),
        (_set("annotations", 0, iscrowd="yes"), "annotation 1 has an invalid 'iscrowd'"),
        (_set("annotations", 0, iscrowd=float("inf")), "annotation 1 has an invalid 'iscrowd'"),
    ],
    ids=lambda value: None if callable(value) else value[:40],
)
def test_content_errors_start_with_the_path(tmp_path: Path, change, expected: str) -> None:
    data = minimal()
    change(data)
    path = write_json(tmp_path / "instances.json", data)
    message = error_of(load_instances, path)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_duplicate_image_ids_message(tmp_path: Path) -> None:
    data = minimal()
    data["images"].append({"id": 1, "file_name": "b.png", "width": 5, "height": 5})
    path = write_json(tmp_path / "d.json", data)
    assert error_of(read_coco_json, path) == f"{path}: duplicate id 1 in 'images'"


# --- box repairs -------------------------------------------------------------------------------


def test_box_repairs_drop_clip_and_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = with_boxes(
        [10, 10, 0, 5],  # zero width: dropped
        [10, 10, 5, -1],  # negative height: dropped
        [150, 10, 10, 10],  # right of the image: dropped
        [-20, 10, 10, 10],  # left of the image: dropped
        [100, 10, 10, 10],  # starts on the right edge: dropped
        [90, 70, 20, 15],  # overshoots by 10 and 5 px: clipped, counted
        [-1.5, 0, 10, 10],  # overshoots by 1.5 px: clipped, counted
        [-0.5, 0, 10, 80.5],  # overshoots by 0.5 px: clipped silently
        [99, 0, 2, 10],  # overshoots by exactly 1 px: clipped silently
        [0, 0, 100, 80],  # the whole image: kept as is
    )
    path = write_json(tmp_path / "r.json", data)
    with caplog.at_level(logging.WARNING, logger="owp.data.coco"):
        coco, repairs = load_instances(path)
    assert repairs == BoxRepairs(degenerate=2, outside=3, clipped=2)
    boxes = [a["bbox"] for a in coco["annotations"]]
    assert boxes == [
        [90.0, 70.0, 10.0, 10.0],
        [0.0, 0.0, 8.5, 10.0],
        [0.0, 0.0, 9.5, 80.0],
        [99.0, 0.0, 1.0, 10.0],
        [0, 0, 100, 80],
    ]
    assert [a["area"] for a in coco["annotations"]] == [100.0, 85.0, 760.0, 10.0, 8000.0]
    # dropped boxes keep their assigned ids: ids follow the file order
    assert [a["id"] for a in coco["annotations"]] == [6, 7, 8, 9, 10]
    records = [r for r in caplog.records if r.name == "owp.data.coco"]
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    assert records[0].getMessage() == (
        f"{path}: dropped 2 boxes with non-positive width or height; "
        "dropped 3 boxes lying outside their image; clipped 2 boxes to their image"
    )


def test_small_overshoot_is_not_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_json(tmp_path / "r.json", with_boxes([-1, -0.25, 101, 81]))
    with caplog.at_level(logging.WARNING, logger="owp.data.coco"):
        coco, repairs = load_instances(path)
    assert repairs == BoxRepairs()
    assert repairs.describe() == ""
    assert coco["annotations"][0]["bbox"] == [0.0, 0.0, 100.0, 80.0]
    assert not [r for r in caplog.records if r.name == "owp.data.coco"]


def test_only_clipping_is_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_json(tmp_path / "r.json", with_boxes([95, 0, 10, 10]))
    with caplog.at_level(logging.WARNING, logger="owp.data.coco"):
        _, repairs = load_instances(path)
    assert repairs == BoxRepairs(clipped=1)
    messages = [r.getMessage() for r in caplog.records if r.name == "owp.data.coco"]
    assert messages == [f"{path}: clipped 1 boxes to their image"]


# --- CocoDetection -----------------------------------------------------------------------------

COLOR_A = (255, 0, 51)
COLOR_C = (0, 102, 255)


def make_dataset(root: Path) -> tuple[Path, Path]:
    """Three PNG images: a.png (cat, dog, kite, crowd cat), b.png (kite only), c.png (dog)."""
    images = root / "images"
    images.mkdir(parents=True)
    Image.new("RGB", (40, 30), COLOR_A).save(images / "a.png")
    Image.new("RGB", (20, 10), (9, 9, 9)).save(images / "b.png")
    Image.new("RGB", (16, 24), COLOR_C).save(images / "c.png")
    data = {
        "images": [
            {"id": 10, "file_name": "a.png", "width": 40, "height": 30},
            {"id": 20, "file_name": "b.png", "width": 20, "height": 10},
            {"id": 30, "file_name": "c.png", "width": 16, "height": 24},
        ],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 1, "bbox": [2, 3, 10, 5]},
            {"id": 2, "image_id": 10, "category_id": 3, "bbox": [0, 0, 5, 5]},
            {"id": 3, "image_id": 10, "category_id": 2, "bbox": [10.5, 4.25, 20, 15]},
            {"id": 4, "image_id": 10, "category_id": 1, "bbox": [20, 10, 15, 12], "iscrowd": 1},
            {"id": 5, "image_id": 20, "category_id": 3, "bbox": [1, 1, 4, 4]},
            {"id": 6, "image_id": 30, "category_id": 2, "bbox": [1, 2, 3, 4]},
        ],
        "categories": copy.deepcopy(CATEGORIES),
    }
    ann_file = write_json(root / "val.json", data)
    split_file = root / "split.yaml"
    split_file.write_text("base: [cat, dog]\nnovel: [kite]\n", encoding="utf-8")
    return images, ann_file


@pytest.fixture
def dataset_files(tmp_path: Path) -> tuple[Path, Path]:
    return make_dataset(tmp_path)


def test_items_for_base_classes(dataset_files: tuple[Path, Path]) -> None:
    images, ann_file = dataset_files
    ds = CocoDetection(images, ann_file, ann_file.parent / "split.yaml")
    assert ds.split.base_ids == (1, 2) and ds.split.novel_ids == (3,)
    assert len(ds) == 2  # b.png has only a novel box
    assert [img["id"] for img in ds.images] == [10, 30]

    image, target = ds[0]
    assert image.dtype == torch.float32
    assert image.shape == (3, 30, 40)
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    expected_pixel = torch.tensor([c / 255 for c in COLOR_A])
    assert torch.allclose(image[:, 0, 0], expected_pixel)
    assert torch.allclose(image[:, 29, 39], expected_pixel)

    assert set(target) == {
        "boxes",
        "labels",
        "iscrowd",
        "ignore",
        "pseudo",
        "image_id",
        "orig_size",
    }
    assert not target["pseudo"].any()
    assert target["boxes"].dtype == torch.float32
    assert target["boxes"].tolist() == [
        [2.0, 3.0, 12.0, 8.0],
        [10.5, 4.25, 30.5, 19.25],
        [20.0, 10.0, 35.0, 22.0],
    ]
    assert target["labels"].dtype == torch.int64
    assert target["labels"].tolist() == [0, 1, 0]
    assert target["iscrowd"].dtype == torch.int64
    assert target["iscrowd"].tolist() == [0, 0, 1]
    assert target["ignore"].dtype == torch.bool
    assert target["ignore"].tolist() == [False, False, True]
    assert target["image_id"] == 10
    assert target["orig_size"].dtype == torch.int64
    assert target["orig_size"].tolist() == [30, 40]

    image, target = ds[1]
    assert image.shape == (3, 24, 16)
    assert torch.allclose(image[:, 5, 5], torch.tensor([c / 255 for c in COLOR_C]))
    assert target["boxes"].tolist() == [[1.0, 2.0, 4.0, 6.0]]
    assert target["labels"].tolist() == [1]
    assert target["image_id"] == 30
    assert target["orig_size"].tolist() == [24, 16]
    assert ds.aspect_ratios() == [40 / 30, 16 / 24]


def test_split_spec_and_default_all(dataset_files: tuple[Path, Path]) -> None:
    images, ann_file = dataset_files
    spec = SplitSpec("pets", base=("dog", "cat"), novel=None)
    ds = CocoDetection(images, ann_file, spec)
    assert ds.split.name == "pets"
    assert ds.split.novel_ids == (3,)
    assert ds.target_of(0)["labels"].tolist() == [0, 1, 0]

    everything = CocoDetection(images, ann_file)
    assert everything.split.base_ids == (1, 2, 3)
    assert len(everything) == 3
    assert everything.target_of(0)["labels"].tolist() == [0, 2, 1, 0]
    assert everything.target_of(1)["labels"].tolist() == [2]

    resolved = builtin_split("all").resolve(CATEGORIES)
    assert CocoDetection(images, ann_file, resolved).split is resolved


def test_image_with_only_novel_boxes_kept_on_request(dataset_files: tuple[Path, Path]) -> None:
    images, ann_file = dataset_files
    split = ann_file.parent / "split.yaml"
    kept = CocoDetection(images, ann_file, split, keep_empty=True)
    evaluation = CocoDetection(images, ann_file, split, training=False)
    skipped = CocoDetection(images, ann_file, split, training=False, keep_empty=False)
    assert [img["id"] for img in kept.images] == [10, 20, 30]
    assert [img["id"] for img in evaluation.images] == [10, 20, 30]
    assert [img["id"] for img in skipped.images] == [10, 30]
    image, target = evaluation[1]
    assert image.shape == (3, 10, 20)
    assert target["boxes"].shape == (0, 4)
    assert target["boxes"].dtype == torch.float32
    assert target["labels"].shape == (0,)
    assert target["labels"].dtype == torch.int64
    assert target["ignore"].shape == (0,)
    assert target["image_id"] == 20


def test_image_with_only_crowd_boxes_is_skipped(tmp_path: Path) -> None:
    images, ann_file = make_dataset(tmp_path)
    data = json.loads(ann_file.read_text())
    data["annotations"][-1]["iscrowd"] = 1  # c.png's only box becomes a crowd region
    write_json(ann_file, data)
    assert [img["id"] for img in CocoDetection(images, ann_file, "all").images] == [10, 20]
    ds = CocoDetection(images, ann_file, "all", training=False)
    assert ds.target_of(2)["ignore"].tolist() == [True]


def test_target_of_does_not_read_the_image(dataset_files: tuple[Path, Path]) -> None:
    images, ann_file = dataset_files
    ds = CocoDetection(images, ann_file, ann_file.parent / "split.yaml")
    (images / "c.png").unlink()
    assert ds.target_of(1)["boxes"].tolist() == [[1.0, 2.0, 4.0, 6.0]]


def test_transforms_are_applied(dataset_files: tuple[Path, Path]) -> None:
    images, ann_file = dataset_files
    calls = []

    def flip(image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
        calls.append(target["image_id"])
        return image.flip(-1), {**target, "flipped": True}

    ds = CocoDetection(images, ann_file, "all", transforms=flip)
    image, target = ds[2]
    assert calls == [30]
    assert image.shape == (3, 24, 16)
    assert target["flipped"] is True


def test_missing_image_file(dataset_files: tuple[Path, Path]) -> None:
    images, ann_file = dataset_files
    ds = CocoDetection(images, ann_file, "all")
    (images / "c.png").unlink()
    message = error_of(ds.__getitem__, 2)
    assert message == f"{images / 'c.png'}: image file not found"


def test_image_size_differs_from_annotations(dataset_files: tuple[Path, Path]) -> None:
    images, ann_file = dataset_files
    Image.new("RGB", (21, 10)).save(images / "b.png")
    ds = CocoDetection(images, ann_file, "all")
    message = error_of(ds.__getitem__, 1)
    assert message == f"{images / 'b.png'}: image is 21x10 but the annotations say 20x10"
    Image.new("RGB", (10, 20)).save(images / "b.png")  # transposed
    assert "image is 10x20 but the annotations say 20x10" in error_of(ds.__getitem__, 1)


def test_truncated_jpeg(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    pixels = torch.randint(0, 256, (48, 64, 3), generator=torch.Generator().manual_seed(0))
    Image.fromarray(pixels.to(torch.uint8).numpy()).save(images / "t.jpg", quality=95)
    data = (images / "t.jpg").read_bytes()
    (images / "t.jpg").write_bytes(data[: len(data) // 2])
    ann_file = write_json(
        tmp_path / "t.json",
        {
            "images": [{"id": 1, "file_name": "t.jpg", "width": 64, "height": 48}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 9, 9]}],
            "categories": [{"id": 1, "name": "cat"}],
        },
    )
    ds = CocoDetection(images, ann_file, "all")
    message = error_of(ds.__getitem__, 0)
    assert message.startswith(f"{images / 't.jpg'}: truncated image")


def test_dataset_input_errors(dataset_files: tuple[Path, Path], tmp_path: Path) -> None:
    images, ann_file = dataset_files
    missing = tmp_path / "no-images"
    assert error_of(CocoDetection, missing, ann_file) == f"{missing}: images folder not found"
    absent = tmp_path / "absent.json"
    assert error_of(CocoDetection, images, absent) == f"{absent}: annotation file not found"
    spec = SplitSpec("zoo", base=("cat", "zebra"), novel=None)
    message = error_of(CocoDetection, images, ann_file, spec)
    assert message.startswith(f"{ann_file}: split 'zoo'")
    assert message.endswith("absent from the dataset: zebra")


# --- finding files -----------------------------------------------------------------------------


def test_find_annotation_file(tmp_path: Path) -> None:
    file = write_json(tmp_path / "any.json", {})
    assert find_annotation_file(file) == file

    folder = tmp_path / "a"
    write_json(folder / "annotations.json", {})
    assert find_annotation_file(folder) == folder / "annotations.json"
    write_json(folder / "val.json", {})
    write_json(folder / "train.json", {})
    assert find_annotation_file(folder) == folder / "val.json"
    assert find_annotation_file(str(folder), part="train") == folder / "train.json"

    coco = tmp_path / "coco"
    write_json(coco / "annotations" / "instances_train2017.json", {})
    write_json(coco / "annotations" / "instances_val2017.json", {})
    assert find_annotation_file(coco) == coco / "annotations" / "instances_val2017.json"
    assert find_annotation_file(coco, "train") == coco / "annotations/instances_train2017.json"

    flat = tmp_path / "flat"
    write_json(flat / "instances_val2017.json", {})
    assert find_annotation_file(flat) == flat / "instances_val2017.json"


def test_find_annotation_file_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "annotations").mkdir(parents=True)
    write_json(empty / "train.json", {})
    message = error_of(find_annotation_file, empty)
    assert message.startswith(f"{empty}: no annotation file found in the folder")
    assert "val.json, annotations.json, annotations/instances_val*.json" in message
    nowhere = tmp_path / "nowhere"
    message = error_of(find_annotation_file, nowhere)
    assert message == f"{nowhere}: dataset not found (expected an instances JSON or a folder)"


def _listing(name: str = "x.png") -> dict[str, Any]:
    return {"images": [{"id": 1, "file_name": name, "width": 1, "height": 1}]}


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_find_image_folder(tmp_path: Path) -> None:
    stem = tmp_path / "stem"
    _touch(stem / "val" / "x.png")
    _touch(stem / "images" / "x.png")  # the stem folder comes first
    assert find_image_folder(stem / "val.json", _listing()) == stem / "val"

    images = tmp_path / "images-folder"
    _touch(images / "images" / "x.png")
    assert find_image_folder(images / "data.json", _listing()) == images / "images"

    beside = tmp_path / "beside"
    _touch(beside / "sub" / "x.png")
    assert find_image_folder(beside / "data.json", _listing("sub/x.png")) == beside

    coco = tmp_path / "coco"
    _touch(coco / "val2017" / "x.png")
    ann = coco / "annotations" / "instances_val2017.json"
    assert find_image_folder(ann, _listing()) == coco / "val2017"

    nested = tmp_path / "nested"
    _touch(nested / "images" / "val2017" / "x.png")
    ann = nested / "annotations" / "instances_val2017.json"
    assert find_image_folder(ann, _listing()) == nested / "images" / "val2017"


def test_find_image_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "val").mkdir()
    assert find_image_folder(tmp_path / "val.json", {"images": []}) == tmp_path / "val"
    assert find_image_folder(tmp_path / "test.json", {"images": []}) == tmp_path


def test_find_image_folder_not_found(tmp_path: Path) -> None:
    ann = tmp_path / "annotations" / "instances_val2017.json"
    message = error_of(find_image_folder, ann, _listing("gone.png"))
    assert message.startswith(f"{ann}: cannot find the images folder (none of the first 1 images")
    assert "'gone.png'" in message
    assert str(tmp_path / "val2017") in message
    assert message.endswith("pass the images folder explicitly")


# --- subset_categories -------------------------------------------------------------------------


def test_subset_categories() -> None:
    coco = {
        "info": {"v": 1},
        "images": [{"id": 1}, {"id": 2}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1},
            {"id": 2, "image_id": 2, "category_id": 3},
            {"id": 3, "image_id": 2, "category_id": 2},
        ],
        "categories": copy.deepcopy(CATEGORIES),
    }
    before = copy.deepcopy(coco)
    sub = subset_categories(coco, iter([3, 1]))
    assert sub["info"] == {"v": 1}
    assert sub["images"] == coco["images"]
    assert [a["id"] for a in sub["annotations"]] == [1, 2]
    assert [c["name"] for c in sub["categories"]] == ["cat", "kite"]
    assert coco == before
    assert subset_categories(coco, []) == {**before, "annotations": [], "categories": []}


@pytest.mark.parametrize(
    ("images_dir", "expected"),
    [
        ("datasets/coco", "datasets/coco/train2017/1.jpg"),
        ("data/coco2017", "data/coco2017/train2017/1.jpg"),
        ("data/mscoco2014", "data/mscoco2014/train2017/1.jpg"),
        ("data/coco/val2017", "data/coco/train2017/1.jpg"),
        ("data/coco/unlabeled2017", "data/coco/train2017/1.jpg"),
        ("data/coco/test2015", "data/coco/train2017/1.jpg"),
    ],
)
def test_lvis_image_path_under_a_coco_root_with_a_year(images_dir: str, expected: str) -> None:
    # Only (train|val|test|unlabeled)20NN are COCO image folders; a root named coco2017 or
    # mscoco2014 is the COCO root, not an image folder (issue 19, item 7).
    info = {"id": 1, "coco_url": "http://images.cocodataset.org/train2017/1.jpg"}
    assert image_path(Path(images_dir), info) == Path(expected)

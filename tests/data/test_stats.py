"""Tests of dataset statistics and the problem report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from owp.data.coco import BoxRepairs
from owp.data.splits import SplitSpec
from owp.data.stats import SIZE_BUCKETS, dataset_stats
from owp.errors import OwpInputError

CATEGORIES = [
    {"id": 1, "name": "cat"},
    {"id": 2, "name": "dog"},
    {"id": 3, "name": "kite"},
    {"id": 4, "name": "bird"},  # never annotated
    {"id": 5, "name": "fish"},  # on neither side of the split
]
SIZES = {1: (40, 30), 2: (20, 10), 3: (16, 24), 4: (10, 10)}


def annotation(ann_id: int, image_id: int, category_id: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [0, 0, 4, 4],
        **extra,
    }


def coco_data() -> dict[str, Any]:
    """Four images (c.png without annotations); areas put boxes in chosen size buckets."""
    return {
        "images": [
            {"id": i, "file_name": f"{'abcd'[i - 1]}.png", "width": w, "height": h}
            for i, (w, h) in SIZES.items()
        ],
        "annotations": [
            annotation(1, 1, 1, area=100),  # small
            annotation(2, 1, 1, area=1023.99),  # small: just under 32²
            annotation(3, 1, 2, area=1024),  # medium: exactly 32²
            annotation(4, 2, 2, area=9215.5),  # medium: just under 96²
            annotation(5, 2, 3, area=9216),  # large: exactly 96²
            annotation(6, 4, 5, area=0),  # small, category on neither side
            annotation(7, 1, 1, area=500, iscrowd=1),  # crowd: not a box
            annotation(8, 1, 1, bbox=[1, 1, 0, 5]),  # degenerate: dropped
            annotation(9, 2, 2, bbox=[50, 0, 5, 5]),  # outside the 20x10 image: dropped
            annotation(10, 2, 3, bbox=[15, 0, 10, 5]),  # clipped to 5x5: area 25, small
        ],
        "categories": CATEGORIES,
    }


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def ann_file(tmp_path: Path) -> Path:
    return write_json(tmp_path / "val.json", coco_data())


REPAIRS_LINE = (
    "dropped 1 boxes with non-positive width or height; "
    "dropped 1 boxes lying outside their image; clipped 1 boxes to their image"
)


def test_counts_without_split(ann_file: Path) -> None:
    stats = dataset_stats(ann_file)
    assert stats.num_images == 4
    assert stats.num_boxes == 7
    assert stats.num_crowd == 1
    assert stats.num_classes == 5
    assert stats.boxes_per_class == {1: 2, 2: 2, 3: 2, 5: 1}
    assert stats.boxes_per_side == {"all": 7}
    assert stats.sizes_per_side == {"all": {"small": 4, "medium": 2, "large": 1}}
    assert stats.images_without_boxes == 1
    assert stats.repairs == BoxRepairs(degenerate=1, outside=1, clipped=1)
    assert stats.problems == [REPAIRS_LINE, "1 categories have no annotation"]


def test_counts_per_split_side(ann_file: Path) -> None:
    split = SplitSpec("pets", base=("cat", "dog"), novel=("kite",)).resolve(CATEGORIES)
    stats = dataset_stats(ann_file, split)
    assert stats.boxes_per_side == {"base": 4, "novel": 2, "other": 1}
    assert list(stats.boxes_per_side) == ["base", "novel", "other"]
    assert stats.sizes_per_side == {
        "base": {"small": 2, "medium": 2, "large": 0},
        "novel": {"small": 1, "medium": 0, "large": 1},
        "other": {"small": 1, "medium": 0, "large": 0},
    }
    assert list(stats.sizes_per_side["base"]) == [name for name, _, _ in SIZE_BUCKETS]


def test_size_bucket_edges() -> None:
    edges = [(name, low, high) for name, low, high in SIZE_BUCKETS]
    assert edges == [
        ("small", 0.0, 1024.0),
        ("medium", 1024.0, 9216.0),
        ("large", 9216.0, float("inf")),
    ]


def test_to_dict(ann_file: Path) -> None:
    data = dataset_stats(ann_file).to_dict()
    assert data == {
        "num_images": 4,
        "num_boxes": 7,
        "num_crowd": 1,
        "num_classes": 5,
        "boxes_per_side": {"all": 7},
        "sizes_per_side": {"all": {"small": 4, "medium": 2, "large": 1}},
        "images_without_boxes": 1,
        "problems": [REPAIRS_LINE, "1 categories have no annotation"],
        "notes": [],
    }
    json.dumps(data)


def test_image_problems(ann_file: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", SIZES[1]).save(images / "a.png")
    Image.new("RGB", (21, 10)).save(images / "b.png")  # annotations say 20x10
    # c.png is missing
    (images / "d.png").write_bytes(b"not an image")
    stats = dataset_stats(ann_file, images_dir=images)
    assert stats.problems[:2] == [REPAIRS_LINE, "1 categories have no annotation"]
    image_problems = stats.problems[2:]
    assert len(image_problems) == 3
    assert image_problems[0] == (
        f"{images / 'b.png'}: image is 21x10 but the annotations say 20x10"
    )
    assert image_problems[1] == f"{images / 'c.png'}: image file not found"
    assert image_problems[2].startswith(f"{images / 'd.png'}: unreadable image")


def test_all_images_fine(tmp_path: Path) -> None:
    data = coco_data()
    data["annotations"] = data["annotations"][:7]  # no repairs
    data["categories"] = [c for c in CATEGORIES if c["id"] != 4]
    ann_file = write_json(tmp_path / "ok.json", data)
    for image_id, size in SIZES.items():
        Image.new("L", size).save(tmp_path / f"{'abcd'[image_id - 1]}.png")
    stats = dataset_stats(ann_file, images_dir=str(tmp_path), progress=False)
    assert stats.problems == []
    assert stats.repairs == BoxRepairs()
    assert stats.num_boxes == 6


def test_empty_annotation_list(tmp_path: Path) -> None:
    data = coco_data()
    data["annotations"] = []
    stats = dataset_stats(write_json(tmp_path / "e.json", data))
    assert stats.num_images == 4
    assert stats.num_boxes == 0
    assert stats.num_crowd == 0
    assert stats.boxes_per_side == {}
    assert stats.sizes_per_side == {}
    assert stats.images_without_boxes == 4
    assert stats.problems == ["5 categories have no annotation", "the annotation list is empty"]


def test_category_whose_only_box_was_dropped(tmp_path: Path) -> None:
    data = coco_data()
    data["annotations"] = [annotation(1, 1, 1), annotation(2, 1, 2, bbox=[0, 0, -1, 3])]
    data["categories"] = CATEGORIES[:2]
    stats = dataset_stats(write_json(tmp_path / "d.json", data))
    assert stats.problems == [
        "dropped 1 boxes with non-positive width or height",
        "1 categories have no annotation",
    ]
    assert stats.images_without_boxes == 3


def test_invalid_file_raises(tmp_path: Path) -> None:
    path = write_json(tmp_path / "bad.json", {"images": []})
    with pytest.raises(OwpInputError, match="missing 'annotations'"):
        dataset_stats(path)


@pytest.mark.parametrize("area", [-1, float("nan"), "9"], ids=["negative", "nan", "string"])
def test_invalid_area_raises_instead_of_crashing(tmp_path: Path, area: Any) -> None:
    # an area outside every size bucket used to escape as StopIteration / TypeError
    data = coco_data()
    data["annotations"][0]["area"] = area
    path = write_json(tmp_path / "area.json", data)
    with pytest.raises(OwpInputError) as info:
        dataset_stats(path)
    assert str(info.value).startswith(f"{path}: annotation 1 has an invalid 'area'")

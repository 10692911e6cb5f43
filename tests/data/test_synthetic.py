"""Tests of the embedded synthetic open-world dataset generator, on its default (photo) style;
tests/data/test_scene_styles.py pins the flat style and checks the photo style's statistics."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image
from pycocotools.coco import COCO

from owp.data.scenes import STYLES
from owp.data.synthetic import (
    SynthConfig,
    generate_synthetic_dataset,
    is_synthetic_dataset,
)
from owp.errors import OwpInputError

SMALL = SynthConfig(num_train=12, num_val=6, image_size=128)
STYLE = STYLES[SMALL.style]
BASE_FAMILIES, NOVEL_FAMILIES = STYLE.base_families, STYLE.novel_families


def _hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under root, keyed by relative path."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _load(path: Path) -> Any:
    """Parse a JSON file."""
    return json.loads(path.read_text(encoding="utf-8"))


def _ids(families: tuple[str, ...]) -> set[int]:
    """Category ids of the given families."""
    return {STYLE.families.index(family) + 1 for family in families}


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small dataset shared by the read-only tests."""
    return generate_synthetic_dataset(tmp_path_factory.mktemp("synth") / "small", SMALL)


def test_layout_and_return_value(small_dataset: Path) -> None:
    names = {path.name for path in small_dataset.iterdir()}
    assert names == {
        "train",
        "val",
        "train.json",
        "val.json",
        "split.yaml",
        "objects.json",
        "manifest.json",
    }
    assert sorted(p.name for p in (small_dataset / "train").iterdir())[0] == "000000000001.jpg"
    assert sorted(p.name for p in (small_dataset / "val").iterdir())[0] == "000000000013.jpg"
    manifest = _load(small_dataset / "manifest.json")
    assert manifest["generator"] == "owp.data.synthetic"
    assert manifest["config"]["num_train"] == 12
    assert set(manifest["files"]) == set(_hashes(small_dataset)) - {"manifest.json"}


def test_deterministic_and_seed_dependent(tmp_path: Path, small_dataset: Path) -> None:
    again = generate_synthetic_dataset(tmp_path / "again", SMALL)
    assert _hashes(again) == _hashes(small_dataset)
    other = generate_synthetic_dataset(tmp_path / "other", replace(SMALL, seed=1))
    assert (other / "train.json").read_bytes() != (small_dataset / "train.json").read_bytes()


@pytest.mark.parametrize("part", ["train", "val"])
def test_coco_files_are_valid(small_dataset: Path, part: str) -> None:
    coco = COCO(str(small_dataset / f"{part}.json"))
    assert len(coco.getImgIds()) == (12 if part == "train" else 6)
    assert [c["id"] for c in coco.loadCats(coco.getCatIds())] == list(range(1, 17))
    for image in coco.loadImgs(coco.getImgIds()):
        with Image.open(small_dataset / part / image["file_name"]) as opened:
            assert opened.size == (image["width"], image["height"]) == (128, 128)
    for ann in coco.loadAnns(coco.getAnnIds()):
        x, y, w, h = ann["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 128 and y + h <= 128
        assert 0 < ann["area"] <= w * h and ann["iscrowd"] == 0


def test_annotation_ids_globally_unique(small_dataset: Path) -> None:
    ids = [
        a["id"]
        for part in ("train", "val")
        for a in _load(small_dataset / f"{part}.json")["annotations"]
    ]
    assert len(ids) == len(set(ids)) > 0
    train_images = {i["id"] for i in _load(small_dataset / "train.json")["images"]}
    val_images = {i["id"] for i in _load(small_dataset / "val.json")["images"]}
    assert train_images == set(range(1, 13)) and val_images == set(range(13, 19))


def test_families_and_split(small_dataset: Path) -> None:
    assert not set(BASE_FAMILIES) & set(NOVEL_FAMILIES)
    assert SMALL.style == "photo" and len(STYLE.families) >= 12
    split = yaml.safe_load((small_dataset / "split.yaml").read_text(encoding="utf-8"))
    assert split == {
        "name": "synthetic",
        "base": list(BASE_FAMILIES),
        "novel": list(NOVEL_FAMILIES),
    }
    categories = _load(small_dataset / "train.json")["categories"]
    assert [c["supercategory"] for c in categories] == ["base"] * 8 + ["novel"] * 8


def test_novel_objects_unlabelled_in_base_view(small_dataset: Path) -> None:
    objects = _load(small_dataset / "objects.json")
    train = _load(small_dataset / "train.json")
    base_view = [a for a in train["annotations"] if a["category_id"] in _ids(BASE_FAMILIES)]
    labelled_images = {a["image_id"] for a in base_view}
    novel_images = {
        o["image_id"] for o in objects if o["part"] == "train" and o["family"] in NOVEL_FAMILIES
    }
    assert novel_images & labelled_images
    assert not any(a["category_id"] in _ids(NOVEL_FAMILIES) for a in base_view)


def test_non_exhaustive_train_and_exhaustive_val(tmp_path: Path) -> None:
    config = SynthConfig(num_train=12, num_val=6, image_size=128, unannotated_base_fraction=0.5)
    root = generate_synthetic_dataset(tmp_path / "half", config)
    objects = _load(root / "objects.json")
    train = _load(root / "train.json")["annotations"]
    val = _load(root / "val.json")["annotations"]
    keys = {(a["image_id"], a["category_id"], tuple(a["bbox"])) for a in train + val}
    base = _ids(BASE_FAMILIES)
    eligible_base = [
        o
        for o in objects
        if o["part"] == "train" and o["category_id"] in base and o["visible_fraction"] >= 0.25
    ]
    omitted = [o for o in eligible_base if not o["annotated"]]
    assert len(omitted) == math.floor(0.5 * len(eligible_base) + 0.5) > 0
    for obj in objects:
        key = (obj["image_id"], obj["category_id"], tuple(obj["bbox"]))
        assert (key in keys) == obj["annotated"]
        if obj["visible_fraction"] < 0.25:
            assert not obj["annotated"]
        elif obj["part"] == "val" or obj["category_id"] not in base:
            assert obj["annotated"]
    assert len(val) == sum(o["part"] == "val" and o["visible_fraction"] >= 0.25 for o in objects)


def test_flat_size_buckets_cover_base_and_novel(tmp_path: Path) -> None:
    # The flat style at 320 px (the old tables' set); photo's size mix: test_scene_styles.py.
    config = SynthConfig(num_train=50, num_val=10, image_size=320, style="flat")
    root = generate_synthetic_dataset(tmp_path / "sizes", config)
    annotations = (
        _load(root / "train.json")["annotations"] + _load(root / "val.json")["annotations"]
    )
    flat = STYLES["flat"]
    for families in (flat.base_families, flat.novel_families):
        ids = {flat.families.index(family) + 1 for family in families}
        areas = [a["area"] for a in annotations if a["category_id"] in ids]
        assert any(area < 32**2 for area in areas)
        assert any(area >= 96**2 for area in areas)


def test_existing_folder_without_force_is_untouched(tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(OwpInputError, match="already exists and is not empty"):
        generate_synthetic_dataset(target, SMALL)
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    assert (target / "keep.txt").read_text(encoding="utf-8") == "mine"


def test_out_dir_that_is_a_file_raises(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("mine", encoding="utf-8")
    with pytest.raises(OwpInputError, match="not a directory"):
        generate_synthetic_dataset(target, SMALL, force=True)
    assert target.read_text(encoding="utf-8") == "mine"


def test_force_overwrites_only_generated_files(tmp_path: Path) -> None:
    target = tmp_path / "forced"
    generate_synthetic_dataset(target, SMALL)
    (target / "notes.txt").write_text("mine", encoding="utf-8")
    (target / "train" / "stale.jpg").write_bytes(b"old")
    generate_synthetic_dataset(target, replace(SMALL, num_train=3), force=True)
    assert (target / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert len(list((target / "train").iterdir())) == 3
    assert is_synthetic_dataset(target)


@pytest.mark.parametrize(
    "changes",
    [
        {"num_train": 0},
        {"num_val": 0},
        {"image_size": 32},
        {"image_size": 4096},
        {"seed": -1},
        {"min_objects": 0},
        {"min_objects": 5, "max_objects": 3},
        {"unannotated_base_fraction": 1.5},
        {"unannotated_base_fraction": -0.1},
        {"image_format": "gif"},
        {"num_train": 2.5},
    ],
)
def test_invalid_config_raises(changes: dict[str, object]) -> None:
    with pytest.raises(OwpInputError, match="invalid synthetic config"):
        SynthConfig(**changes)


def test_png_format(tmp_path: Path) -> None:
    config = SynthConfig(num_train=2, num_val=1, image_size=64, image_format="png")
    root = generate_synthetic_dataset(tmp_path / "png", config)
    assert sorted(p.name for p in (root / "train").iterdir()) == [
        "000000000001.png",
        "000000000002.png",
    ]
    assert is_synthetic_dataset(root)


def test_is_synthetic_dataset(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not is_synthetic_dataset(empty)
    assert not is_synthetic_dataset(tmp_path / "missing")
    root = generate_synthetic_dataset(tmp_path / "data", SMALL)
    assert is_synthetic_dataset(root)
    (root / "val" / "000000000013.jpg").unlink()
    assert not is_synthetic_dataset(root)
    (root / "manifest.json").unlink()
    assert not is_synthetic_dataset(root)

"""Scene styles of the synthetic generator: the flat style's byte-identical reproduction and
the photo style's determinism and statistics."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from owp.cli import main
from owp.data.scenes import STYLES
from owp.data.scenes.parts import part_map
from owp.data.synthetic import SynthConfig, generate_synthetic_dataset, is_synthetic_dataset
from owp.errors import OwpInputError
from owp.parallel import resolve_workers

# sha256 of manifest.json written by the generator before scene styles existed (commit
# f9408e6); the manifest lists the sha256 of every other file, so together with the per-file
# check below it pins every byte of the dataset.
FLAT_MANIFESTS: tuple[tuple[SynthConfig, str], ...] = (
    (
        SynthConfig(num_train=3, num_val=2, image_size=96, seed=5, style="flat"),
        "0bc523f5ab0739efe1f08c41f3990d440f318dcb7797ef35e0c389cd060d82ce",
    ),
    (
        SynthConfig(
            num_train=2,
            num_val=2,
            image_size=64,
            seed=1,
            image_format="png",
            max_objects=5,
            style="flat",
        ),
        "62bf3f92e8445a8aea65ef2a36318d289d3b8004cb0315ea03eadb1acf570995",
    ),
)
PHOTO = SynthConfig(num_train=2, num_val=3, image_size=96, seed=3, style="photo")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under root, keyed by relative path."""
    return {
        path.relative_to(root).as_posix(): _sha256(path)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize(("config", "manifest_sha"), FLAT_MANIFESTS)
def test_flat_style_reproduces_the_pre_style_generator(
    tmp_path: Path, config: SynthConfig, manifest_sha: str
) -> None:
    out = generate_synthetic_dataset(tmp_path / "flat", config)
    assert config.style == "flat" and config.max_objects in (5, 8)
    assert _sha256(out / "manifest.json") == manifest_sha
    listed = _load(out / "manifest.json")["files"]
    assert {name: _sha256(out / name) for name in listed} == listed
    assert is_synthetic_dataset(out)


def test_photo_style_is_deterministic_and_seed_dependent(tmp_path: Path) -> None:
    first = generate_synthetic_dataset(tmp_path / "a", PHOTO)
    second = generate_synthetic_dataset(tmp_path / "b", PHOTO)
    assert _hashes(first) == _hashes(second)
    other = generate_synthetic_dataset(tmp_path / "c", SynthConfig(**{**vars(PHOTO), "seed": 4}))
    assert _hashes(other)["val/000000000003.jpg"] != _hashes(first)["val/000000000003.jpg"]
    manifest = _load(first / "manifest.json")
    assert manifest["config"]["style"] == "photo" and manifest["config"]["max_objects"] == 15
    assert is_synthetic_dataset(first)


def test_any_number_of_worker_processes_writes_the_same_files(tmp_path: Path) -> None:
    config = SynthConfig(num_train=24, num_val=8, image_size=64, seed=2, style="photo")
    assert resolve_workers(2, config.num_train + config.num_val) == 2
    serial = generate_synthetic_dataset(tmp_path / "one", config, workers=1)
    pooled = generate_synthetic_dataset(tmp_path / "two", config, workers=2)
    assert _hashes(pooled) == _hashes(serial)
    assert len(_load(serial / "manifest.json")["files"]) == 32 + 4  # images, 2 json, objects, split


@pytest.fixture(scope="module")
def photo_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 images of the default config (photo style, 640 px: COCO's image size, where the style
    has COCO's absolute size mix)."""
    config = replace(SynthConfig(), num_train=15, num_val=15, seed=11)
    assert (config.style, config.image_size) == ("photo", 640)
    return generate_synthetic_dataset(tmp_path_factory.mktemp("photo") / "set", config)


def _areas(root: Path) -> np.ndarray:
    """Visible areas of the annotated objects of both parts."""
    parts = [_load(root / f"{part}.json")["annotations"] for part in ("train", "val")]
    return np.array([a["area"] for annotations in parts for a in annotations], dtype=float)


def test_photo_size_mix_is_cocos_at_640_and_relative_below(photo_set: Path, tmp_path: Path) -> None:
    areas = _areas(photo_set)
    small = float(np.mean(areas < 32**2))
    large = float(np.mean(areas > 96**2))
    # COCO: 41 % small, 34 % medium, 24 % large; 30 images leave several points of noise.
    assert 0.31 <= small <= 0.51
    assert 0.14 <= large <= 0.34
    assert 0.24 <= 1 - small - large <= 0.46
    half = SynthConfig(num_train=15, num_val=15, image_size=320, seed=11, style="photo")
    # Half the image side: objects keep their size relative to the image (areas / 4).
    quarter = _areas(generate_synthetic_dataset(tmp_path / "half", half))
    assert 3.0 <= float(np.median(areas)) / float(np.median(quarter)) <= 5.0


def test_photo_objects_per_image_and_annotated_flags(photo_set: Path) -> None:
    records = _load(photo_set / "objects.json")
    per_image = Counter(record["image_id"] for record in records)
    assert len(per_image) == 30
    assert all(2 <= count <= 15 for count in per_image.values())
    for part in ("train", "val"):
        coco = _load(photo_set / f"{part}.json")
        boxes = Counter((a["image_id"], tuple(a["bbox"])) for a in coco["annotations"])
        flagged = Counter(
            (r["image_id"], tuple(r["bbox"]))
            for r in records
            if r["part"] == part and r["annotated"]
        )
        assert boxes == flagged
    assert all(
        r["annotated"] for r in records if r["part"] == "val" and r["visible_fraction"] >= 0.25
    )
    assert not any(r["annotated"] for r in records if r["visible_fraction"] < 0.25)
    # Train: novel objects are all in train.json (training drops them through the split); base
    # objects are, except exactly the unannotated fraction (0.15) of the eligible ones.
    style = STYLES["photo"]
    eligible = [r for r in records if r["part"] == "train" and r["visible_fraction"] >= 0.25]
    base = [r for r in eligible if r["family"] in style.base_families]
    assert all(r["annotated"] for r in eligible if r["family"] in style.novel_families)
    omitted = sum(not r["annotated"] for r in base)
    assert omitted == math.floor(0.15 * len(base) + 0.5) > 0


def test_photo_families_split_and_categories(photo_set: Path) -> None:
    style = STYLES["photo"]
    assert set(style.base_families).isdisjoint(style.novel_families)
    split = yaml.safe_load((photo_set / "split.yaml").read_text(encoding="utf-8"))
    assert split == {
        "name": "synthetic",
        "base": list(style.base_families),
        "novel": list(style.novel_families),
    }
    categories = _load(photo_set / "val.json")["categories"]
    assert [c["name"] for c in categories] == list(style.families)
    seen = {r["family"] for r in _load(photo_set / "objects.json")}
    assert seen & set(style.base_families) and seen & set(style.novel_families)


def _part_counts(families: tuple[str, ...]) -> set[int]:
    rng = np.random.default_rng(0)
    return {int(part_map(f, rng, 60.0, 0.0, 1.0).max()) + 1 for f in families}


def test_photo_objects_have_two_to_four_parts_and_structures_differ() -> None:
    style = STYLES["photo"]
    for family in style.families:
        owner = part_map(family, np.random.default_rng(1), 60.0, 0.0, 1.0)
        parts = set(np.unique(owner).tolist()) - {-1}
        assert 2 <= len(parts) <= 4, family
        assert abs(int((owner >= 0).sum()) - 3600) < 0.25 * 3600, family
    assert _part_counts(style.base_families) | _part_counts(style.novel_families) == {2, 3, 4}


def test_unknown_style_is_one_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(OwpInputError, match="style must be one of flat, photo, got 'oil'"):
        SynthConfig(style="oil")
    with pytest.raises(SystemExit):
        main(["data", "synth", "--out", "x", "--style", "oil"])
    err = capsys.readouterr().err
    assert err.startswith("owp: error:") and "Traceback" not in err


def test_cli_writes_the_photo_style(tmp_path: Path) -> None:
    main(
        [
            "data",
            "synth",
            "--out",
            str(tmp_path / "p"),
            "--train",
            "1",
            "--val",
            "1",
            "--size",
            "96",
            "--style",
            "photo",
        ]
    )
    assert _load(tmp_path / "p" / "manifest.json")["config"]["style"] == "photo"


def test_cli_style_flat_reproduces_the_pre_style_generator(tmp_path: Path) -> None:
    """``owp data synth --style flat`` (the old tables used ``--size 320``) writes the old set."""
    config, manifest_sha = FLAT_MANIFESTS[0]
    options = ["--train", "3", "--val", "2", "--size", "96", "--seed", "5", "--style", "flat"]
    main(["data", "synth", "--out", str(tmp_path / "flat"), *options])
    assert (config.num_train, config.num_val, config.image_size, config.seed) == (3, 2, 96, 5)
    assert _sha256(tmp_path / "flat" / "manifest.json") == manifest_sha

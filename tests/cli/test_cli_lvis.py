"""LVIS v1 end to end, on a generated problem laid out as LVIS ships it.

``lvis/lvis_v1_val.json`` (images with ``coco_url`` and no ``file_name``, annotations without
``iscrowd``, ``neg_category_ids`` / ``not_exhaustive_category_ids`` on images, a pruned
category list) beside ``coco/train2017`` and ``coco/val2017``, which both hold val images. Every
command of the workflow runs on it: ``data stats``, the dataset loader, ``eval-proposals
--split lvis-v1`` (pycocotools as the reference), ``eval-detections`` (lvis-api as the
reference), and ``owp eval RUN`` of a run that must find its own images from another folder and
reuse its saved proposals.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import run_cli
from owp.config import RunConfig, config_from_dict, resolve_data_paths, save_config
from owp.data.coco import CocoDetection, read_coco_json
from owp.data.splits import lvis_v1_novel_ids
from owp.testing import random_lvis_problem, write_lvis_dataset

NOVEL = lvis_v1_novel_ids()[:4]
BASE = (1, 2, 3, 5, 6, 8)
UNUSED = 1203  # a base-side category without any box: normal in a federated set


@dataclass
class LvisSet:
    root: Path
    ann_file: Path
    gt: dict
    detections: Path


@pytest.fixture(scope="module")
def lvis_set(tmp_path_factory: pytest.TempPathFactory) -> LvisSet:
    root = tmp_path_factory.mktemp("datasets")
    gt, detections = random_lvis_problem(
        12,
        category_ids=sorted(BASE + NOVEL),
        mean_gt=6,
        proposals_per_image=120,
        image_sizes=(48, 96),
        seed=3,
    )
    gt["categories"].append(
        {"id": UNUSED, "name": "unused", "synset": "unused.n.01", "frequency": "r"}
    )
    ann_file = write_lvis_dataset(root, gt)
    path = root / "detections.json"
    path.write_text(json.dumps(detections))
    return LvisSet(root, ann_file, gt, path)


def test_the_generated_file_is_lvis_shaped(lvis_set: LvisSet) -> None:
    images = lvis_set.gt["images"]
    assert all("file_name" not in img and "coco_url" in img for img in images)
    assert all("iscrowd" not in ann for ann in lvis_set.gt["annotations"])
    assert all({"neg_category_ids", "not_exhaustive_category_ids"} <= set(img) for img in images)
    folders = {img["coco_url"].split("/")[-2] for img in images}
    assert folders == {"train2017", "val2017"}
    for img in images:
        folder, name = img["coco_url"].split("/")[-2:]
        assert (lvis_set.root / "coco" / folder / name).is_file()


def test_data_stats_finds_the_lvis_layout(lvis_set: LvisSet, capsys) -> None:
    code, out, err = run_cli(capsys, "data", "stats", lvis_set.root / "lvis", "--split", "lvis-v1")
    assert code == 0, err
    assert f"annotations: {lvis_set.ann_file}" in out
    assert f"images:      {lvis_set.root / 'coco'}" in out
    assert "note: 1 categories have no annotation" in out
    assert "note: federated (LVIS-style) labels" in out
    assert "problems: none found" in out  # every image decoded from train2017/ or val2017/
    assert "split lvis-v1: 7 base, 4 novel classes" in out
    assert "96 of its 100 listed category ids are not in the dataset" in err  # a warning
    code, out, _ = run_cli(capsys, "data", "stats", lvis_set.ann_file, "--no-image-check", "--json")
    stats = json.loads(out)
    assert stats["problems"] == [] and len(stats["notes"]) == 3
    assert stats["num_boxes"] == len(lvis_set.gt["annotations"]) and stats["num_crowd"] == 0


@pytest.mark.parametrize("images", ["coco", "coco/val2017"])
def test_dataset_reads_images_from_both_coco_folders(lvis_set: LvisSet, images: str) -> None:
    # The COCO root, or (as the old presets named it) one of its image folders.
    dataset = CocoDetection(lvis_set.root / images, lvis_set.ann_file, "lvis-v1", training=False)
    assert len(dataset) == len(lvis_set.gt["images"])
    assert dataset.split.novel_ids == tuple(sorted(NOVEL))
    for index, info in enumerate(dataset.images):
        image, target = dataset[index]
        assert image.shape == (3, info["height"], info["width"])
        base = [
            a
            for a in lvis_set.gt["annotations"]
            if a["image_id"] == info["id"] and a["category_id"] not in NOVEL
        ]
        assert len(target["boxes"]) == len(base)
        assert not target["ignore"].any()


def test_dataset_needs_a_path_for_each_image(lvis_set: LvisSet, tmp_path: Path) -> None:
    from owp.errors import OwpInputError

    gt = copy.deepcopy(lvis_set.gt)
    del gt["images"][3]["coco_url"]
    ann_file = tmp_path / "lvis_v1_val.json"
    ann_file.write_text(json.dumps(gt))
    read_coco_json(ann_file)  # reading and evaluating need no image path
    with pytest.raises(OwpInputError) as info:
        CocoDetection(lvis_set.root / "coco", ann_file)
    assert str(info.value) == (
        f"{ann_file}: image {gt['images'][3]['id']} has neither 'file_name' nor 'coco_url', "
        "so it cannot be read"
    )


@pytest.mark.parametrize("protocol", ["strict", "oln"])
def test_eval_proposals_lvis_v1_equals_pycocotools(
    lvis_set: LvisSet, protocol: str, tmp_path: Path, capsys
) -> None:
    outputs = {}
    for engine in ("owp", "pycocotools"):
        out = tmp_path / f"{engine}.json"
        code, _, err = run_cli(
            capsys,
            "eval-proposals",
            "--gt", lvis_set.ann_file,
            "--proposals", lvis_set.detections,
            "--split", "lvis-v1",
            "--protocol", protocol,
            "--max-dets", "10,100,300",
            "--engine", engine,
            "--out", out,
        )  # fmt: skip
        assert code == 0, err
        outputs[engine] = json.loads(out.read_text())
    assert outputs["owp"] == outputs["pycocotools"]
    metrics = outputs["owp"]
    novel = [a for a in lvis_set.gt["annotations"] if a["category_id"] in NOVEL]
    assert metrics["num_gt"] == len(novel) and metrics["split"] == "lvis-v1"
    assert 0.0 < metrics["AR@100"] < 1.0


def lvis_api(gt: dict, detections: list[dict]) -> dict[str, float]:
    """lvis-api's bbox LVISEval (``np.float`` aliased for it, in the test only)."""
    lvis = pytest.importorskip("lvis")
    if not hasattr(np, "float"):
        np.float = float
    reference = lvis.LVIS.__new__(lvis.LVIS)
    reference.logger = logging.getLogger("lvis-reference")
    reference.dataset = copy.deepcopy(gt)
    reference._create_index()
    results = lvis.LVISResults(reference, copy.deepcopy(detections), max_dets=300)
    evaluator = lvis.LVISEval(reference, results, "bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.run()
    return {k: float(v) for k, v in evaluator.results.items()}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_eval_detections_is_lvis_federated_ap(lvis_set: LvisSet, tmp_path: Path, capsys) -> None:
    out = tmp_path / "ap.json"
    code, stdout, err = run_cli(
        capsys,
        "eval-detections",
        "--gt", lvis_set.ann_file,
        "--detections", lvis_set.detections,
        "--split", "lvis-v1",
        "--out", out,
    )  # fmt: skip
    assert code == 0, err
    assert "base-class AP (%)" in stdout
    ours = json.loads(out.read_text())
    base = {c["id"] for c in lvis_set.gt["categories"]} - set(NOVEL)
    base_gt = {
        "images": lvis_set.gt["images"],
        "annotations": [a for a in lvis_set.gt["annotations"] if a["category_id"] in base],
        "categories": [c for c in lvis_set.gt["categories"] if c["id"] in base],
    }
    detections = json.loads(lvis_set.detections.read_text())
    reference = lvis_api(base_gt, [d for d in detections if d["category_id"] in base])
    pairs = {"AP": "AP", "AP50": "AP50", "AP75": "AP75", "AP_small": "APs"}
    pairs |= {"AP_medium": "APm", "AP_large": "APl", "APr": "APr", "APc": "APc", "APf": "APf"}
    for key, theirs in pairs.items():
        if reference[theirs] == -1:  # lvis-api's "no ground truth" (here: no large objects)
            assert ours[key] is None, key
        else:
            assert ours[key] == pytest.approx(reference[theirs], abs=1e-12), key
    assert ours["AP"] > 0.0 and ours["federated"] is True
    code, _, err = run_cli(
        capsys,
        "eval-detections",
        "--gt", lvis_set.ann_file,
        "--detections", lvis_set.detections,
        "--split", "lvis-v1",
        "--engine", "pycocotools",
    )  # fmt: skip
    assert code == 2 and err.startswith(f"owp: error: {lvis_set.ann_file}: ")
    assert "federated" in err and len(err.strip().splitlines()) == 1


# --- runs that find their own data ------------------------------------------------------------


def test_relative_data_paths_are_saved_absolute(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = config_from_dict(
        {"data": {"val": "lvis/lvis_v1_val.json", "val_images": "coco", "split": "lvis-v1"}}
    )
    resolved = resolve_data_paths(config)
    assert resolved.data.val == str(tmp_path / "lvis" / "lvis_v1_val.json")
    assert resolved.data.val_images == str(tmp_path / "coco")
    assert resolved.data.train == "synthetic" and resolved.data.split == "lvis-v1"
    assert resolved.data.as_written == {"val": "lvis/lvis_v1_val.json", "val_images": "coco"}
    assert resolve_data_paths(resolved, base="/elsewhere") == resolved
    saved = yaml.safe_load(save_config(config, tmp_path / "run" / "config.yaml").read_text())
    assert saved["data"]["val"] == resolved.data.val
    assert saved["data"]["as_written"]["val_images"] == "coco"
    assert resolve_data_paths(RunConfig()) == RunConfig()


@pytest.fixture
def lvis_run(lvis_set: LvisSet, tmp_path: Path, monkeypatch) -> Path:
    """A run (untrained tiny model) whose config names its data relative to the datasets
    folder, as a preset does; saved from there, evaluated from elsewhere."""
    from owp.engine.checkpoint import save_checkpoint
    from owp.models import create_model

    monkeypatch.chdir(lvis_set.root)
    # A 4-image val set, two images from each COCO folder (CPU time: 4 images per prediction).
    gt = lvis_set.gt
    picked = [img for img in gt["images"] if "/train2017/" in img["coco_url"]][:2]
    picked += [img for img in gt["images"] if "/val2017/" in img["coco_url"]][:2]
    ids = {img["id"] for img in picked}
    small = {
        "images": picked,
        "annotations": [a for a in gt["annotations"] if a["image_id"] in ids],
        "categories": gt["categories"],
    }
    (lvis_set.root / "lvis" / "lvis_v1_minival.json").write_text(json.dumps(small))
    (tmp_path / "datasets-minival.json").write_text(json.dumps(small))
    options = {"min_size": 32, "max_size": 48, "post_nms_top_n": 100}
    config = config_from_dict(
        {
            "model": {"name": "fcos_owp_tiny", **options},
            "data": {
                "val": "lvis/lvis_v1_minival.json",
                "val_images": "coco",
                "split": "lvis-v1",
            },
            "eval": {"max_dets": [10, 100], "batch_size": 4},
        }
    )
    run = tmp_path / "run"
    model = create_model("fcos_owp_tiny", **options)
    save_config(config, run / "config.yaml")
    save_checkpoint(
        run / "last.pt", model=model, optimizer=None, scheduler=None, step=1,
        config=config.to_dict(),
    )  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return run


def test_eval_run_uses_its_own_images_and_reuses_saved_proposals(lvis_run: Path, capsys) -> None:
    argv = ("eval", lvis_run, "--max-dets", "10,100", "--batch-size", "4", "--device", "cpu")
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    metrics = json.loads((lvis_run / "eval" / "metrics.json").read_text())
    assert metrics["split"] == "lvis-v1" and metrics["num_images"] == 4
    assert "reused" not in metrics and "reused" not in out
    proposals = lvis_run / "eval" / "proposals.json"
    written = proposals.stat().st_mtime_ns

    code, out, err = run_cli(capsys, *argv, "--protocol", "oln")
    assert code == 0, err
    assert "reused proposals.json" in out and "--force predicts again" in out
    assert proposals.stat().st_mtime_ns == written
    again = json.loads((lvis_run / "eval" / "metrics.oln-pool1500.json").read_text())
    assert again["protocol"] == "oln" and again["reused"] == ["proposals.json"]
    assert again["protocol_label"] == "oln (pool 1500)" and "oln (pool 1500) protocol" in out
    # The strict metrics are not overwritten by another protocol's.
    assert json.loads((lvis_run / "eval" / "metrics.json").read_text()) == metrics

    code, out, err = run_cli(capsys, *argv, "--force")
    assert code == 0, err
    assert "reused" not in out
    forced = json.loads((lvis_run / "eval" / "metrics.json").read_text())
    assert {k: v for k, v in forced.items() if k.startswith("AR")} == {
        k: v for k, v in metrics.items() if k.startswith("AR")
    }
    code, out, err = run_cli(capsys, *argv, "--scoring", "centerness")
    assert code == 0 and "reused" not in out  # another scoring: predicted again


def test_eval_run_without_its_images_names_the_folder(
    lvis_run: Path, lvis_set: LvisSet, capsys
) -> None:
    (lvis_set.root / "coco").rename(lvis_set.root / "coco-moved")
    try:
        code, _, err = run_cli(capsys, "eval", lvis_run, "--device", "cpu")
        assert code == 2 and err.startswith("owp: error: ")
        assert str(lvis_set.root / "coco") in err and len(err.strip().splitlines()) == 1
        code, _, err = run_cli(
            capsys, "eval", lvis_run, "--images", lvis_set.root / "coco-moved",
            "--max-dets", "10", "--device", "cpu", "--force",
        )  # fmt: skip
        assert code == 0, err
    finally:
        (lvis_set.root / "coco-moved").rename(lvis_set.root / "coco")


def test_predict_defaults_to_the_runs_val_images(lvis_run: Path, tmp_path: Path, capsys) -> None:
    from owp.data.locate import run_classes

    out = tmp_path / "predictions"
    code, stdout, err = run_cli(capsys, "predict", lvis_run, "--out", out, "--device", "cpu")
    assert code == 0, err
    small = json.loads((lvis_run.parent / "datasets-minival.json").read_text())
    stems = {img["coco_url"].rsplit("/", 1)[-1].removesuffix(".jpg") for img in small["images"]}
    assert {p.stem for p in out.glob("*.json")} == stems
    assert {p.stem for p in out.glob("*.png")} == stems
    # A classifying model's labels would be named from the run's data, in label order:
    ids, names = run_classes(lvis_run)
    assert names == [f"class_{i}" for i in BASE] + ["unused"] and ids[: len(BASE)] == list(BASE)

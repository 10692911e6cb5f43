"""What a new user meets in the first hour on real data (issue 21): a bare ``--resume`` reads the
run's own config, a shrunk schedule is scaled with one warning, split names stay names and
nothing is written before the config is valid, config-file paths are relative to the file, the
description names the overrides, a resumed session's summary says what it did, ``--gt`` takes a
dataset folder, and the ``coco-voc-cpu`` preset runs on a COCO-format folder."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image

from owp.cli import main
from owp.config import apply_overrides, load_config_file, load_preset
from owp.data.splits import COCO_VOC_BASE_IDS, COCO_VOC_BASE_NAMES
from owp.data.synthetic import SynthConfig, generate_synthetic_dataset
from owp.workflows.study import plan_runs

TINY = [
    "data.num_workers=0",
    "train.batch_size=2",
    "model.min_size=96",
    "model.max_size=96",
    "eval.max_dets=[10, 100]",
]


@pytest.fixture(autouse=True)
def _restore_owp_logger():
    logger = logging.getLogger("owp")
    handlers, level, propagate = logger.handlers[:], logger.level, logger.propagate
    yield
    logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate


def _sets(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("first-hour") / "data"
    generate_synthetic_dataset(
        folder, SynthConfig(num_train=8, num_val=4, image_size=96, seed=5, style="flat")
    )
    return folder


@pytest.fixture(scope="module")
def first_session(data, tmp_path_factory) -> tuple[Path, str]:
    """A demo run shrunk to 2 iterations (its 75-iteration warm-up scaled with it)."""
    run = tmp_path_factory.mktemp("first-hour") / "run"
    sets = _sets(f"data.train={data}", f"data.val={data}", *TINY, "train.max_iters=2")
    with contextlib.redirect_stderr(io.StringIO()) as stderr:
        assert main(["train", "--preset", "demo", "--out", str(run), *sets]) == 0
    return run, stderr.getvalue()


def test_a_shrunk_schedule_is_scaled_with_one_warning_naming_the_new_values(first_session):
    run, stderr = first_session
    warnings = [line for line in stderr.splitlines() if "scaled with it" in line]
    assert warnings == [
        "owp: warning: train.max_iters 2 (was 300) ends before the warm-up or lr steps: scaled "
        "with it to train.warmup_iters=0"
    ]
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["warmup_iters"] == 0 and saved["train"]["max_iters"] == 2


def test_the_description_names_the_overrides(first_session, data):
    run, _ = first_session
    description = yaml.safe_load((run / "config.yaml").read_text())["description"]
    assert description.startswith(load_preset("demo").description + " (overridden: ")
    assert description.endswith("train.max_iters=2; train.warmup_iters=0)")
    assert f"data.train={data}" in description
    shrunk = apply_overrides(
        load_preset("coco-voc-iou-cs-is"), ["model.name=fcos_owp_tiny", "train.max_iters=300"]
    )
    assert shrunk.description.endswith(
        "(GPUs) (overridden: model.name=fcos_owp_tiny; train.max_iters=300; "
        "train.warmup_iters=3; train.steps=[200, 267])"
    )
    assert apply_overrides(load_preset("demo"), []).description == load_preset("demo").description


def test_a_bare_resume_reads_the_runs_config_and_says_what_this_session_did(
    first_session, tmp_path, capsys
):
    run, _ = first_session
    resumed = tmp_path / "run"
    shutil.copytree(run, resumed)
    capsys.readouterr()
    # No --preset: the run's config.yaml (96 px), not the demo preset's 256 px.
    assert main(["train", "--out", str(resumed), "--resume", "--set", "train.max_iters=4"]) == 0
    out = capsys.readouterr().out
    assert f"{resumed}: 2 steps (2→4) in " in out
    rows = (resumed / "metrics.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["2", "4"]  # demo: every 10 and the last


def test_a_resume_without_a_config_names_what_is_missing(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"owp: error: {tmp_path}: no config.yaml to resume with; name the run's --preset or "
        "--config"
    )


def test_study_overrides_scale_the_schedule_too():
    configs = plan_runs(["synth-iou", "synth-iou-cs-is"], ["train.max_iters=30"])
    for name, config in configs.items():
        written = load_preset(name).train
        warmup = round(written.warmup_iters * 30 / written.max_iters)
        assert config.train.warmup_iters == warmup
        assert config.notices == (
            f"train.max_iters 30 (was {written.max_iters}) ends before the warm-up or lr steps: "
            f"scaled with it to train.warmup_iters={warmup}",
        )
    assert configs["synth-iou"].train.warmup_iters == 2  # 200 of 3000 iterations


def test_a_schedule_beyond_the_end_that_was_asked_for_is_refused_before_any_write(
    data, tmp_path, capsys
):
    run = tmp_path / "run"
    sets = _sets(f"data.train={data}", f"data.val={data}", *TINY, "train.max_iters=5")
    argv = ["train", "--out", str(run), *sets, "--set", "train.warmup_iters=10"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "owp: error: train.warmup_iters 10 beyond train.max_iters 5: shorten them "
        "(--set train.max_iters alone scales them)"
    )
    assert not run.exists()


def test_an_unknown_split_name_stays_a_name_and_nothing_is_written(data, tmp_path, capsys):
    run = tmp_path / "run"
    sets = _sets(f"data.train={data}", f"data.val={data}", *TINY, "data.split=voc")
    assert main(["train", "--out", str(run), *sets]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("owp: error: unknown split 'voc'; use one of coco-voc"), err
    assert not (run / "config.yaml").exists()


def test_a_split_file_named_by_set_is_made_absolute(data, tmp_path, monkeypatch):
    from owp.config import resolve_data_paths

    monkeypatch.chdir(data)
    config = resolve_data_paths(apply_overrides(load_preset("demo"), ["data.split=split.yaml"]))
    assert config.data.split == str(data / "split.yaml")


def test_paths_in_a_config_file_are_relative_to_its_folder(data, tmp_path, monkeypatch):
    folder = data.parent / "configs"
    folder.mkdir(exist_ok=True)
    config_file = folder / "mine.yaml"
    config_file.write_text(
        "model: {name: fcos_owp_tiny}\n"
        "data: {train: ../data, val: ../data/val.json, split: ../data/split.yaml}\n"
        "train: {init: ../weights/start.pt}\n"
    )
    monkeypatch.chdir(tmp_path)  # anywhere else
    config = load_config_file(config_file)
    assert config.data.train == str(data)
    assert config.data.val == str(data / "val.json")
    assert config.data.split == str(data / "split.yaml")
    assert config.data.as_written["train"] == "../data"
    assert config.train.init == str(data.parent / "weights" / "start.pt")


def test_ground_truth_arguments_take_a_dataset_folder(data, tmp_path, capsys):
    val = json.loads((data / "val.json").read_text())
    results = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1}
        for a in val["annotations"]
    ]
    proposals = tmp_path / "proposals.json"
    proposals.write_text(json.dumps(results))
    split = str(data / "split.yaml")
    for command, flag in (("eval-proposals", "--proposals"), ("eval-detections", "--detections")):
        by_file, by_folder = tmp_path / f"{command}-file.json", tmp_path / f"{command}-dir.json"
        for gt, out in ((data / "val.json", by_file), (data, by_folder)):
            argv = [command, "--gt", str(gt), flag, str(proposals), "--split", split]
            assert main([*argv, "--out", str(out)]) == 0, capsys.readouterr().err
        assert json.loads(by_folder.read_text()) == json.loads(by_file.read_text())
    argv = ["data", "split", "--gt", str(data), "--part", "train", "--split", split]
    assert main([*argv, "--out", str(tmp_path / "split")]) == 0
    assert (tmp_path / "split" / "train_base.json").is_file()


def test_the_coco_voc_cpu_preset_runs_on_a_coco_format_folder(tmp_path, capsys):
    folder = _tiny_coco_folder(tmp_path / "coco")
    sets = _sets(
        f"data.train={folder}", f"data.val={folder}", "data.num_workers=0", "train.max_iters=2"
    )
    run = tmp_path / "run"
    assert main(["train", "--preset", "coco-voc-cpu", "--out", str(run), *sets]) == 0
    config = load_preset("coco-voc-cpu")
    assert config.data.split == "coco-voc" and config.model.name == "fcos_owp_tiny"
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["split"] == "coco-voc" and metrics["num_gt"] > 0


def _tiny_coco_folder(folder: Path) -> Path:
    """train.json, val.json and images/ in COCO's layout, with COCO category ids: VOC (base)
    classes and three others (novel under coco-voc)."""
    images = folder / "images"
    images.mkdir(parents=True)
    ids = [*COCO_VOC_BASE_IDS, 8, 10, 11]
    names = dict(zip(COCO_VOC_BASE_IDS, COCO_VOC_BASE_NAMES, strict=True))
    categories = [{"id": i, "name": names.get(i, f"c{i}"), "supercategory": "thing"} for i in ids]
    for part, offset in (("train", 0), ("val", 100)):
        entries, annotations = [], []
        for n in range(4):
            image_id = offset + n + 1
            Image.new("RGB", (80, 64), (40 * n, 90, 160)).save(images / f"{image_id}.jpg")
            entries.append(
                {"id": image_id, "file_name": f"{image_id}.jpg", "width": 80, "height": 64}
            )
            for k, category in enumerate((1, 8)):  # a person (base) and a truck (novel)
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": category,
                        "bbox": [5 + 30 * k, 8, 28, 40],
                        "area": 28 * 40,
                        "iscrowd": 0,
                    }
                )
        coco = {"images": entries, "annotations": annotations, "categories": categories}
        (folder / f"{part}.json").write_text(json.dumps(coco))
    return folder

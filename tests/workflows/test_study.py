"""owp study: runs trained, then reused or resumed; the results table, the plots, bad names."""

import json
import math
from dataclasses import replace

import pytest
from PIL import Image

from conftest import run_owp
from owp.config import load_group, load_preset
from owp.data.splits import SplitSpec
from owp.engine.checkpoint import load_checkpoint
from owp.engine.trainer import Trainer
from owp.errors import OwpInputError
from owp.workflows import study
from owp.workflows.study import expand_names, plan_runs, recall_per_iou, scores_by_match

PRESETS = ("synth-centerness", "synth-iou-cs-is")
TINY = (
    "train.max_iters=3",
    "train.batch_size=2",
    "train.checkpoint_period=100",
    "train.eval_period=0",
    "data.num_workers=0",
    "model.min_size=96",
    "model.max_size=96",
    "eval.max_dets=[10, 100]",
)
PLOTS = ("recall_vs_k", "recall_vs_iou", "score_histograms", "heatmaps")


def study_args(out, data, *names, extra=()):
    sets = [arg for item in (*TINY, *extra) for arg in ("--set", item)]
    return ["study", *names, "--out", str(out), "--data", str(data), *sets]


@pytest.fixture(scope="module")
def data(synthetic_set_factory):
    return synthetic_set_factory(num_train=8, num_val=4, image_size=96, seed=1)


@pytest.fixture(scope="module")
def first_study(data, tmp_path_factory):
    """Both runs trained from nothing; the study folder and its results.json then."""
    out = tmp_path_factory.mktemp("study")
    assert run_owp(*study_args(out, data, *PRESETS)) == 0
    return out, json.loads((out / "results.json").read_text())


def test_study_trains_both_runs_and_writes_the_table(first_study):
    out, rows = first_study
    assert [row["run"] for row in rows] == list(PRESETS)
    assert all(row["status"] == "trained" and row["train_seconds"] > 0 for row in rows)
    assert rows[0]["delta_AR@100"] == 0.0
    expected = round(100 * (rows[1]["AR@100"] - rows[0]["AR@100"]), 2)
    assert rows[1]["delta_AR@100"] == expected
    assert {"AR@10", "AR@100", "AR_small@100", "scoring", "protocol"} <= set(rows[1])
    lines = (out / "results.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| run |"))
    assert "ΔAR@100" in header and "AP (base)" in header and "train time (min)" in header
    table = [line for line in lines if line.startswith(("| synth-centerness", "| synth-iou"))]
    assert len(table) == 2
    assert table[0].rstrip(" |").endswith("baseline")
    assert table[1].rstrip(" |").split("| ")[-1].startswith(("+", "-"))
    for run in PRESETS:
        assert json.loads((out / "runs" / run / "study.json").read_text())["train_seconds"] > 0


def test_study_draws_four_readable_pngs(first_study):
    out, _ = first_study
    for name in PLOTS:
        with Image.open(out / "plots" / f"{name}.png") as picture:
            assert picture.format == "PNG"
            assert picture.width >= 400 and picture.height >= 250, name


def test_rerunning_reuses_finished_runs(first_study, data, capsys):
    out, _ = first_study
    checkpoints = [out / "runs" / run / "last.pt" for run in PRESETS]
    before = [path.stat().st_mtime_ns for path in checkpoints]
    capsys.readouterr()
    assert run_owp(*study_args(out, data, *PRESETS)) == 0
    printed = capsys.readouterr().out
    assert "[1/2] synth-centerness: reused" in printed
    assert "[2/2] synth-iou-cs-is: reused" in printed
    assert "| synth-iou-cs-is |" in printed  # the table is printed at the end
    assert [path.stat().st_mtime_ns for path in checkpoints] == before
    rows = json.loads((out / "results.json").read_text())
    assert [row["status"] for row in rows] == ["reused", "reused"]


def test_a_run_with_another_config_is_not_mixed_in(first_study, data, capsys):
    out, _ = first_study
    # A longer schedule is another config too: a resumed run keeps its first lr steps.
    extra = ["train.base_lr=0.02", "train.max_iters=6"]
    assert run_owp(*study_args(out, data, *PRESETS, extra=extra)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("owp: error:") and "\n" not in err
    assert "another config (train.base_lr 0.01 -> 0.02; train.max_iters 3 -> 6)" in err


def test_an_interrupted_run_is_resumed(data, tmp_path, monkeypatch, capsys):
    train_step = Trainer.run_step

    def interrupt_after_one_step(self, *args):
        if self.step == 1:
            raise KeyboardInterrupt
        return train_step(self, *args)

    monkeypatch.setattr(Trainer, "run_step", interrupt_after_one_step)
    assert run_owp(*study_args(tmp_path, data, "synth-iou-cs-is")) == 130
    run = tmp_path / "runs" / "synth-iou-cs-is"
    assert load_checkpoint(run / "last.pt")["step"] == 1
    assert not (run / "eval" / "metrics.json").exists()
    first_seconds = json.loads((run / "study.json").read_text())["train_seconds"]

    monkeypatch.setattr(Trainer, "run_step", train_step)
    capsys.readouterr()
    assert run_owp(*study_args(tmp_path, data, "synth-iou-cs-is")) == 0
    assert "[1/1] synth-iou-cs-is: resuming" in capsys.readouterr().out
    assert load_checkpoint(run / "last.pt")["step"] == 3
    (row,) = json.loads((tmp_path / "results.json").read_text())
    assert row["status"] == "resumed" and row["train_seconds"] > first_seconds
    assert row["delta_AR@100"] == 0.0  # the only run is its own baseline


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["study", "nope"], "unknown study group or preset 'nope'; groups: "),
        (["study", "synth-iou", "--baseline", "synth-geomean"], "baseline 'synth-geomean'"),
        (["study", "synth-iou", "--heatmap-runs", "synth-iou,x"], "heatmap run 'x'"),
    ],
)
def test_bad_names_are_one_error_line(argv, message, capsys, tmp_path):
    assert run_owp(*argv, "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("owp: error:") and "\n" not in err and message in err
    if argv[1] == "nope":
        assert "synth-objectness" in err and "presets: " in err and "synth-centerness" in err
    assert not any(tmp_path.iterdir())  # nothing trained


def test_names_expand_groups_in_order_without_repeats():
    group = load_group("synth-objectness")
    presets, baseline = expand_names(["synth-iou", "synth-objectness", "synth-iou"])
    assert presets == ["synth-iou", *(p for p in group.presets if p != "synth-iou")]
    assert baseline == group.baseline
    assert expand_names(["synth-iou"]) == (["synth-iou"], None)


def test_init_dependencies_train_first(monkeypatch):
    def preset_with_init(name):
        config = load_preset(name)
        if name == "synth-iou-cs-is":
            return replace(config, train=replace(config.train, init="run:synth-centerness"))
        return config

    monkeypatch.setattr(study, "load_preset", preset_with_init)
    assert list(plan_runs(["synth-iou-cs-is"])) == ["synth-centerness", "synth-iou-cs-is"]
    assert list(plan_runs(["synth-iou-cs-is", "synth-centerness"])) == [
        "synth-centerness",
        "synth-iou-cs-is",
    ]
    with pytest.raises(OwpInputError, match="cycle: synth-iou-cs-is -> synth-iou-cs-is"):
        plan_runs(["synth-iou-cs-is"], ["train.init=run:synth-iou-cs-is"])


def hand_case():
    """One novel box (id 2) and one base box (id 1) in a 200 x 200 image."""
    gt = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 200}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 2, "bbox": [0, 0, 100, 100]},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [120, 120, 60, 60]},
        ],
        "categories": [{"id": 1, "name": "base"}, {"id": 2, "name": "novel"}],
    }
    for ann in gt["annotations"]:
        ann.update(area=ann["bbox"][2] * ann["bbox"][3], iscrowd=0)
    return gt, SplitSpec("hand", base=(1,), novel=None)


def test_recall_per_iou_hand_case():
    gt, split = hand_case()
    # IoU 0.72 with the novel box (0.7 itself would sit on COCOeval's 0.7000000000000001).
    proposals = [{"image_id": 1, "bbox": [0, 0, 100, 72], "score": 0.9}]
    assert recall_per_iou(gt, proposals, split, k=100) == [1.0] * 5 + [0.0] * 5
    on_base = [{"image_id": 1, "bbox": [120, 120, 60, 60], "score": 0.95}]
    assert recall_per_iou(gt, on_base + proposals, split, k=1) == [0.0] * 10
    no_novel = {**gt, "annotations": gt["annotations"][1:]}
    assert all(math.isnan(r) for r in recall_per_iou(no_novel, proposals, split))


def test_scores_by_match_hand_case():
    gt, split = hand_case()
    proposals = [
        {"image_id": 1, "bbox": [0, 0, 100, 72], "score": 0.9},  # on the novel object
        {"image_id": 1, "bbox": [121, 121, 60, 60], "score": 0.5},  # on the base object
        {"image_id": 1, "bbox": [0, 150, 40, 40], "score": 0.25},  # on nothing
    ]
    assert scores_by_match(gt, proposals, split) == ([0.9], [0.25])

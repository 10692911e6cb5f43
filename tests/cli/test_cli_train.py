"""CLI smoke tests of train / eval / predict / presets / models on a tiny generated set."""

import json
import logging

import pytest

from owp.cli import main
from owp.data.synthetic import SynthConfig, generate_synthetic_dataset


@pytest.fixture(autouse=True)
def _restore_owp_logger():
    logger = logging.getLogger("owp")
    handlers, level, propagate = logger.handlers[:], logger.level, logger.propagate
    yield
    logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = root / "data"
    generate_synthetic_dataset(
        data, SynthConfig(num_train=8, num_val=4, image_size=96, seed=5, style="flat")
    )
    run = root / "run"
    code = main(
        [
            "train", "--preset", "demo", "--out", str(run),
            "--set", f"data.train={data}", "--set", f"data.val={data}",
            "--set", "data.num_workers=0", "--set", "train.max_iters=3",
            "--set", "train.batch_size=2", "--set", "model.min_size=96",
            "--set", "model.max_size=96", "--set", "eval.max_dets=[10, 100]",
        ]
    )  # fmt: skip
    assert code == 0
    return data, run


def test_train_writes_a_run(trained, capsys):
    _, run = trained
    for name in (
        "config.yaml",
        "last.pt",
        "metrics.csv",
        "eval/metrics.json",
        "eval/proposals.json",
    ):
        assert (run / name).exists(), name


def test_eval_writes_metrics_with_a_scoring_override(trained, tmp_path, capsys):
    data, run = trained
    out = tmp_path / "eval"
    code = main(
        ["eval", str(run), "--data", str(data), "--scoring", "centerness", "--out", str(out)]
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["scoring"] == "centerness" and metrics["protocol"] == "strict"
    assert {"AR@10", "AR@100", "AR@1000", "num_gt"} <= set(metrics)
    assert "AR@100" in capsys.readouterr().out


def test_eval_ranks_by_more_scorings_in_one_pass(trained, tmp_path, capsys):
    data, run = trained
    trained_metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert "centerness/AR@100" in trained_metrics  # the demo preset's extra scoring
    out = tmp_path / "eval"
    argv = ["eval", str(run), "--data", str(data), "--out", str(out)]
    assert main([*argv, "--also-scoring", "geomean, centerness"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"geomean/AR@100", "centerness/AR@10"} <= set(metrics)
    assert (out / "proposals.geomean.json").is_file()
    table = capsys.readouterr().out.split("novel AR by scoring")[1]
    assert [line.split()[0] for line in table.strip().splitlines()[3:6]] == [
        "iou",
        "geomean",
        "centerness",
    ]
    assert main([*argv, "--also-scoring", "cls*iou"]) == 2
    assert "scoring 'cls*iou' does not fit this model" in capsys.readouterr().err


def test_predict_writes_json_and_overlays(trained, tmp_path):
    data, run = trained
    out = tmp_path / "pred"
    assert (
        main(
            ["predict", str(run / "last.pt"), str(data / "val"), "--out", str(out), "--top-k", "5"]
        )
        == 0
    )
    pictures = sorted(out.glob("*.png"))
    assert len(pictures) == 4 and len(list(out.glob("*.json"))) == 4
    records = json.loads(next(out.glob("*.json")).read_text())
    assert all({"bbox", "score", "objectness"} <= set(r) for r in records)


def test_listings(capsys):
    assert main(["presets"]) == 0
    text = capsys.readouterr().out
    assert "demo" in text and "synth-iou-cs-is" in text and "coco-voc-iou-cs-is" in text
    assert main(["models"]) == 0
    assert "fcos_owp_tiny" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--preset", "nope"], "unknown preset 'nope'"),
        (["train", "--set", "train.max_iter=3"], "unknown key"),
        (["eval", "/no/such/run"], "run folder or checkpoint not found"),
        (["predict", "/no/such/run", "x.png", "--out", "o"], "not found"),
    ],
)
def test_bad_input_is_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("owp: error:") and message in err and "Traceback" not in err


def test_eval_on_a_folder_without_checkpoints(tmp_path, capsys):
    assert main(["eval", str(tmp_path)]) == 2
    assert "no checkpoint in this folder" in capsys.readouterr().err


def test_predict_on_a_missing_image(trained, tmp_path, capsys):
    _, run = trained
    assert main(["predict", str(run), str(tmp_path / "absent.jpg"), "--out", str(tmp_path)]) == 2
    assert "image or folder not found" in capsys.readouterr().err

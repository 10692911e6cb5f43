"""``owp bench``: it runs end to end and prints both ratio tables (no timing is asserted)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from owp.cli import main
from owp.workflows.bench import INFERENCE_COLUMNS, TRAINING_COLUMNS

TINY = ["--height", "32", "--width", "48", "--batches", "1", "--train-batch", "1"]


def table(text: str, title: str) -> list[list[str]]:
    """The Markdown table printed after the line starting with ``title``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title)) + 1
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_quick_bench_prints_both_tables_with_positive_ratios(capsys, tmp_path, monkeypatch):
    # The compiled variant's path, without inductor's minutes-long C++ build on a CPU.
    monkeypatch.setattr(torch, "compile", lambda function, **kwargs: function)
    out = tmp_path / "bench.json"
    argv = ["bench", "--quick", "--device", "cpu", *TINY, "--iters", "1", "--warmup", "0"]
    argv.append("--compile")
    assert main([*argv, "--json", str(out)]) == 0
    text = capsys.readouterr().out
    inference, training = table(text, "Inference"), table(text, "Training step")
    assert tuple(inference[0]) == INFERENCE_COLUMNS and tuple(training[0]) == TRAINING_COLUMNS
    assert [row[:3] for row in inference[2:]] == [
        ["torchvision", "fp32", "1"],
        ["owp", "fp32", "1"],
        ["owp", "bf16", "1"],
        ["owp", "bf16 + channels-last", "1"],
        ["owp", "bf16 + channels-last + compile", "1"],
    ]
    assert [row[:2] for row in training[2:]] == [
        ["torchvision", "fp32"],
        ["owp", "fp32"],
        ["owp", "bf16"],
        ["owp", "bf16 + channels-last"],
    ]
    assert inference[2][4] == "1.00" and training[3][4] == "1.00"  # the ratios' references
    for row in inference[2:]:
        assert row[5] == "n/a (CPU)"
    saved = json.loads(out.read_text())
    assert saved["setup"]["input"] == "32x48"
    for row in saved["inference"]:
        for key in ("images_per_second", "vs_torchvision_fp32"):
            assert math.isfinite(row[key]) and row[key] > 0
    for row in saved["training"]:
        for key in ("ms_per_step", "vs_owp_fp32", "vs_torchvision_fp32"):
            assert math.isfinite(row[key]) and row[key] > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--batches", "1,x"], "--batches takes positive integers (1,8), got 1,x"),
        (["--batches", "0"], "--batches takes positive integers"),
        (["--height", "8"], "--height must be at least 32, got 8"),
        (["--iters", "0"], "--iters must be at least 1, got 0"),
    ],
)
def test_bad_bench_options_are_one_line_errors(capsys, argv, message):
    assert main(["bench", "--quick", "--device", "cpu", *argv]) == 2
    assert message in capsys.readouterr().err

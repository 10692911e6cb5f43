"""``owp eval`` under ``torchrun``: two gloo ranks on this machine share the prediction.

A demo run trained for 30 steps (AR@100 above 0) is evaluated by one process and by ``torchrun
--nproc_per_node 2 -m owp.cli eval`` (5 val images: shards of 3 and 2). Checked: the metrics and
the saved proposals equal one process's exactly (``--batch-size 1``); only rank 0
prints and writes; a second sharded run reuses the saved predictions on every rank (rank 0
decides) and ends; ``owp predict`` under torchrun is refused in one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import run_cli, run_quietly

FILES = [
    "metrics.json", "predictions.json", "proposals.centerness.json", "proposals.json",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained_run(synthetic_set_factory: Callable[..., Path], tmp_path_factory) -> Path:
    data = synthetic_set_factory(num_train=4, num_val=5, image_size=96, seed=3)
    run = tmp_path_factory.mktemp("ranks") / "run"
    result = run_quietly(
        "train", "--preset", "demo", "--out", run, "--set", f"data.train={data}", "--set",
        f"data.val={data}", "--set", "data.num_workers=0", "--set", "train.max_iters=30",
        "--set", "train.batch_size=2", "--set", "model.min_size=96", "--set",
        "model.max_size=96", "--set", "eval.max_dets=[10, 100]",
    )  # fmt: skip
    assert result.code == 0, result.err
    return run


def torchrun_eval(run: Path, out: Path) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 -m owp.cli eval RUN`` on the CPU."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            "2", "-m", "owp.cli", "eval", str(run), "--batch-size", "1", "--max-dets",
            "10,100", "--also-scoring", "centerness", "--device", "cpu", "--out", str(out),
        ],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_sharded_eval_equals_one_process(trained_run: Path, tmp_path: Path, capsys) -> None:
    single = run_cli(
        capsys, "eval", trained_run, "--batch-size", "1", "--max-dets", "10,100",
        "--also-scoring", "centerness", "--device", "cpu", "--out", tmp_path / "one",
    )  # fmt: skip
    assert single.code == 0, single.err

    ranks = torchrun_eval(trained_run, tmp_path / "two")
    assert ranks.returncode == 0, ranks.stdout + ranks.stderr
    assert ranks.stdout.count("proposals and metrics in") == 1  # rank 0 prints, rank 1 not
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == FILES
    one, two = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "two"))
    assert two == one
    assert one["AR@100"] > 0 and one["centerness/AR@100"] > 0
    for name in ("proposals.json", "proposals.centerness.json"):
        proposals = json.loads((tmp_path / "two" / name).read_text())
        assert proposals and proposals == json.loads((tmp_path / "one" / name).read_text())

    again = torchrun_eval(trained_run, tmp_path / "two")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("reused proposals.json and proposals.centerness.json in") == 1
    reused = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert reused.pop("reused") == ["proposals.json", "proposals.centerness.json"]
    assert reused == one


def test_predict_refused_under_torchrun(
    trained_run: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = run_cli(capsys, "predict", trained_run, "--out", tmp_path / "pred")
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "owp: error: owp predict runs in one process: under torchrun (WORLD_SIZE=2) every rank "
        "would write the same files; run it without torchrun (owp eval shares a dataset among "
        "ranks)"
    ]
    assert not (tmp_path / "pred").exists()

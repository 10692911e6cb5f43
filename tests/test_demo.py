"""``owp demo``: a fixed amount of work, so the same table on every run (the claim itself is
checked by running the demo, not here)."""

from __future__ import annotations

import pytest

from owp.data.synthetic import SynthConfig, generate_synthetic_dataset
from owp.demo import run_demo


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synth")
    generate_synthetic_dataset(folder, SynthConfig(num_train=8, num_val=4, image_size=96, seed=7))
    return folder


def test_demo_pipeline_runs_and_is_deterministic(small_set, tmp_path, capsys):
    first = run_demo(tmp_path / "a", device="cpu", data=small_set, iterations=2)
    second = run_demo(tmp_path / "b", device="cpu", data=small_set, iterations=2)
    assert [row["method"] for row in first] == [
        "FCOS-OWP tiny, IoU-CS-IS, scored by IoU",
        "same model, scored by centerness",
        "sliding windows (no learning)",
    ]
    keys = ("AR@10", "AR@100", "AR@1000", "num_gt")
    assert [[row[k] for k in keys] for row in first] == [[row[k] for k in keys] for row in second]
    assert (tmp_path / "a" / "overlay.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "(2 training iterations)" in printed and "for 2 iterations" in printed


def test_a_minutes_budget_is_named_in_the_table(small_set, tmp_path, capsys):
    run_demo(tmp_path / "c", device="cpu", data=small_set, iterations=2, minutes=1e-6)
    printed = capsys.readouterr().out
    assert "(1 training iterations, cut from 2 by --minutes)" in printed

"""``owp demo``: a fixed amount of work, so the same table on every run (the claim itself is
checked by running the demo, not here)."""

from __future__ import annotations

import pytest

import owp.workflows.demo
from owp.errors import OwpInputError
from owp.models.baselines import selective_search_available
from owp.workflows.demo import DEMO_COLUMNS, run_demo


@pytest.fixture(scope="module")
def small_set(synthetic_set_factory):
    return synthetic_set_factory(num_train=8, num_val=4, image_size=96, seed=7, style="photo")


def test_demo_pipeline_runs_and_is_deterministic(small_set, tmp_path, capsys):
    first = run_demo(tmp_path / "a", device="cpu", data=small_set, iterations=2)
    second = run_demo(tmp_path / "b", device="cpu", data=small_set, iterations=2)
    assert [row["method"] for row in first] == [
        "FCOS-OWP tiny, IoU-CS-IS, scored by IoU",
        "same model, scored by centerness",
        "sliding windows (no learning)",
    ] + (["Selective Search fast (no learning)"] if selective_search_available() else [])
    for row in first[:2]:  # both scorings of the model: every column of the table
        assert all(column in row for column in DEMO_COLUMNS[1:])
    keys = ("AR@10", "AR@100", "AR@1000")
    assert [[row[k] for k in keys] for row in first] == [[row[k] for k in keys] for row in second]
    assert first[0]["num_gt"] == first[2]["num_gt"] > 0
    assert (tmp_path / "a" / "overlay.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "(2 training iterations)" in printed and "for 2 iterations" in printed


def test_an_output_path_that_is_a_file_is_refused_before_any_work(tmp_path, capsys):
    target = tmp_path / "README.md"
    target.write_text("keep me")
    with pytest.raises(OwpInputError, match="not a folder"):
        run_demo(target, device="cpu", data=tmp_path / "absent", iterations=1)
    assert target.read_text() == "keep me"
    assert capsys.readouterr().out == ""  # refused before the first line of output


def test_a_minutes_budget_is_named_in_the_table(small_set, tmp_path, capsys):
    run_demo(tmp_path / "c", device="cpu", data=small_set, iterations=2, minutes=1e-6)
    printed = capsys.readouterr().out
    assert "(1 training iterations, cut from 2 by --minutes)" in printed


@pytest.mark.skipif(
    not selective_search_available(), reason="needs opencv-contrib (owp[baselines])"
)
def test_selective_search_runs_once_per_val_set(small_set, tmp_path, monkeypatch):
    first = run_demo(tmp_path / "d", device="cpu", data=small_set, iterations=1)
    calls = []
    real = owp.workflows.demo.propose_for_images

    def counted(images, proposer, **kwargs):
        calls.append(kwargs.get("images_dir"))
        return real(images, proposer, **kwargs)

    monkeypatch.setattr(owp.workflows.demo, "propose_for_images", counted)
    second = run_demo(tmp_path / "d", device="cpu", data=small_set, iterations=1)
    assert calls == [None]  # only the size-only sliding windows were proposed again
    assert first[-1] == second[-1]

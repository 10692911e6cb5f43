"""owp report: the page of a run and of a study, its gallery marks (hand case), no network, and
the page in headless Chromium (skipped without it); owp eval --per-category on the same run."""

import json
import logging
import re
import shutil
import subprocess

import numpy as np
import pytest

from owp.cli import main
from owp.data.synthetic import SynthConfig, generate_synthetic_dataset
from owp.evaluation.proposals import evaluate_proposals
from owp.evaluation.tables import format_value
from owp.workflows.report import write_report
from owp.workflows.report.gallery import STATUSES, gallery_marks
from owp.workflows.report.runs import evaluate_run

TINY = (
    "train.max_iters=3",
    "train.batch_size=2",
    "train.checkpoint_period=100",
    "train.eval_period=0",
    "train.log_period=1",
    "data.num_workers=0",
    "model.min_size=96",
    "model.max_size=96",
)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def owp(*argv: str) -> int:
    """``owp ARGV`` through the CLI, leaving the ``owp`` logger as it was."""
    logger = logging.getLogger("owp")
    saved = logger.handlers[:], logger.level, logger.propagate
    try:
        return main(list(argv))
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A study of two tiny runs on a tiny synthetic set: (data folder, study folder)."""
    root = tmp_path_factory.mktemp("report")
    data = root / "data"
    generate_synthetic_dataset(
        data, SynthConfig(num_train=6, num_val=5, image_size=96, seed=2, style="flat")
    )
    out = root / "study"
    sets = [arg for item in TINY for arg in ("--set", item)]
    code = owp(
        "study", "synth-centerness", "synth-iou-cs-is", "--out", str(out), "--data", str(data),
        "--heatmap-runs", "synth-iou-cs-is", *sets,
    )  # fmt: skip
    assert code == 0
    return data, out


def _gallery(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="gallery-data">(.*?)</script>', page)
    return json.loads(found.group(1).replace("<\\/", "</"))


def test_gallery_marks_by_hand():
    novel = np.array([[0, 0, 10, 10], [50, 50, 10, 10], [80, 0, 10, 10]], dtype=float)
    base = np.array([[20, 20, 10, 10]], dtype=float)
    proposals = np.array(
        [
            [20, 20, 10, 10],  # the base box
            [0, 0, 10, 10],  # novel box 0
            [0, 0, 10, 11],  # novel box 0 again, already taken: nothing
            [49, 49, 10, 10],  # novel box 1 at IoU 81/119 = 0.68
            [30, 30, 40, 40],  # overlaps nothing at 0.5
        ],
        dtype=float,
    )
    statuses, found = gallery_marks(proposals, novel, base)
    assert [STATUSES[s] for s in statuses] == ["base", "novel", "none", "novel", "none"]
    assert found == [1, 3, None]


def test_gallery_marks_prefer_the_best_overlap_then_the_later_box():
    novel = np.array([[0, 0, 10, 10], [0, 0, 10, 12], [0, 0, 10, 12]], dtype=float)
    statuses, found = gallery_marks(np.array([[0, 0, 10, 12.0], [0, 0, 10, 10]]), novel, novel[:0])
    assert found == [1, None, 0]  # a tie between boxes 1 and 2 goes to the later one
    assert [STATUSES[s] for s in statuses] == ["novel", "novel"]


@pytest.fixture(scope="module")
def study_page(study, tmp_path_factory):
    """The report of the study (3 gallery images per run, k up to 20)."""
    _, folder = study
    out = tmp_path_factory.mktemp("study-report")
    return write_report(folder, out, gallery=3, max_k=20)


def test_each_run_section_holds_both_protocols_plots_and_its_gallery(study, study_page):
    _, folder = study
    page = study_page.read_text()
    for name in ("synth-centerness", "synth-iou-cs-is"):
        run_dir = folder / "runs" / name
        run = evaluate_run(name, run_dir, study_page.parent / "unused")
        for protocol in ("strict", "oln"):
            ar = evaluate_proposals(run.coco, run.proposals, run.split, protocol=protocol)
            table = re.search(rf'<table id="run-{name}-metrics">(.*?)</table>', page).group(1)
            label = re.escape(ar["protocol_label"])  # strict, oln (pool 1500)
            row = re.search(rf"<tr><td>{label}</td>(.*?)</tr>", table).group(1)
            assert f"<td>{format_value(ar['AR@100'])}</td>" in row
        assert f'id="run-{name}-gallery"' in page
    # Per run: k, IoU, histograms, per category, training; for the study: k and IoU.
    assert page.count('<img class="plot"') == 2 * 5 + 2
    assert 'id="k-slider" min="1" max="20"' in page
    gallery = _gallery(page)
    assert len(gallery) == 2 * 3 and page.count('<figure class="shot"') == 6
    for item in gallery.values():
        assert len(item["proposals"]) == 20
        assert {p[4] for p in item["proposals"]} <= {0, 1, 2}
        assert item["src"].startswith("data:image/jpeg;base64,")
    # Nothing is fetched: every src and href is a data URI or an anchor in the page.
    for link in re.findall(r'(?:src|href)="([^"]*)"', page):
        assert link.startswith(("data:", "#")), link[:40]
    assert not (study_page.parent / "eval").exists()  # the runs' saved proposals were used


def test_the_study_comparison_table_links_every_run(study, study_page):
    _, folder = study
    page = study_page.read_text()
    table = re.search(r'<table id="comparison-table">(.*?)</table>', page).group(1)
    rows = json.loads((folder / "results.json").read_text())
    assert len(rows) == 2
    for row in rows:
        assert f'href="#run-{row["run"]}"' in table
        assert f'<section class="run" id="run-{row["run"]}">' in page


def test_report_on_other_data_evaluates_the_run_first(study, tmp_path):
    _, folder = study
    other = tmp_path / "other"
    generate_synthetic_dataset(
        other, SynthConfig(num_train=1, num_val=3, image_size=96, seed=9, style="flat")
    )
    out = tmp_path / "report"
    code = owp("report", str(folder / "runs" / "synth-centerness"), "--data", str(other),
               "--out", str(out), "--gallery", "1")  # fmt: skip
    assert code == 0
    assert (out / "eval" / "synth-centerness" / "proposals.json").is_file()
    assert str(other / "val.json") in (out / "index.html").read_text()


def test_report_of_a_folder_that_is_neither_fails_in_one_line(tmp_path, capsys):
    assert owp("report", str(tmp_path), "--out", str(tmp_path / "r")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a run folder" in err
    assert owp("report", str(tmp_path), "--out", str(tmp_path / "r"), "--gallery", "-1") == 2
    assert "--gallery must be >= 0" in capsys.readouterr().err


def test_eval_per_category_on_a_run(study, tmp_path, capsys):
    _, folder = study
    out = tmp_path / "eval"
    code = owp("eval", str(folder / "runs" / "synth-centerness"), "--per-category",
               "--out", str(out))  # fmt: skip
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["per_category"] and {"count", "R50@100", "AR@100"} <= set(
        metrics["per_category"][0]
    )
    assert (out / "metrics_per_category.png").is_file()
    assert "per-category recall" in capsys.readouterr().out


def _chromium(page, *flags: str) -> subprocess.CompletedProcess:
    """Headless Chromium on ``page`` (no network: every host name fails to resolve)."""
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
         "--v=0", "--host-resolver-rules=MAP * ~NOTFOUND", *flags, page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_the_page_runs_in_headless_chromium_without_console_errors(study_page, tmp_path):
    shown = _chromium(study_page, "--dump-dom")
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert _console_lines(shown.stderr) == []
    dom = shown.stdout
    assert 'id="k-slider"' in dom and 'id="run-synth-iou-cs-is-gallery"' in dom
    # The script ran: it drew the boxes and wrote the captions.
    assert dom.count("<rect") >= 2 and "novel objects found" in dom
    # The same check sees a script error and a missing file.
    broken = tmp_path / "broken.html"
    broken.write_text('<img src="missing.png"><script>throw new Error("boom")</script>')
    lines = _console_lines(_chromium(broken, "--dump-dom").stderr)
    assert any("boom" in line for line in lines)

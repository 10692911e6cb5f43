"""Tests of the ``owp`` command line, run in-process through :func:`owp.cli.main`.

Every command runs on a tiny synthetic dataset written once per module. Bad input must give exit
status 2, exactly one ``owp: error:`` line on stderr naming the offending file, no traceback,
and leave every pre-existing output untouched.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import Run, owp_logger_restored, run_cli, run_quietly
from owp.cli import main

COMMANDS = ("demo", "data", "propose-baseline", "eval-proposals", "eval-detections")
DATA_COMMANDS = ("synth", "split", "stats")
STRICT_KEYS = {
    "AR@10",
    "AR@20",
    "AR@50",
    "AR@100",
    "AR@300",
    "AR@1000",
    "AR_small@100",
    "AR_medium@100",
    "AR_large@100",
    "protocol",
    "protocol_label",
    "split",
    "num_images",
    "num_gt",
}
OLN_KEYS = {
    "AR@10",
    "AR@100",
    "AR_small@100",
    "AR_medium@100",
    "AR_large@100",
    "protocol",
    "protocol_label",
    "oln_pool",
    "split",
    "num_images",
    "num_gt",
}
SENTINEL = "pre-existing output, must survive\n"
OLD_MTIME_NS = 1_000_000_000 * 1_000_000_000  # 2001-09-09, far from "now"


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated_logging() -> Iterator[None]:
    with owp_logger_restored():
        yield


def assert_ok(run: Run) -> None:
    assert run.code == 0, run.err
    assert "Traceback" not in run.out + run.err


def assert_input_error(run: Run, *names: str | Path) -> str:
    """Exit 2, one ``owp: error:`` line on stderr naming each of ``names``; returns the line."""
    assert "Traceback" not in run.out + run.err
    assert run.code == 2, (run.out, run.err)
    lines = run.err.splitlines()
    assert len(lines) == 1, run.err
    line = lines[0]
    assert line.startswith("owp: error: "), line
    for name in names:
        assert str(name) in line, (name, line)
    return line


def make_sentinel(path: Path) -> Path:
    """A pre-existing file with known content and an old mtime."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SENTINEL)
    os.utime(path, ns=(OLD_MTIME_NS, OLD_MTIME_NS))
    return path


def assert_untouched(path: Path) -> None:
    assert path.read_text() == SENTINEL
    assert path.stat().st_mtime_ns == OLD_MTIME_NS


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def described_commands(help_text: str) -> dict[str, str]:
    """``{name: description}`` of the lines of a help text that start with a word."""
    lines = help_text.splitlines()
    found = {}
    for index, line in enumerate(lines):
        words = line.split()
        if not words or not line.startswith("    "):
            continue
        rest = words[1:]
        if not rest and index + 1 < len(lines):  # a long name puts its help on the next line
            rest = lines[index + 1].split()
        found[words[0]] = " ".join(rest)
    return found


# ---------------------------------------------------------------------------------------------
# fixtures: one tiny synthetic dataset and one proposals file per module
# ---------------------------------------------------------------------------------------------


@dataclass
class Synth:
    root: Path
    run: Run

    @property
    def val(self) -> Path:
        return self.root / "val.json"

    @property
    def split(self) -> Path:
        return self.root / "split.yaml"

    def val_dict(self) -> dict[str, Any]:
        return load_json(self.val)

    def base_ids(self) -> set[int]:
        names = yaml.safe_load(self.split.read_text())["base"]
        return {c["id"] for c in self.val_dict()["categories"] if c["name"] in names}

    def novel_ids(self) -> set[int]:
        return {c["id"] for c in self.val_dict()["categories"]} - self.base_ids()


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    root = tmp_path_factory.mktemp("synth") / "D"
    # The flat style: at most 8 objects an image, so ground-truth boxes recall all at AR@10.
    options = ("--train", "6", "--val", "4", "--size", "96", "--seed", "1", "--style", "flat")
    run = run_quietly("data", "synth", "--out", root, *options)
    return Synth(root, run)


@pytest.fixture(scope="module")
def proposals(synth: Synth, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run]:
    out = tmp_path_factory.mktemp("proposals") / "P.json"
    return out, run_quietly("propose-baseline", "--data", synth.root, "--out", out)


@pytest.fixture
def dataset_copy(synth: Synth, tmp_path: Path) -> Path:
    """A private copy of the synthetic dataset that a test may damage."""
    return Path(shutil.copytree(synth.root, tmp_path / "D"))


# ---------------------------------------------------------------------------------------------
# help and entry point
# ---------------------------------------------------------------------------------------------


def test_help_lists_every_command_with_a_description(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    described = described_commands(capsys.readouterr().out)
    for command in COMMANDS:
        assert len(described.get(command, "").split()) >= 3, (command, described)


def test_data_help_lists_synth_split_stats(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "--help"])
    assert exit_info.value.code == 0
    described = described_commands(capsys.readouterr().out)
    for command in DATA_COMMANDS:
        assert len(described.get(command, "").split()) >= 3, (command, described)


@pytest.mark.parametrize(
    "command",
    [[name] for name in COMMANDS] + [["data", name] for name in DATA_COMMANDS],
    ids=" ".join,
)
def test_every_command_help_exits_zero(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: owp {' '.join(command)}")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import owp

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"owp {owp.__version__}"


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    run = run_cli(capsys)
    assert run.code == 2
    assert run.out.startswith("usage: owp")


def test_console_script_entry_point(tmp_path: Path) -> None:
    (entry,) = importlib.metadata.entry_points(group="console_scripts", name="owp")
    assert entry.value == "owp.cli:main"
    done = subprocess.run(
        [sys.executable, "-m", "owp.cli", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: owp")
    for command in COMMANDS:
        assert command in done.stdout


# ---------------------------------------------------------------------------------------------
# end to end on the tiny synthetic set
# ---------------------------------------------------------------------------------------------


def test_data_synth_writes_the_dataset(synth: Synth) -> None:
    assert_ok(synth.run)
    assert "wrote 6 train + 4 val images" in synth.run.out
    for name in ("train.json", "val.json", "split.yaml", "objects.json", "manifest.json"):
        assert (synth.root / name).is_file(), name
    val = synth.val_dict()
    assert len(val["images"]) == 4
    assert len(load_json(synth.root / "train.json")["images"]) == 6
    assert {(img["width"], img["height"]) for img in val["images"]} == {(96, 96)}
    assert len(list((synth.root / "val").iterdir())) == 4


def test_propose_baseline_writes_coco_results(synth: Synth, proposals: tuple[Path, Run]) -> None:
    path, run = proposals
    assert_ok(run)
    assert str(path) in run.out
    results = load_json(path)
    assert isinstance(results, list) and results
    image_ids = {img["id"] for img in synth.val_dict()["images"]}
    assert {r["image_id"] for r in results} == image_ids
    for result in results[:50]:
        assert set(result) >= {"image_id", "bbox", "score"}
        assert result["bbox"][2] > 0 and result["bbox"][3] > 0


def test_propose_baseline_random_with_num(
    synth: Synth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "random.json"
    run = run_cli(
        capsys, "propose-baseline", "--data", synth.val, "--method", "random", "--num", "7",
        "--out", out,
    )  # fmt: skip
    assert_ok(run)
    results = load_json(out)
    assert len(results) == 7 * len(synth.val_dict()["images"])


def _check_recalls(metrics: dict[str, Any]) -> None:
    for key, value in metrics.items():
        if key.startswith("AR"):
            assert value is None or 0.0 <= value <= 1.0, (key, value)


def test_eval_proposals_strict_writes_metrics(
    synth: Synth, proposals: tuple[Path, Run], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "M.json"
    run = run_cli(
        capsys, "eval-proposals", "--gt", synth.val, "--proposals", proposals[0],
        "--split", synth.split, "--out", out,
    )  # fmt: skip
    assert_ok(run)
    assert "AR@1000" in run.out and "protocol strict" in run.out
    metrics = load_json(out)
    assert set(metrics) == STRICT_KEYS
    _check_recalls(metrics)
    assert metrics["protocol"] == "strict"
    assert metrics["split"] == "synthetic"
    assert metrics["num_images"] == 4
    novel = synth.novel_ids()
    val = synth.val_dict()
    expected_gt = sum(
        1 for a in val["annotations"] if a["category_id"] in novel and not a.get("iscrowd")
    )
    assert metrics["num_gt"] == expected_gt
    budgets = [metrics[f"AR@{k}"] for k in (10, 20, 50, 100, 300, 1000)]
    assert budgets == sorted(budgets)  # recall never drops as the budget grows


def test_eval_proposals_oln_with_two_budgets(
    synth: Synth, proposals: tuple[Path, Run], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "M.json"
    run = run_cli(
        capsys, "eval-proposals", "--gt", synth.val, "--proposals", proposals[0],
        "--split", synth.split, "--protocol", "oln", "--max-dets", "10,100", "--out", out,
    )  # fmt: skip
    assert_ok(run)
    metrics = load_json(out)
    assert set(metrics) == OLN_KEYS
    _check_recalls(metrics)
    assert metrics["protocol"] == "oln" and metrics["oln_pool"] == 1500
    assert "protocol oln (pool 1500)" in run.out


def test_eval_proposals_prints_every_published_convention(
    synth: Synth, proposals: tuple[Path, Run], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "conventions.json"
    run = run_cli(
        capsys, "eval-proposals", "--gt", synth.val, "--proposals", proposals[0],
        "--split", synth.split, "--protocol", "all", "--out", out,
    )  # fmt: skip
    assert_ok(run)
    rows = load_json(out)["conventions"]
    labels = [row["convention"] for row in rows]
    assert labels == ["strict", "oln (pool 1500)", "oln (pool 500)", "oln (pool 100)"]
    for label in labels:
        assert label in run.out
    # Each row is what --protocol/--oln-pool gives on its own.
    for row in rows[1:]:
        single = tmp_path / "single.json"
        assert_ok(
            run_cli(
                capsys,
                "eval-proposals",
                "--gt",
                synth.val,
                "--proposals",
                proposals[0],
                "--split",
                synth.split,
                "--protocol",
                "oln",
                "--oln-pool",
                str(row["oln_pool"]),
                "--out",
                single,
            )  # fmt: skip
        )
        alone = load_json(single)
        assert {k: alone[k] for k in alone if k.startswith("AR")} == {
            k: row[k] for k in row if k.startswith("AR")
        }
    # A smaller pool holds fewer proposals to begin with: recall at 1000 cannot grow.
    assert rows[3]["AR@1000"] <= rows[2]["AR@1000"] <= rows[1]["AR@1000"]


def test_eval_proposals_ground_truth_boxes_recall_everything(
    synth: Synth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt_boxes = [
        {"image_id": a["image_id"], "bbox": a["bbox"], "score": 1.0}
        for a in synth.val_dict()["annotations"]
    ]
    path = write_json(tmp_path / "perfect.json", gt_boxes)
    out = tmp_path / "M.json"
    for protocol in ("strict", "oln"):
        run = run_cli(
            capsys, "eval-proposals", "--gt", synth.val, "--proposals", path,
            "--split", synth.split, "--protocol", protocol, "--out", out,
        )  # fmt: skip
        assert_ok(run)
        metrics = load_json(out)
        for k in (10, 100, 1000):
            assert metrics[f"AR@{k}"] == pytest.approx(1.0), (protocol, k)


def test_eval_proposals_engines_agree(
    synth: Synth, proposals: tuple[Path, Run], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    metrics = {}
    for engine in ("faster-coco-eval", "pycocotools"):
        out = tmp_path / f"{engine}.json"
        run = run_cli(
            capsys, "eval-proposals", "--gt", synth.val, "--proposals", proposals[0],
            "--split", synth.split, "--engine", engine, "--max-dets", "100,1000", "--out", out,
        )  # fmt: skip
        assert_ok(run)
        metrics[engine] = load_json(out)
    for key, value in metrics["pycocotools"].items():
        if isinstance(value, float):
            assert metrics["faster-coco-eval"][key] == pytest.approx(value, abs=1e-9), key
        else:
            assert metrics["faster-coco-eval"][key] == value, key


def test_eval_detections_ground_truth_gives_perfect_ap(
    synth: Synth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    detections = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 1.0,
        }
        for a in synth.val_dict()["annotations"]
    ]
    path = write_json(tmp_path / "dets.json", detections)
    out = tmp_path / "AP.json"
    run = run_cli(
        capsys, "eval-detections", "--gt", synth.val, "--detections", path,
        "--split", synth.split, "--out", out,
    )  # fmt: skip
    assert_ok(run)
    assert "base-class AP" in run.out
    metrics = load_json(out)
    assert metrics["AP"] == pytest.approx(1.0)
    assert metrics["AP50"] == pytest.approx(1.0)
    assert metrics["AP75"] == pytest.approx(1.0)
    base = synth.base_ids()
    assert metrics["num_gt"] == sum(
        1 for a in synth.val_dict()["annotations"] if a["category_id"] in base
    )
    assert metrics["split"] == "synthetic"


def test_data_stats_prints_counts(synth: Synth, capsys: pytest.CaptureFixture[str]) -> None:
    run = run_cli(capsys, "data", "stats", synth.root, "--split", synth.split)
    assert_ok(run)
    val = synth.val_dict()
    base, novel = synth.base_ids(), synth.novel_ids()
    assert f"annotations: {synth.val}" in run.out
    assert f"images:      {synth.root / 'val'}" in run.out
    assert f"images 4  boxes {len(val['annotations'])} (+0 crowd)  classes 16" in run.out
    assert "split synthetic: 8 base, 8 novel classes" in run.out
    per_side = dict(re.findall(r"^\s*(base|novel): +(\d+) boxes", run.out, flags=re.MULTILINE))
    assert per_side == {
        "base": str(sum(1 for a in val["annotations"] if a["category_id"] in base)),
        "novel": str(sum(1 for a in val["annotations"] if a["category_id"] in novel)),
    }
    # Four images cannot show all 16 classes: the unused ones are the only problem listed.
    unused = 16 - len({a["category_id"] for a in val["annotations"]})
    if unused:
        assert f"problems (1):\n  - {unused} categories have no annotation" in run.out
    else:
        assert "problems: none found" in run.out


def test_data_stats_clean_dataset_has_no_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "E"  # enough val images for every class to appear
    synth_run = run_cli(
        capsys, "data", "synth", "--out", root, "--train", "1", "--val", "20", "--size", "64",
        "--seed", "1", "--format", "png",
    )  # fmt: skip
    assert_ok(synth_run)
    run = run_cli(capsys, "data", "stats", root, "--split", root / "split.yaml")
    assert_ok(run)
    assert "images 20" in run.out
    assert "problems: none found" in run.out


def test_data_stats_json(synth: Synth, capsys: pytest.CaptureFixture[str]) -> None:
    run = run_cli(capsys, "data", "stats", synth.root, "--json")
    assert_ok(run)
    stats = json.loads(run.out)
    assert stats["annotations"] == str(synth.val)
    assert stats["num_images"] == 4
    assert stats["num_boxes"] == len(synth.val_dict()["annotations"])
    assert stats["num_classes"] == 16
    assert isinstance(stats["problems"], list)


def test_data_split_writes_base_and_novel(
    synth: Synth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "S"
    run = run_cli(capsys, "data", "split", "--gt", synth.val, "--split", synth.split, "--out", out)
    assert_ok(run)
    val = synth.val_dict()
    image_ids = sorted(img["id"] for img in val["images"])
    sides = {"base": synth.base_ids(), "novel": synth.novel_ids()}
    for side, ids in sides.items():
        part = load_json(out / f"val_{side}.json")
        assert sorted(img["id"] for img in part["images"]) == image_ids
        assert {c["id"] for c in part["categories"]} == ids
        assert part["annotations"], side
        assert {a["category_id"] for a in part["annotations"]} <= ids
        expected = [a["id"] for a in val["annotations"] if a["category_id"] in ids]
        assert [a["id"] for a in part["annotations"]] == expected
    assert str(out / "val_base.json") in run.out


# ---------------------------------------------------------------------------------------------
# bad ground truth: every command that reads one
# ---------------------------------------------------------------------------------------------


def _without(key: str) -> Callable[[dict], Any]:
    def edit(coco: dict) -> dict:
        del coco[key]
        return coco

    return edit


def _first_annotation(field: str, value: Any) -> Callable[[dict], Any]:
    def edit(coco: dict) -> dict:
        coco["annotations"][0][field] = value
        return coco

    return edit


def _duplicate_image(coco: dict) -> dict:
    coco["images"].append(dict(coco["images"][0]))
    return coco


BAD_GT: dict[str, tuple[Callable[[dict], Any] | str | None, str]] = {
    # name: (edit of val.json, or raw text, or None for a missing file; message fragment)
    "missing-file": (None, "not found"),
    "malformed-json": ('{"images": [', "malformed JSON"),
    "empty-file": ("", "malformed JSON"),
    "top-level-list": (lambda coco: [coco], "not a COCO instances file"),
    "no-images": (_without("images"), "missing 'images'"),
    "no-annotations": (_without("annotations"), "missing 'annotations'"),
    "no-categories": (_without("categories"), "missing 'categories'"),
    "unknown-category": (_first_annotation("category_id", 999), "unknown category id 999"),
    "unknown-image": (_first_annotation("image_id", 999), "image id 999"),
    "bad-bbox": (_first_annotation("bbox", [1, 2, 3]), "bbox"),
    "duplicate-image-id": (_duplicate_image, "duplicate id"),
}


def _write_bad_gt(synth: Synth, folder: Path, case: str) -> Path:
    edit, _ = BAD_GT[case]
    path = folder / "gt.json"
    if isinstance(edit, str):
        path.write_text(edit)
    elif edit is not None:
        write_json(path, edit(synth.val_dict()))
    return path


def _command_reading_gt(command: str, gt: Path, synth: Synth, tmp_path: Path) -> tuple[list, Path]:
    """argv running ``command`` on ``gt``, and the pre-existing output it must not touch."""
    proposals = write_json(tmp_path / "props.json", [])
    if command == "eval-proposals":
        out = make_sentinel(tmp_path / "M.json")
        argv = [command, "--gt", gt, "--proposals", proposals, "--split", synth.split]
        return [*argv, "--out", out], out
    if command == "eval-detections":
        out = make_sentinel(tmp_path / "M.json")
        argv = [command, "--gt", gt, "--detections", proposals, "--split", synth.split]
        return [*argv, "--out", out], out
    if command == "data split":
        out = make_sentinel(tmp_path / "S" / f"{gt.stem}_base.json")
        argv = ["data", "split", "--gt", gt, "--split", synth.split, "--out", out.parent]
        return [*argv, "--force"], out
    if command == "data stats":  # writes nothing; the sentinel only keeps the signature uniform
        return ["data", "stats", gt, "--split", synth.split], make_sentinel(tmp_path / "unused")
    assert command == "propose-baseline"
    out = make_sentinel(tmp_path / "P.json")
    return [command, "--data", gt, "--num", "5", "--out", out], out


GT_COMMANDS = ("eval-proposals", "eval-detections", "data split", "data stats", "propose-baseline")


@pytest.mark.parametrize("command", GT_COMMANDS)
@pytest.mark.parametrize("case", sorted(BAD_GT))
def test_bad_ground_truth_is_one_line_error(
    case: str, command: str, synth: Synth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt = _write_bad_gt(synth, tmp_path, case)
    argv, out = _command_reading_gt(command, gt, synth, tmp_path)
    line = assert_input_error(run_cli(capsys, *argv), gt)
    assert BAD_GT[case][1] in line
    assert_untouched(out)


@pytest.mark.parametrize("command", GT_COMMANDS)
def test_ground_truth_folder_is_one_line_error(
    command: str, synth: Synth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "gt-folder"
    folder.mkdir()
    argv, out = _command_reading_gt(command, folder, synth, tmp_path)
    assert_input_error(run_cli(capsys, *argv), folder)
    assert_untouched(out)


def test_non_positive_gt_boxes_are_dropped_with_one_warning(
    synth: Synth, proposals: tuple[Path, Run], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    coco = synth.val_dict()
    coco["annotations"][0]["bbox"][2] = 0
    coco["annotations"][1]["bbox"][3] = -4
    gt = write_json(tmp_path / "degenerate.json", coco)
    out = tmp_path / "M.json"
    run = run_cli(
        capsys, "eval-proposals", "--gt", gt, "--proposals", proposals[0],
        "--split", synth.split, "--out", out,
    )  # fmt: skip
    assert_ok(run)
    lines = run.err.splitlines()
    assert len(lines) == 1, run.err
    assert lines[0].startswith("owp: warning: ")
    assert str(gt) in lines[0] and "dropped 2 boxes" in lines[0]
    assert set(load_json(out)) == STRICT_KEYS


def test_data_stats_warns_once_about_dropped_boxes(
    synth: Synth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    coco = synth.val_dict()
    coco["annotations"][0]["bbox"][2] = -1
    gt = write_json(tmp_path / "degenerate.json", coco)
    run = run_cli(
        capsys, "data", "stats", gt, "--split", synth.split, "--images", synth.root / "val",
        "--json",
    )  # fmt: skip
    assert_ok(run)
    warnings = [line for line in run.err.splitlines() if line.startswith("owp: warning:")]
    assert warnings == [f"owp: warning: {gt}: dropped 1 boxes with non-positive width or height"]
    assert "dropped 1 boxes with non-positive width or height" in json.loads(run.out)["problems"]


# ---------------------------------------------------------------------------------------------
# bad proposals and detections
# ---------------------------------------------------------------------------------------------

BAD_RESULTS: dict[str, tuple[Any, str]] = {
    "not-a-list": ({"image_id": 7, "bbox": [1, 2, 3, 4], "score": 1.0}, "JSON list"),
    "no-score": ([{"image_id": 7, "bbox": [1, 2, 3, 4]}], "score"),
    "nan-score": ([{"image_id": 7, "bbox": [1, 2, 3, 4], "score": float("nan")}], "score"),
    "no-image-id": ([{"bbox": [1, 2, 3, 4], "score": 1.0}], "image_id"),
    "short-bbox": ([{"image_id": 7, "bbox": [1, 2, 3], "score": 1.0}], "bbox"),
    "entry-not-object": ([[7, 1, 2, 3, 4, 1.0]], "not an object"),
    "unknown-image": (
        [{"image_id": 7, "bbox": [1, 2, 3, 4], "score": 1.0}]
        + [{"image_id": 4242, "bbox": [1, 2, 3, 4], "score": 1.0}],
        "not in the ground truth",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_RESULTS))
def test_bad_proposals_are_one_line_errors(
    case: str, synth: Synth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, fragment = BAD_RESULTS[case]
    path = write_json(tmp_path / "bad.json", data)
    out = make_sentinel(tmp_path / "M.json")
    run = run_cli(
        capsys, "eval-proposals", "--gt", synth.val, "--proposals", path,
        "--split", synth.split, "--out", out,
    )  # fmt: skip
    assert fragment in assert_input_error(run, path)
    assert_untouched(out)


@pytest.mark.parametrize("text", [None, "[{", "null"], ids=["missing", "malformed", "null"])
def test_unreadable_proposals_are_one_line_errors(
    text: str | None, synth: Synth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "props.json"
    if text is not None:
        path.write_text(text)
    run = run_cli(
        capsys, "eval-proposals", "--gt", synth.val, "--proposals", path, "--split", synth.split
    )
    assert_input_error(run, path)


def test_detections_with_unknown_category_are_an_error(
    synth: Synth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image_id = synth.val_dict()["images"][0]["id"]
    dets = [{"image_id": image_id, "category_id": 999, "bbox": [1, 2, 3, 4], "score": 1.0}]
    path = write_json(tmp_path / "dets.json", dets)
    out = make_sentinel(tmp_path / "AP.json")
    run = run_cli(
        capsys, "eval-detections", "--gt", synth.val, "--detections", path,
        "--split", synth.split, "--out", out,
    )  # fmt: skip
    assert "999" in assert_input_error(run, path)
    assert_untouched(out)


def test_degenerate_proposals_are_dropped_with_a_warning(
    synth: Synth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image_id = synth.val_dict()["images"][0]["id"]
    props = [
        {"image_id": image_id, "bbox": [1, 2, 30, 40], "score": 0.9},
        {"image_id": image_id, "bbox": [1, 2, 0, 40], "score": 0.8},
    ]
    path = write_json(tmp_path / "props.json", props)
    run = run_cli(
        capsys, "eval-proposals", "--gt", synth.val, "--proposals", path, "--split", synth.split
    )
    assert_ok(run)
    lines = run.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("owp: warning: "), run.err
    assert str(path) in lines[0] and "dropped 1 results" in lines[0]


# ---------------------------------------------------------------------------------------------
# bad options
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_dets", ["0", "-1", "abc", "10,x", "", "10,,100", "1.5", "+10"])
def test_bad_max_dets(
    max_dets: str,
    synth: Synth,
    proposals: tuple[Path, Run],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = make_sentinel(tmp_path / "M.json")
    run = run_cli(
        capsys, "eval-proposals", "--gt", synth.val, "--proposals", proposals[0],
        "--split", synth.split, "--max-dets", max_dets, "--out", out,
    )  # fmt: skip
    assert "--max-dets" in assert_input_error(run)
    assert run.out == ""
    assert_untouched(out)


SPLIT_COMMANDS = ("eval-proposals", "eval-detections", "data split", "data stats")


def _command_with_split(command: str, split: str | Path, synth: Synth, tmp_path: Path) -> list:
    empty = write_json(tmp_path / "empty.json", [])
    if command == "eval-proposals":
        return [command, "--gt", synth.val, "--proposals", empty, "--split", split]
    if command == "eval-detections":
        return [command, "--gt", synth.val, "--detections", empty, "--split", split]
    if command == "data split":
        return ["data", "split", "--gt", synth.val, "--split", split, "--out", tmp_path / "S"]
    return ["data", "stats", synth.root, "--split", split]


@pytest.mark.parametrize("command", SPLIT_COMMANDS)
def test_unknown_split_name(
    command: str, synth: Synth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _command_with_split(command, "no-such-split", synth, tmp_path)
    assert "unknown split 'no-such-split'" in assert_input_error(run_cli(capsys, *argv))
    assert not (tmp_path / "S").exists()


@pytest.mark.parametrize("command", SPLIT_COMMANDS)
def test_split_naming_absent_categories(
    command: str, synth: Synth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    split = tmp_path / "absent.yaml"
    split.write_text("name: absent\nbase: [disc, unicorn]\nnovel: rest\n")
    argv = _command_with_split(command, split, synth, tmp_path)
    line = assert_input_error(run_cli(capsys, *argv), synth.val)
    assert "unicorn" in line
    assert not (tmp_path / "S").exists()


@pytest.mark.parametrize("text", [None, "base: [disc\n", "just a string\n"])
@pytest.mark.parametrize("command", SPLIT_COMMANDS)
def test_unreadable_split_file(
    command: str,
    text: str | None,
    synth: Synth,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    split = tmp_path / "split.yaml"
    if text is not None:
        split.write_text(text)
    argv = _command_with_split(command, split, synth, tmp_path)
    assert_input_error(run_cli(capsys, *argv), split)


def test_split_without_novel_classes_cannot_be_evaluated(
    synth: Synth, proposals: tuple[Path, Run], capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_cli(
        capsys, "eval-proposals", "--gt", synth.val, "--proposals", proposals[0], "--split", "all"
    )
    assert "no novel classes" in assert_input_error(run)


def test_eval_proposals_out_is_a_folder(
    synth: Synth, proposals: tuple[Path, Run], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "metrics"
    keep = make_sentinel(folder / "keep.txt")
    run = run_cli(
        capsys, "eval-proposals", "--gt", synth.val, "--proposals", proposals[0],
        "--split", synth.split, "--out", folder,
    )  # fmt: skip
    assert "folder" in assert_input_error(run, folder)
    assert run.out == ""  # refused before evaluating, not after printing a table
    assert sorted(p.name for p in folder.iterdir()) == ["keep.txt"]
    assert_untouched(keep)


@pytest.mark.parametrize("command", ["eval-proposals", "eval-detections", "propose-baseline"])
def test_output_below_a_file_is_an_error(
    command: str,
    synth: Synth,
    proposals: tuple[Path, Run],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocker = make_sentinel(tmp_path / "blocker")
    out = blocker / "sub" / "out.json"
    if command == "propose-baseline":
        argv = [command, "--data", synth.root, "--num", "3", "--out", out]
    else:
        flag = "--proposals" if command == "eval-proposals" else "--detections"
        empty = write_json(tmp_path / "empty.json", [])
        argv = [command, "--gt", synth.val, flag, empty, "--split", synth.split, "--out", out]
    assert_input_error(run_cli(capsys, *argv), blocker)
    assert_untouched(blocker)


def test_eval_detections_out_is_a_folder(
    synth: Synth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = write_json(tmp_path / "empty.json", [])
    run = run_cli(
        capsys, "eval-detections", "--gt", synth.val, "--detections", empty,
        "--split", synth.split, "--out", tmp_path,
    )  # fmt: skip
    assert_input_error(run, tmp_path)


@pytest.mark.parametrize("num", ["0", "-3"])
def test_propose_baseline_needs_a_positive_num(
    num: str, synth: Synth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = make_sentinel(tmp_path / "P.json")
    run = run_cli(capsys, "propose-baseline", "--data", synth.root, "--num", num, "--out", out)
    assert "--num" in assert_input_error(run)
    assert_untouched(out)


def test_propose_baseline_out_is_a_folder(
    synth: Synth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_cli(capsys, "propose-baseline", "--data", synth.root, "--out", tmp_path)
    assert_input_error(run, tmp_path)
    assert run.out == ""


def test_propose_baseline_folder_without_annotations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_cli(capsys, "propose-baseline", "--data", tmp_path, "--out", tmp_path / "P.json")
    assert_input_error(run, tmp_path)
    assert not (tmp_path / "P.json").exists()


# ---------------------------------------------------------------------------------------------
# data synth / split / stats refusing or reporting
# ---------------------------------------------------------------------------------------------


def test_synth_into_non_empty_folder_needs_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "D"
    keep = make_sentinel(out / "notes.txt")
    argv = ["data", "synth", "--out", out, "--train", "2", "--val", "2", "--size", "64"]
    assert "--force" in assert_input_error(run_cli(capsys, *argv), out)
    assert_untouched(keep)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]

    run = run_cli(capsys, *argv, "--force")
    assert_ok(run)
    assert len(load_json(out / "val.json")["images"]) == 2
    assert (out / "split.yaml").is_file()


def test_synth_force_replaces_a_previous_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "D"
    argv = ["data", "synth", "--out", out, "--train", "2", "--size", "64"]
    assert_ok(run_cli(capsys, *argv, "--val", "3"))
    assert_ok(run_cli(capsys, *argv, "--val", "1", "--force"))
    assert len(load_json(out / "val.json")["images"]) == 1
    assert len(list((out / "val").iterdir())) == 1


def test_synth_onto_a_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = make_sentinel(tmp_path / "D")
    run = run_cli(capsys, "data", "synth", "--out", out, "--train", "1", "--val", "1", "--force")
    assert_input_error(run, out)
    assert_untouched(out)


@pytest.mark.parametrize(
    "option", [["--size", "10"], ["--train", "0"], ["--unannotated-base-fraction", "2"]]
)
def test_synth_rejects_bad_settings(
    option: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "D"
    run = run_cli(capsys, "data", "synth", "--out", out, "--train", "1", "--val", "1", *option)
    assert "invalid synthetic config" in assert_input_error(run)
    assert not out.exists()


def test_data_split_refuses_to_overwrite_without_force(
    synth: Synth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "S"
    base = make_sentinel(out / "val_base.json")
    novel = make_sentinel(out / "val_novel.json")
    argv = ["data", "split", "--gt", synth.val, "--split", synth.split, "--out", out]
    line = assert_input_error(run_cli(capsys, *argv), base, novel)
    assert "--force" in line
    assert_untouched(base)
    assert_untouched(novel)

    novel.unlink()  # one existing output is enough to refuse, and nothing new is written
    assert_input_error(run_cli(capsys, *argv), base)
    assert_untouched(base)
    assert not novel.exists()

    assert_ok(run_cli(capsys, *argv, "--force"))
    assert load_json(base)["categories"]
    assert load_json(novel)["categories"]


def test_data_split_out_is_a_file(
    synth: Synth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = make_sentinel(tmp_path / "S")
    argv = ["data", "split", "--gt", synth.val, "--split", synth.split, "--out", out, "--force"]
    assert_input_error(run_cli(capsys, *argv), out)
    assert_untouched(out)


def test_data_stats_missing_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    assert "not found" in assert_input_error(run_cli(capsys, "data", "stats", missing), missing)


def test_data_stats_lists_a_missing_image(
    dataset_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    second = load_json(dataset_copy / "val.json")["images"][1]["file_name"]
    missing = dataset_copy / "val" / second
    missing.unlink()
    run = run_cli(capsys, "data", "stats", dataset_copy)
    assert_ok(run)
    assert f"{missing}: image file not found" in run.out
    assert "problems (" in run.out

    as_json = run_cli(capsys, "data", "stats", dataset_copy, "--json")
    assert_ok(as_json)
    assert f"{missing}: image file not found" in json.loads(as_json.out)["problems"]


def test_data_stats_lists_a_missing_first_image(
    dataset_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = load_json(dataset_copy / "val.json")["images"][0]["file_name"]
    (dataset_copy / "val" / first).unlink()
    run = run_cli(capsys, "data", "stats", dataset_copy)
    assert_ok(run)
    assert f"{dataset_copy / 'val' / first}: image file not found" in run.out


def test_data_stats_lists_a_truncated_image(
    dataset_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = load_json(dataset_copy / "val.json")["images"][2]["file_name"]
    image = dataset_copy / "val" / name
    assert image.suffix == ".jpg"
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    run = run_cli(capsys, "data", "stats", dataset_copy)
    assert_ok(run)
    problems = [line for line in run.out.splitlines() if str(image) in line]
    assert len(problems) == 1 and "truncated" in problems[0], run.out


def test_data_stats_with_images_folder_missing_is_an_error(
    synth: Synth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt = Path(shutil.copy(synth.val, tmp_path / "val.json"))  # no images next to it
    assert_input_error(run_cli(capsys, "data", "stats", gt), gt)
    assert_ok(run_cli(capsys, "data", "stats", gt, "--no-image-check"))


def test_data_stats_images_option_must_be_a_folder(
    synth: Synth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-images"
    run = run_cli(capsys, "data", "stats", synth.val, "--images", missing)
    assert "images folder not found" in assert_input_error(run, missing)
    run = run_cli(capsys, "data", "stats", synth.val, "--images", synth.root / "val")
    assert_ok(run)
    assert f"images:      {synth.root / 'val'}" in run.out


def test_argparse_errors_exit_2_without_traceback(
    synth: Synth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["propose-baseline", "--data", synth.root, "--num", "many", "--out", tmp_path / "P"]
    with pytest.raises(SystemExit) as exit_info:
        main([str(arg) for arg in argv])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert "invalid int value: 'many'" in captured.err
    assert "Traceback" not in captured.out + captured.err
    assert not (tmp_path / "P").exists()


# ---------------------------------------------------------------------------------------------
# failures outside the user's input
# ---------------------------------------------------------------------------------------------


def test_os_errors_are_one_line(
    synth: Synth, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    import owp.workflows.datasets

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(owp.workflows.datasets, "write_json", refuse)
    out = tmp_path / "P.json"
    run = run_cli(capsys, "propose-baseline", "--data", synth.root, "--num", "2", "--out", out)
    lines = run.err.strip().splitlines()
    assert run.code == 2 and "Traceback" not in run.out + run.err
    assert lines[-1] == f"owp: error: {out}: Permission denied"


def test_keyboard_interrupt_exits_130(
    synth: Synth, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    import owp.evaluation.proposals

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(owp.evaluation.proposals, "evaluate_proposals", interrupted)
    empty = write_json(tmp_path / "empty.json", [])
    run = run_cli(
        capsys, "eval-proposals", "--gt", synth.val, "--proposals", empty, "--split", synth.split
    )
    assert run.code == 130
    assert run.err.strip() == "owp: interrupted"

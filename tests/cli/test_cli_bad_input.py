"""The one-line promise under bad input (issue 10's corpus): exit status 2, exactly one
``owp: error:`` line naming the file or option, no traceback, and nothing written or changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from owp.cli import main
from owp.config import ModelConfig, RunConfig
from owp.data.synthetic import SynthConfig, generate_synthetic_dataset
from owp.engine.checkpoint import save_checkpoint
from owp.models.registry import create_model

TINY = {"min_size": 64, "max_size": 64}


def assert_one_line_error(capsys, status: int, *fragments: str) -> str:
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert status == 2, captured.err
    assert "Traceback" not in captured.err + captured.out
    errors = [line for line in lines if line.startswith("owp: error:")]
    assert len(errors) == 1, captured.err
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("set")
    generate_synthetic_dataset(
        folder, SynthConfig(num_train=4, num_val=4, image_size=64, seed=2, style="flat")
    )
    return folder


def _checkpoint(path: Path, name: str = "fcos_owp_tiny", config_name: str | None = None) -> Path:
    model = create_model(name, **TINY)
    config = RunConfig(model=ModelConfig(config_name or name, dict(TINY))).to_dict()
    return save_checkpoint(path, model=model, optimizer=None, scheduler=None, step=1, config=config)


def _train_demo(run: Path, data: Path, override: str) -> list[str]:
    """``owp train`` of the demo preset on ``data`` into ``run`` with one ``--set``."""
    return [
        "train",
        "--preset",
        "demo",
        "--out",
        str(run),
        "--set",
        f"data.train={data}",
        "--set",
        override,
    ]


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_eval_with_an_unreadable_image_names_it(small_set, tmp_path, capsys, damage):
    data = tmp_path / "set"
    data.mkdir()
    for item in small_set.iterdir():
        target = data / item.name
        if item.is_dir():
            target.mkdir()
            for file in item.iterdir():
                (target / file.name).write_bytes(file.read_bytes())
        else:
            target.write_bytes(item.read_bytes())
    victim = sorted((data / "val").iterdir())[1]
    if damage == "missing":
        victim.unlink()
    else:
        victim.write_bytes(victim.read_bytes()[:200])
    checkpoint = _checkpoint(tmp_path / "run" / "last.pt")
    status = main(["eval", str(checkpoint), "--data", str(data), "--out", str(tmp_path / "out")])
    assert_one_line_error(capsys, status, victim.name)


def test_init_from_a_checkpoint_of_another_model(small_set, tmp_path, capsys):
    checkpoint = _checkpoint(tmp_path / "rpn.pt", name="rpn_tiny")
    status = main(_train_demo(tmp_path / "run", small_set, f"train.init={checkpoint}"))
    assert_one_line_error(capsys, status, str(checkpoint), "rpn_tiny", "fcos_owp_tiny")
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("train.checkpoint_period=0", "train.checkpoint_period"),
        ("train.log_period=0", "train.log_period"),
        ("train.steps=abc", "train.steps"),
        ("data.num_workers=-1", "data.num_workers"),
        ("model.min_size=abc", "min_size"),
        ("train.keep_checkpoints=-1", "train.keep_checkpoints"),
        ("train.max_iters=-5", "train.max_iters"),
        ("eval.protocol=nope", "eval.protocol"),
        ("model.scoring=cls*iou", "classifier"),
        ("model.objectness=[centerness]", "iou branch"),
    ],
)
def test_bad_config_values_stop_before_anything_is_read_or_written(
    small_set, tmp_path, capsys, override, fragment
):
    before = _tree(small_set)
    status = main(_train_demo(tmp_path / "run", small_set, override))
    assert_one_line_error(capsys, status, fragment)
    assert not (tmp_path / "run").exists()
    assert _tree(small_set) == before


def test_a_checkpoint_naming_an_unknown_model_names_the_file(small_set, tmp_path, capsys):
    checkpoint = _checkpoint(tmp_path / "odd.pt", config_name="fcos_owp_huge")
    status = main(["eval", str(checkpoint), "--data", str(small_set)])
    assert_one_line_error(capsys, status, str(checkpoint), "fcos_owp_huge")


def test_config_given_a_folder(tmp_path, capsys):
    status = main(["train", "--config", str(tmp_path)])
    assert_one_line_error(capsys, status, str(tmp_path), "is a folder")


def test_a_command_group_without_its_subcommand_exits_2(capsys):
    assert main(["data"]) == 2
    assert "choose a subcommand" in capsys.readouterr().err


def test_every_command_and_option_explains_itself():
    import argparse

    from owp.cli import build_parser

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for command, sub in action.choices.items():
                    assert sub.description, f"{name} {command} has no description"
                    walk(sub, f"{name} {command}")
            elif action.dest != "help":
                assert action.help, f"{name} {action.option_strings or action.dest} has no help"

    walk(build_parser(), "owp")
    text = build_parser()._subparsers._group_actions[0].choices["eval"].format_help()
    assert "(default: strict)" in text and "(default: 8)" in text


def test_a_huge_image_is_refused_before_it_is_decoded(tmp_path, capsys):
    from PIL import Image

    from owp.data.images import MAX_IMAGE_PIXELS

    side = int(MAX_IMAGE_PIXELS**0.5) + 100  # a few hundred KB as PNG, gigabytes decoded
    huge = tmp_path / "in" / "huge.png"
    huge.parent.mkdir()
    Image.new("L", (side, side)).save(huge)
    checkpoint = _checkpoint(tmp_path / "run" / "last.pt")
    status = main(["predict", str(checkpoint), str(huge), "--out", str(tmp_path / "out")])
    assert_one_line_error(capsys, status, str(huge), "Mpx")


def _only_line(capsys, status: int, *fragments: str) -> str:
    """A failing command prints its error line and nothing else (no usage, no warning)."""
    captured = capsys.readouterr()
    assert status == 2 and captured.out == "", captured
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("owp: error:"), captured.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["export", "r", "--out", "m.onnx", "--format", "tflite"], ["invalid choice: 'tflite'"]),
        (["data", "synth", "--out", "x", "--train", "abc"], ["--train", "'abc'"]),
        (["export", "r", "--out", "m.onnx", "--max-size", "0"], ["--max-size", "positive"]),
        (["export", "r", "--out", "m.onnx", "--top-k", "0"], ["--top-k", "positive"]),
        (["export", "r", "--out", "m.onnx", "--min-size", "-3"], ["--min-size", "positive"]),
        (["eval-proposals", "--gt", "g", "--proposals", "p", "--split", "s", "--oln-pool", "0"],
         ["--oln-pool", "positive"]),
        (["eval", "r", "--protocol", "lenient"], ["invalid choice: 'lenient'"]),
        (["train", "--no-such-option"], ["unrecognized arguments"]),
        (["data"], ["choose a subcommand"]),
    ],
)  # fmt: skip
def test_every_parser_keeps_the_one_line_promise(argv, fragments, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        status = main(argv)
        raise SystemExit(status)
    _only_line(capsys, exit_info.value.code, *fragments)


def test_a_wrong_builtin_split_is_refused_without_a_warning_before(small_set, tmp_path, capsys):
    """lvis-v1 on COCO-style data: one line naming the split the data looks like."""
    import json

    from owp.data.splits import COCO_VOC_BASE_IDS, COCO_VOC_BASE_NAMES

    coco = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 50, "height": 50}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 19, "bbox": [1, 1, 20, 20], "area": 400,
             "iscrowd": 0}
        ],
        "categories": [
            {"id": i, "name": n}
            for i, n in [*zip(COCO_VOC_BASE_IDS, COCO_VOC_BASE_NAMES, strict=True), (88, "teddy")]
        ],
    }  # fmt: skip
    gt = tmp_path / "coco.json"
    gt.write_text(json.dumps(coco))
    results = tmp_path / "dets.json"
    results.write_text(json.dumps([{"image_id": 1, "category_id": 19, "bbox": [1, 1, 20, 20],
                                    "score": 0.9}]))  # fmt: skip
    for command, flag in (("eval-detections", "--detections"), ("eval-proposals", "--proposals")):
        status = main([command, "--gt", str(gt), flag, str(results), "--split", "lvis-v1"])
        _only_line(capsys, status, "finds only", "looks like COCO: use --split coco-voc")


@pytest.mark.parametrize("command", [["data", "synth"], ["propose-baseline", "--data", "d"]])
@pytest.mark.parametrize("workers", ["0", "-1", "abc"])
def test_a_bad_worker_count_is_one_line(tmp_path, capsys, command, workers):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--out", str(tmp_path / "out"), f"--workers={workers}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"owp: error: argument --workers: must be a positive integer, got '{workers}'"
    )
    assert err.count("\n") == 1
    assert not (tmp_path / "out").exists()

"""The one-line promise under bad input (issue 10's corpus): exit status 2, exactly one
``owp: error:`` line naming the file or option, no traceback, and nothing written or changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from owp.cli import main
from owp.config import ModelConfig, RunConfig
from owp.data.synthetic import SynthConfig, generate_synthetic_dataset
from owp.engine.checkpoint import save_checkpoint
from owp.models.factory import create_model

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
    generate_synthetic_dataset(folder, SynthConfig(num_train=4, num_val=4, image_size=64, seed=2))
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

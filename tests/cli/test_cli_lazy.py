"""The command line starts without torch: --help, the evaluators and the data tools never
import it (``owp eval-proposals --help`` took 6.9 s when every command imported the models)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from owp.testing import random_lvis_problem, write_lvis_dataset


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def test_importing_the_cli_and_the_package_does_not_import_torch() -> None:
    result = run_python(
        "import sys, owp, owp.cli\n"
        "assert 'torch' not in sys.modules, 'owp.cli imports torch'\n"
        "assert owp.__version__\n"
    )
    assert result.returncode == 0, result.stderr


def test_help_of_every_command_does_not_import_torch() -> None:
    result = run_python(
        "import sys, contextlib, io\n"
        "from owp.cli import build_parser, main\n"
        "commands = [['--help']] + [[c, '--help'] for c in ('demo', 'train', 'eval', 'predict',"
        " 'study', 'presets', 'models', 'data', 'propose-baseline', 'eval-proposals',"
        " 'eval-detections')] + [['data', c, '--help'] for c in ('synth', 'split', 'stats')]\n"
        "for argv in commands:\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit as exit:\n"
        "            assert exit.code == 0, argv\n"
        "    assert 'torch' not in sys.modules, argv\n"
    )
    assert result.returncode == 0, result.stderr


def test_evaluation_and_data_commands_do_not_import_torch(tmp_path: Path) -> None:
    gt, detections = random_lvis_problem(4, num_categories=5, proposals_per_image=20, seed=1)
    ann_file = write_lvis_dataset(tmp_path, gt)
    results = tmp_path / "results.json"
    results.write_text(json.dumps(detections))
    split = tmp_path / "split.yaml"
    split.write_text("base: [1, 2]\nnovel: rest\n")
    commands = [
        ["eval-proposals", "--gt", ann_file, "--proposals", results, "--split", split],
        ["eval-proposals", "--gt", ann_file, "--proposals", results, "--split", split,
         "--protocol", "oln"],
        ["eval-detections", "--gt", ann_file, "--detections", results, "--split", split],
        ["data", "stats", tmp_path / "lvis", "--split", split],
        ["data", "split", "--gt", ann_file, "--split", split, "--out", tmp_path / "out"],
    ]  # fmt: skip
    argv = json.dumps([[str(a) for a in command] for command in commands])
    result = run_python(
        "import sys, contextlib, io, json\n"
        "from owp.cli import main\n"
        f"for argv in json.loads({argv!r}):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        assert main(argv) == 0, argv\n"
        "    assert 'torch' not in sys.modules, argv\n"
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "lvis_v1_val_novel.json").is_file()


def test_the_public_api_still_resolves() -> None:
    import owp

    assert callable(owp.create_model) and callable(owp.evaluate_proposals)
    assert owp.CocoDetection.__name__ == "CocoDetection"
    assert {"create_model", "load", "CocoDetection"} <= set(dir(owp))
    try:
        owp.no_such_name  # noqa: B018
    except AttributeError as err:
        assert "no_such_name" in str(err)
    else:
        raise AssertionError("owp.no_such_name did not raise AttributeError")


def test_a_reader_that_goes_away_ends_the_command_quietly():
    """`owp presets | head -1`: the pipe closes before owp writes; no error line, status 0."""
    child = subprocess.Popen(
        [sys.executable, "-m", "owp", "presets"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    child.stdout.close()  # the reader is gone before the first write
    _, err = child.communicate(timeout=60)
    assert child.returncode == 0
    assert err.decode() == ""

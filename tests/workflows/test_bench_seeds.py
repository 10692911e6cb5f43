"""``benchmarks/bench_seeds.py``'s report: the mean ± half-range cells, the same table from run
folders and from a saved metrics file, and the committed results behind the results page."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_seeds.py"
SAVED = ROOT / "benchmarks" / "results" / "photo-seeds.json"


@pytest.fixture(scope="module")
def bench():
    """The script, imported as a module (``benchmarks/`` is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_seeds", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def metrics(ar100: float, ap: float | str = "") -> dict:
    return {
        "AR@10": ar100 / 4,
        "AR@100": ar100,
        "AR_small@100": 0.0,
        "AR_medium@100": ar100 / 2,
        "AR_large@100": 2 * ar100,
        "AP": ap,
    }


def test_spread_cell_is_mean_and_half_range(bench):
    # (3.8 + 4.6 + 4.4) / 3 = 4.27, (4.6 - 3.8) / 2 = 0.4
    assert bench.spread_cell([3.8, 4.6, 4.4]) == "4.3 ± 0.4"
    assert bench.spread_cell([6.0, 7.0]) == "6.5 ± 0.5"
    assert bench.spread_cell([6.07]) == "6.1"
    assert bench.spread_cell([]) == ""


def test_table_from_run_folders_equals_table_from_saved_file(bench, tmp_path):
    runs = {("a", 0): metrics(0.04, 0.001), ("a", 2): metrics(0.08, 0.003), ("b", 1): metrics(0.06)}
    saved = {}
    for (preset, seed), values in runs.items():
        folder = bench.run_dir(tmp_path, preset, seed) / "eval"
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps(values))
        saved[f"{preset}-seed{seed}"] = values
    from_folders = bench.table(tmp_path, ["a", "b", "missing"], [0, 1, 2])
    from_saved = bench.table(Path("elsewhere"), ["a", "b", "missing"], [0, 1, 2], saved)
    assert from_folders == from_saved
    # Preset a: AR@100 4 and 8 -> 6.0 ± 2.0; AP 0.1 and 0.3 -> 0.2 ± 0.1; b has no AP.
    assert from_saved[2] == (
        "| `a` | 0,2 | 1.5 ± 0.5 | 6.0 ± 2.0 | 0.0 ± 0.0 | 3.0 ± 1.0 | 12.0 ± 4.0 | 0.2 ± 0.1 "
        "| 4.0 / 8.0 |"
    )
    assert from_saved[3] == "| `b` | 1 | 1.5 | 6.0 | 0.0 | 3.0 | 12.0 |  | 6.0 |"
    assert len(from_saved) == 4  # header, rule, a, b: the preset with no run is left out


def test_metrics_without_report_is_refused_in_one_line():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--metrics", str(SAVED)], capture_output=True, text=True
    )
    assert result.returncode == 2
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.endswith("--metrics reads saved results; it needs --report")


def test_committed_results_cover_table1_on_three_seeds(bench):
    saved = json.loads(SAVED.read_text())
    rows = bench.table(Path("runs/seeds"), list(bench.TABLE1), [0, 1, 2], saved)
    assert [row.split(" | ")[1] for row in rows[2:]] == ["0,1,2"] * len(bench.TABLE1)
    for name, values in saved.items():
        assert values["num_gt"] == 692 and values["num_images"] == 200, name
        assert values["protocol"] == "strict", name

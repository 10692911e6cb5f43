"""Presets trained on several seeds, a few 1-thread jobs at a time, and their mean ± spread.

Run by hand::

    python benchmarks/bench_seeds.py --out runs/seeds [--presets P1,P2,...] [--seeds 0,1,2] \\
        [--jobs 2] [--threads 1] [--report [--metrics FILE]]

Every (preset, seed) is one ``owp train --preset P --out OUT/P-seedS --set train.seed=S --set
data.num_workers=1`` in its own process with ``OMP_NUM_THREADS=--threads``, ``--jobs`` of them
at a time (on 2 cores: two 1-thread jobs, the issue-23 protocol). ``train.seed`` draws the
initial weights, the image order and the flips; the dataset is the preset's own, the same for
every seed. One loader worker per job keeps the 2 cores for compute; the loader does not draw
from the training generators, so it changes no result. A finished run (``eval/metrics.json``) is
reused and an interrupted one resumed, so the script can be stopped and run again.
``--report`` trains nothing and prints the table of what has finished; ``--report --metrics
FILE`` prints it from a saved ``{run folder name: metrics}`` file instead of run folders, e.g.
``benchmarks/results/photo-seeds.json``, the metrics of every run on the results page.

The table gives, per preset, the number of seeds, the mean and the spread (half the range,
max − min over 2) of novel AR@10, AR@100, AR_small/medium/large@100 and base AP (%), and
AR@100 per seed. The default presets are the six rows of synthetic Table 1 from the FCOS
baseline to conditional IoU-CS-IS.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

TABLE1 = (
    "synth-t1-baseline",
    "synth-t1-centerness",
    "synth-t1-iou",
    "synth-t1-geomean",
    "synth-t1-iou-cs-is",
    "synth-t1-conditional-iou-cs-is",
)
COLUMNS = (
    ("AR@10", "AR@10"),
    ("AR@100", "AR@100"),
    ("AR_s@100", "AR_small@100"),
    ("AR_m@100", "AR_medium@100"),
    ("AR_l@100", "AR_large@100"),
    ("base AP", "AP"),
)


def run_dir(out: Path, preset: str, seed: int) -> Path:
    return out / f"{preset}-seed{seed}"


def metrics_of(folder: Path) -> dict | None:
    """The run's val metrics, or ``None`` while it has not finished."""
    path = folder / "eval" / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def train(out: Path, preset: str, seed: int, threads: int) -> str:
    """Train one (preset, seed) unless it has finished; returns a line for the log."""
    folder = run_dir(out, preset, seed)
    if metrics_of(folder) is not None:
        return f"{folder.name}: finished before, reused"
    command = [sys.executable, "-m", "owp", "train", "--preset", preset, "--out", str(folder)]
    command += ["--set", f"train.seed={seed}", "--set", "data.num_workers=1"]
    if any(folder.glob("checkpoint_*.pt")):
        command.append("--resume")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(out / f"{folder.name}.log", "a") as log:
        code = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    minutes = (time.perf_counter() - start) / 60
    return f"{folder.name}: exit {code} after {minutes:.1f} min (log {out / folder.name}.log)"


def spread_cell(values: list[float]) -> str:
    """``mean ± half range`` of percentages (the mean alone for one value)."""
    if not values:
        return ""
    mean = statistics.mean(values)
    if len(values) == 1:
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {(max(values) - min(values)) / 2:.1f}"


def table(
    out: Path, presets: list[str], seeds: list[int], saved: dict[str, dict] | None = None
) -> list[str]:
    """Markdown rows of the finished runs of ``presets`` × ``seeds``: in ``out``, or in
    ``saved`` (metrics keyed by run folder name) when given."""
    header = " | ".join(name for name, _ in COLUMNS)
    lines = [f"| preset | seeds | {header} | AR@100 per seed |", "|---" * (len(COLUMNS) + 3) + "|"]
    for preset in presets:
        if saved is None:
            found = {s: metrics_of(run_dir(out, preset, s)) for s in seeds}
        else:
            found = {s: saved.get(run_dir(out, preset, s).name) for s in seeds}
        found = {s: m for s, m in found.items() if m is not None}
        if not found:
            continue
        cells = []
        for _, key in COLUMNS:
            values = [100 * float(m[key]) for m in found.values() if m.get(key) not in (None, "")]
            cells.append(spread_cell(values))
        per_seed = " / ".join(f"{100 * float(found[s]['AR@100']):.1f}" for s in sorted(found))
        seed_list = ",".join(str(s) for s in sorted(found))
        lines.append(f"| `{preset}` | {seed_list} | " + " | ".join(cells) + f" | {per_seed} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/seeds"), help="folder of the runs")
    parser.add_argument("--presets", default=",".join(TABLE1), help="comma-separated presets")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated train.seed values")
    parser.add_argument("--jobs", type=int, default=2, help="training processes at a time")
    parser.add_argument("--threads", type=int, default=1, help="threads per training process")
    parser.add_argument("--report", action="store_true", help="print the table, train nothing")
    parser.add_argument(
        "--metrics", type=Path, help="with --report: read a saved {run name: metrics} JSON file"
    )
    args = parser.parse_args()
    presets = [p for p in args.presets.split(",") if p]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    if args.metrics is not None and not args.report:
        parser.error("--metrics reads saved results; it needs --report")
    saved = json.loads(args.metrics.read_text()) if args.metrics is not None else None
    if not args.report:
        runs = [(preset, seed) for seed in seeds for preset in presets]
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            jobs = [pool.submit(train, args.out, p, s, args.threads) for p, s in runs]
            for job in jobs:
                print(job.result(), flush=True)
    print("\n".join(table(args.out, presets, seeds, saved)))


if __name__ == "__main__":
    main()

"""``owp study``: train (or resume, or reuse) a set of presets and compare them."""

from __future__ import annotations

import argparse
from pathlib import Path

from owp.cli.options import SCHEDULE_RULE


def register(commands: argparse._SubParsersAction) -> None:
    study = commands.add_parser(
        "study",
        help="train (or resume, or reuse) a set of presets and compare them: table and plots",
        description="Train every preset of the named study groups and presets into "
        "<out>/runs/<preset> (re-running continues: finished runs are reused, interrupted ones "
        "resumed), then write results.md / results.json (novel AR@k, base AP, train time, "
        "ΔAR@100 against the baseline) and plots/ (recall vs k, recall vs IoU, score "
        "histograms, objectness heat maps).",
    )
    study.add_argument(
        "names", nargs="+", metavar="GROUP_OR_PRESET", help="study groups and/or presets"
    )
    study.add_argument("--out", type=Path, help="study folder (default runs/study-<first name>)")
    study.add_argument("--data", help="dataset folder or instances JSON used as train and val")
    study.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help=f"override a config value of every preset, e.g. train.max_iters=200. {SCHEDULE_RULE}",
    )
    study.add_argument(
        "--baseline", help="run the ΔAR@100 column compares to (default: the group's, or first)"
    )
    study.add_argument(
        "--heatmap-runs",
        metavar="A,B",
        help="FCOS-OWP runs drawn in heatmaps.png (default: the first two)",
    )
    study.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from owp.workflows.study import run_study

    out = args.out or Path("runs") / f"study-{args.names[0]}"
    heatmap_runs = (
        [name.strip() for name in args.heatmap_runs.split(",") if name.strip()]
        if args.heatmap_runs
        else None
    )
    result = run_study(
        args.names,
        out,
        overrides=args.set or (),
        data=args.data,
        baseline=args.baseline,
        heatmap_runs=heatmap_runs,
    )
    print(result.results_md.read_text())
    print(f"results: {result.results_md}, {result.results_json}; plots in {out / 'plots'}")

"""``owp report``: a self-contained HTML page for a run or a study."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser(
        "report",
        help="a self-contained HTML page for a run or a study: tables, plots, a gallery with a "
        "k slider",
        description="Write OUT/index.html (no network needed: figures and images inlined): "
        "novel-class recall under both protocols, recall against k and IoU, per-category bars, "
        "objectness score histograms, training curves, and a gallery of val images with the "
        "top-k proposals drawn (green: a novel object hit, blue: on a base object, dashed red: "
        "a novel object missed at IoU 0.5) and a slider for k. A study folder gets its "
        "comparison table and one section per run. Uses the runs' saved val proposals "
        "(eval/proposals.json); with --data, a run is evaluated on that dataset first unless "
        "its saved proposals were made on it.",
    )
    report.add_argument("source", type=Path, help="run folder or study folder")
    report.add_argument("--out", type=Path, required=True, help="report folder to write")
    report.add_argument(
        "--data", help="val dataset folder or instances JSON (default: the runs' own)"
    )
    report.add_argument("--images", type=Path, help="images folder of --data")
    report.add_argument("--gallery", type=int, default=12, help="val images shown per run")
    report.add_argument("--max-k", type=int, default=100, help="the k slider's largest value")
    report.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from owp.files import check_folder_path
    from owp.workflows.report import write_report

    check_folder_path(args.out)
    path = write_report(
        args.source,
        args.out,
        data=args.data,
        images=args.images,
        gallery=args.gallery,
        max_k=args.max_k,
        progress=True,
    )
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB; open it in a browser)")

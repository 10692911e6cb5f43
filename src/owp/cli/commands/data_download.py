"""``owp data download``: COCO 2017 or the LVIS v1 annotations, laid out as detectron2 does."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    download = commands.add_parser(
        "download",
        help="download COCO 2017 or the LVIS v1 annotations, laid out as detectron2 does",
        description="Download the official archives (checksums verified, interrupted downloads "
        "resumed, complete ones skipped), extract them as <root>/coco/{train2017,val2017,"
        "annotations} and <root>/lvis/lvis_v1_{train,val}.json, and check every annotation "
        "file as owp data stats does. LVIS reads the COCO images: download coco too.",
    )
    # no argparse choices: an unknown name is one error line, as every bad input
    download.add_argument("dataset", help="what to download: coco or lvis")
    download.add_argument(
        "--root", type=Path, default=Path("datasets"), help="datasets folder (default datasets)"
    )
    download.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from owp.data.download import download_dataset

    report = download_dataset(args.dataset, args.root, progress=True)
    if report.skipped:
        print(f"already complete: {', '.join(report.skipped)}")
    for line in report.checks:
        print(line)

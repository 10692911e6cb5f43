"""``owp data split``: the base-only and novel-only ground-truth JSONs of a split."""

from __future__ import annotations

import argparse
from pathlib import Path

from owp.cli.options import add_part_argument


def register(commands: argparse._SubParsersAction) -> None:
    split = commands.add_parser(
        "split",
        help="write the base-only and novel-only ground-truth JSONs of a split",
        description="Write <stem>_base.json and <stem>_novel.json (all images kept) into --out.",
    )
    split.add_argument(
        "--gt", required=True, type=Path, help="instances JSON or dataset folder (its --part file)"
    )
    add_part_argument(split)
    split.add_argument("--split", required=True, help="coco-voc, lvis-v1, all, or a split file")
    split.add_argument("--out", required=True, type=Path, help="output folder")
    split.add_argument("--force", action="store_true", help="overwrite existing files")
    split.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from owp.workflows.datasets import write_split_files

    for file in write_split_files(args.gt, args.split, args.out, part=args.part, force=args.force):
        print(
            f"wrote {file.path}: {file.classes} classes, {file.boxes} boxes, {file.images} images"
        )

"""``owp data stats``: count images, boxes, classes, sizes, and report problems."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    stats = commands.add_parser(
        "stats",
        help="count images, boxes, classes, sizes, and report problems",
        description="Statistics of a COCO-format dataset (instances JSON or dataset folder).",
    )
    stats.add_argument("dataset", type=Path, help="instances JSON or dataset folder")
    stats.add_argument("--part", default="val", help="which part of a dataset folder (default val)")
    stats.add_argument("--split", help="count boxes per base/novel side of this split")
    stats.add_argument(
        "--images", type=Path, help="images folder (default: found next to the JSON)"
    )
    stats.add_argument("--no-image-check", action="store_true", help="do not decode every image")
    stats.add_argument("--json", action="store_true", help="print JSON instead of text")
    stats.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from owp.data.coco import find_annotation_file, find_image_folder, load_instances
    from owp.data.splits import resolve_split
    from owp.data.stats import instances_stats
    from owp.errors import OwpInputError

    ann_file = find_annotation_file(args.dataset, args.part)
    coco, repairs = load_instances(ann_file)
    split = resolve_split(args.split, coco["categories"], ann_file) if args.split else None
    images = None
    if not args.no_image_check:
        if args.images is not None and not args.images.is_dir():
            raise OwpInputError("images folder not found", path=args.images)
        images = args.images or find_image_folder(ann_file, coco)
    stats = instances_stats(coco, repairs, split, images, progress=not args.json)
    if args.json:
        print(json.dumps({"annotations": str(ann_file), **stats.to_dict()}, indent=1))
        return
    print(f"annotations: {ann_file}")
    if images is not None:
        print(f"images:      {images}")
    print(
        f"images {stats.num_images}  boxes {stats.num_boxes} (+{stats.num_crowd} crowd)  "
        f"classes {stats.num_classes}  images without boxes {stats.images_without_boxes}"
    )
    if split is not None:
        print(
            f"split {split.name}: {len(split.base_ids)} base, {len(split.novel_ids)} novel classes"
        )
    for side, buckets in stats.sizes_per_side.items():
        sizes = "  ".join(f"{name} {count}" for name, count in buckets.items())
        print(f"  {side:>6}: {stats.boxes_per_side[side]:>7} boxes   {sizes}")
    for note in stats.notes:
        print(f"note: {note}")
    if stats.problems:
        print(f"problems ({len(stats.problems)}):")
        for problem in stats.problems[:50]:
            print(f"  - {problem}")
        if len(stats.problems) > 50:
            print(f"  ... and {len(stats.problems) - 50} more")
    else:
        print("problems: none found")

"""``owp data synth``: write the embedded synthetic open-world dataset (COCO format)."""

from __future__ import annotations

import argparse
from pathlib import Path

from owp.cli.options import add_workers_argument


def register(commands: argparse._SubParsersAction) -> None:
    synth = commands.add_parser(
        "synth",
        help="write the embedded synthetic open-world dataset (COCO format)",
        description="Write the synthetic open-world set: textured scenes with base and novel "
        "object families, train.json/val.json, split.yaml. Deterministic for a seed. The "
        "default is the photo style at 640 px (COCO's size mix); --style flat --size 320 "
        "writes the set the first tables were measured on, byte for byte.",
    )
    synth.add_argument("--out", required=True, type=Path, help="output folder")
    synth.add_argument("--train", type=int, default=800, help="training images (default 800)")
    synth.add_argument("--val", type=int, default=200, help="validation images (default 200)")
    synth.add_argument("--size", type=int, default=640, help="image side in pixels (default 640)")
    synth.add_argument("--seed", type=int, default=0, help="the same seed writes the same files")
    synth.add_argument(
        "--unannotated-base-fraction",
        type=float,
        default=0.15,
        help="fraction of base objects left unlabelled in train (default 0.15)",
    )
    synth.add_argument("--format", choices=("jpg", "png"), default="jpg", help="image file format")
    synth.add_argument(
        "--style",
        choices=("flat", "photo"),
        default="photo",
        help="scene style: photo (default: multi-part textured objects on stuff backgrounds "
        "with camera effects, calibrated so that no-learning floors score as on real images) or "
        "flat (the first generator's flat-coloured shapes, reproduced byte for byte; the old "
        "tables used --style flat --size 320)",
    )
    synth.add_argument("--force", action="store_true", help="overwrite an existing dataset")
    add_workers_argument(synth, "render the images")
    synth.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from owp.data.synthetic import SynthConfig, generate_synthetic_dataset

    config = SynthConfig(
        num_train=args.train,
        num_val=args.val,
        image_size=args.size,
        seed=args.seed,
        unannotated_base_fraction=args.unannotated_base_fraction,
        image_format=args.format,
        style=args.style,
    )
    out = generate_synthetic_dataset(
        args.out, config, force=args.force, progress=True, workers=args.workers
    )
    print(f"wrote {args.train} train + {args.val} val images to {out}")
    print(
        f"  train: {out / 'train.json'}\n  val:   {out / 'val.json'}\n  split: {out / 'split.yaml'}"
    )

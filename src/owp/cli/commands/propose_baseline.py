"""``owp propose-baseline``: non-learned proposals for a dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from owp.cli.options import add_workers_argument


def register(commands: argparse._SubParsersAction) -> None:
    baseline = commands.add_parser(
        "propose-baseline",
        help="write non-learned proposals (sliding windows, random boxes or Selective Search) "
        "for a dataset",
        description="Non-learned reference proposals in COCO results format: what 'no learning' "
        "scores.",
    )
    baseline.add_argument(
        "--data", required=True, type=Path, help="instances JSON or dataset folder"
    )
    baseline.add_argument(
        "--part", default="val", help="which part of a dataset folder (default val)"
    )
    baseline.add_argument(
        "--method",
        choices=("sliding-window", "random", "selective-search"),
        default="sliding-window",
        help="non-learned proposer: a multi-scale sliding-window grid, uniform random boxes, or "
        'Selective Search (OpenCV contrib: pip install "owp[baselines]"; images shrunk to 500 px '
        "on their longest side, its own ranking kept)",
    )
    baseline.add_argument(
        "--mode",
        choices=("fast", "quality"),
        default="fast",
        help="Selective Search setting (quality: more strategies, several times slower)",
    )
    baseline.add_argument(
        "--images",
        type=Path,
        help="images folder (selective-search; default: found next to the JSON)",
    )
    baseline.add_argument(
        "--num", type=int, default=1000, help="proposals per image (default 1000)"
    )
    baseline.add_argument(
        "--seed", type=int, default=0, help="random seed (random boxes, Selective Search's ranking)"
    )
    baseline.add_argument("--out", required=True, type=Path, help="proposals JSON to write")
    add_workers_argument(baseline, "run Selective Search on the images")
    baseline.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from owp.workflows.datasets import propose_baseline

    results, num_images = propose_baseline(
        args.data,
        args.out,
        part=args.part,
        method=args.method,
        num=args.num,
        seed=args.seed,
        mode=args.mode,
        images=args.images,
        progress=True,
        workers=args.workers,
    )
    print(f"wrote {len(results)} {args.method} proposals for {num_images} images to {args.out}")

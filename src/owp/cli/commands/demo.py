"""``owp demo``: train FCOS-OWP on the synthetic open-world set and compare novel-class recall."""

from __future__ import annotations

import argparse
from pathlib import Path

from owp.cli.options import add_device_argument


def register(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser(
        "demo",
        help="train FCOS-OWP on the synthetic open-world set and compare novel-class recall",
        description="Generate (once, cached) the synthetic open-world set, train fcos_owp_tiny "
        "with IoU-CS-IS objectness on its base classes (preset demo: a fixed 300 iterations at "
        "batch 4 and 256 px, fixed seed; about 5 minutes on 2 CPU cores), and compare "
        "novel-class AR@k (strict) scored by IoU, by centerness, and of the non-learned "
        "baselines: sliding windows, and Selective Search when owp[baselines] is installed "
        "(computed once, then kept in --out).",
    )
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    add_device_argument(demo)
    demo.add_argument(
        "--minutes",
        type=float,
        help="opt-in time budget: train only the iterations that fit (default: the demo's "
        "fixed 300 iterations, however long they take)",
    )
    demo.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from owp.errors import OwpInputError
    from owp.workflows.demo import run_demo

    if args.minutes is not None and args.minutes <= 0:
        raise OwpInputError(f"--minutes must be positive, got {args.minutes}")
    run_demo(out=args.out, device=args.device, minutes=args.minutes)

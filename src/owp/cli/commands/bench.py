"""``owp bench``: FCOS-OWP against torchvision's FCOS on this device."""

from __future__ import annotations

import argparse
from pathlib import Path

from owp.cli.options import add_device_argument


def register(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser(
        "bench",
        help="FCOS-OWP vs torchvision's FCOS on this device: inference img/s, train step, memory",
        description="Time torchvision's FCOS (fp32) and FCOS-OWP with the same weights and work "
        "(fp32, bf16 autocast, bf16 + channels-last, + torch.compile with --compile) in one "
        "process on random inputs, and print the ratio tables (Markdown). Default: ResNet-50 "
        "FPN at 800x1333, inference at batch 1 and 8, train step at batch 8. Not a test: the "
        "figures are this machine's, at its current load.",
    )
    bench.add_argument(
        "--quick", action="store_true", help="ResNet-18 at 256x256, batch 2, 2 timed calls"
    )
    add_device_argument(bench)
    bench.add_argument("--height", type=int, help="input height in px (default 800)")
    bench.add_argument("--width", type=int, help="input width in px (default 1333)")
    bench.add_argument("--depth", type=int, choices=(18, 34, 50, 101), help="ResNet depth")
    bench.add_argument("--batches", help="inference batch sizes, comma-separated (default 1,8)")
    bench.add_argument("--train-batch", type=int, help="training batch size (default 8)")
    bench.add_argument("--iters", type=int, help="timed calls (default 10 on CUDA, 3 on CPU)")
    bench.add_argument("--warmup", type=int, help="untimed calls first (default 3 on CUDA, 1)")
    bench.add_argument("--compile", action="store_true", help="add the torch.compile variant")
    bench.add_argument("--json", type=Path, help="also write the tables as JSON here")
    bench.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from owp.errors import OwpInputError
    from owp.files import write_json
    from owp.workflows.bench import bench_tables, markdown

    batches = None
    if args.batches is not None:
        try:
            batches = tuple(int(item) for item in args.batches.split(","))
        except ValueError:
            batches = ()
        if not batches or min(batches) < 1:
            raise OwpInputError(f"--batches takes positive integers (1,8), got {args.batches}")
    for flag, value, low in (
        ("--height", args.height, 32),
        ("--width", args.width, 32),
        ("--train-batch", args.train_batch, 1),
        ("--iters", args.iters, 1),
        ("--warmup", args.warmup, 0),
    ):
        if value is not None and value < low:
            raise OwpInputError(f"{flag} must be at least {low}, got {value}")
    result, inference, training = bench_tables(
        args.quick,
        args.device,
        height=args.height,
        width=args.width,
        depth=args.depth,
        batches=batches,
        train_batch=args.train_batch,
        iters=args.iters,
        warmup=args.warmup,
        compile=args.compile or None,
    )
    print()
    print("Inference (higher img/s is better):")
    print(markdown(inference))
    print()
    print("Training step (lower ms/step is better):")
    print(markdown(training))
    if args.json is not None:
        write_json(args.json, result.to_dict())
        print(f"tables written to {args.json}")

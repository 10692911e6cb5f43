"""``owp export``: a model's whole proposal pipeline as one ONNX file."""

from __future__ import annotations

import argparse
from pathlib import Path

from owp.cli.options import add_weights_argument, positive_int


def register(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export",
        help="export a model's whole proposal pipeline to ONNX (onnxruntime parity)",
        description="Write one ONNX graph doing everything the model does at inference: "
        "normalisation, resize, backbone, head, decoding, per-level top-k, clipping, NMS, "
        "final top-k. Input: 'image' float32 [3, H, W] in 0..1 (any H, W); outputs: boxes "
        "[K, 4] (input pixels), scores, objectness (+ labels, class_scores when the model "
        "classifies). FCOS-OWP (any scoring), RPN proposers and torchvision: sources export.",
    )
    export.add_argument("run", help="run folder, checkpoint file or torchvision: source")
    export.add_argument("--format", choices=("onnx",), default="onnx", help="export format")
    export.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    export.add_argument("--opset", type=positive_int, help="ONNX opset (18 to 23; default 18)")
    export.add_argument(
        "--scoring",
        action="append",
        help="scoring exported (default: the model's); repeat to add outputs <name>:<scoring>",
    )
    export.add_argument(
        "--min-size", type=positive_int, help="resize: shorter side (default: model's)"
    )
    export.add_argument(
        "--max-size", type=positive_int, help="resize: longest side (default: model's)"
    )
    export.add_argument(
        "--top-k", type=positive_int, help="boxes kept per image (default: model's)"
    )
    export.add_argument("--force", action="store_true", help="overwrite an existing file")
    add_weights_argument(export)
    export.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from owp.errors import OwpInputError
    from owp.files import check_output_file
    from owp.workflows.export import export_run

    if args.out.suffix.lower() != ".onnx":
        raise OwpInputError("the output of --format onnx must end in .onnx", path=args.out)
    if args.opset is not None and not 18 <= args.opset <= 23:
        raise OwpInputError(f"--opset must be between 18 and 23 (the exporter's), got {args.opset}")
    if args.out.exists() and not args.force:
        raise OwpInputError("already exists; pass --force to overwrite", path=args.out)
    check_output_file(args.out)
    out = export_run(
        args.run,
        args.out,
        opset=args.opset,
        scorings=args.scoring,
        min_size=args.min_size,
        max_size=args.max_size,
        top_k=args.top_k,
        weights=args.weights,
    )
    size = out.stat().st_size / 2**20
    print(f"wrote {out} ({size:.1f} MiB); run it with: owp predict {out} IMAGES --out DIR")

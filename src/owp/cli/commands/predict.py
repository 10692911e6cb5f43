"""``owp predict``: proposals for images: JSON per image and overlay PNGs of the top-k boxes."""

from __future__ import annotations

import argparse
from pathlib import Path

from owp.cli.options import (
    add_device_argument,
    add_speed_arguments,
    add_weights_argument,
    inference_runtime,
)


def register(commands: argparse._SubParsersAction) -> None:
    predict = commands.add_parser(
        "predict",
        help="proposals for images: JSON per image and overlay PNGs of the top-k boxes",
        description="Run a trained model on image files or folders (default: the run's own val "
        "images). A classifying model's labels are named from the run's data. It runs in one "
        "process (refused under torchrun; owp eval shares a dataset among ranks).",
    )
    predict.add_argument("run", help="run folder or checkpoint file")
    predict.add_argument(
        "inputs", nargs="*", help="image files or folders (default: the run's val images)"
    )
    predict.add_argument("--out", type=Path, required=True, help="output folder")
    predict.add_argument(
        "--format",
        choices=("json", "coco"),
        default="json",
        help="json: <name>.json per image; coco: one predictions.json (COCO layout: images with "
        "their dataset ids, file names and sizes, one annotation per box with its dataset "
        "category_id), which owp eval-proposals and eval-detections read as it is",
    )
    predict.add_argument(
        "--top-k",
        type=int,
        help="boxes kept per image (default: all the model returns; --format coco: 1000, the "
        "budget owp eval scores)",
    )
    predict.add_argument("--score-thresh", type=float, help="drop boxes scoring at or below this")
    predict.add_argument(
        "--draw", type=int, default=20, help="boxes drawn per overlay (default 20)"
    )
    predict.add_argument(
        "--batch-size",
        type=int,
        default=1,
        help="images per model call, of one padded input shape (boxes do not depend on it; "
        "default 1)",
    )
    predict.add_argument(
        "--data",
        help="dataset folder or instances JSON whose image ids --format coco writes (inputs "
        "matched by file name; without inputs, its images are predicted). Default: the run's "
        "val set when the inputs are its images",
    )
    predict.add_argument("--part", default="val", help="part of a dataset folder (default val)")
    predict.add_argument(
        "--images", type=Path, help="images folder of --data (default: found next to the JSON)"
    )
    predict.add_argument("--scoring", help="override the scoring mode")
    add_device_argument(predict)
    add_weights_argument(predict)
    add_speed_arguments(predict)
    predict.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from owp.workflows.predict import predict_run

    report = predict_run(
        args.run,
        args.inputs,
        args.out,
        output_format=args.format,
        top_k=args.top_k,
        score_thresh=args.score_thresh,
        draw=args.draw,
        batch_size=args.batch_size,
        data=args.data,
        part=args.part,
        images=args.images,
        scoring=args.scoring,
        runtime=inference_runtime(args),
        weights=args.weights,
        progress=True,
    )
    what = "predictions.json" if args.format == "coco" else "proposals (JSON)"
    print(
        f"wrote {what} and overlays (PNG) for {report.images} images ({report.boxes} boxes, "
        f"{report.images_per_second:.1f} img/s) to {args.out}"
    )

"""``owp pseudo-label``: a trained proposer's boxes on the unannotated objects of the training
images, for self-training (experimental)."""

from __future__ import annotations

import argparse
from pathlib import Path

from owp.cli.options import add_device_argument


def register(commands: argparse._SubParsersAction) -> None:
    pseudo = commands.add_parser(
        "pseudo-label",
        help="pseudo labels for self-training (experimental): a trained proposer's boxes on the "
        "unannotated objects of the training images",
        description="Run a trained proposer over the training images and keep, per image, the "
        "proposals with objectness >= --min-score whose overlap with every annotated box "
        "(base IoU, crowd share) is below --max-iou and less than --max-cover of whose area lies "
        "inside any annotated box, after a class-agnostic NMS at --nms-iou, "
        "at most --per-image of them. Writes a COCO instances JSON (images copied from the "
        "training set, one category 'object', each box \"pseudo\": true with its score) for "
        "data.pseudo_labels. On the synthetic set (objects.json beside the JSON) it also prints "
        "and writes <out>.quality.json: precision and recall against the truly unlabelled "
        "objects, by novel/base and size.",
    )
    pseudo.add_argument("run", help="run folder or checkpoint file")
    pseudo.add_argument(
        "--data", help="training dataset folder or instances JSON (default: the run's data.train)"
    )
    pseudo.add_argument("--part", default="train", help="part of a dataset folder")
    pseudo.add_argument(
        "--images", type=Path, help="images folder (default: the run's, or found next to the JSON)"
    )
    pseudo.add_argument("--split", help="split (default: the run's)")
    pseudo.add_argument("--out", type=Path, required=True, help="pseudo-label JSON to write")
    pseudo.add_argument("--min-score", type=float, default=0.5, help="least objectness kept")
    pseudo.add_argument("--per-image", type=int, default=5, help="most boxes kept per image")
    pseudo.add_argument(
        "--max-iou",
        type=float,
        default=0.3,
        help="drop proposals overlapping an annotated box (IoU) or a crowd region this much",
    )
    pseudo.add_argument(
        "--max-cover",
        type=float,
        default=0.5,
        help="drop proposals with this share of their area or more inside one annotated box",
    )
    pseudo.add_argument("--nms-iou", type=float, default=0.5, help="IoU of the class-agnostic NMS")
    pseudo.add_argument("--batch-size", type=int, default=8, help="images per model call")
    add_device_argument(pseudo)
    pseudo.add_argument("--force", action="store_true", help="overwrite an existing --out")
    pseudo.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from owp.engine.pseudo import PseudoLabelSettings, describe_quality
    from owp.workflows.pseudo_label import pseudo_label_run

    settings = PseudoLabelSettings(
        min_score=args.min_score,
        per_image=args.per_image,
        max_iou=args.max_iou,
        max_cover=args.max_cover,
        nms_iou=args.nms_iou,
    )
    mined = pseudo_label_run(
        args.run,
        args.out,
        settings,
        data=args.data,
        part=args.part,
        images=args.images,
        split=args.split,
        device=args.device,
        batch_size=args.batch_size,
        force=args.force,
        progress=True,
    )
    count, num_images = len(mined.coco["annotations"]), len(mined.coco["images"])
    print(f"wrote {count} pseudo boxes on {num_images} training images to {mined.path}")
    if mined.quality is not None:
        print("\n".join(describe_quality(mined.quality)))
        print(f"quality: {mined.quality_file}")

"""``owp eval-detections``: COCO AP of class-labelled detections on the base classes."""

from __future__ import annotations

import argparse

from owp.cli.options import add_evaluation_arguments, ground_truth, write_metrics


def register(commands: argparse._SubParsersAction) -> None:
    detections = commands.add_parser(
        "eval-detections",
        help="COCO AP of class-labelled detections on the base classes of a split",
        description="Standard COCOeval (AP, AP50, AP75, AP small/medium/large) on the split's base "
        "classes; category_id must be a dataset category id.",
    )
    add_evaluation_arguments(detections, "--detections")
    detections.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from owp.evaluation.detection import evaluate_detections
    from owp.evaluation.tables import metrics_table
    from owp.files import check_output_file

    check_output_file(args.out)
    metrics = evaluate_detections(
        ground_truth(args), args.detections, args.split, engine=args.engine
    )
    title = (
        f"base-class AP (%), split {metrics['split']}, {metrics['num_images']} images, "
        f"{metrics['num_gt']} base objects"
    )
    columns = ["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large"]
    print(metrics_table([metrics], columns, title=title))
    write_metrics(args.out, metrics)

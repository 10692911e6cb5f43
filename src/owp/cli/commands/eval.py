"""``owp eval``: evaluate a trained model: novel-class AR@k (and base AP when it classifies)."""

from __future__ import annotations

import argparse
from pathlib import Path

from owp.cli.options import (
    add_device_argument,
    add_per_category_argument,
    add_pool_argument,
    add_speed_arguments,
    add_weights_argument,
    inference_runtime,
    print_per_category,
    print_run_metrics,
)


def register(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "eval",
        help="evaluate a trained model: novel-class AR@k (and base AP when it classifies)",
        description="Predict on a dataset with a run's model, write proposals.json and "
        "metrics.json, print the table. Without --data the run's own val set (data.val and "
        "data.val_images of its config.yaml) is used. Predictions already saved in the output "
        "folder by the same weights, scoring and data are evaluated again instead of "
        "recomputed (--force recomputes them). Under torchrun (e.g. torchrun --nproc_per_node 8 "
        "-m owp.cli eval RUN) every rank predicts its share of the images and rank 0 evaluates, "
        "writes and prints; the metrics are one process's (exactly so at --batch-size 1).",
    )
    evaluate.add_argument("run", help="run folder or checkpoint file")
    evaluate.add_argument(
        "--data", help="dataset folder or instances JSON (default: the run's val)"
    )
    evaluate.add_argument("--part", default="val", help="part of a dataset folder (default val)")
    evaluate.add_argument(
        "--images",
        type=Path,
        help="images folder, or the COCO root for LVIS (default: the run's data.val_images "
        "without --data, else found next to the JSON)",
    )
    evaluate.add_argument(
        "--force", action="store_true", help="predict again even when saved predictions match"
    )
    evaluate.add_argument("--split", help="split (default: the run's)")
    evaluate.add_argument(
        "--protocol",
        choices=("strict", "oln"),
        default="strict",
        help="strict: every proposal counts in the budget; oln: those on base objects do not "
        "(OLN's wrapper). Metrics go to metrics.json (strict) or metrics.oln-pool<N>.json",
    )
    add_pool_argument(evaluate)
    evaluate.add_argument("--max-dets", default="10,20,50,100,300,1000", help="budgets k")
    add_per_category_argument(evaluate)
    evaluate.add_argument(
        "--scoring",
        help="rank proposals by this scoring instead of the run's (FCOS-OWP: centerness, iou, "
        "geomean, cls*centerness, "
        "cls*iou; two-stage: rpn, roi, oln, iou, cls)",
    )
    evaluate.add_argument(
        "--also-scoring",
        default="",
        help="comma-separated scorings that rank the same proposals again, from the same "
        "forward pass (e.g. centerness,geomean): one more table row each, saved as "
        "proposals.<scoring>.json",
    )
    evaluate.add_argument(
        "--batch-size",
        type=int,
        default=8,
        help="images per model call, of one padded input shape (results do not depend on it)",
    )
    add_device_argument(evaluate)
    evaluate.add_argument("--out", type=Path, help="output folder (default <run>/eval)")
    add_weights_argument(evaluate)
    add_speed_arguments(evaluate)
    evaluate.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from owp.workflows.evaluate import evaluate_run

    result = evaluate_run(
        args.run,
        data=args.data,
        part=args.part,
        images=args.images,
        split=args.split,
        protocol=args.protocol,
        oln_pool=args.oln_pool,
        max_dets=args.max_dets,
        scoring=args.scoring,
        also_scoring=args.also_scoring,
        batch_size=args.batch_size,
        runtime=inference_runtime(args),
        out=args.out,
        force=args.force,
        per_category=args.per_category,
        weights=args.weights,
        progress=True,
    )
    if result is None:
        return  # a torchrun rank other than 0: rank 0 prints
    metrics, out = result.metrics, result.out
    if metrics.get("reused"):
        names = " and ".join(metrics["reused"])
        print(f"reused {names} in {out}: same weights, scoring and data (--force predicts again)")
    print_run_metrics(metrics, f"{result.ann_file}: {metrics['protocol_label']} protocol")
    if result.extra_scorings:
        _print_scorings(metrics, result.extra_scorings)
    if args.per_category:
        print_per_category(metrics["per_category"], result.metrics_file)
    print(f"proposals and metrics in {out}")


def _print_scorings(metrics: dict, extras: list[str]) -> None:
    """Novel AR of each scoring of one evaluation (``metrics`` of evaluate_model), one row each."""
    from owp.evaluation.tables import metrics_table

    columns = [k for k in metrics if k.startswith("AR")]
    rows = [{"scoring": metrics["scoring"], **{k: metrics[k] for k in columns}}]
    rows += [
        {"scoring": name, **{k: metrics.get(f"{name}/{k}") for k in columns}}
        for name in extras
        if name != metrics["scoring"]
    ]
    print(metrics_table(rows, ["scoring", *columns], title="novel AR by scoring, one pass (%)"))

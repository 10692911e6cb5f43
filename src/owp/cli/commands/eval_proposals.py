"""``owp eval-proposals``: class-agnostic AR@k of proposals on the novel classes of a split."""

from __future__ import annotations

import argparse

from owp.cli.options import (
    add_evaluation_arguments,
    add_per_category_argument,
    add_pool_argument,
    ground_truth,
    print_per_category,
    write_metrics,
)


def register(commands: argparse._SubParsersAction) -> None:
    proposals = commands.add_parser(
        "eval-proposals",
        help="class-agnostic AR@k of proposals on the novel classes of a split",
        description="Novel-class average recall of class-agnostic proposals (COCO results JSON; "
        "category_id ignored). Prints a table; --out writes the metrics JSON.",
    )
    add_evaluation_arguments(proposals, "--proposals")
    proposals.add_argument(
        "--protocol",
        choices=("strict", "oln", "all"),
        default="strict",
        help="strict: every proposal counts (the paper); oln: OLN's wrapper, proposals on base "
        "objects do not consume the budget; all: one row per published convention (strict, "
        "oln at pools 1500, 500 and 100), side by side",
    )
    add_pool_argument(proposals)
    proposals.add_argument(
        "--max-dets",
        default="10,20,50,100,300,1000",
        help="budgets k (default 10,20,50,100,300,1000)",
    )
    add_per_category_argument(proposals)
    proposals.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from owp.errors import OwpInputError
    from owp.evaluation.proposals import check_max_dets, evaluate_conventions, evaluate_proposals
    from owp.evaluation.tables import metrics_table, recall_columns
    from owp.files import check_output_file

    max_dets = check_max_dets(args.max_dets)
    check_output_file(args.out)
    if args.protocol == "all":
        if args.per_category:
            raise OwpInputError("--per-category goes with --protocol strict or oln, not all")
        rows = evaluate_conventions(
            ground_truth(args), args.proposals, args.split, max_dets=max_dets, engine=args.engine
        )
        first = rows[0]
        title = (
            f"novel-class recall (%) under each published convention, split {first['split']}, "
            f"{first['num_images']} images, {first['num_gt']} novel objects"
        )
        columns = ["convention", *recall_columns(first), "used_by"]
        print(metrics_table(rows, columns, title=title))
        write_metrics(args.out, {"conventions": rows})
        return
    metrics = evaluate_proposals(
        ground_truth(args),
        args.proposals,
        args.split,
        protocol=args.protocol,
        max_dets=max_dets,
        engine=args.engine,
        per_category=args.per_category,
        oln_pool=args.oln_pool,
    )
    title = (
        f"novel-class recall (%), split {metrics['split']}, protocol "
        f"{metrics['protocol_label']}, {metrics['num_images']} images, "
        f"{metrics['num_gt']} novel objects"
    )
    print(metrics_table([metrics], recall_columns(metrics), title=title))
    write_metrics(args.out, metrics)
    if args.per_category:
        print_per_category(metrics["per_category"], args.out)

"""Option groups and argument types shared by the ``owp`` commands, and the tables several
commands print. Torch-free: ``--help`` imports it."""

from __future__ import annotations

import argparse
from pathlib import Path

SCHEDULE_RULE = (
    "A train.max_iters that ends before the warm-up or lr steps scales them with it (one "
    "warning names the new values)."
)
DEVICE_HELP = "auto (CUDA when present), cpu or cuda"


def positive_int(text: str) -> int:
    """argparse type: a positive integer (its error becomes the one ``owp: error:`` line)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1 or str(value) != text.strip():
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def add_workers_argument(parser: argparse.ArgumentParser, work: str) -> None:
    parser.add_argument(
        "--workers",
        type=positive_int,
        help=f"processes that {work} (default: one per CPU, fewer for small inputs); the "
        "output is the same for any number",
    )


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)


def add_weights_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights",
        type=Path,
        help="weights file of a torchvision: source (default: the torch hub cache)",
    )


def add_speed_arguments(parser: argparse.ArgumentParser) -> None:
    """--amp, --channels-last, --compile: how fast a PyTorch model runs (owp.engine.precision)."""
    parser.add_argument(
        "--amp",
        choices=("none", "auto", "fp16", "bf16"),
        default="none",
        help="autocast precision: none (fp32), auto (bf16 or fp16 on CUDA, none on CPU), fp16, "
        "bf16",
    )
    parser.add_argument(
        "--channels-last", action="store_true", help="run the model in channels-last memory"
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the backbone and head (eager, after one warning, when it fails)",
    )


def inference_runtime(args: argparse.Namespace):
    """The :class:`~owp.engine.inference.InferenceRuntime` of ``--device`` and the speed options."""
    from owp.engine.inference import InferenceRuntime

    return InferenceRuntime(
        device=args.device, amp=args.amp, channels_last=args.channels_last, compile=args.compile
    )


def add_evaluation_arguments(parser: argparse.ArgumentParser, results_flag: str) -> None:
    """--gt, the results file, --split, --engine and --out, shared by the eval commands."""
    parser.add_argument(
        "--gt",
        required=True,
        type=Path,
        help="ground truth: instances JSON or dataset folder (its --part file, found as "
        "`owp data stats` finds it)",
    )
    add_part_argument(parser)
    parser.add_argument(
        results_flag,
        required=True,
        type=Path,
        help="COCO results JSON (or the predictions.json of owp predict --format coco)",
    )
    parser.add_argument("--split", required=True, help="coco-voc, lvis-v1, all, or a split file")
    parser.add_argument(
        "--engine",
        choices=("owp", "faster-coco-eval", "pycocotools"),
        default="owp",
        help="owp: the vectorised matcher for recall, faster-coco-eval for AP (default); "
        "faster-coco-eval, pycocotools: COCOeval itself (the slower references; same numbers; "
        "the oln protocol runs on owp or pycocotools)",
    )
    parser.add_argument("--out", type=Path, help="metrics JSON to write")


def add_pool_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--oln-pool",
        type=positive_int,
        default=1500,
        metavar="N",
        help="oln protocol: proposals kept per image before those on base objects are removed "
        "(OLN 1500, GOOD 500, LDET and UDOS 100; default 1500)",
    )


def add_part_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--part", default="val", help="which part of a dataset folder --gt names (default val)"
    )


def add_per_category_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--per-category",
        action="store_true",
        help="also each novel class's count, recall@100 at IoU 0.5 and AR@100 (the strict "
        "protocol on that class's objects alone): a table sorted by AR, 'per_category' in the "
        "metrics JSON and a bar plot <out stem>_per_category.png beside it",
    )


def ground_truth(args: argparse.Namespace) -> Path:
    """The instances JSON that ``--gt`` names: the file, or the ``--part`` file of a dataset
    folder (:func:`owp.data.coco.find_annotation_file`, as ``owp data stats`` finds it)."""
    from owp.data.coco import find_annotation_file

    return find_annotation_file(args.gt, args.part)


def print_run_metrics(metrics: dict, title: str) -> None:
    """The AR and AP columns of one evaluation as a table."""
    from owp.evaluation.tables import metrics_table

    columns = [k for k in metrics if k.startswith(("AR", "AP"))]
    if columns:
        print(metrics_table([metrics], columns, title=f"{title} (%)"))


def print_per_category(rows: list[dict], out: Path | None) -> None:
    """Print the per-category table (sorted by AR) and, beside ``out``, draw its bar plot."""
    from owp.evaluation.tables import metrics_table

    columns = ["name", "category_id", "count", *(k for k in rows[0] if k.startswith(("R", "A")))]
    title = "per-category recall (%), strict protocol on each class's objects alone"
    print(metrics_table(rows, columns, title=title))
    if out is not None:
        from owp.viz.plots import plot_per_category

        budget = int(columns[-1].removeprefix("AR@"))
        plot = plot_per_category(out.with_name(f"{out.stem}_per_category.png"), rows, budget=budget)
        print(f"wrote {plot}")


def write_metrics(out: Path | None, metrics: dict) -> None:
    """Write ``metrics`` to ``out`` (when given) and say so."""
    if out is None:
        return
    from owp.files import write_json

    write_json(out, metrics)
    print(f"wrote {out}")

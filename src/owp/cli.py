"""The ``owp`` command line. It only parses arguments and calls the library."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from owp import __version__

log = logging.getLogger("owp")

DEFAULT_PRESET = "demo"
SCHEDULE_RULE = (
    "A train.max_iters that ends before the warm-up or lr steps scales them with it (one "
    "warning names the new values)."
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``owp`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    if args.offline:
        os.environ["OWP_OFFLINE"] = "1"  # owp.offline.OFFLINE_ENV, read where downloads start
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    from owp.errors import OwpInputError, TrainingError

    try:
        status = args.handler(args)
    except (OwpInputError, TrainingError) as err:
        _close_progress_bars()
        print(f"owp: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. an output folder that cannot be created: one line, no traceback
        where = f"{err.filename}: " if err.filename else ""
        print(f"owp: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("owp: interrupted", file=sys.stderr)
        return 130
    return status if isinstance(status, int) else 0


def _close_progress_bars() -> None:
    """End the progress bars an error interrupted, so that the error starts its own line."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        bar.close()


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` after an option's help unless the help already says it, or the
    default is empty."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


class _CommandParser(argparse.ArgumentParser):
    """Every ``owp`` (sub)command's parser: defaults shown in ``--help``, and a bad argument is
    one ``owp: error:`` line (no usage block), exit status 2."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        print(f"owp: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _missing_subcommand(parser: argparse.ArgumentParser) -> int:
    """A command group called without its subcommand: one error line, exit status 2."""
    print(f"owp: error: choose a subcommand (see {parser.prog} --help)", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = _CommandParser(
        prog="owp",
        description="Open-world object proposals: find every object, including kinds never "
        "labelled, ranked by learned objectness.",
    )
    parser.add_argument("--version", action="version", version=f"owp {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="more log output")
    parser.add_argument(
        "--offline",
        action="store_true",
        help="download nothing (as OWP_OFFLINE=1): weights must be in the torch hub cache",
    )
    commands = parser.add_subparsers(
        title="commands", metavar="COMMAND", parser_class=_CommandParser
    )

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
    demo.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    demo.add_argument(
        "--minutes",
        type=float,
        help="opt-in time budget: train only the iterations that fit (default: the demo's "
        "fixed 300 iterations, however long they take)",
    )
    demo.set_defaults(handler=_run_demo)

    _add_model_commands(commands)
    _add_export_command(commands)
    _add_study_command(commands)
    _add_bench_command(commands)
    _add_report_command(commands)
    _add_pseudo_label_command(commands)
    _add_data_commands(commands)

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
    baseline.set_defaults(handler=_run_propose_baseline)

    proposals = commands.add_parser(
        "eval-proposals",
        help="class-agnostic AR@k of proposals on the novel classes of a split",
        description="Novel-class average recall of class-agnostic proposals (COCO results JSON; "
        "category_id ignored). Prints a table; --out writes the metrics JSON.",
    )
    _add_evaluation_arguments(proposals, "--proposals")
    proposals.add_argument(
        "--protocol",
        choices=("strict", "oln", "all"),
        default="strict",
        help="strict: every proposal counts (the paper); oln: OLN's wrapper, proposals on base "
        "objects do not consume the budget; all: one row per published convention (strict, "
        "oln at pools 1500, 500 and 100), side by side",
    )
    _add_pool_argument(proposals)
    proposals.add_argument(
        "--max-dets",
        default="10,20,50,100,300,1000",
        help="budgets k (default 10,20,50,100,300,1000)",
    )
    _add_per_category_argument(proposals)
    proposals.set_defaults(handler=_run_eval_proposals)

    detections = commands.add_parser(
        "eval-detections",
        help="COCO AP of class-labelled detections on the base classes of a split",
        description="Standard COCOeval (AP, AP50, AP75, AP small/medium/large) on the split's base "
        "classes; category_id must be a dataset category id.",
    )
    _add_evaluation_arguments(detections, "--detections")
    detections.set_defaults(handler=_run_eval_detections)
    return parser


def _add_model_commands(commands) -> None:
    train = commands.add_parser(
        "train",
        help="train a model from a preset or a YAML config",
        description="Iteration-based training (SGD, warm-up, lr steps, AMP on CUDA) into a run "
        "folder: config.yaml, metrics.csv, TensorBoard events, checkpoints, val metrics. "
        "Multi-GPU: torchrun --nproc_per_node N -m owp.cli train ... Self-training "
        "(data.pseudo_labels, train.pseudo_weight) is experimental: on the synthetic set it "
        "has not beaten its control yet (README, 'Self-training: measured').",
    )
    source = train.add_mutually_exclusive_group()
    source.add_argument(
        "--preset",
        help=f"shipped preset (see `owp presets`; default {DEFAULT_PRESET}, or with --resume "
        "the run's own config.yaml)",
    )
    source.add_argument(
        "--config",
        type=Path,
        help="YAML run config (same layout as presets; its relative paths are relative to its "
        "folder)",
    )
    train.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help=f"override a config value, e.g. train.max_iters=200 or model.scoring=geomean. "
        f"{SCHEDULE_RULE} Paths are relative to the current folder.",
    )
    train.add_argument("--out", type=Path, help="run folder (default runs/<preset>)")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out, with its own config.yaml unless --preset or --config "
        "is given",
    )
    train.add_argument("--init", help="initialise weights from this checkpoint")
    train.add_argument("--device", help="auto, cpu or cuda (default: the config's)")
    train.set_defaults(handler=_run_train)

    evaluate = commands.add_parser(
        "eval",
        help="evaluate a trained model: novel-class AR@k (and base AP when it classifies)",
        description="Predict on a dataset with a run's model, write proposals.json and "
        "metrics.json, print the table. Without --data the run's own val set (data.val and "
        "data.val_images of its config.yaml) is used. Predictions already saved in the output "
        "folder by the same weights, scoring and data are evaluated again instead of "
        "recomputed (--force recomputes them).",
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
    _add_pool_argument(evaluate)
    evaluate.add_argument("--max-dets", default="10,20,50,100,300,1000", help="budgets k")
    _add_per_category_argument(evaluate)
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
    evaluate.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    evaluate.add_argument("--out", type=Path, help="output folder (default <run>/eval)")
    _add_weights_argument(evaluate)
    _add_speed_arguments(evaluate)
    evaluate.set_defaults(handler=_run_eval)

    predict = commands.add_parser(
        "predict",
        help="proposals for images: JSON per image and overlay PNGs of the top-k boxes",
        description="Run a trained model on image files or folders (default: the run's own val "
        "images). A classifying model's labels are named from the run's data.",
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
    predict.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    _add_weights_argument(predict)
    _add_speed_arguments(predict)
    predict.set_defaults(handler=_run_predict)

    presets = commands.add_parser(
        "presets",
        help="list the shipped training presets and study groups",
        description="List the shipped presets (one experiment each, `owp train --preset NAME`) "
        "and the study groups (`owp study NAME`), one line each.",
    )
    presets.set_defaults(handler=_run_presets)
    models = commands.add_parser(
        "models",
        help="list the model names for create_model",
        description="List the model names accepted by `create_model` and `model.name`, with "
        "what each builds.",
    )
    models.set_defaults(handler=_run_models)


def _add_weights_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights",
        type=Path,
        help="weights file of a torchvision: source (default: the torch hub cache)",
    )


def _add_speed_arguments(parser: argparse.ArgumentParser) -> None:
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


def _add_bench_command(commands) -> None:
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
    bench.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    bench.add_argument("--height", type=int, help="input height in px (default 800)")
    bench.add_argument("--width", type=int, help="input width in px (default 1333)")
    bench.add_argument("--depth", type=int, choices=(18, 34, 50, 101), help="ResNet depth")
    bench.add_argument("--batches", help="inference batch sizes, comma-separated (default 1,8)")
    bench.add_argument("--train-batch", type=int, help="training batch size (default 8)")
    bench.add_argument("--iters", type=int, help="timed calls (default 10 on CUDA, 3 on CPU)")
    bench.add_argument("--warmup", type=int, help="untimed calls first (default 3 on CUDA, 1)")
    bench.add_argument("--compile", action="store_true", help="add the torch.compile variant")
    bench.add_argument("--json", type=Path, help="also write the tables as JSON here")
    bench.set_defaults(handler=_run_bench)


def _run_bench(args: argparse.Namespace) -> None:
    from owp.engine.bench import markdown, run_bench, settings_for, tables
    from owp.engine.dist import resolve_device
    from owp.errors import OwpInputError
    from owp.files import write_json

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
    device = resolve_device(args.device)
    settings = settings_for(
        args.quick,
        device,
        height=args.height,
        width=args.width,
        depth=args.depth,
        batches=batches,
        train_batch=args.train_batch,
        iters=args.iters,
        warmup=args.warmup,
        compile=args.compile or None,
    )
    result = run_bench(settings, device)
    inference, training = tables(result)
    print()
    print("Inference (higher img/s is better):")
    print(markdown(inference))
    print()
    print("Training step (lower ms/step is better):")
    print(markdown(training))
    if args.json is not None:
        write_json(args.json, result.to_dict())
        print(f"tables written to {args.json}")


def _add_export_command(commands) -> None:
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
    export.add_argument("--opset", type=_positive_int, help="ONNX opset (18 to 23; default 18)")
    export.add_argument(
        "--scoring",
        action="append",
        help="scoring exported (default: the model's); repeat to add outputs <name>:<scoring>",
    )
    export.add_argument(
        "--min-size", type=_positive_int, help="resize: shorter side (default: model's)"
    )
    export.add_argument(
        "--max-size", type=_positive_int, help="resize: longest side (default: model's)"
    )
    export.add_argument(
        "--top-k", type=_positive_int, help="boxes kept per image (default: model's)"
    )
    export.add_argument("--force", action="store_true", help="overwrite an existing file")
    _add_weights_argument(export)
    export.set_defaults(handler=_run_export)


def _load_model(args: argparse.Namespace, **overrides):
    """The model and config of ``args.run`` (a run, checkpoint or model source), with
    ``--weights`` for torchvision: sources."""
    from owp.engine.runs import load_with_config
    from owp.errors import OwpInputError
    from owp.sources import TORCHVISION_PREFIX

    weights = getattr(args, "weights", None)
    if weights is not None:
        if not str(args.run).startswith(TORCHVISION_PREFIX):
            raise OwpInputError(
                "--weights is for torchvision: sources; a run or checkpoint holds its own weights"
            )
        overrides["weights"] = weights
    return load_with_config(args.run, **overrides)


def _run_export(args: argparse.Namespace) -> None:
    from owp.errors import OwpInputError
    from owp.export import export_onnx, pipeline_for

    if args.out.suffix.lower() != ".onnx":
        raise OwpInputError("the output of --format onnx must end in .onnx", path=args.out)
    if args.opset is not None and not 18 <= args.opset <= 23:
        raise OwpInputError(f"--opset must be between 18 and 23 (the exporter's), got {args.opset}")
    if args.out.exists() and not args.force:
        raise OwpInputError("already exists; pass --force to overwrite", path=args.out)
    _check_output_file(args.out)
    # The first scoring's own inference options (a torchvision source's 0.2 score threshold
    # for cls* scorings), as owp predict --scoring gets them.
    model, saved = _load_model(args, **({"scoring": args.scoring[0]} if args.scoring else {}))
    if type(model).__name__ == "OnnxProposer":
        raise OwpInputError("is already an ONNX file", path=args.run)
    pipeline_for(
        model,
        scorings=args.scoring,
        min_size=args.min_size,
        max_size=args.max_size,
        top_k=args.top_k,
    )  # refuses models and options that do not export, before any other work
    metadata = {"model": saved["model"]["name"]}
    names = getattr(model, "class_names", None)
    if names:
        metadata["class_names"] = json.dumps(list(names))
    if getattr(model, "category_ids", None) is not None:
        metadata["category_ids"] = json.dumps(list(model.category_ids))
    out = export_onnx(
        model,
        args.out,
        opset=args.opset,
        scorings=args.scoring,
        min_size=args.min_size,
        max_size=args.max_size,
        top_k=args.top_k,
        metadata=metadata,
    )
    size = out.stat().st_size / 2**20
    print(f"wrote {out} ({size:.1f} MiB); run it with: owp predict {out} IMAGES --out DIR")


def _add_study_command(commands) -> None:
    study = commands.add_parser(
        "study",
        help="train (or resume, or reuse) a set of presets and compare them: table and plots",
        description="Train every preset of the named study groups and presets into "
        "<out>/runs/<preset> (re-running continues: finished runs are reused, interrupted ones "
        "resumed), then write results.md / results.json (novel AR@k, base AP, train time, "
        "ΔAR@100 against the baseline) and plots/ (recall vs k, recall vs IoU, score "
        "histograms, objectness heat maps).",
    )
    study.add_argument(
        "names", nargs="+", metavar="GROUP_OR_PRESET", help="study groups and/or presets"
    )
    study.add_argument("--out", type=Path, help="study folder (default runs/study-<first name>)")
    study.add_argument("--data", help="dataset folder or instances JSON used as train and val")
    study.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help=f"override a config value of every preset, e.g. train.max_iters=200. {SCHEDULE_RULE}",
    )
    study.add_argument(
        "--baseline", help="run the ΔAR@100 column compares to (default: the group's, or first)"
    )
    study.add_argument(
        "--heatmap-runs",
        metavar="A,B",
        help="FCOS-OWP runs drawn in heatmaps.png (default: the first two)",
    )
    study.set_defaults(handler=_run_study)


def _add_pseudo_label_command(commands) -> None:
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
    pseudo.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    pseudo.add_argument("--force", action="store_true", help="overwrite an existing --out")
    pseudo.set_defaults(handler=_run_pseudo_label)


def _run_pseudo_label(args: argparse.Namespace) -> None:
    from owp.data.locate import locate, locate_split, run_data
    from owp.engine.checkpoint import load_checkpoint
    from owp.engine.dist import resolve_device
    from owp.engine.pseudo import (
        PseudoLabelSettings,
        describe_quality,
        mine_from_run,
        quality_path,
    )
    from owp.engine.runs import checkpoint_of
    from owp.errors import OwpInputError

    settings = PseudoLabelSettings(
        min_score=args.min_score,
        per_image=args.per_image,
        max_iou=args.max_iou,
        max_cover=args.max_cover,
        nms_iou=args.nms_iou,
    )
    if args.batch_size < 1:
        raise OwpInputError(f"--batch-size must be a positive integer, got {args.batch_size}")
    for path in (args.out, quality_path(args.out)):
        if path.exists() and not args.force:
            raise OwpInputError("already exists; pass --force to overwrite", path=path)
        _check_output_file(path)
    checkpoint = checkpoint_of(args.run)
    own = run_data(args.run, load_checkpoint(checkpoint).get("config", {}).get("data"))
    if args.data is not None:
        data, images = args.data, args.images
    else:
        data, images = own.train, args.images or own.train_images
    ann_file, images = locate(data, args.part, images)
    mined = mine_from_run(
        checkpoint,
        ann_file,
        images,
        args.split or locate_split(own.split, data),
        args.out,
        settings,
        device=resolve_device(args.device),
        batch_size=args.batch_size,
        progress=True,
    )
    count, num_images = len(mined.coco["annotations"]), len(mined.coco["images"])
    print(f"wrote {count} pseudo boxes on {num_images} training images to {mined.path}")
    if mined.quality is not None:
        print("\n".join(describe_quality(mined.quality)))
        print(f"quality: {mined.quality_file}")


def _add_report_command(commands) -> None:
    report = commands.add_parser(
        "report",
        help="a self-contained HTML page for a run or a study: tables, plots, a gallery with a "
        "k slider",
        description="Write OUT/index.html (no network needed: figures and images inlined): "
        "novel-class recall under both protocols, recall against k and IoU, per-category bars, "
        "objectness score histograms, training curves, and a gallery of val images with the "
        "top-k proposals drawn (green: a novel object hit, blue: on a base object, dashed red: "
        "a novel object missed at IoU 0.5) and a slider for k. A study folder gets its "
        "comparison table and one section per run. Uses the runs' saved val proposals "
        "(eval/proposals.json); with --data, a run is evaluated on that dataset first unless "
        "its saved proposals were made on it.",
    )
    report.add_argument("source", type=Path, help="run folder or study folder")
    report.add_argument("--out", type=Path, required=True, help="report folder to write")
    report.add_argument(
        "--data", help="val dataset folder or instances JSON (default: the runs' own)"
    )
    report.add_argument("--images", type=Path, help="images folder of --data")
    report.add_argument("--gallery", type=int, default=12, help="val images shown per run")
    report.add_argument("--max-k", type=int, default=100, help="the k slider's largest value")
    report.set_defaults(handler=_run_report)


def _run_report(args: argparse.Namespace) -> None:
    from owp.workflows.report import write_report

    _check_folder_path(args.out)
    path = write_report(
        args.source,
        args.out,
        data=args.data,
        images=args.images,
        gallery=args.gallery,
        max_k=args.max_k,
        progress=True,
    )
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB; open it in a browser)")


def _add_evaluation_arguments(parser: argparse.ArgumentParser, results_flag: str) -> None:
    """--gt, the results file, --split, --engine and --out, shared by the eval commands."""
    parser.add_argument(
        "--gt",
        required=True,
        type=Path,
        help="ground truth: instances JSON or dataset folder (its --part file, found as "
        "`owp data stats` finds it)",
    )
    _add_part_argument(parser)
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


def _add_pool_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--oln-pool",
        type=_positive_int,
        default=1500,
        metavar="N",
        help="oln protocol: proposals kept per image before those on base objects are removed "
        "(OLN 1500, GOOD 500, LDET and UDOS 100; default 1500)",
    )


def _add_part_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--part", default="val", help="which part of a dataset folder --gt names (default val)"
    )


def _ground_truth(args: argparse.Namespace) -> Path:
    """The instances JSON that ``--gt`` names: the file, or the ``--part`` file of a dataset
    folder (:func:`owp.data.coco.find_annotation_file`, as ``owp data stats`` finds it)."""
    from owp.data.coco import find_annotation_file

    return find_annotation_file(args.gt, args.part)


def _add_per_category_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--per-category",
        action="store_true",
        help="also each novel class's count, recall@100 at IoU 0.5 and AR@100 (the strict "
        "protocol on that class's objects alone): a table sorted by AR, 'per_category' in the "
        "metrics JSON and a bar plot <out stem>_per_category.png beside it",
    )


def _add_data_commands(commands) -> None:
    data = commands.add_parser(
        "data", help="make, split and inspect datasets", description="Dataset tools."
    )
    sub = data.add_subparsers(title="data commands", metavar="DATA_COMMAND")
    data.set_defaults(handler=lambda args: _missing_subcommand(data))

    synth = sub.add_parser(
        "synth",
        help="write the embedded synthetic open-world dataset (COCO format)",
        description="Write the synthetic open-world set: textured scenes with base and novel "
        "shape families, train.json/val.json, split.yaml. Deterministic for a seed.",
    )
    synth.add_argument("--out", required=True, type=Path, help="output folder")
    synth.add_argument("--train", type=int, default=800, help="training images (default 800)")
    synth.add_argument("--val", type=int, default=200, help="validation images (default 200)")
    synth.add_argument("--size", type=int, default=320, help="image side in pixels (default 320)")
    synth.add_argument("--seed", type=int, default=0, help="the same seed writes the same files")
    synth.add_argument(
        "--unannotated-base-fraction",
        type=float,
        default=0.15,
        help="fraction of base objects left unlabelled in train (default 0.15)",
    )
    synth.add_argument("--format", choices=("jpg", "png"), default="jpg", help="image file format")
    synth.add_argument(
        "--style",
        choices=("flat", "photo"),
        default="flat",
        help="scene style: flat (the first generator's flat-coloured shapes, reproduced byte for "
        "byte; default) or photo (multi-part textured objects on stuff backgrounds with camera "
        "effects, calibrated so that no-learning floors score as on real images)",
    )
    synth.add_argument("--force", action="store_true", help="overwrite an existing dataset")
    synth.set_defaults(handler=_run_data_synth)

    split = sub.add_parser(
        "split",
        help="write the base-only and novel-only ground-truth JSONs of a split",
        description="Write <stem>_base.json and <stem>_novel.json (all images kept) into --out.",
    )
    split.add_argument(
        "--gt", required=True, type=Path, help="instances JSON or dataset folder (its --part file)"
    )
    _add_part_argument(split)
    split.add_argument("--split", required=True, help="coco-voc, lvis-v1, all, or a split file")
    split.add_argument("--out", required=True, type=Path, help="output folder")
    split.add_argument("--force", action="store_true", help="overwrite existing files")
    split.set_defaults(handler=_run_data_split)

    stats = sub.add_parser(
        "stats",
        help="count images, boxes, classes, sizes, and report problems",
        description="Statistics of a COCO-format dataset (instances JSON or dataset folder).",
    )
    stats.add_argument("dataset", type=Path, help="instances JSON or dataset folder")
    stats.add_argument("--part", default="val", help="which part of a dataset folder (default val)")
    stats.add_argument("--split", help="count boxes per base/novel side of this split")
    stats.add_argument(
        "--images", type=Path, help="images folder (default: found next to the JSON)"
    )
    stats.add_argument("--no-image-check", action="store_true", help="do not decode every image")
    stats.add_argument("--json", action="store_true", help="print JSON instead of text")
    stats.set_defaults(handler=_run_data_stats)

    download = sub.add_parser(
        "download",
        help="download COCO 2017 or the LVIS v1 annotations, laid out as detectron2 does",
        description="Download the official archives (checksums verified, interrupted downloads "
        "resumed, complete ones skipped), extract them as <root>/coco/{train2017,val2017,"
        "annotations} and <root>/lvis/lvis_v1_{train,val}.json, and check every annotation "
        "file as owp data stats does. LVIS reads the COCO images: download coco too.",
    )
    # no argparse choices: an unknown name is one error line, as every bad input
    download.add_argument("dataset", help="what to download: coco or lvis")
    download.add_argument(
        "--root", type=Path, default=Path("datasets"), help="datasets folder (default datasets)"
    )
    download.set_defaults(handler=_run_data_download)


def _run_data_download(args: argparse.Namespace) -> None:
    from owp.data.download import download_dataset

    report = download_dataset(args.dataset, args.root, progress=True)
    if report.skipped:
        print(f"already complete: {', '.join(report.skipped)}")
    for line in report.checks:
        print(line)


def _run_demo(args: argparse.Namespace) -> None:
    from owp.demo import run_demo

    if args.minutes is not None and args.minutes <= 0:
        from owp.errors import OwpInputError

        raise OwpInputError(f"--minutes must be positive, got {args.minutes}")
    run_demo(out=args.out, device=args.device, minutes=args.minutes)


def _run_train(args: argparse.Namespace) -> None:
    from owp.config import apply_overrides, load_config_file, load_preset, resolve_data_paths
    from owp.engine.trainer import train
    from owp.errors import OwpInputError

    name = args.config.stem if args.config is not None else args.preset or DEFAULT_PRESET
    run_dir = args.out or Path("runs") / name
    if args.config is not None:
        config = load_config_file(args.config)
    elif args.preset is None and args.resume:  # a run folder is self-contained
        own = run_dir / "config.yaml"
        if not own.is_file():
            raise OwpInputError(
                "no config.yaml to resume with; name the run's --preset or --config", path=run_dir
            )
        config = load_config_file(own)
    else:
        config = load_preset(args.preset or DEFAULT_PRESET)
    overrides = list(args.set or [])
    if args.device:
        overrides.append(f"train.device={args.device}")
    if args.init:
        overrides.append(f"train.init={args.init}")
    config = resolve_data_paths(apply_overrides(config, overrides))
    result = train(config, run_dir, resume=args.resume)
    start, end = result.start_step, result.step  # a resumed session did start -> end
    session = f"{end - start} steps ({start}→{end})" if start else f"{end} steps"
    _print_run_metrics(
        result.metrics, f"{run_dir}: {session} in {result.seconds:.0f} s; val recall"
    )
    print(f"checkpoint: {result.checkpoint}")


def _run_eval(args: argparse.Namespace) -> None:
    from owp.data.locate import locate, locate_split, run_data
    from owp.engine.dist import resolve_device
    from owp.engine.inference import evaluate_model
    from owp.evaluation.proposals import check_max_dets

    max_dets = check_max_dets(args.max_dets)
    overrides = {"scoring": args.scoring} if args.scoring else {}
    extras = [name.strip() for name in args.also_scoring.split(",") if name.strip()]
    if str(args.run).lower().endswith(".onnx"):
        from owp.errors import OwpInputError

        raise OwpInputError(
            "owp eval runs PyTorch models: evaluate the run or source this file was exported "
            "from (owp predict FILE IMAGES runs the ONNX file)",
            path=args.run,
        )
    from owp.engine.precision import prepare_for_inference

    model, saved = _load_model(args, **overrides)
    device = resolve_device(args.device)
    model.to(device)
    precision = prepare_for_inference(
        model, device, amp=args.amp, channels_last=args.channels_last, compile=args.compile
    )
    own = run_data(args.run, saved.get("data"))  # config.yaml: absolute paths
    if args.data is not None:
        data, images = args.data, args.images
    else:
        data, images = own.val, args.images or own.val_images
    ann_file, images = locate(data, args.part, images)
    split = args.split or locate_split(own.split, data)
    out = (
        args.out or (Path(args.run) if Path(args.run).is_dir() else Path(args.run).parent) / "eval"
    )
    metrics = evaluate_model(
        model,
        ann_file,
        images,
        split,
        protocol=args.protocol,
        oln_pool=args.oln_pool,
        max_dets=max_dets,
        batch_size=args.batch_size,
        # Without --scoring, the run's own eval settings (e.g. a Double-Head run ranks its
        # proposals by RPN objectness and its detections by class scores).
        proposal_scoring=None if args.scoring else saved["eval"].get("proposal_scoring"),
        detection_scoring=saved["eval"].get("detection_scoring"),
        extra_proposal_scorings=extras,
        out_dir=out,
        progress=True,
        reuse=not args.force,
        precision=precision,
    )
    if metrics.get("reused"):
        names = " and ".join(metrics["reused"])
        print(f"reused {names} in {out}: same weights, scoring and data (--force predicts again)")
    _print_run_metrics(metrics, f"{ann_file}: {metrics['protocol_label']} protocol")
    if extras:
        _print_scorings(metrics, extras)
    if args.per_category:
        from owp.engine.inference import metrics_file_name
        from owp.evaluation.proposals import category_budget, per_category_recall
        from owp.files import write_json

        metrics["per_category"] = per_category_recall(
            ann_file, out / "proposals.json", split, budget=category_budget(max_dets)
        )
        metrics_file = out / metrics_file_name(args.protocol, args.oln_pool)
        write_json(metrics_file, metrics)
        _report_per_category(metrics["per_category"], metrics_file)
    print(f"proposals and metrics in {out}")


def _run_study(args: argparse.Namespace) -> None:
    from owp.engine.study import run_study

    out = args.out or Path("runs") / f"study-{args.names[0]}"
    heatmap_runs = (
        [name.strip() for name in args.heatmap_runs.split(",") if name.strip()]
        if args.heatmap_runs
        else None
    )
    result = run_study(
        args.names,
        out,
        overrides=args.set or (),
        data=args.data,
        baseline=args.baseline,
        heatmap_runs=heatmap_runs,
    )
    print(result.results_md.read_text())
    print(f"results: {result.results_md}, {result.results_json}; plots in {out / 'plots'}")


def _run_predict(args: argparse.Namespace) -> None:
    from owp.engine.dist import resolve_device
    from owp.engine.inference import image_paths
    from owp.engine.predict import predict_images
    from owp.errors import OwpInputError
    from owp.evaluation.proposals import DEFAULT_MAX_DETS
    from owp.sources import ONNX_SUFFIX, is_source

    for flag, value in (
        ("--top-k", args.top_k),
        ("--draw", args.draw),
        ("--batch-size", args.batch_size),
    ):
        if value is not None and value < 1:
            raise OwpInputError(f"{flag} must be a positive integer, got {value}")
    paths = image_paths(args.inputs) if args.inputs else None
    source = is_source(args.run)
    if paths is None and source:
        raise OwpInputError(
            "name the image files or folders to predict (a model source has no val images)",
            path=args.run,
        )
    overrides = {"scoring": args.scoring} if args.scoring else {}
    if not str(args.run).lower().endswith(ONNX_SUFFIX):  # an ONNX graph has them built in
        if args.top_k is not None:
            overrides["post_nms_top_n"] = args.top_k
        elif args.format == "coco":  # the budget owp eval scores, so that AR@1000 means it
            overrides["post_nms_top_n"] = max(DEFAULT_MAX_DETS)
        if args.score_thresh is not None:
            overrides["score_thresh"] = args.score_thresh
    from owp.engine.precision import prepare_for_inference

    model, saved = _load_model(args, **overrides)
    device = resolve_device(args.device)
    model.to(device)
    precision = prepare_for_inference(
        model, device, amp=args.amp, channels_last=args.channels_last, compile=args.compile
    )
    paths, image_ids = _predict_images_and_ids(args, paths, saved, source)
    names = getattr(model, "class_names", None)
    classifies = getattr(getattr(model, "config", None), "num_classes", None) is not None
    if names is None and classifies and getattr(model, "category_ids", None) is None:
        log.warning("labels are written as numbers: the run's classes are unknown")
    report = predict_images(
        model,
        paths,
        args.out,
        top_k=args.top_k,
        draw=args.draw,
        score_thresh=args.score_thresh,
        batch_size=args.batch_size,
        output_format=args.format,
        class_names=names,
        category_ids=getattr(model, "category_ids", None),
        image_ids=image_ids,
        precision=precision,
        progress=True,
    )
    what = "predictions.json" if args.format == "coco" else "proposals (JSON)"
    print(
        f"wrote {what} and overlays (PNG) for {report.images} images ({report.boxes} boxes, "
        f"{report.images_per_second:.1f} img/s) to {args.out}"
    )


def _predict_images_and_ids(args, paths, saved, source) -> tuple[list[Path], list[int] | None]:
    """The images ``owp predict`` runs on and their dataset image ids: ``--data``'s (its images
    by default, inputs matched by file name), else the run's own val set's (its images by
    default, or inputs that all carry its file names); ``None`` (numbered from 1) otherwise."""
    from owp.data.locate import dataset_images, run_images
    from owp.engine.predict import ids_by_file_name

    if args.data is not None:
        known, ids = dataset_images(args.data, args.part, args.images)
        if paths is None:
            return known, ids
        return paths, ids_by_file_name(paths, known, ids, args.data, strict=True)
    if source:
        return paths, None
    known, ids = run_images(args.run, saved.get("data")) if paths is None else _run_val(args, saved)
    if paths is None:
        return known, ids
    return paths, ids_by_file_name(paths, known, ids, args.run, strict=False)


def _run_val(args, saved) -> tuple[list[Path], list[int]]:
    """The run's val images and ids, or none when its data is not found."""
    from owp.data.locate import run_images
    from owp.errors import OwpInputError

    try:
        return run_images(args.run, saved.get("data"))
    except OwpInputError:
        return [], []


def _run_presets(args: argparse.Namespace) -> None:
    from owp.config import list_groups, list_presets

    presets, groups = list_presets(), list_groups()
    width = max(map(len, [*presets, *groups]))
    print("presets (owp train --preset NAME):")
    for name, description in presets.items():
        print(f"  {name:<{width}}  {description}")
    print("study groups (owp study NAME):")
    for name, description in groups.items():
        print(f"  {name:<{width}}  {description}")


def _run_models(args: argparse.Namespace) -> None:
    from owp.models import list_models

    models = list_models()
    width = max(map(len, models))
    for name, description in models.items():
        print(f"{name:<{width}}  {description}")


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


def _print_run_metrics(metrics: dict, title: str) -> None:
    from owp.evaluation.tables import metrics_table

    columns = [k for k in metrics if k.startswith(("AR", "AP"))]
    if columns:
        print(metrics_table([metrics], columns, title=f"{title} (%)"))


def _run_data_synth(args: argparse.Namespace) -> None:
    from owp.data.synthetic import SynthConfig, generate_synthetic_dataset

    config = SynthConfig(
        num_train=args.train,
        num_val=args.val,
        image_size=args.size,
        seed=args.seed,
        unannotated_base_fraction=args.unannotated_base_fraction,
        image_format=args.format,
        style=args.style,
    )
    out = generate_synthetic_dataset(args.out, config, force=args.force, progress=True)
    print(f"wrote {args.train} train + {args.val} val images to {out}")
    print(
        f"  train: {out / 'train.json'}\n  val:   {out / 'val.json'}\n  split: {out / 'split.yaml'}"
    )


def _run_data_split(args: argparse.Namespace) -> None:
    from owp.data.coco import read_coco_json, subset_categories
    from owp.data.splits import resolve_split
    from owp.errors import OwpInputError
    from owp.files import write_json

    _check_folder_path(args.out)
    gt = _ground_truth(args)
    coco = read_coco_json(gt)
    split = resolve_split(args.split, coco["categories"], gt)
    targets = {
        args.out / f"{gt.stem}_base.json": split.base_ids,
        args.out / f"{gt.stem}_novel.json": split.novel_ids,
    }
    existing = [str(p) for p in targets if p.exists()]
    if existing and not args.force:
        verb = "exists" if len(existing) == 1 else "exist"
        raise OwpInputError(f"{', '.join(existing)} already {verb}; pass --force to overwrite")
    for path, ids in targets.items():
        subset = subset_categories(coco, ids)
        write_json(path, subset, indent=None)
        kept = sum(1 for a in subset["annotations"] if not a["iscrowd"])
        print(f"wrote {path}: {len(ids)} classes, {kept} boxes, {len(subset['images'])} images")


def _run_data_stats(args: argparse.Namespace) -> None:
    from owp.data.coco import find_annotation_file, find_image_folder, load_instances
    from owp.data.splits import resolve_split
    from owp.data.stats import instances_stats
    from owp.errors import OwpInputError

    ann_file = find_annotation_file(args.dataset, args.part)
    coco, repairs = load_instances(ann_file)
    split = resolve_split(args.split, coco["categories"], ann_file) if args.split else None
    images = None
    if not args.no_image_check:
        if args.images is not None and not args.images.is_dir():
            raise OwpInputError("images folder not found", path=args.images)
        images = args.images or find_image_folder(ann_file, coco)
    stats = instances_stats(coco, repairs, split, images, progress=not args.json)
    if args.json:
        print(json.dumps({"annotations": str(ann_file), **stats.to_dict()}, indent=1))
        return
    print(f"annotations: {ann_file}")
    if images is not None:
        print(f"images:      {images}")
    print(
        f"images {stats.num_images}  boxes {stats.num_boxes} (+{stats.num_crowd} crowd)  "
        f"classes {stats.num_classes}  images without boxes {stats.images_without_boxes}"
    )
    if split is not None:
        print(
            f"split {split.name}: {len(split.base_ids)} base, {len(split.novel_ids)} novel classes"
        )
    for side, buckets in stats.sizes_per_side.items():
        sizes = "  ".join(f"{name} {count}" for name, count in buckets.items())
        print(f"  {side:>6}: {stats.boxes_per_side[side]:>7} boxes   {sizes}")
    for note in stats.notes:
        print(f"note: {note}")
    if stats.problems:
        print(f"problems ({len(stats.problems)}):")
        for problem in stats.problems[:50]:
            print(f"  - {problem}")
        if len(stats.problems) > 50:
            print(f"  ... and {len(stats.problems) - 50} more")
    else:
        print("problems: none found")


def _run_propose_baseline(args: argparse.Namespace) -> None:
    from owp.data.coco import find_annotation_file, find_image_folder, read_coco_json
    from owp.engine.inference import baseline_proposer, propose_for_images
    from owp.errors import OwpInputError
    from owp.files import write_json
    from owp.models.baselines import PIXEL_BASELINES, require_opencv_contrib

    if args.num <= 0:
        raise OwpInputError(f"--num must be a positive integer, got {args.num}")
    if args.method == "selective-search":
        require_opencv_contrib()  # before any work: one line saying what to install
    _check_output_file(args.out)
    ann_file = find_annotation_file(args.data, args.part)
    coco = read_coco_json(ann_file)
    images_dir = None
    if args.method in PIXEL_BASELINES:
        images_dir = args.images or find_image_folder(ann_file, coco)
    results = propose_for_images(
        coco["images"],
        baseline_proposer(args.method, args.num, args.seed, args.mode),
        images_dir=images_dir,
        progress=True,
    )
    write_json(args.out, results, indent=None)
    print(
        f"wrote {len(results)} {args.method} proposals "
        f"for {len(coco['images'])} images to {args.out}"
    )


def _run_eval_proposals(args: argparse.Namespace) -> None:
    from owp.evaluation.proposals import check_max_dets, evaluate_conventions, evaluate_proposals
    from owp.evaluation.tables import metrics_table, recall_columns

    max_dets = check_max_dets(args.max_dets)
    _check_output_file(args.out)
    if args.protocol == "all":
        if args.per_category:
            from owp.errors import OwpInputError

            raise OwpInputError("--per-category goes with --protocol strict or oln, not all")
        rows = evaluate_conventions(
            _ground_truth(args), args.proposals, args.split, max_dets=max_dets, engine=args.engine
        )
        first = rows[0]
        title = (
            f"novel-class recall (%) under each published convention, split {first['split']}, "
            f"{first['num_images']} images, {first['num_gt']} novel objects"
        )
        columns = ["convention", *recall_columns(first), "used_by"]
        print(metrics_table(rows, columns, title=title))
        _write_metrics(args.out, {"conventions": rows})
        return
    metrics = evaluate_proposals(
        _ground_truth(args),
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
    _write_metrics(args.out, metrics)
    if args.per_category:
        _report_per_category(metrics["per_category"], args.out)


def _report_per_category(rows: list[dict], out: Path | None) -> None:
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


def _run_eval_detections(args: argparse.Namespace) -> None:
    from owp.evaluation.detection import evaluate_detections
    from owp.evaluation.tables import metrics_table

    _check_output_file(args.out)
    metrics = evaluate_detections(
        _ground_truth(args), args.detections, args.split, engine=args.engine
    )
    title = (
        f"base-class AP (%), split {metrics['split']}, {metrics['num_images']} images, "
        f"{metrics['num_gt']} base objects"
    )
    columns = ["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large"]
    print(metrics_table([metrics], columns, title=title))
    _write_metrics(args.out, metrics)


def _write_metrics(out: Path | None, metrics: dict) -> None:
    if out is None:
        return
    from owp.files import write_json

    write_json(out, metrics)
    print(f"wrote {out}")


def _positive_int(text: str) -> int:
    """argparse type: a positive integer (its error becomes the one ``owp: error:`` line)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1 or str(value) != text.strip():
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _check_output_file(path: Path | None) -> None:
    """Fail before any work when ``path`` cannot be written as a file (a folder is in the way)."""
    if path is None:
        return
    from owp.errors import OwpInputError

    if path.is_dir():
        raise OwpInputError("is a folder, expected a file to write", path=path)
    _check_folder_path(path.parent)


def _check_folder_path(folder: Path) -> None:
    """Fail when ``folder`` or its nearest existing ancestor is a file, not a folder."""
    from owp.errors import OwpInputError

    for candidate in (folder, *folder.parents):
        if candidate.exists():
            if not candidate.is_dir():
                raise OwpInputError("is a file, expected a folder", path=candidate)
            return


def _configure_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LowercaseLevelFormatter("owp: %(levelname)s: %(message)s"))
    root = logging.getLogger("owp")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


class _LowercaseLevelFormatter(logging.Formatter):
    """``owp: warning: ...`` rather than ``owp: WARNING: ...``, like the error lines."""

    def format(self, record: logging.LogRecord) -> str:
        record = logging.makeLogRecord(record.__dict__)
        record.levelname = record.levelname.lower()
        return super().format(record)


if __name__ == "__main__":
    sys.exit(main())

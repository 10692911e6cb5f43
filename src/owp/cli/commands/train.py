"""``owp train``: train a model from a preset or a YAML config into a run folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from owp.cli.options import SCHEDULE_RULE, print_run_metrics
from owp.workflows.train import DEFAULT_PRESET


def register(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train",
        help="train a model from a preset or a YAML config",
        description="Iteration-based training (SGD, warm-up, lr steps, AMP on CUDA) into a run "
        "folder: config.yaml, metrics.csv, TensorBoard events, checkpoints, val metrics. "
        "Multi-GPU: torchrun --nproc_per_node N -m owp.cli train ... Self-training "
        "(data.pseudo_labels, train.pseudo_weight) is experimental: on the synthetic set it "
        "has not beaten its control yet (docs/results.md, 'Self-training').",
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
    train.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from owp.workflows.train import train_run

    result = train_run(
        preset=args.preset,
        config_file=args.config,
        overrides=args.set or (),
        out=args.out,
        resume=args.resume,
        init=args.init,
        device=args.device,
    )
    start, end = result.start_step, result.step  # a resumed session did start -> end
    session = f"{end - start} steps ({start}→{end})" if start else f"{end} steps"
    print_run_metrics(
        result.metrics, f"{result.run_dir}: {session} in {result.seconds:.0f} s; val recall"
    )
    print(f"checkpoint: {result.checkpoint}")

"""The no-learning floors on synthetic scenes and on real images, side by side.

Run by hand::

    python benchmarks/bench_floors.py [--style photo] [--val 200] [--coco FOLDER]

For the synthetic set it writes (or reuses) a dataset of ``--val`` val images (and 1 train
image) of ``--style`` at ``--size`` px and seed ``--seed`` under ``--work``; for the real set it
reads any COCO-format folder (instances JSON + images) with the ``--split`` (default
``coco-voc``); a missing real folder is skipped with a note. Each column is the novel-class
recall (%) of Selective Search fast (OpenCV contrib, images shrunk to 500 px, its own ranking)
and of the multi-scale sliding-window grid, 1000 proposals per image, under the strict protocol
(:func:`owp.evaluation.proposals.evaluate_proposals`), at AR@1, AR@10, AR@100 and AR@1000.
Selective Search costs about a second per image on one core; ``--workers`` processes share the
images (default: one per CPU; the proposals are the same for any number). These floors are what the
``photo`` style is calibrated on (docs/decisions.md); never calibrate it on a learned model.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from owp.data.coco import find_annotation_file, find_image_folder, read_coco_json
from owp.data.synthetic import (
    STYLES,
    SynthConfig,
    generate_synthetic_dataset,
    is_synthetic_dataset,
)
from owp.engine.inference import baseline_proposer, propose_for_images
from owp.evaluation.proposals import evaluate_proposals

METHODS: tuple[tuple[str, str], ...] = (
    ("Selective Search fast", "selective-search"),
    ("sliding windows", "sliding-window"),
)
BUDGETS: tuple[int, ...] = (1, 10, 100, 1000)


def floors(
    data: Path, split: str | Path, workers: int | None = None
) -> dict[str, dict[int, float]]:
    """AR@k (%) of every method on the val part of a dataset folder."""
    ann_file = find_annotation_file(data, "val")
    coco = read_coco_json(ann_file)
    images_dir = find_image_folder(ann_file, coco)
    table: dict[str, dict[int, float]] = {}
    for label, method in METHODS:
        results = propose_for_images(
            coco["images"],
            baseline_proposer(method, max(BUDGETS)),
            images_dir=images_dir if method == "selective-search" else None,
            progress=True,
            workers=workers,
        )
        metrics: dict[str, Any] = evaluate_proposals(
            ann_file, results, split, protocol="strict", max_dets=BUDGETS
        )
        table[label] = {k: 100 * float(metrics[f"AR@{k}"]) for k in BUDGETS}
    return table


def synthetic_folder(args: argparse.Namespace) -> Path:
    """The synthetic dataset to measure, generated once."""
    config = SynthConfig(
        num_train=1, num_val=args.val, image_size=args.size, seed=args.seed, style=args.style
    )
    folder = args.work / f"{args.style}-{args.size}px-seed{args.seed}-val{args.val}"
    if not is_synthetic_dataset(folder):
        generate_synthetic_dataset(folder, config, force=True, progress=True, workers=args.workers)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", choices=tuple(STYLES), default="photo")
    parser.add_argument("--val", type=int, default=200, help="synthetic val images")
    parser.add_argument(
        "--size", type=int, default=SynthConfig().image_size, help="synthetic image side"
    )
    parser.add_argument("--seed", type=int, default=0, help="synthetic seed")
    parser.add_argument("--work", type=Path, default=Path("/tmp/owp-bench-floors"))
    parser.add_argument("--coco", type=Path, default=Path("/work/shared/data/coco-mini"))
    parser.add_argument("--split", default="coco-voc", help="split of the COCO-format folder")
    parser.add_argument("--workers", type=int, help="processes (default: one per CPU)")
    args = parser.parse_args()
    columns: dict[str, dict[str, dict[int, float]]] = {}
    synthetic = synthetic_folder(args)
    columns[f"synthetic {args.style} ({args.val} val)"] = floors(
        synthetic, synthetic / "split.yaml", args.workers
    )
    if args.coco.exists():
        columns[f"{args.coco.name} ({args.split})"] = floors(args.coco, args.split, args.workers)
    else:
        print(f"note: {args.coco} not found, real-image column skipped")
    names = list(columns)
    width = max(len(name) for name in names) + 3
    print(f"{'novel AR (%), strict':<28}" + "".join(f"{name:>{width}}" for name in names))
    for label, _ in METHODS:
        for k in BUDGETS:
            row = f"{label + f' AR@{k}':<28}"
            row += "".join(f"{columns[name][label][k]:>{width}.1f}" for name in names)
            print(row)


if __name__ == "__main__":
    main()

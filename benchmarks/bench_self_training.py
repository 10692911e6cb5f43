"""Self-training measured against controls that isolate the labels (issue 20).

Run by hand, one training job at a time::

    python benchmarks/bench_self_training.py --out runs-self-training \\
        [--data synthetic] [--miner-iters 400] [--continue-iters 400] [--seeds 1,2,3] \\
        [--full-control] [--holdout-every 5] [--threads 1] [--set KEY=VALUE ...] \\
        [--continue-set KEY=VALUE ...]

Protocol (docs/results.md, "Self-training"):

1. **Miner**: ``synth-t1-iou-cs-is`` trained for ``--miner-iters`` (seed 0) on the training
   images: the mining checkpoint.
2. **Selection on training images only**: the miner's proposals on every training image, once;
   every ``--holdout-every``-th training image (by position) is held out, and each mining
   setting of the grid (boxes per image, least score, IoU with annotated boxes, share covered
   by one) is scored by the F1 of its pseudo labels on the held-out images against their
   ``objects.json`` (the objects training sees no label on). The validation set is never
   read for it. The best setting mines every training image.
3. **Arms, per seed** (``train.seed``), each evaluated on val at its end:
   *with labels*: ``--continue-iters`` more iterations from the mining checkpoint
   (``train.init``) with the pseudo labels; *identical-schedule control*: the same, without
   them (the headline comparison); with ``--full-control`` also the *full-length single run*
   (``--miner-iters + --continue-iters`` from scratch, the equal-compute control).

It prints the selection table, the pseudo-label precision and recall, and per arm AR@10,
AR@100 (mean over seeds, min..max) and per-seed ΔAR@100 against the identical-schedule
control, plus the CPU minutes each part took. Every finished run is reused when the script is
run again with the same settings (delete ``--out`` to start over). ``--set`` overrides apply to
every run (e.g. ``--set data.train=DIR --set data.val=DIR`` for another synthetic set).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch

from owp.config import apply_overrides, load_preset, resolve_data_paths
from owp.data.dataset import CocoDetection
from owp.data.locate import locate, locate_split
from owp.data.pseudo import PSEUDO_CATEGORY
from owp.engine.checkpoint import latest_checkpoint, load_checkpoint
from owp.engine.inference import predict_dataset
from owp.engine.pseudo import (
    OBJECTS_FILE,
    PseudoLabelSettings,
    image_pseudo_annotations,
    pseudo_label_quality,
    read_objects,
)
from owp.engine.runs import load_with_config
from owp.engine.trainer import train
from owp.files import write_json

PRESET = "synth-t1-iou-cs-is"
ARMS = {
    "with pseudo labels": "with-labels",
    "identical-schedule control": "control",
    "full-length single run": "full",
}
GRID = {
    "per_image": (1, 2, 3, 5),
    "min_score": (0.0, 0.3, 0.5, 0.7),
    "max_iou": (0.3, 0.5),
    "max_cover": (0.5, 0.8),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of the runs and results")
    parser.add_argument("--data", default="synthetic", help="data.train and data.val")
    parser.add_argument("--miner-iters", type=int, default=400)
    parser.add_argument("--continue-iters", type=int, default=400)
    parser.add_argument("--seeds", default="1,2,3", help="train.seed of the arms")
    parser.add_argument("--full-control", action="store_true", help="also the full-length run")
    parser.add_argument("--holdout-every", type=int, default=5, help="held-out training images")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--report", action="store_true", help="print the tables of the runs finished so far"
    )
    parser.add_argument(
        "--continue-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="overrides of the continuation arms only (e.g. train.warmup_iters=10)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    # One process per job: no data-loader workers (their CPU time would go uncounted).
    base = [f"data.train={args.data}", f"data.val={args.data}", "data.num_workers=0", *args.set]
    minutes: dict[str, float] = defaultdict(float)

    if args.report:
        print_report(partial_report(args.out, seeds), seeds)
        return
    miner = run(args.out / "miner", base + [f"train.max_iters={args.miner_iters}"], minutes)
    checkpoint = latest_checkpoint(miner)
    selected = args.out / "selection.json"
    if selected.is_file():  # a re-run: the selection and the labels are made once
        labels, found = args.out / "pseudo_labels.json", json.loads(selected.read_text())
        selection, quality = found["selection"], found["quality"]
    else:
        labels, selection, quality = select_and_mine(
            checkpoint, args.out, args.holdout_every, base, minutes
        )
        write_json(selected, {"selection": selection, "quality": quality})
    arms: dict[str, dict[int, dict]] = defaultdict(dict)
    for seed in seeds:
        common = [
            *base,
            f"train.seed={seed}",
            f"train.max_iters={args.continue_iters}",
            *args.continue_set,
        ]
        init = f"train.init={checkpoint.resolve()}"
        total = args.miner_iters + args.continue_iters
        overrides = {
            "with pseudo labels": [*common, init, f"data.pseudo_labels={labels}"],
            "identical-schedule control": [*common, init],
            "full-length single run": [*base, f"train.seed={seed}", f"train.max_iters={total}"],
        }
        for arm, prefix in ARMS.items():
            if arm != "full-length single run" or args.full_control:
                arms[arm][seed] = metrics_of(
                    run(args.out / f"{prefix}-s{seed}", overrides[arm], minutes)
                )
    report = {
        "settings": vars(args) | {"out": str(args.out)},
        "selection": selection,
        "quality": quality,
        "arms": arms,
        "cpu_minutes": minutes,
    }
    write_json(args.out / "results.json", report)
    print_report(report, seeds)


def run(run_dir: Path, overrides: list[str], minutes: dict[str, float]) -> Path:
    """Train ``PRESET`` with ``overrides`` into ``run_dir`` unless it finished there already."""
    config = resolve_data_paths(apply_overrides(load_preset(PRESET), overrides))
    done = latest_checkpoint(run_dir)
    if done is not None and int(load_checkpoint(done)["step"]) >= config.train.max_iters:
        return run_dir
    start = time.process_time()
    train(config, run_dir, resume=done is not None, progress=False)
    minutes[run_dir.name] += (time.process_time() - start) / 60
    return run_dir


def metrics_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "eval" / "metrics.json").read_text())


def partial_report(out: Path, seeds: list[int]) -> dict:
    """The report of the runs in ``out`` that have finished (``--report``)."""
    found = json.loads((out / "selection.json").read_text())
    arms: dict[str, dict[int, dict]] = defaultdict(dict)
    for arm, prefix in ARMS.items():
        for seed in seeds:
            if (out / f"{prefix}-s{seed}" / "eval" / "metrics.json").is_file():
                arms[arm][seed] = metrics_of(out / f"{prefix}-s{seed}")
    return {**found, "arms": arms, "cpu_minutes": {}}


def select_and_mine(
    checkpoint: Path, out: Path, holdout_every: int, base: list[str], minutes: dict[str, float]
) -> tuple[Path, list[dict], dict]:
    """Mining settings chosen on held-out training images (never val); the pseudo-label file
    mined with them on every training image, and its quality."""
    config = resolve_data_paths(apply_overrides(load_preset(PRESET), base))
    ann_file, images = locate(config.data.train, "train", config.data.train_images)
    split = locate_split(config.data.split, config.data.train)
    objects = read_objects(ann_file.parent / OBJECTS_FILE)
    dataset = CocoDetection(images, ann_file, split, training=False)
    start = time.process_time()
    model, _ = load_with_config(checkpoint)
    proposals: dict[int, list[dict]] = defaultdict(list)
    for result in predict_dataset(model, dataset, batch_size=8, num_workers=0):
        proposals[result["image_id"]].append(result)
    held_out = {image["id"] for image in dataset.images[::holdout_every]}
    rows = []
    for values in itertools.product(*GRID.values()):
        settings = PseudoLabelSettings(**dict(zip(GRID, values, strict=True)))
        coco = pseudo_labels(dataset, proposals, settings, held_out)
        found = pseudo_label_quality(coco, objects, dataset.split)
        rows.append({**dict(zip(GRID, values, strict=True)), **_scores(found)})
    rows.sort(key=lambda row: -row["f1"])
    best = PseudoLabelSettings(**{key: rows[0][key] for key in GRID})
    coco = pseudo_labels(dataset, proposals, best, None)
    coco["info"]["selected_on"] = f"{len(held_out)} held-out training images, F1 at IoU 0.5"
    labels = write_json(out / "pseudo_labels.json", coco, indent=None)
    quality = {
        "all training images": pseudo_label_quality(coco, objects, dataset.split),
        "held-out training images": pseudo_label_quality(
            pseudo_labels(dataset, proposals, best, held_out), objects, dataset.split
        ),
    }
    minutes["selection and mining"] += (time.process_time() - start) / 60
    return labels, rows, quality


def pseudo_labels(
    dataset: CocoDetection,
    proposals: dict[int, list[dict]],
    settings: PseudoLabelSettings,
    only: set[int] | None,
) -> dict:
    """The pseudo-label COCO dict of ``settings`` from the proposals (images in ``only``)."""
    images = [im for im in dataset.images if only is None or im["id"] in only]
    annotations = []
    for image in images:
        found = proposals.get(image["id"], [])
        if found:
            for ann in image_pseudo_annotations(
                image["id"], found, dataset.annotations[image["id"]], settings
            ):
                annotations.append({"id": len(annotations) + 1, **ann})
    return {
        "info": {"settings": settings.__dict__.copy()},
        "images": images,
        "annotations": annotations,
        "categories": [dict(PSEUDO_CATEGORY)],
    }


def _scores(quality: dict) -> dict:
    precision, recall = quality["precision"] or 0.0, quality["recall"] or 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"boxes": quality["pseudo_boxes"], "precision": precision, "recall": recall, "f1": f1}


def print_report(report: dict, seeds: list[int]) -> None:
    print(
        "\nMining settings, selected on held-out training images (best 8 of "
        f"{len(report['selection'])}, F1 at IoU 0.5 against objects.json):\n"
    )
    print("| per image | min score | max IoU | max cover | boxes | precision | recall | F1 |")
    print("|---|---|---|---|---|---|---|---|")
    for row in report["selection"][:8]:
        print(
            f"| {row['per_image']} | {row['min_score']:g} | {row['max_iou']:g} | "
            f"{row['max_cover']:g} | {row['boxes']} | {100 * row['precision']:.1f} % | "
            f"{100 * row['recall']:.1f} % | {100 * row['f1']:.1f} |"
        )
    print("\nPseudo labels of the selected setting (IoU 0.5, objects training sees unlabelled):\n")
    print("| images | boxes | precision | recall | novel recall | base recall | wrong boxes |")
    print("|---|---|---|---|---|---|---|")
    for name, q in report["quality"].items():
        wrong = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in q["false_positives"].items())
        print(
            f"| {name} | {q['pseudo_boxes']} | {_pct(q['precision'])} | {_pct(q['recall'])} | "
            f"{_pct(q['by_side']['novel']['recall'])} | {_pct(q['by_side']['base']['recall'])} | "
            f"{wrong} |"
        )
    control = report["arms"]["identical-schedule control"]
    print(f"\nNovel-object recall on val (strict protocol), seeds {seeds}:\n")
    print("| arm | AR@10 | AR@100 (mean, min..max) | ΔAR@100 vs identical-schedule control |")
    print("|---|---|---|---|")
    for arm, per_seed in report["arms"].items():
        ar10 = [100 * m["AR@10"] for m in per_seed.values()]
        ar100 = [100 * m["AR@100"] for m in per_seed.values()]
        deltas = [100 * (per_seed[s]["AR@100"] - control[s]["AR@100"]) for s in per_seed]
        each = ", ".join(f"{d:+.1f}" for d in deltas)
        delta = (
            "—"
            if arm == "identical-schedule control"
            else f"{statistics.mean(deltas):+.1f} (per seed {each})"
        )
        print(
            f"| {arm} | {statistics.mean(ar10):.1f} | {statistics.mean(ar100):.1f} "
            f"({min(ar100):.1f}..{max(ar100):.1f}) | {delta} |"
        )
    total = sum(report["cpu_minutes"].values())
    print(f"\nCPU minutes (process time, this run of the script): {total:.1f}")
    for name, value in report["cpu_minutes"].items():
        print(f"  {name}: {value:.1f}")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


if __name__ == "__main__":
    main()

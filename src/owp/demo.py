"""``owp demo``: train FCOS-OWP on the synthetic open-world set and compare novel-class recall.

1. The synthetic set is generated once and cached (``$OWP_HOME``, default ``~/.cache/owp``).
2. ``fcos_owp_tiny`` with both objectness branches, trained IoU-CS-IS on the base shape
   families (preset ``demo``) for as many iterations as fit in the time budget (measured on
   this machine before training starts).
3. Novel-class AR@k (strict protocol) on the val set, for the same model scored by IoU and by
   centerness, and for the non-learned sliding-window baseline; an overlay image of one val
   image's top proposals.
"""

from __future__ import annotations

import shutil
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from owp.config import load_preset
from owp.data.coco import CocoDetection, read_coco_json
from owp.data.locate import default_synthetic_dataset, locate, locate_split
from owp.engine.inference import baseline_proposer, evaluate_model, propose_for_images
from owp.engine.trainer import Trainer
from owp.evaluation.proposals import evaluate_proposals
from owp.evaluation.report import metrics_table
from owp.files import write_json
from owp.models.factory import create_model
from owp.viz.overlays import save_overlay

DEMO_COLUMNS = ("method", "AR@10", "AR@100", "AR@1000", "AR_small@100", "AR_large@100")
CALIBRATION_STEPS = 3
OVERLAY_TOP_K = 10
MIN_ITERS, MAX_ITERS = 50, 3000


def run_demo(out: Path = Path("runs/demo"), device: str = "auto", minutes: float = 4.0) -> list:
    """Run the demo (module docstring); print and return the table rows."""
    start = time.perf_counter()
    default_synthetic_dataset()
    config = load_preset("demo")
    config = replace(config, train=replace(config.train, device=device))
    run_dir = out / "train"
    if (run_dir / "config.yaml").exists():  # a previous demo's run: start afresh
        shutil.rmtree(run_dir)
    trainer = Trainer(config, run_dir)
    seconds_per_iter = _seconds_per_iteration(trainer)
    iterations = int(min(max(minutes * 60 / seconds_per_iter, MIN_ITERS), MAX_ITERS))
    print(
        f"training fcos_owp_tiny (IoU-CS-IS) for {iterations} iterations "
        f"(~{iterations * seconds_per_iter / 60:.1f} min at {seconds_per_iter:.2f} s/it)"
    )
    trainer.set_max_iters(iterations)
    by_iou = trainer.run().metrics
    ann_file, images = locate(config.data.val, "val")
    split = locate_split(config.data.split, config.data.val)
    model = trainer.model
    model.postprocess_config = replace(model.postprocess_config, scoring="centerness")
    by_centerness = evaluate_model(model, ann_file, images, split, out_dir=out / "centerness")
    model.postprocess_config = replace(model.postprocess_config, scoring="iou")
    coco = read_coco_json(ann_file)
    baseline = evaluate_proposals(
        coco, propose_for_images(coco["images"], baseline_proposer("sliding-window", 1000)), split
    )
    rows = [
        {"method": "FCOS-OWP tiny, IoU-CS-IS, scored by IoU", **by_iou},
        {"method": "same model, scored by centerness", **by_centerness},
        {"method": "sliding windows (no learning)", **baseline},
    ]
    write_json(out / "metrics.json", rows)
    overlay_path = _overlay(model, images, ann_file, split, out / "overlay.png")
    title = (
        f"novel-class recall (%), strict protocol, {baseline['num_images']} val images, "
        f"{baseline['num_gt']} novel objects ({iterations} training iterations)"
    )
    print(metrics_table(rows, DEMO_COLUMNS, title=title))
    print(f"overlay of the top {OVERLAY_TOP_K} proposals: {overlay_path}")
    print(f"run folder: {run_dir}   total time {(time.perf_counter() - start) / 60:.1f} min")
    return rows


def _seconds_per_iteration(trainer: Trainer) -> float:
    """Median time of a few training steps of a throwaway copy of the model on real batches."""
    probe = create_model(trainer.config.model.name, **trainer.config.model.options)
    probe.to(trainer.device).train()
    optimizer = torch.optim.SGD([p for p in probe.parameters() if p.requires_grad], lr=1e-4)
    batches = iter(trainer._loader(0))
    times = []
    for _ in range(CALIBRATION_STEPS + 1):
        images, targets, _ = next(batches)
        begin = time.perf_counter()
        loss = sum(probe(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - begin)
    return statistics.median(times[1:])


def _overlay(model, images: Path, ann_file: Path, split, path: Path) -> Path:
    dataset = CocoDetection(images, ann_file, split, training=False)
    counts = _objects_per_image(ann_file)  # show the busiest val image
    busiest = max(range(len(dataset)), key=lambda i: counts.get(dataset.images[i]["id"], 0))
    image, _ = dataset[busiest]
    model.eval()
    with torch.inference_mode():
        output = model([image.to(next(model.parameters()).device)])[0]
    return save_overlay(
        path, image, output["boxes"].cpu(), output["scores"].cpu(), top_k=OVERLAY_TOP_K
    )


def _objects_per_image(ann_file: Path) -> dict[int, int]:
    counts: dict[int, int] = {}
    for ann in read_coco_json(ann_file)["annotations"]:
        counts[ann["image_id"]] = counts.get(ann["image_id"], 0) + 1
    return counts

"""``owp demo``: train FCOS-OWP on the synthetic open-world set and compare novel-class recall.

1. The synthetic set is generated once and cached (``$OWP_HOME``, default ``~/.cache/owp``).
2. ``fcos_owp_tiny`` with both objectness branches, trained IoU-CS-IS on the base shape
   families (preset ``demo``) for a fixed number of iterations with a fixed seed: the same work
   and the same numbers on every machine. A slow machine takes longer and says so before
   training (an ETA measured from a few steps; the progress bar keeps it up to date).
   ``minutes`` is an explicit opt-in budget: it may cut the iterations, and the table then says
   how many were done.
3. Novel-class AR@k (strict protocol) on the val set, for the same model scored by IoU and by
   centerness (one forward pass, ranked twice: ``eval.extra_proposal_scorings``), and for the
   non-learned baselines: sliding windows, and Selective Search when
   OpenCV's contrib module is installed (``owp[baselines]``; computed once per val set and
   kept in the output folder). An overlay of the val image where the model's top proposals
   find the most novel objects, drawn from the evaluated proposals: its ground truth (novel and
   base) beside its top proposals, novel hits green and missed novel objects dashed orange.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from owp.config import fit_schedule, load_preset
from owp.data.coco import CocoDetection, read_coco_json
from owp.data.locate import default_synthetic_dataset, locate, locate_split
from owp.engine.inference import baseline_proposer, propose_for_images
from owp.engine.trainer import Trainer
from owp.errors import OwpInputError
from owp.evaluation.proposals import evaluate_proposals
from owp.evaluation.tables import metrics_table
from owp.files import write_json
from owp.models.baselines import selective_search_available
from owp.models.registry import create_model
from owp.viz.overlays import hits_side_by_side, match_novel

DEMO_COLUMNS = ("method", "AR@10", "AR@100", "AR@1000", "AR_small@100", "AR_large@100")
CALIBRATION_STEPS = 3
OVERLAY_TOP_K = 10
HIT_IOU = 0.5


def run_demo(
    out: Path = Path("runs/demo"),
    device: str = "auto",
    minutes: float | None = None,
    *,
    data: str | Path | None = None,
    iterations: int | None = None,
) -> list[dict]:
    """Run the demo (module docstring); print and return the table rows.

    ``data`` (a synthetic dataset folder) and ``iterations`` replace the cached default set and
    the preset's iteration count (tests use them); ``minutes`` caps the iterations to what fits.
    """
    start = time.perf_counter()
    if out.exists() and not out.is_dir():
        raise OwpInputError("exists and is not a folder: give the demo an output folder", path=out)
    config = load_preset("demo")
    if data is None:
        default_synthetic_dataset()
    data_config = (
        config.data if data is None else replace(config.data, train=str(data), val=str(data))
    )
    config = replace(config, data=data_config, train=replace(config.train, device=device))
    if iterations is not None:
        shorter = replace(config, train=replace(config.train, max_iters=iterations))
        config, _ = fit_schedule(shorter, config.train.max_iters)
    run_dir = out / "train"
    if (run_dir / "config.yaml").exists():  # a previous demo's run: start afresh
        shutil.rmtree(run_dir)
    trainer = Trainer(config, run_dir)
    planned = done = config.train.max_iters
    if minutes is None:
        print(
            f"training fcos_owp_tiny (IoU-CS-IS) for {done} iterations; the progress bar shows "
            "the time left on this machine"
        )
    else:
        seconds_per_iter = _seconds_per_iteration(trainer)
        done = max(1, min(planned, int(minutes * 60 / seconds_per_iter)))
        trainer.set_max_iters(done)
        print(
            f"training fcos_owp_tiny (IoU-CS-IS) for {done} of the demo's {planned} iterations: "
            f"{seconds_per_iter:.2f} s/it on this machine, --minutes {minutes:g}"
        )
    by_iou = trainer.run().metrics  # with centerness/AR@k: the preset's extra scoring
    by_centerness = {
        key.removeprefix("centerness/"): value
        for key, value in by_iou.items()
        if key.startswith("centerness/")
    }
    ann_file, images = locate(config.data.val, "val")
    split = locate_split(config.data.split, config.data.val)
    coco = read_coco_json(ann_file)
    baseline = evaluate_proposals(
        coco, propose_for_images(coco["images"], baseline_proposer("sliding-window", 1000)), split
    )
    rows = [
        {"method": "FCOS-OWP tiny, IoU-CS-IS, scored by IoU", **by_iou},
        {"method": "same model, scored by centerness", **by_centerness},
        {"method": "sliding windows (no learning)", **baseline},
    ]
    if selective_search_available():
        searched = _selective_search(coco, ann_file, images, out / "selective-search")
        rows.append(
            {
                "method": "Selective Search fast (no learning)",
                **evaluate_proposals(coco, searched, split),
            }
        )
    write_json(out / "metrics.json", rows)
    proposals = json.loads((run_dir / "eval" / "proposals.json").read_text())
    overlay_path = _overlay(proposals, images, ann_file, split, out / "overlay.png")
    budget = "" if done == planned else f", cut from {planned} by --minutes"
    title = (
        f"novel-class recall (%), strict protocol, {baseline['num_images']} val images, "
        f"{baseline['num_gt']} novel objects ({done} training iterations{budget})"
    )
    print(metrics_table(rows, DEMO_COLUMNS, title=title))
    print(
        f"overlay, ground truth | top {OVERLAY_TOP_K} proposals (green: a novel object found, "
        f"dashed orange: missed): {overlay_path}"
    )
    print(f"run folder: {run_dir}   total time {(time.perf_counter() - start) / 60:.1f} min")
    return rows


def _selective_search(coco: dict, ann_file: Path, images: Path, folder: Path) -> list[dict]:
    """Selective Search (fast) proposals of the val images, computed once per val set.

    They do not depend on the model, and cost about a second per image on a CPU: they are kept
    in ``folder`` with the digest of the annotation file they were made for, and reused while
    it matches.
    """
    key = {
        "annotations": hashlib.sha256(ann_file.read_bytes()).hexdigest(),
        "method": "selective-search",
        "mode": "fast",
        "num": 1000,
    }
    saved, key_file = folder / "proposals.json", folder / "key.json"
    if saved.is_file() and key_file.is_file() and json.loads(key_file.read_text()) == key:
        return json.loads(saved.read_text())
    print(f"Selective Search on the {len(coco['images'])} val images (once; kept in {folder})")
    proposer = baseline_proposer("selective-search", 1000, mode="fast")
    results = propose_for_images(
        coco["images"], proposer, images_dir=images, progress=True, workers=None
    )
    write_json(saved, results, indent=None)
    write_json(key_file, key)
    return results


def _seconds_per_iteration(trainer: Trainer) -> float:
    """Median time of a few training steps of a throwaway copy of the model on real batches.

    Runs under a forked RNG state, so that the measurement changes nothing in the training.
    """
    with torch.random.fork_rng(devices=[]):
        probe = create_model(trainer.config.model.name, **trainer.config.model.options)
        probe.to(trainer.device).train()
        optimizer = torch.optim.SGD([p for p in probe.parameters() if p.requires_grad], lr=1e-4)
        batches = iter(trainer.train_loader())
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


def _overlay(proposals: list[dict], images: Path, ann_file: Path, split, path: Path) -> Path:
    """The val image whose top proposals find the most novel objects: its ground truth beside
    its top proposals, novel objects found and missed marked (:func:`hits_side_by_side`).

    ``proposals`` are the evaluation's results (COCO format, xywh): the overlay draws what was
    measured, without running the model again.
    """
    dataset = CocoDetection(images, ann_file, split, training=False)
    novel = _truth_boxes(ann_file, set(dataset.split.novel_ids))
    base = _truth_boxes(ann_file, set(dataset.split.base_ids))
    top = _top_boxes(proposals, OVERLAY_TOP_K)
    best = None
    for index, info in enumerate(dataset.images):
        truth = novel.get(info["id"], torch.zeros(0, 4))
        boxes = top.get(info["id"], torch.zeros(0, 4))
        if not len(truth):
            continue
        found = int(match_novel(boxes, truth, HIT_IOU)[1].sum())
        if best is None or found > best[0]:
            best = (found, index, info["id"], boxes, truth)
    if best is None:
        raise OwpInputError("the val set has no novel object to show", path=ann_file)
    _, index, image_id, boxes, truth = best
    image, _ = dataset[index]
    others = base.get(image_id, torch.zeros(0, 4))
    picture = hits_side_by_side(image, truth, others, boxes, iou=HIT_IOU)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
    return path


def _top_boxes(results: list[dict], k: int) -> dict[int, torch.Tensor]:
    """Image id -> its ``k`` highest-scored result boxes ``[<=k, 4]`` xyxy."""
    scored: dict[int, list[tuple[float, list[float]]]] = {}
    for result in results:
        x, y, w, h = result["bbox"]
        scored.setdefault(result["image_id"], []).append((result["score"], [x, y, x + w, y + h]))
    return {
        image: torch.tensor(
            [box for _, box in sorted(entries, key=lambda e: -e[0])[:k]], dtype=torch.float32
        )
        for image, entries in scored.items()
    }


def _truth_boxes(ann_file: Path, category_ids: set[int]) -> dict[int, torch.Tensor]:
    """Image id -> its non-crowd ground-truth boxes of ``category_ids``, ``[M, 4]`` xyxy."""
    boxes: dict[int, list[list[float]]] = {}
    for ann in read_coco_json(ann_file)["annotations"]:
        if ann["category_id"] in category_ids and not ann.get("iscrowd", 0):
            x, y, w, h = ann["bbox"]
            boxes.setdefault(ann["image_id"], []).append([x, y, x + w, y + h])
    return {image: torch.tensor(b, dtype=torch.float32) for image, b in boxes.items()}

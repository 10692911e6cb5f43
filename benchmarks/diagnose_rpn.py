"""Why an anchor RPN proposes what it proposes: its objectness per pyramid level, and whether
its training path can learn at all.

Run by hand::

    python benchmarks/diagnose_rpn.py levels RUN [--data synthetic] [--part val] [--images 30]
    python benchmarks/diagnose_rpn.py overfit [--model rpn_tiny] [--images 8] [--steps 300]

``levels`` reads a trained run whose model has a torchvision ``RegionProposalNetwork`` at
``model.rpn`` (``rpn_*``, ``double_head_*``) and prints, per level P2-P6, over the first
``--images`` images of the part: the anchors, the positives (IoU >= 0.7 with an annotated box,
torchvision's RPN threshold; every box of the instances file counts, novel ones included), the
mean objectness probability of all anchors and of the positives, the AUC of positives against
negatives (IoU < 0.3; 0.5 is chance), and each level's share of the 100 anchors of highest
objectness per image (the boxes the model ranks first, before NMS).

``overfit`` trains a fresh model with a plain SGD loop (lr 0.01 after a 50-step warm-up,
momentum 0.9, batch 2, no flips) on the first ``--images`` annotated train images, every box a
class-agnostic target, and prints the losses and the same AUC on those images every 100 steps:
if the AUC does not leave 0.5, the training path is broken, not the schedule.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torchvision.io import ImageReadMode, read_image
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.ops import box_convert, box_iou

import owp
from owp.data.coco import read_coco_json
from owp.data.locate import locate

POSITIVE_IOU = 0.7  # torchvision's RPN fg_iou_thresh
NEGATIVE_IOU = 0.3  # and bg_iou_thresh
TOP_ANCHORS = 100


def annotated_images(data: str, part: str, count: int) -> Iterator[tuple[Tensor, Tensor]]:
    """The first ``count`` images of ``part`` with a box: ``(Tensor[3, H, W] in 0..1,
    boxes [N, 4] xyxy)``."""
    ann_file, images_dir = locate(data, part)
    coco = read_coco_json(ann_file)
    boxes: dict[int, list[list[float]]] = {}
    for annotation in coco["annotations"]:
        boxes.setdefault(annotation["image_id"], []).append(annotation["bbox"])
    infos = [info for info in coco["images"] if info["id"] in boxes][:count]
    for info in infos:
        image = read_image(str(images_dir / info["file_name"]), ImageReadMode.RGB).float() / 255
        xywh = torch.tensor(boxes[info["id"]], dtype=torch.float32)
        yield image, box_convert(xywh, "xywh", "xyxy")


def auc(positive: Tensor, negative: Tensor) -> float:
    """P(a positive outranks a negative), ties counted half (Mann-Whitney U over n+ · n-)."""
    if len(positive) == 0 or len(negative) == 0:
        return float("nan")
    scores = torch.cat([positive, negative]).double()
    ordered, order = scores.sort()
    _, counts = ordered.unique_consecutive(return_counts=True)
    last = counts.cumsum(0).double()
    average_rank = (last - (counts - 1) / 2).repeat_interleave(counts)  # 1-based, ties averaged
    ranks = torch.empty_like(scores)
    ranks[order] = average_rank
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass
class LevelStats:
    """What :func:`anchor_objectness` found at one pyramid level, summed over images."""

    anchors: int = 0
    probability_sum: float = 0.0
    positives: list[Tensor] = field(default_factory=list)
    negatives: list[Tensor] = field(default_factory=list)
    top_count: int = 0


@torch.inference_mode()
def anchor_objectness(model: torch.nn.Module, image: Tensor, boxes: Tensor) -> list[dict]:
    """Per level: objectness probabilities ``[A_l]`` and best IoU with ``boxes`` ``[A_l]``."""
    image_list, targets = model.transform([image], [{"boxes": boxes.clone()}])
    maps = list(model.backbone(image_list.tensors).values())
    logits, deltas = model.rpn.head(maps)
    anchors = model.rpn.anchor_generator(image_list, maps)[0]
    counts = [level[0].numel() for level in logits]
    flat_logits, _ = concat_box_prediction_layers(logits, deltas)
    probability = flat_logits.float().sigmoid().flatten()
    best_iou = box_iou(anchors, targets[0]["boxes"]).max(1).values
    return [
        {"probability": p, "iou": i}
        for p, i in zip(probability.split(counts), best_iou.split(counts), strict=True)
    ]


def level_table(model: torch.nn.Module, images: Iterator[tuple[Tensor, Tensor]]) -> None:
    """Print :class:`LevelStats` per level (see the module docstring)."""
    stats: list[LevelStats] = []
    for image, boxes in images:
        levels = anchor_objectness(model, image, boxes)
        stats = stats or [LevelStats() for _ in levels]
        everything = torch.cat([level["probability"] for level in levels])
        threshold = everything.topk(min(TOP_ANCHORS, len(everything))).values[-1]
        for level, entry in zip(levels, stats, strict=True):
            probability, iou = level["probability"], level["iou"]
            entry.anchors += len(probability)
            entry.probability_sum += float(probability.sum())
            entry.positives.append(probability[iou >= POSITIVE_IOU])
            entry.negatives.append(probability[iou < NEGATIVE_IOU])
            entry.top_count += int((probability >= threshold).sum())
    tops = sum(entry.top_count for entry in stats)
    print("level | anchors | positives | mean p(all) | mean p(pos) | AUC pos vs neg | top-100")
    for number, entry in enumerate(stats, start=2):
        positives, negatives = torch.cat(entry.positives), torch.cat(entry.negatives)
        mean_positive = f"{positives.mean():.3f}" if len(positives) else "-"
        print(
            f"P{number} | {entry.anchors} | {len(positives)} | "
            f"{entry.probability_sum / entry.anchors:.3f} | {mean_positive} | "
            f"{auc(positives, negatives):.3f} | {entry.top_count / tops:.2f}"
        )


def separation(model: torch.nn.Module, data: list[tuple[Tensor, Tensor]]) -> str:
    """Objectness AUC of positives against negatives over all levels of ``data``."""
    model.eval()
    positives, negatives = [], []
    for image, boxes in data:
        for level in anchor_objectness(model, image, boxes):
            positives.append(level["probability"][level["iou"] >= POSITIVE_IOU])
            negatives.append(level["probability"][level["iou"] < NEGATIVE_IOU])
    model.train()
    return f"AUC {auc(torch.cat(positives), torch.cat(negatives)):.3f}"


def overfit(model_name: str, data: list[tuple[Tensor, Tensor]], steps: int) -> None:
    """Plain SGD on ``data`` (see the module docstring), printing progress every 100 steps."""
    torch.manual_seed(0)
    model = owp.create_model(model_name)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    model.train()
    print(f"step 0 {separation(model, data)}", flush=True)
    for step in range(1, steps + 1):
        for group in optimizer.param_groups:
            group["lr"] = 0.01 * min(1.0, step / 50)
        batch = [data[(2 * step + k) % len(data)] for k in range(2)]
        targets = [{"boxes": b, "labels": torch.zeros(len(b), dtype=torch.long)} for _, b in batch]
        losses = model([image for image, _ in batch], targets)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        if step % 100 == 0:
            named = " ".join(f"{name} {value.item():.3f}" for name, value in losses.items())
            print(f"step {step} {named} {separation(model, data)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    levels = commands.add_parser("levels", help="objectness per level of a trained run")
    levels.add_argument("run", help="run folder or checkpoint of an rpn_* / double_head_* model")
    levels.add_argument("--data", default="synthetic", help="dataset (default: synthetic)")
    levels.add_argument("--part", default="val", choices=("train", "val"))
    levels.add_argument("--images", type=int, default=30)
    learn = commands.add_parser("overfit", help="can a fresh model's objectness learn?")
    learn.add_argument("--model", default="rpn_tiny")
    learn.add_argument("--data", default="synthetic", help="dataset (default: synthetic)")
    learn.add_argument("--images", type=int, default=8)
    learn.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    if args.command == "levels":
        level_table(owp.load(args.run).eval(), annotated_images(args.data, args.part, args.images))
    else:
        overfit(args.model, list(annotated_images(args.data, "train", args.images)), args.steps)


if __name__ == "__main__":
    main()

"""FCOS assignment speed: owp's batched ``assign`` vs torchvision's per-image matching loop.

Run by hand: ``python benchmarks/bench_assign.py [--batch 16] [--boxes 10,50] [--threads 2]``.
For an 800 x 1216 input (P3 100 x 152 ... P7 7 x 10, 20267 points) and random boxes, prints the
milliseconds per batch of owp (``pad_targets`` + ``assign`` with center sampling) and of the
reference, the speed-up and whether the assignments are identical.

The reference mirrors the matching part of ``torchvision.models.detection.FCOS.compute_loss``:
per image, pairwise ``[P, M]`` tensors from the anchors. One change: torchvision picks the
smallest box through ``match * (1e8 - area)`` in float32, which rounds near-equal areas
together; the reference takes the exact masked minimum instead (same cost), so that the
comparison tests the rule rather than that rounding.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor

from owp.models.fcos.assign import assign, pad_targets
from owp.models.fcos.points import make_points

FEATURE_SIZES = [(100, 152), (50, 76), (25, 38), (13, 19), (7, 10)]
IMAGE_SIZE = (800, 1216)


def torchvision_matching(
    anchors: Tensor, boxes: list[Tensor], num_anchors_per_level: list[int], radius: float = 1.5
) -> Tensor:
    """torchvision's FCOS matching, image by image: ``[P, 4]`` anchors -> ``[B, P]`` indices."""
    matched = []
    for gt_boxes in boxes:
        if gt_boxes.numel() == 0:
            matched.append(torch.full((anchors.shape[0],), -1, dtype=torch.int64))
            continue
        gt_centers = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
        anchor_centers = (anchors[:, :2] + anchors[:, 2:]) / 2
        anchor_sizes = anchors[:, 2] - anchors[:, 0]
        match = (anchor_centers[:, None, :] - gt_centers[None]).abs_().max(dim=2).values
        match = match < radius * anchor_sizes[:, None]
        x, y = anchor_centers.unsqueeze(dim=2).unbind(dim=1)
        x0, y0, x1, y1 = gt_boxes.unsqueeze(dim=0).unbind(dim=2)
        dist = torch.stack([x - x0, y - y0, x1 - x, y1 - y], dim=2)
        match &= dist.min(dim=2).values > 0
        lower = anchor_sizes * 4
        lower[: num_anchors_per_level[0]] = 0
        upper = anchor_sizes * 8
        upper[-num_anchors_per_level[-1] :] = math.inf
        largest = dist.max(dim=2).values
        match &= (largest > lower[:, None]) & (largest < upper[:, None])
        areas = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])
        best, index = torch.where(match, areas[None, :], math.inf).min(dim=1)
        index[best == math.inf] = -1
        matched.append(index)
    return torch.stack(matched)


def random_boxes(count: int, generator: torch.Generator) -> Tensor:
    """``[count, 4]`` boxes in an 800 x 1216 image, sides log-uniform in [8, 800] px."""
    height, width = IMAGE_SIZE
    centre = torch.rand(count, 2, generator=generator) * torch.tensor([width, height])
    side = torch.exp(torch.rand(count, 2, generator=generator) * math.log(800 / 8)) * 8
    return torch.cat([centre - side / 2, centre + side / 2], dim=1)


def median_ms(function: Callable[[], Tensor], repeat: int) -> float:
    """Median wall time of ``function`` over ``repeat`` runs, in milliseconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--boxes", default="10,50", help="boxes per image, comma-separated")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    points = make_points(FEATURE_SIZES)
    half = points.stride[:, None] / 2
    anchors = torch.cat([points.xy - half, points.xy + half], dim=1)
    print(
        f"batch {args.batch}, {points.xy.shape[0]} points, {args.threads} threads, CPU, "
        "center sampling 1.5"
    )
    print(f"{'boxes':>5}  {'owp (ms)':>9}  {'torchvision loop (ms)':>21}  {'speed-up':>8}  equal")
    generator = torch.Generator().manual_seed(0)
    for count in (int(text) for text in args.boxes.split(",")):
        boxes = [random_boxes(count, generator) for _ in range(args.batch)]

        def batched(boxes: list[Tensor] = boxes) -> Tensor:
            gt_boxes, valid, ignore, _ = pad_targets(boxes)
            return assign(points, gt_boxes, valid, ignore)

        def reference(boxes: list[Tensor] = boxes) -> Tensor:
            return torchvision_matching(anchors, boxes, points.num_per_level)

        same = torch.equal(batched(), reference())
        for _ in range(2):  # warm up both (the allocator settles after the first large runs)
            batched(), reference()
        fast = median_ms(batched, args.repeat)
        slow = median_ms(reference, args.repeat)
        print(f"{count:>5}  {fast:9.1f}  {slow:21.1f}  {slow / fast:7.1f}x  {same}")


if __name__ == "__main__":
    main()

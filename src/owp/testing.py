"""Generated COCO problems for tests and benchmarks (like ``torch.testing``): no files needed."""

from __future__ import annotations

from typing import Any

import numpy as np


def random_coco_problem(
    num_images: int = 50,
    *,
    num_categories: int = 5,
    max_gt: int = 15,
    max_dets: int = 300,
    crowd_fraction: float = 0.1,
    near_fraction: float = 0.5,
    seed: int = 0,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A random ground truth and random scored detections over it.

    Images are 200..640 px a side; boxes span every COCO size bucket (2 px to 2/3 of the image),
    a ``crowd_fraction`` of ground truth is crowd, ``area`` is a random 50-100 % of the box (as
    segment areas are), a ``near_fraction`` of detections are jittered copies of ground-truth
    boxes (so that recall spans the IoU thresholds), and scores have two decimals so that ties
    occur. Detections carry a
    ``category_id`` drawn from the categories.

    Returns:
        ``(gt, detections)``: a COCO instances dict (categories ``1..num_categories`` named
        ``c1..``) and a COCO results list.
    """
    rng = np.random.default_rng(seed)
    images, annotations, detections = [], [], []
    for image_id in range(1, num_images + 1):
        width, height = (int(v) for v in rng.integers(200, 641, size=2))
        images.append(
            {"id": image_id, "file_name": f"{image_id:06d}.jpg", "width": width, "height": height}
        )
        for _ in range(int(rng.integers(0, max_gt + 1))):
            box = _random_box(rng, width, height)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(rng.integers(1, num_categories + 1)),
                    "bbox": box,
                    "area": box[2] * box[3] * float(rng.uniform(0.5, 1.0)),
                    "iscrowd": int(rng.random() < crowd_fraction),
                }
            )
        boxes = [a["bbox"] for a in annotations if a["image_id"] == image_id]
        for _ in range(int(rng.integers(0, max_dets + 1))):
            near_object = boxes and rng.random() < near_fraction
            box = _jittered(rng, boxes[rng.integers(len(boxes))]) if near_object else None
            detections.append(
                {
                    "image_id": image_id,
                    "category_id": int(rng.integers(1, num_categories + 1)),
                    "bbox": box or _random_box(rng, width, height),
                    "score": round(float(rng.random()), 2),
                }
            )
    categories = [{"id": c, "name": f"c{c}"} for c in range(1, num_categories + 1)]
    return {"images": images, "annotations": annotations, "categories": categories}, detections


def _random_box(rng: np.random.Generator, width: int, height: int) -> list[float]:
    w = float(np.exp(rng.uniform(np.log(2.0), np.log(width / 1.5))))
    h = float(np.exp(rng.uniform(np.log(2.0), np.log(height / 1.5))))
    return [float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h)), w, h]


def _jittered(rng: np.random.Generator, box: list[float]) -> list[float]:
    x, y, w, h = box
    dx, dy, dw, dh = rng.normal(0.0, 0.1, size=4)
    return [x + dx * w, y + dy * h, max(w * (1.0 + dw), 1.0), max(h * (1.0 + dh), 1.0)]

"""Generated COCO problems for tests and benchmarks (like ``torch.testing``): no files needed."""

from __future__ import annotations

import json
from pathlib import Path
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


LVIS_FREQUENCIES: tuple[str, ...] = ("r", "c", "f")
COCO_IMAGE_URL = "http://images.cocodataset.org/{folder}/{image_id:012d}.jpg"


def random_lvis_problem(
    num_images: int = 50,
    *,
    num_categories: int = 20,
    mean_gt: float = 12.5,
    proposals_per_image: int = 300,
    near_fraction: float = 0.5,
    correct_label_fraction: float = 0.6,
    train_fraction: float = 0.7,
    image_sizes: tuple[int, int] = (200, 640),
    category_ids: list[int] | None = None,
    category_weights: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A random ground truth in LVIS v1's format and scored, labelled detections over it.

    The ground truth is what LVIS ships: images carry ``coco_url`` (from COCO ``train2017`` for
    a ``train_fraction`` of them, else ``val2017``) and no ``file_name``, plus
    ``neg_category_ids`` (categories verified absent) and ``not_exhaustive_category_ids``
    (present categories whose instances are not all annotated); annotations have no
    ``iscrowd``; categories carry ``frequency`` (``r``/``c``/``f``), ``synset`` and counts.
    Ground-truth counts per image are Poisson(``mean_gt``). Every image gets exactly
    ``proposals_per_image`` detections, a ``near_fraction`` of them jittered copies of its
    ground truth (carrying the object's category for a ``correct_label_fraction`` of those), the
    rest random boxes with random categories; scores have two decimals, so ties occur. Object
    categories are uniform, or drawn with ``category_weights`` (one per category). Built with
    array operations, so LVIS val's size (20k images, 6M detections) takes under a minute.

    Returns:
        ``(gt, detections)``: an LVIS instances dict and a COCO results list.
    """
    rng = np.random.default_rng(seed)
    ids = np.asarray(category_ids or range(1, num_categories + 1), dtype=np.int64)
    low, high = image_sizes
    widths = rng.integers(low, high + 1, size=num_images)
    heights = rng.integers(low, high + 1, size=num_images)
    counts = rng.poisson(mean_gt, size=num_images)
    owner = np.repeat(np.arange(num_images), counts)
    boxes = _random_boxes(rng, widths[owner], heights[owner])
    if category_weights is None:
        labels = ids[rng.integers(0, len(ids), size=len(owner))]
    else:
        weights = np.asarray(category_weights, dtype=np.float64)
        labels = ids[rng.choice(len(ids), size=len(owner), p=weights / weights.sum())]
    area = boxes[:, 2] * boxes[:, 3] * rng.uniform(0.5, 1.0, size=len(owner))

    total = num_images * proposals_per_image
    det_owner = np.repeat(np.arange(num_images), proposals_per_image)
    det_boxes = _random_boxes(rng, widths[det_owner], heights[det_owner])
    det_labels = ids[rng.integers(0, len(ids), size=total)]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    near = (rng.random(total) < near_fraction) & (counts[det_owner] > 0)
    source = starts[det_owner] + (rng.random(total) * np.maximum(counts[det_owner], 1)).astype(
        np.int64
    )
    jitter = rng.normal(0.0, 0.1, size=(total, 4))
    copied = boxes[source[near]]
    det_boxes[near] = np.column_stack(
        [
            copied[:, 0] + jitter[near, 0] * copied[:, 2],
            copied[:, 1] + jitter[near, 1] * copied[:, 3],
            np.maximum(copied[:, 2] * (1.0 + jitter[near, 2]), 1.0),
            np.maximum(copied[:, 3] * (1.0 + jitter[near, 3]), 1.0),
        ]
    )
    relabel = near & (rng.random(total) < correct_label_fraction)
    det_labels[relabel] = labels[source[relabel]]
    scores = np.round(rng.random(total), 2)

    ends = starts + counts
    images = []
    for index in range(num_images):
        image_id = index + 1
        present = np.unique(labels[starts[index] : ends[index]])
        absent = np.setdiff1d(ids, present)
        size = min(len(absent), int(rng.integers(0, 6)))
        negatives = rng.choice(absent, size=size, replace=False)
        partial = present[rng.random(len(present)) < 0.2]
        folder = "train2017" if rng.random() < train_fraction else "val2017"
        images.append(
            {
                "id": image_id,
                "width": int(widths[index]),
                "height": int(heights[index]),
                "coco_url": COCO_IMAGE_URL.format(folder=folder, image_id=image_id),
                "neg_category_ids": sorted(int(c) for c in negatives),
                "not_exhaustive_category_ids": sorted(int(c) for c in partial),
            }
        )
    annotations = [
        {"id": i + 1, "image_id": int(o) + 1, "category_id": int(c), "bbox": b, "area": float(a)}
        for i, (o, c, b, a) in enumerate(
            zip(owner.tolist(), labels.tolist(), boxes.tolist(), area.tolist(), strict=True)
        )
    ]
    instance_counts = dict(zip(*np.unique(labels, return_counts=True), strict=True))
    pairs = np.unique(owner * (int(ids.max()) + 1) + labels)
    image_counts = dict(
        zip(*np.unique(pairs % (int(ids.max()) + 1), return_counts=True), strict=True)
    )
    categories = [
        {
            "id": int(c),
            "name": f"class_{int(c)}",
            "synset": f"class_{int(c)}.n.01",
            "frequency": LVIS_FREQUENCIES[i % len(LVIS_FREQUENCIES)],
            "instance_count": int(instance_counts.get(c, 0)),
            "image_count": int(image_counts.get(c, 0)),
        }
        for i, c in enumerate(ids.tolist())
    ]
    detections = [
        {"image_id": int(o) + 1, "category_id": int(c), "bbox": b, "score": s}
        for o, c, b, s in zip(
            det_owner.tolist(),
            det_labels.tolist(),
            det_boxes.tolist(),
            scores.tolist(),
            strict=True,
        )
    ]
    gt = {"images": images, "annotations": annotations, "categories": categories}
    return gt, detections


def _random_boxes(rng: np.random.Generator, widths: np.ndarray, heights: np.ndarray) -> np.ndarray:
    """``[N, 4]`` xywh boxes inside images of the given sizes, 2 px to 2/3 of a side, with
    log-uniform sides (every COCO size bucket)."""
    w = np.exp(rng.uniform(np.log(2.0), np.log(widths / 1.5)))
    h = np.exp(rng.uniform(np.log(2.0), np.log(heights / 1.5)))
    return np.column_stack([rng.uniform(0, widths - w), rng.uniform(0, heights - h), w, h])


def write_lvis_dataset(root: str | Path, gt: dict[str, Any], part: str = "val") -> Path:
    """Lay ``gt`` (from :func:`random_lvis_problem`) out as detectron2 lays out LVIS:
    ``root/lvis/lvis_v1_<part>.json`` beside ``root/coco/{train2017,val2017}/`` holding every
    image where its ``coco_url`` says (small flat-colour JPEGs with the annotated boxes drawn).
    Returns the annotation file."""
    from PIL import Image, ImageDraw

    root = Path(root)
    boxes: dict[int, list[list[float]]] = {}
    for ann in gt["annotations"]:
        boxes.setdefault(ann["image_id"], []).append(ann["bbox"])
    for info in gt["images"]:
        folder, name = info["coco_url"].split("/")[-2:]
        path = root / "coco" / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        shade = 40 + (info["id"] * 37) % 160
        image = Image.new("RGB", (info["width"], info["height"]), (shade, 90, 200 - shade // 2))
        draw = ImageDraw.Draw(image)
        for x, y, w, h in boxes.get(info["id"], []):
            draw.rectangle([x, y, x + w, y + h], outline=(250, 250, 250))
        image.save(path, quality=90)
    ann_file = root / "lvis" / f"lvis_v1_{part}.json"
    ann_file.parent.mkdir(parents=True, exist_ok=True)
    ann_file.write_text(json.dumps(gt))
    return ann_file

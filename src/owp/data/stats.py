"""Dataset statistics and problem report (``owp data stats``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from owp.data.coco import BoxRepairs, image_file, image_path, is_federated, load_instances
from owp.data.images import read_rgb
from owp.data.splits import ClassSplit
from owp.errors import OwpInputError

SIZE_BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("small", 0.0, 32.0**2),
    ("medium", 32.0**2, 96.0**2),
    ("large", 96.0**2, float("inf")),
)
"""COCO's size buckets on annotation area (pixels²): small < 32², medium < 96², large."""


@dataclass
class DatasetStats:
    """Counts over a COCO-format dataset; ``problems`` lists what is wrong, one line each;
    ``notes`` what is worth knowing but normal (categories without boxes in a federated LVIS
    set, its negative and not-exhaustive lists)."""

    num_images: int
    num_boxes: int
    num_crowd: int
    num_classes: int
    boxes_per_class: Counter
    boxes_per_side: dict[str, int]
    sizes_per_side: dict[str, dict[str, int]]
    images_without_boxes: int
    repairs: BoxRepairs
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_images": self.num_images,
            "num_boxes": self.num_boxes,
            "num_crowd": self.num_crowd,
            "num_classes": self.num_classes,
            "boxes_per_side": self.boxes_per_side,
            "sizes_per_side": self.sizes_per_side,
            "images_without_boxes": self.images_without_boxes,
            "problems": self.problems,
            "notes": self.notes,
        }


def dataset_stats(
    ann_file: str | Path,
    split: ClassSplit | None = None,
    images_dir: str | Path | None = None,
    *,
    progress: bool = False,
) -> DatasetStats:
    """Statistics of the instances JSON ``ann_file`` (see :func:`instances_stats`)."""
    coco, repairs = load_instances(ann_file)
    return instances_stats(coco, repairs, split, images_dir, progress=progress)


def instances_stats(
    coco: dict[str, Any],
    repairs: BoxRepairs,
    split: ClassSplit | None = None,
    images_dir: str | Path | None = None,
    *,
    progress: bool = False,
) -> DatasetStats:
    """Count images, boxes, classes, boxes per split side and size bucket; find problems.

    Non-crowd boxes are counted per side (``base``, ``novel``, ``other`` for classes on neither
    side; everything is ``all`` without a split). When ``images_dir`` is given every image is
    decoded (found by :func:`~owp.data.coco.image_path`: LVIS images under a COCO root), and
    missing, unreadable, truncated or wrongly sized files are listed as problems. Categories
    without any box are a problem, except in a federated (LVIS) file, where they are normal and
    listed in ``notes`` with its verified-absent / not-exhaustive counts.
    """
    side_of = _side_function(split)
    regular = [a for a in coco["annotations"] if not a["iscrowd"]]
    boxes_per_side: Counter = Counter(side_of(a["category_id"]) for a in regular)
    sizes: dict[str, Counter] = {}
    for ann in regular:
        sizes.setdefault(side_of(ann["category_id"]), Counter())[_bucket(ann["area"])] += 1
    with_boxes = {a["image_id"] for a in coco["annotations"]}
    problems = [repairs.describe()] if repairs.describe() else []
    notes = _federated_notes(coco) if is_federated(coco) else []
    unused = {c["id"] for c in coco["categories"]} - {a["category_id"] for a in coco["annotations"]}
    if unused:
        # Normal in a federated (LVIS) set: a category is annotated only on the images it was
        # checked on, so a val split lacks many of them. Elsewhere, worth fixing.
        (notes if notes else problems).append(f"{len(unused)} categories have no annotation")
    if not coco["annotations"]:
        problems.append("the annotation list is empty")
    missing = [img["id"] for img in coco["images"] if not _has_path(img)]
    if missing:
        problems.append(
            f"{len(missing)} images have neither 'file_name' nor 'coco_url' (e.g. image "
            f"{missing[0]}): they cannot be read"
        )
    if images_dir is not None:
        problems += _image_problems(coco["images"], Path(images_dir), progress)
    return DatasetStats(
        num_images=len(coco["images"]),
        num_boxes=len(regular),
        num_crowd=len(coco["annotations"]) - len(regular),
        num_classes=len(coco["categories"]),
        boxes_per_class=Counter(a["category_id"] for a in regular),
        boxes_per_side=dict(sorted(boxes_per_side.items())),
        sizes_per_side={
            side: {name: counts.get(name, 0) for name, _, _ in SIZE_BUCKETS}
            for side, counts in sorted(sizes.items())
        },
        images_without_boxes=len(coco["images"]) - len(with_boxes),
        repairs=repairs,
        problems=problems,
        notes=notes,
    )


def _federated_notes(coco: dict[str, Any]) -> list[str]:
    """What an LVIS-style file says about its own labels (information, not problems)."""
    negative = sum(len(img.get("neg_category_ids", ())) for img in coco["images"])
    partial = sum(len(img.get("not_exhaustive_category_ids", ())) for img in coco["images"])
    with_url = sum(1 for img in coco["images"] if not img.get("file_name") and img.get("coco_url"))
    folders = Counter(
        image_file(img).split("/")[0]
        for img in coco["images"]
        if not img.get("file_name") and img.get("coco_url")
    )
    notes = [
        f"federated (LVIS-style) labels: {negative} verified-absent and {partial} "
        "not-exhaustive (image, category) pairs; base-class AP is LVIS's federated AP"
    ]
    if with_url:
        spread = ", ".join(f"{count} in {name}/" for name, count in sorted(folders.items()))
        notes.append(f"{with_url} images named by coco_url only: {spread} under a COCO root")
    return notes


def _has_path(img: dict[str, Any]) -> bool:
    try:
        image_file(img)
    except OwpInputError:
        return False
    return True


def _side_function(split: ClassSplit | None):
    if split is None:
        return lambda category_id: "all"
    return lambda c: "base" if split.is_base(c) else "novel" if split.is_novel(c) else "other"


def _bucket(area: float) -> str:
    return next(name for name, low, high in SIZE_BUCKETS if low <= area < high)


def _image_problems(images: list[dict], folder: Path, progress: bool) -> list[str]:
    problems = []
    for info in tqdm(images, desc="checking images", disable=not progress, unit="img"):
        if not _has_path(info):
            continue  # counted once above
        path = image_path(folder, info)
        try:
            array = read_rgb(path)
        except OwpInputError as err:
            problems.append(str(err))
            continue
        height, width = array.shape[:2]
        if (width, height) != (info["width"], info["height"]):
            problems.append(
                f"{path}: image is {width}x{height} but the annotations "
                f"say {info['width']}x{info['height']}"
            )
    return problems

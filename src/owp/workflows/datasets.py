"""Dataset files the ``owp data`` and ``owp propose-baseline`` commands write: the base-only
and novel-only ground truths of a split, and non-learned proposals of a dataset."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from owp.data.coco import (
    find_annotation_file,
    find_image_folder,
    read_coco_json,
    subset_categories,
)
from owp.data.splits import resolve_split
from owp.errors import OwpInputError
from owp.files import check_folder_path, check_output_file, write_json


@dataclass
class SplitFile:
    """One file :func:`write_split_files` wrote: its ``classes``, ``boxes`` (not crowd) and
    ``images`` (every image of the ground truth)."""

    path: Path
    classes: int
    boxes: int
    images: int


def write_split_files(
    gt: Path, split: str, out: Path, *, part: str = "val", force: bool = False
) -> list[SplitFile]:
    """Write ``<stem>_base.json`` and ``<stem>_novel.json`` of the ground truth ``gt`` (an
    instances JSON, or the ``part`` file of a dataset folder) under ``split`` into ``out``;
    existing files are kept unless ``force``."""
    check_folder_path(out)
    ann_file = find_annotation_file(gt, part)
    coco = read_coco_json(ann_file)
    classes = resolve_split(split, coco["categories"], ann_file)
    targets = {
        out / f"{ann_file.stem}_base.json": classes.base_ids,
        out / f"{ann_file.stem}_novel.json": classes.novel_ids,
    }
    existing = [str(p) for p in targets if p.exists()]
    if existing and not force:
        verb = "exists" if len(existing) == 1 else "exist"
        raise OwpInputError(f"{', '.join(existing)} already {verb}; pass --force to overwrite")
    written = []
    for path, ids in targets.items():
        subset = subset_categories(coco, ids)
        write_json(path, subset, indent=None)
        kept = sum(1 for a in subset["annotations"] if not a["iscrowd"])
        written.append(SplitFile(path, len(ids), kept, len(subset["images"])))
    return written


def propose_baseline(
    data: Path,
    out: Path,
    *,
    part: str = "val",
    method: str = "sliding-window",
    num: int = 1000,
    seed: int = 0,
    mode: str = "fast",
    images: Path | None = None,
    progress: bool = False,
    workers: int | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Write ``num`` non-learned proposals per image of ``data`` (an instances JSON or the
    ``part`` file of a dataset folder) to ``out`` in COCO results format (see
    :func:`owp.engine.inference.baseline_proposer` for ``method``, ``seed`` and ``mode``, and
    :func:`~owp.engine.inference.propose_for_images` for ``workers``); returns the results and
    the number of images."""
    from owp.engine.inference import baseline_proposer, propose_for_images
    from owp.models.baselines import PIXEL_BASELINES, require_opencv_contrib

    if num <= 0:
        raise OwpInputError(f"--num must be a positive integer, got {num}")
    if method == "selective-search":
        require_opencv_contrib()  # before any work: one line saying what to install
    check_output_file(out)
    ann_file = find_annotation_file(data, part)
    coco = read_coco_json(ann_file)
    images_dir = None
    if method in PIXEL_BASELINES:
        images_dir = images or find_image_folder(ann_file, coco)
    results = propose_for_images(
        coco["images"],
        baseline_proposer(method, num, seed, mode),
        images_dir=images_dir,
        progress=progress,
        workers=workers,
    )
    write_json(out, results, indent=None)
    return results, len(coco["images"])

"""Naming datasets in configs: a folder, an instances JSON, or ``synthetic`` (the cached set);
and finding the data a run was trained on (:func:`run_data`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from owp.config import DataConfig, config_from_dict, load_config_file
from owp.data.coco import (
    check_image_files,
    find_annotation_file,
    find_image_folder,
    image_path,
    read_coco_json,
)
from owp.data.splits import resolve_split
from owp.data.synthetic import (
    MANIFEST,
    SynthConfig,
    generate_synthetic_dataset,
    is_synthetic_dataset,
)
from owp.errors import OwpInputError

SYNTHETIC = "synthetic"


def cache_dir() -> Path:
    """Where owp keeps generated data: ``$OWP_HOME`` or ``~/.cache/owp``."""
    return Path(os.environ.get("OWP_HOME", Path.home() / ".cache" / "owp"))


def default_synthetic_dataset(progress: bool = True) -> Path:
    """The default synthetic set (``SynthConfig()``), generated on first use and reused
    afterwards while its manifest records that same config and this generator's version; a
    folder written by another style, config or version is regenerated, never reused."""
    config = SynthConfig()
    name = f"synthetic-{config.style}-{config.image_size}px-seed{config.seed}"
    folder = cache_dir() / name
    if not is_synthetic_dataset(folder, config):
        why = (
            "it holds another config or generator version: regenerating"
            if (folder / MANIFEST).exists()
            else "once"
        )
        print(f"generating the synthetic open-world dataset in {folder} ({why})")
        generate_synthetic_dataset(folder, config, force=True, progress=progress)
    return folder


def locate_annotations(dataset: str | Path, part: str) -> Path:
    """The instances JSON of ``part`` (``train`` / ``val``) of ``dataset``: a file, a dataset
    folder (:func:`~owp.data.coco.find_annotation_file`) or ``synthetic``."""
    folder = default_synthetic_dataset() if str(dataset) == SYNTHETIC else Path(dataset)
    return find_annotation_file(folder, part)


def locate(dataset: str | Path, part: str, images: str | Path | None = None) -> tuple[Path, Path]:
    """``(instances JSON, images folder)`` of ``part`` (``train`` / ``val``) of ``dataset``."""
    ann_file = locate_annotations(dataset, part)
    if images is not None:
        return ann_file, Path(images)
    return ann_file, find_image_folder(ann_file, read_coco_json(ann_file))


def locate_split(split: str, dataset: str | Path) -> str | Path:
    """The split to use: ``synthetic`` means the dataset folder's ``split.yaml``."""
    if split != SYNTHETIC:
        return split
    folder = default_synthetic_dataset() if str(dataset) == SYNTHETIC else Path(dataset)
    folder = folder if folder.is_dir() else folder.parent
    return folder / "split.yaml"


def run_data(run: str | Path, saved: Mapping[str, Any] | None = None) -> DataConfig:
    """The data a run was trained on: the ``data`` section of its ``config.yaml`` (saved with
    absolute paths, see :func:`owp.config.resolve_data_paths`), else ``saved`` (a checkpoint's
    ``config["data"]``), else the defaults.

    ``run`` is a run folder or a checkpoint file (whose folder is the run's).
    """
    path = Path(run)
    config_file = (path if path.is_dir() else path.parent) / "config.yaml"
    if config_file.is_file():
        try:
            return load_config_file(config_file).data
        except OwpInputError:
            pass  # a hand-edited or foreign config.yaml: fall back to the checkpoint's
    if not saved:
        return DataConfig()
    return config_from_dict({"data": dict(saved)}, "checkpoint config").data


def dataset_images(
    data: str | Path, part: str = "val", images: str | Path | None = None
) -> tuple[list[Path], list[int]]:
    """The image files of a dataset (folder, instances JSON or ``synthetic``) and their image
    ids, in the order of its annotation file."""
    ann_file, images = locate(data, part, images)
    coco = read_coco_json(ann_file)
    check_image_files(coco, ann_file)
    return [image_path(images, info) for info in coco["images"]], [
        int(info["id"]) for info in coco["images"]
    ]


def run_images(
    run: str | Path, saved: Mapping[str, Any] | None = None
) -> tuple[list[Path], list[int]]:
    """The files and image ids of a run's val images (``data.val`` / ``data.val_images``, see
    :func:`run_data`), in the order of its annotation file."""
    own = run_data(run, saved)
    return dataset_images(own.val, "val", own.val_images)


def run_classes(
    run: str | Path, saved: Mapping[str, Any] | None = None
) -> tuple[list[int], list[str]]:
    """A run's trained (base) classes in label order, ``(category ids, names)``: its split
    resolved against the categories of its val annotation file (for checkpoints that do not
    keep them)."""
    own = run_data(run, saved)
    folder = default_synthetic_dataset() if str(own.val) == SYNTHETIC else Path(own.val)
    ann_file = find_annotation_file(folder, "val")
    coco = read_coco_json(ann_file)
    split = resolve_split(locate_split(own.split, own.val), coco["categories"], ann_file)
    return list(split.base_ids), list(split.base_names)

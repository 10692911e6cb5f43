"""Naming datasets in configs: a folder, an instances JSON, or ``synthetic`` (the cached set)."""

from __future__ import annotations

import os
from pathlib import Path

from owp.data.coco import find_annotation_file, find_image_folder, read_coco_json
from owp.data.synthetic import SynthConfig, generate_synthetic_dataset, is_synthetic_dataset

SYNTHETIC = "synthetic"


def cache_dir() -> Path:
    """Where owp keeps generated data: ``$OWP_HOME`` or ``~/.cache/owp``."""
    return Path(os.environ.get("OWP_HOME", Path.home() / ".cache" / "owp"))


def default_synthetic_dataset(progress: bool = True) -> Path:
    """The default synthetic set, generated on first use and reused afterwards."""
    config = SynthConfig()
    folder = cache_dir() / f"synthetic-{config.image_size}px-seed{config.seed}"
    if not is_synthetic_dataset(folder):
        print(f"generating the synthetic open-world dataset in {folder} (once)")
        generate_synthetic_dataset(folder, config, force=True, progress=progress)
    return folder


def locate(dataset: str | Path, part: str, images: str | Path | None = None) -> tuple[Path, Path]:
    """``(instances JSON, images folder)`` of ``part`` (``train`` / ``val``) of ``dataset``."""
    folder = default_synthetic_dataset() if str(dataset) == SYNTHETIC else Path(dataset)
    ann_file = find_annotation_file(folder, part)
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

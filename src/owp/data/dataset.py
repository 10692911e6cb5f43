"""The split-aware COCO-format detection dataset (torch): ``(image, target)`` pairs.

Also importable as ``owp.data.coco.CocoDetection``; it lives apart so that reading and
evaluating annotation files never imports torch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from owp.data.coco import check_image_files, image_path, load_box_columns
from owp.data.images import read_image_tensor
from owp.data.records import build_records, release_freed_memory
from owp.data.splits import ClassSplit, SplitSpec, resolve_split
from owp.errors import OwpInputError

Target = dict[str, Any]
Transforms = Callable[[torch.Tensor, Target], tuple[torch.Tensor, Target]]


class CocoDetection(Dataset):
    """COCO-format detection dataset for one class split.

    Items are ``(image, target)`` with ``image`` a float tensor ``[3, H, W]`` in ``[0, 1]`` and
    ``target`` a dict of:

    * ``boxes``: float32 ``[N, 4]`` xyxy in pixels, the split's base-class boxes (crowd included);
    * ``labels``: int64 ``[N]``, contiguous training labels (index into ``split.base_ids``);
    * ``iscrowd``: int64 ``[N]``, COCO's crowd flag; ``ignore``: bool ``[N]``, True for crowd
      regions, which a model must treat as ignore regions and never as positives;
    * ``pseudo``: bool ``[N]``, True for the ``pseudo_boxes`` (self-training), which come after
      the annotated boxes with label ``-1`` (no class): class-agnostic positives, never a
      positive of a class nor background;
    * ``image_id``: int; ``orig_size``: int64 ``[2]`` as ``(height, width)``.

    Novel-class annotations are dropped (those objects become unlabelled). In ``training`` mode,
    images left without any non-crowd base box (or pseudo box) are skipped unless
    ``keep_empty=True``. ``pseudo_boxes`` maps image ids to ``[x, y, w, h]`` boxes
    (:func:`owp.data.pseudo.read_pseudo_labels`).

    Images are read from :func:`~owp.data.coco.image_path`: ``images_dir/file_name``, or for
    LVIS files (``coco_url``, no ``file_name``) ``images_dir/<train2017|val2017>/<name>`` with
    ``images_dir`` the COCO root.

    The annotation file is read once into a compact index (:mod:`owp.data.records`,
    ``self.records``): only what a target needs, in one numpy buffer that forked workers share.
    """

    def __init__(
        self,
        images_dir: str | Path,
        ann_file: str | Path,
        split: str | Path | SplitSpec | ClassSplit = "all",
        *,
        training: bool = True,
        keep_empty: bool | None = None,
        transforms: Transforms | None = None,
        pseudo_boxes: Mapping[int, Sequence[Sequence[float]]] | None = None,
    ) -> None:
        self.images_dir = Path(images_dir)
        self.ann_file = Path(ann_file)
        if not self.images_dir.is_dir():
            raise OwpInputError("images folder not found", path=self.images_dir)
        coco, annotations = load_box_columns(self.ann_file)
        check_image_files(coco, self.ann_file)
        self.split = resolve_split(split, coco["categories"], self.ann_file)
        self.transforms = transforms
        self.categories = coco["categories"]
        self.records = build_records(
            coco["images"],
            annotations,
            self.split.base_ids,
            keep_empty=(not training) if keep_empty is None else keep_empty,
            pseudo_boxes=pseudo_boxes,
        )
        del coco, annotations
        release_freed_memory()

    def __len__(self) -> int:
        return len(self.records)

    @property
    def images(self) -> Sequence[dict[str, Any]]:
        """The items' images as small COCO entries (``id``, ``width``, ``height``,
        ``file_name`` or ``coco_url``), built on access."""
        return self.records.images

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        info = self.records.info(index)
        path = image_path(self.images_dir, info)
        image = read_image_tensor(path)
        height, width = image.shape[-2:]
        if (width, height) != (info["width"], info["height"]):
            raise OwpInputError(
                f"image is {width}x{height} but the annotations say "
                f"{info['width']}x{info['height']}",
                path=path,
            )
        target = self.target_of(index)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def target_of(self, index: int) -> Target:
        """The target of item ``index`` without decoding its image."""
        records = self.records
        rows = records.rows(index)
        xywh = records.boxes[rows]
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        iscrowd = torch.from_numpy(records.iscrowd[rows].copy())
        return {
            "boxes": torch.from_numpy(boxes.astype(np.float32)),
            "labels": torch.from_numpy(records.labels[rows].copy()),
            "iscrowd": iscrowd,
            "ignore": iscrowd.bool(),
            "pseudo": torch.from_numpy(records.pseudo[rows].copy()),
            "image_id": int(records.image_ids[index]),
            "orig_size": torch.tensor(
                [int(records.heights[index]), int(records.widths[index])], dtype=torch.int64
            ),
        }

    def subset(self, indices: Sequence[int]) -> CocoDetection:
        """The items ``indices`` of this dataset, in that order, as a dataset of their own
        (the same split, transforms and images folder; e.g. one rank's share of the images)."""
        view = copy.copy(self)
        view.records = self.records.select(indices)
        return view

    def annotated_boxes(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The annotated (not pseudo) boxes of item ``index``: ``[N, 4]`` float64
        ``[x, y, w, h]`` as in the file, and their bool crowd flags ``[N]``."""
        rows = self.records.rows(index)
        own = ~self.records.pseudo[rows]
        return self.records.boxes[rows][own], self.records.iscrowd[rows][own] != 0

    def aspect_ratios(self) -> list[float]:
        """Width / height of every item, from the annotations (for aspect-ratio batching)."""
        return (self.records.widths / self.records.heights).tolist()

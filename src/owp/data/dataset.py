"""The split-aware COCO-format detection dataset (torch): ``(image, target)`` pairs.

Also importable as ``owp.data.coco.CocoDetection``; it lives apart so that reading and
evaluating annotation files never imports torch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from owp.data.coco import check_image_files, image_path, read_coco_json
from owp.data.images import read_image_tensor
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
        coco = read_coco_json(self.ann_file)
        check_image_files(coco, self.ann_file)
        self.split = resolve_split(split, coco["categories"], self.ann_file)
        self.transforms = transforms
        per_image: dict[int, list[dict]] = defaultdict(list)
        for ann in coco["annotations"]:
            if self.split.is_base(ann["category_id"]):
                per_image[ann["image_id"]].append(ann)
        self.pseudo_boxes = dict(pseudo_boxes or {})
        keep_empty = (not training) if keep_empty is None else keep_empty
        self.images = [
            img
            for img in coco["images"]
            if keep_empty
            or any(not a["iscrowd"] for a in per_image[img["id"]])
            or self.pseudo_boxes.get(img["id"])
        ]
        self.annotations = {img["id"]: per_image[img["id"]] for img in self.images}
        self.categories = coco["categories"]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        info = self.images[index]
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
        info = self.images[index]
        anns = self.annotations[info["id"]]
        pseudo = self.pseudo_boxes.get(info["id"], [])
        boxes = torch.tensor(
            [_xywh_to_xyxy(a["bbox"]) for a in anns] + [_xywh_to_xyxy(b) for b in pseudo],
            dtype=torch.float32,
        )
        iscrowd = torch.tensor(
            [int(a["iscrowd"]) for a in anns] + [0] * len(pseudo), dtype=torch.int64
        )
        labels = [self.split.label_of(a["category_id"]) for a in anns] + [-1] * len(pseudo)
        return {
            "boxes": boxes.reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "iscrowd": iscrowd,
            "ignore": iscrowd.bool(),
            "pseudo": torch.tensor([False] * len(anns) + [True] * len(pseudo), dtype=torch.bool),
            "image_id": int(info["id"]),
            "orig_size": torch.tensor([info["height"], info["width"]], dtype=torch.int64),
        }

    def aspect_ratios(self) -> list[float]:
        """Width / height of every item, from the annotations (for aspect-ratio batching)."""
        return [img["width"] / img["height"] for img in self.images]


def _xywh_to_xyxy(bbox: list[float]) -> list[float]:
    x, y, w, h = bbox
    return [x, y, x + w, y + h]

"""Pseudo-label files: class-agnostic boxes for the training images (self-training).

A pseudo-label file is a COCO instances JSON (``owp pseudo-label`` writes one): ``images``
copied from the training set, one category (:data:`PSEUDO_CATEGORY`), and one annotation per
box with ``"pseudo": true`` and its ``score``. Users may filter or edit it; any valid COCO
instances file is read, every one of its annotations as a pseudo box (category ignored).
Nothing here imports torch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from owp.data.coco import read_coco_json
from owp.errors import OwpInputError

PSEUDO_CATEGORY: dict[str, Any] = {"id": 1, "name": "object", "supercategory": "pseudo"}
"""The single category of the pseudo boxes an ``owp pseudo-label`` file holds."""

Boxes = dict[int, list[list[float]]]
"""Image id -> its pseudo boxes, ``[x, y, width, height]`` each."""


def read_pseudo_labels(path: str | Path, train: Mapping[str, Any], train_file: str | Path) -> Boxes:
    """The pseudo boxes of ``path`` per training image id, checked against ``train``.

    Args:
        path: the pseudo-label COCO JSON.
        train: the training set's instances dict (:func:`~owp.data.coco.read_coco_json`).
        train_file: its file name, for the error messages.

    Raises :class:`OwpInputError` (one line) for a missing or malformed file, and for a box
    on an image id that the training set lacks or whose size differs from the training
    set's. Degenerate boxes are dropped and overshooting ones clipped (counted in a warning),
    as in every COCO file.
    """
    coco = read_coco_json(path)
    sizes = {img["id"]: (img["width"], img["height"]) for img in train["images"]}
    own_sizes = {img["id"]: (img["width"], img["height"]) for img in coco["images"]}
    boxes: Boxes = defaultdict(list)
    for ann in coco["annotations"]:
        image_id = ann["image_id"]
        if image_id not in sizes:
            raise OwpInputError(
                f"pseudo box {ann['id']} is on image id {image_id}, which the training set "
                f"{train_file} does not have: pseudo labels must be mined on the training images",
                path=path,
            )
        if own_sizes[image_id] != sizes[image_id]:
            raise OwpInputError(
                f"image {image_id} is {own_sizes[image_id][0]}x{own_sizes[image_id][1]} here but "
                f"{sizes[image_id][0]}x{sizes[image_id][1]} in the training set {train_file}",
                path=path,
            )
        boxes[image_id].append([float(v) for v in ann["bbox"]])
    return dict(boxes)

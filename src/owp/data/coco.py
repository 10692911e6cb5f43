"""COCO-format detection data: validated annotation files and a split-aware dataset.

:func:`read_coco_json` reads an instances JSON, checks its structure and cleans its boxes (the
same checks guard every entry point: training, evaluation, statistics). :class:`CocoDetection`
serves ``(image, target)`` pairs for the split's trained (base) classes.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from owp.checks import is_finite_number, is_int
from owp.data.images import read_image_tensor
from owp.data.splits import ClassSplit, SplitSpec, resolve_split
from owp.errors import OwpInputError

log = logging.getLogger(__name__)

Target = dict[str, Any]
Transforms = Callable[[torch.Tensor, Target], tuple[torch.Tensor, Target]]

FOLDER_PROBES = 20
"""How many listed images :func:`find_image_folder` looks for in each candidate folder."""

CLIP_TOLERANCE = 1.0
"""Boxes overshooting the image by at most this many pixels are clipped without a warning
(COCO's own boxes overshoot by rounding)."""


@dataclass
class BoxRepairs:
    """What :func:`read_coco_json` did to boxes: dropped (degenerate or outside) and clipped."""

    degenerate: int = 0
    outside: int = 0
    clipped: int = 0

    def describe(self) -> str:
        parts = []
        if self.degenerate:
            parts.append(f"dropped {self.degenerate} boxes with non-positive width or height")
        if self.outside:
            parts.append(f"dropped {self.outside} boxes lying outside their image")
        if self.clipped:
            parts.append(f"clipped {self.clipped} boxes to their image")
        return "; ".join(parts)


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    """Load a JSON file, turning a missing file or a syntax error into one clear line."""
    path = Path(path)
    if path.is_dir():
        article = "an" if what[:1] in ("a", "e", "i", "o", "u") else "a"
        raise OwpInputError(f"is a folder, expected {article} {what}", path=path)
    if not path.is_file():
        raise OwpInputError(f"{what} not found", path=path)
    try:
        with path.open("rb") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise OwpInputError(
            f"malformed JSON at line {err.lineno} column {err.colno}: {err.msg}", path=path
        ) from None
    except RecursionError:
        raise OwpInputError("malformed JSON: nested too deeply", path=path) from None
    except UnicodeDecodeError:
        raise OwpInputError("malformed JSON: not UTF-8 text", path=path) from None


def read_coco_json(path: str | Path) -> dict[str, Any]:
    """Read and validate a COCO instances JSON (see :func:`load_instances`)."""
    return load_instances(path)[0]


def load_instances(path: str | Path) -> tuple[dict[str, Any], BoxRepairs]:
    """Read and validate a COCO instances JSON; also say what was done to its boxes.

    Returns the dict with ``images``, ``annotations`` and ``categories``, where every
    annotation has ``id``, ``area`` and ``iscrowd`` (defaults filled in), boxes with
    non-positive size or lying outside their image are dropped and boxes overshooting the image
    are clipped — both counted in one logged warning. Structural problems (missing keys, unknown
    image or category ids, duplicate ids, malformed boxes) raise :class:`OwpInputError`.
    """
    data = read_json(path, "annotation file")
    if not isinstance(data, dict):
        raise OwpInputError("not a COCO instances file (top level is not an object)", path=path)
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise OwpInputError(f"not a COCO instances file: missing '{key}'", path=path)
        if not isinstance(data[key], list):
            raise OwpInputError(f"'{key}' must be a list", path=path)
    images = _index(data["images"], "images", path)
    for img in images.values():
        _check_image_entry(img, path)
    categories = _index(data["categories"], "categories", path)
    for cat in categories.values():
        if not isinstance(cat.get("name"), str):
            raise OwpInputError(f"category {cat['id']} has no 'name'", path=path)
    annotations, repairs = _clean_annotations(data["annotations"], images, categories, path)
    if repairs.describe():
        log.warning("%s: %s", path, repairs.describe())
    return {**data, "annotations": annotations}, repairs


def find_annotation_file(path: str | Path, part: str = "val") -> Path:
    """The instances JSON named by ``path``: the file itself, or inside a dataset folder.

    A folder is searched for ``{part}.json``, ``annotations.json``,
    ``annotations/instances_{part}*.json`` and ``instances_{part}*.json`` in that order.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise OwpInputError("dataset not found (expected an instances JSON or a folder)", path=path)
    candidates = [path / f"{part}.json", path / "annotations.json"]
    candidates += sorted((path / "annotations").glob(f"instances_{part}*.json"))
    candidates += sorted(path.glob(f"instances_{part}*.json"))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise OwpInputError(
        f"no annotation file found in the folder (looked for {part}.json, annotations.json, "
        f"annotations/instances_{part}*.json)",
        path=path,
    )


def find_image_folder(ann_file: str | Path, coco: dict[str, Any]) -> Path:
    """Guess where the images of ``ann_file`` live.

    Tries, next to the JSON: ``<stem>/`` (``val.json`` -> ``val/``), ``images/``, the JSON's own
    folder, and COCO's ``annotations/instances_val2017.json`` -> ``../val2017/``; the first folder
    holding any of the first listed images wins (a missing image is then reported by whoever
    reads it, naming the file).
    """
    ann_file = Path(ann_file)
    here = ann_file.parent
    candidates = [here / ann_file.stem, here / "images", here]
    if ann_file.stem.startswith("instances_"):
        part = ann_file.stem.removeprefix("instances_")
        candidates += [here.parent / part, here.parent / "images" / part]
    if not coco["images"]:
        return candidates[0] if candidates[0].is_dir() else here
    probes = [img["file_name"] for img in coco["images"][:FOLDER_PROBES]]
    for folder in candidates:
        if any((folder / name).is_file() for name in probes):
            return folder
    raise OwpInputError(
        f"cannot find the images folder (none of the first {len(probes)} images, e.g. "
        f"{probes[0]!r}, is in any of: "
        + ", ".join(str(c) for c in candidates)
        + "); pass the images folder explicitly",
        path=ann_file,
    )


class CocoDetection(Dataset):
    """COCO-format detection dataset for one class split.

    Items are ``(image, target)`` with ``image`` a float tensor ``[3, H, W]`` in ``[0, 1]`` and
    ``target`` a dict of:

    * ``boxes``: float32 ``[N, 4]`` xyxy in pixels, the split's base-class boxes (crowd included);
    * ``labels``: int64 ``[N]``, contiguous training labels (index into ``split.base_ids``);
    * ``iscrowd``: int64 ``[N]``, COCO's crowd flag; ``ignore``: bool ``[N]``, True for crowd
      regions, which a model must treat as ignore regions and never as positives;
    * ``image_id``: int; ``orig_size``: int64 ``[2]`` as ``(height, width)``.

    Novel-class annotations are dropped (those objects become unlabelled). In ``training`` mode,
    images left without any non-crowd base box are skipped unless ``keep_empty=True``.
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
    ) -> None:
        self.images_dir = Path(images_dir)
        self.ann_file = Path(ann_file)
        if not self.images_dir.is_dir():
            raise OwpInputError("images folder not found", path=self.images_dir)
        coco = read_coco_json(self.ann_file)
        self.split = resolve_split(split, coco["categories"], self.ann_file)
        self.transforms = transforms
        per_image: dict[int, list[dict]] = defaultdict(list)
        for ann in coco["annotations"]:
            if self.split.is_base(ann["category_id"]):
                per_image[ann["image_id"]].append(ann)
        keep_empty = (not training) if keep_empty is None else keep_empty
        self.images = [
            img
            for img in coco["images"]
            if keep_empty or any(not a["iscrowd"] for a in per_image[img["id"]])
        ]
        self.annotations = {img["id"]: per_image[img["id"]] for img in self.images}
        self.categories = coco["categories"]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        info = self.images[index]
        path = self.images_dir / info["file_name"]
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
        boxes = torch.tensor([_xywh_to_xyxy(a["bbox"]) for a in anns], dtype=torch.float32)
        iscrowd = torch.tensor([int(a["iscrowd"]) for a in anns], dtype=torch.int64)
        return {
            "boxes": boxes.reshape(-1, 4),
            "labels": torch.tensor(
                [self.split.label_of(a["category_id"]) for a in anns], dtype=torch.int64
            ),
            "iscrowd": iscrowd,
            "ignore": iscrowd.bool(),
            "image_id": int(info["id"]),
            "orig_size": torch.tensor([info["height"], info["width"]], dtype=torch.int64),
        }

    def aspect_ratios(self) -> list[float]:
        """Width / height of every item, from the annotations (for aspect-ratio batching)."""
        return [img["width"] / img["height"] for img in self.images]


def _index(entries: list, key: str, path: str | Path) -> dict[int, dict]:
    index: dict[int, dict] = {}
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict) or not is_int(entry.get("id")):
            raise OwpInputError(f"'{key}'[{position}] has no integer 'id'", path=path)
        if entry["id"] in index:
            raise OwpInputError(f"duplicate id {entry['id']} in '{key}'", path=path)
        index[entry["id"]] = entry
    return index


def _check_image_entry(img: dict, path: str | Path) -> None:
    if not isinstance(img.get("file_name"), str) or not img["file_name"]:
        raise OwpInputError(f"image {img['id']} has no 'file_name'", path=path)
    for side in ("width", "height"):
        if not is_int(img.get(side)) or img[side] <= 0:
            raise OwpInputError(f"image {img['id']} has no positive integer '{side}'", path=path)


def _clean_annotations(
    annotations: list, images: dict[int, dict], categories: dict[int, dict], path: str | Path
) -> tuple[list[dict], BoxRepairs]:
    repairs = BoxRepairs()
    seen_ids: set[int] = set()
    kept: list[dict] = []
    next_id = 1 + max(
        (a["id"] for a in annotations if isinstance(a, dict) and is_int(a.get("id"))), default=0
    )
    for position, ann in enumerate(annotations):
        where = (
            f"annotation {ann.get('id', f'#{position}')}"
            if isinstance(ann, dict)
            else f"annotations[{position}]"
        )
        if not isinstance(ann, dict):
            raise OwpInputError(f"{where} is not an object", path=path)
        if not is_int(ann.get("image_id")) or ann["image_id"] not in images:
            raise OwpInputError(
                f"{where} refers to image id {ann.get('image_id')!r}, which is not in 'images'",
                path=path,
            )
        if not is_int(ann.get("category_id")) or ann["category_id"] not in categories:
            raise OwpInputError(
                f"{where} has unknown category id {ann.get('category_id')!r}", path=path
            )
        bbox = ann.get("bbox")
        if (
            not isinstance(bbox, list | tuple)
            or len(bbox) != 4
            or not all(is_finite_number(v) for v in bbox)
        ):
            raise OwpInputError(f"{where} has no valid 'bbox' [x, y, width, height]", path=path)
        ann = dict(ann)
        if ann.get("id") is None:
            ann["id"], next_id = next_id, next_id + 1
        elif not is_int(ann["id"]):
            raise OwpInputError(f"{where} has a non-integer 'id'", path=path)
        elif ann["id"] in seen_ids:
            raise OwpInputError(f"duplicate annotation id {ann['id']}", path=path)
        seen_ids.add(ann["id"])
        x, y, w, h = (float(v) for v in bbox)
        if w <= 0 or h <= 0:
            repairs.degenerate += 1
            continue
        img = images[ann["image_id"]]
        x0, y0 = max(x, 0.0), max(y, 0.0)
        x1, y1 = min(x + w, float(img["width"])), min(y + h, float(img["height"]))
        if x1 <= x0 or y1 <= y0:
            repairs.outside += 1
            continue
        overshoot = max(x0 - x, y0 - y, x + w - x1, y + h - y1)
        if overshoot > 0:
            repairs.clipped += overshoot > CLIP_TOLERANCE
            ann["bbox"] = [x0, y0, x1 - x0, y1 - y0]
        if "area" in ann and not (is_finite_number(ann["area"]) and ann["area"] >= 0):
            raise OwpInputError(f"{where} has an invalid 'area' {ann['area']!r}", path=path)
        ann.setdefault("area", (x1 - x0) * (y1 - y0))
        try:
            ann["iscrowd"] = int(ann.get("iscrowd", 0) or 0)
        except (TypeError, ValueError, OverflowError):
            raise OwpInputError(
                f"{where} has an invalid 'iscrowd' {ann['iscrowd']!r}", path=path
            ) from None
        kept.append(ann)
    return kept, repairs


def _xywh_to_xyxy(bbox: list[float]) -> list[float]:
    x, y, w, h = bbox
    return [x, y, x + w, y + h]


def subset_categories(coco: dict[str, Any], category_ids: Iterable[int]) -> dict[str, Any]:
    """A COCO dict with every image, but the annotations and categories of ``category_ids`` only."""
    keep = set(category_ids)
    return {
        **{k: v for k, v in coco.items() if k not in ("annotations", "categories")},
        "annotations": [a for a in coco["annotations"] if a["category_id"] in keep],
        "categories": [c for c in coco["categories"] if c["id"] in keep],
    }

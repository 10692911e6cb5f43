"""COCO-format detection data: validated annotation files, image paths, dataset folders.

:func:`read_coco_json` reads an instances JSON, checks its structure and cleans its boxes (the
same checks guard every entry point: training, evaluation, statistics).
:class:`~owp.data.dataset.CocoDetection` (importable from here too) serves ``(image, target)``
pairs for the split's trained (base) classes. Nothing here imports torch: evaluation and the
data tools run without it.

LVIS v1 files are read as LVIS ships them: images carry ``coco_url`` and no ``file_name``, and
an image's path is ``<COCO root>/<train2017|val2017>/<name>`` from that URL (as detectron2 reads
LVIS); see :func:`image_file` and :func:`image_path`.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import msgspec
import numpy as np

from owp.checks import is_finite_number, is_int
from owp.errors import OwpInputError

log = logging.getLogger(__name__)

COCO_IMAGE_FOLDER = re.compile(r"(train|val|test|unlabeled)20\d\d")
"""COCO's image folder names: ``train2017``, ``val2017``, ``test2017``, ``unlabeled2017``,
``val2014``, ... Any other folder (``coco``, ``coco2017``, ``mscoco2014``) is a COCO root."""

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
    """Load a JSON file, turning a missing file or a syntax error into one clear line.

    Parsed with ``msgspec`` (faster than the standard library), falling back to :mod:`json`
    for what msgspec refuses, so that both the values read and the error messages are the
    standard library's.
    """
    path = Path(path)
    if path.is_dir():
        article = "an" if what[:1] in ("a", "e", "i", "o", "u") else "a"
        raise OwpInputError(f"is a folder, expected {article} {what}", path=path)
    if not path.is_file():
        raise OwpInputError(f"{what} not found", path=path)
    try:
        raw = path.read_bytes()
        try:
            return msgspec.json.decode(raw)
        except msgspec.DecodeError:
            # What msgspec refuses but json reads (NaN, integers beyond 64 bits) is read, and a
            # real syntax error is reported, exactly as the standard library does.
            return json.loads(raw)
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
    _warn(repairs, path)
    return {**data, "annotations": annotations}, repairs


@dataclass(frozen=True)
class BoxColumns:
    """The cleaned annotations of an instances file as numpy columns, ``M`` rows in file order
    (exactly the annotations, boxes and flags :func:`load_instances` gives)."""

    image_ids: np.ndarray  # int64 [M]
    category_ids: np.ndarray  # int64 [M]
    boxes: np.ndarray  # float64 [M, 4] as [x, y, w, h]
    iscrowd: np.ndarray  # int64 [M]

    @classmethod
    def of(cls, annotations: list[dict[str, Any]]) -> BoxColumns:
        """The columns of cleaned annotation dicts."""
        n = len(annotations)
        return cls(
            np.fromiter((a["image_id"] for a in annotations), np.int64, n),
            np.fromiter((a["category_id"] for a in annotations), np.int64, n),
            np.array([a["bbox"] for a in annotations], np.float64).reshape(n, 4),
            np.fromiter((a["iscrowd"] for a in annotations), np.int64, n),
        )


def load_box_columns(path: str | Path) -> tuple[dict[str, Any], BoxColumns]:
    """What training reads of an instances file: ``{"images", "categories"}`` (validated
    dicts) and the annotations as :class:`BoxColumns`, equal to :func:`load_instances`'s.

    Segmentations, most of a COCO or LVIS file, are skipped by the parser (``msgspec`` with a
    typed schema) without becoming Python objects, and the annotations are checked and their
    boxes repaired with numpy: a COCO-train-sized file reads several times faster than through
    dicts, in a fraction of the memory. A file this typed reading refuses, or whose checks find
    anything but box repairs to make, goes through :func:`load_instances`, which reads what
    the typed schema is too strict for (``"iscrowd": true``) and words every error.
    """
    path = Path(path)
    try:
        data = msgspec.json.decode(path.read_bytes(), type=_TypedInstances)
    except (OSError, msgspec.DecodeError):
        data = None
    if data is not None and isinstance(data.images, list) and isinstance(data.categories, list):
        coco = {"images": data.images, "categories": data.categories}
        images = _index(data.images, "images", path)
        for img in images.values():
            _check_image_entry(img, path)
        categories = _index(data.categories, "categories", path)
        for cat in categories.values():
            if not isinstance(cat.get("name"), str):
                raise OwpInputError(f"category {cat['id']} has no 'name'", path=path)
        try:
            cleaned = _clean_columns(data.annotations, images, categories)
        except OverflowError:  # a number beyond 64 bits
            cleaned = None
        if cleaned is not None:
            columns, repairs = cleaned
            _warn(repairs, path)
            return coco, columns
    coco = read_coco_json(path)
    return {"images": coco["images"], "categories": coco["categories"]}, BoxColumns.of(
        coco["annotations"]
    )


class _TypedAnnotation(msgspec.Struct, gc=False):
    # What a training target reads; a missing id or a null one is assigned, a missing crowd
    # flag is 0, a missing area is computed (NaN here), as _clean_annotations reads them.
    image_id: int
    category_id: int
    bbox: tuple[float, float, float, float]
    id: int | None = None
    iscrowd: int | None = 0
    area: float = float("nan")


class _TypedInstances(msgspec.Struct):
    images: Any
    annotations: list[_TypedAnnotation]
    categories: Any


def _clean_columns(
    annotations: list[_TypedAnnotation], images: dict[int, dict], categories: dict[int, dict]
) -> tuple[BoxColumns, BoxRepairs] | None:
    """:func:`_clean_annotations` on typed annotations, with numpy; ``None`` where that would
    raise (it then says why)."""
    n = len(annotations)
    ids = np.fromiter((a.id for a in annotations if a.id is not None), np.int64)
    image_ids = np.fromiter((a.image_id for a in annotations), np.int64, n)
    category_ids = np.fromiter((a.category_id for a in annotations), np.int64, n)
    boxes = np.fromiter(
        itertools.chain.from_iterable(a.bbox for a in annotations), np.float64, 4 * n
    ).reshape(n, 4)
    iscrowd = np.fromiter((a.iscrowd or 0 for a in annotations), np.int64, n)
    area = np.fromiter((a.area for a in annotations), np.float64, n)
    known_images = np.fromiter(images, np.int64, len(images))
    known_categories = np.fromiter(categories, np.int64, len(categories))
    if (
        not np.isin(image_ids, known_images).all()
        or not np.isin(category_ids, known_categories).all()
        or not np.isfinite(boxes).all()
        or len(np.unique(ids)) != len(ids)
    ):
        return None
    x, y, w, h = boxes.T
    order = np.argsort(known_images)
    at = order[np.searchsorted(known_images[order], image_ids)]
    widths = np.fromiter((img["width"] for img in images.values()), np.float64)[at]
    heights = np.fromiter((img["height"] for img in images.values()), np.float64)[at]
    degenerate = (w <= 0) | (h <= 0)
    x0, y0 = np.maximum(x, 0.0), np.maximum(y, 0.0)
    x1, y1 = np.minimum(x + w, widths), np.minimum(y + h, heights)
    outside = ~degenerate & ((x1 <= x0) | (y1 <= y0))
    keep = ~degenerate & ~outside
    if not (np.isnan(area[keep]) | (area[keep] >= 0)).all() or np.isinf(area[keep]).any():
        return None
    overshoot = np.max(np.stack([x0 - x, y0 - y, x + w - x1, y + h - y1]), axis=0)
    clip = keep & (overshoot > 0)
    boxes[clip] = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)[clip]
    repairs = BoxRepairs(
        degenerate=int(degenerate.sum()),
        outside=int(outside.sum()),
        clipped=int((clip & (overshoot > CLIP_TOLERANCE)).sum()),
    )
    columns = BoxColumns(image_ids[keep], category_ids[keep], boxes[keep], iscrowd[keep])
    return columns, repairs


def _warn(repairs: BoxRepairs, path: str | Path) -> None:
    if repairs.describe():
        log.warning("%s: %s", path, repairs.describe())


def find_annotation_file(path: str | Path, part: str = "val") -> Path:
    """The instances JSON named by ``path``: the file itself, or inside a dataset folder.

    A folder is searched for ``{part}.json``, ``annotations.json``,
    ``annotations/instances_{part}*.json``, ``instances_{part}*.json`` and LVIS's
    ``lvis_v1_{part}*.json`` (also under ``annotations/`` and ``lvis/``) in that order.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise OwpInputError("dataset not found (expected an instances JSON or a folder)", path=path)
    candidates = [path / f"{part}.json", path / "annotations.json"]
    candidates += sorted((path / "annotations").glob(f"instances_{part}*.json"))
    candidates += sorted(path.glob(f"instances_{part}*.json"))
    for folder in (path, path / "annotations", path / "lvis"):
        candidates += sorted(folder.glob(f"lvis_v1_{part}*.json"))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise OwpInputError(
        f"no annotation file found in the folder (looked for {part}.json, annotations.json, "
        f"annotations/instances_{part}*.json, lvis_v1_{part}*.json)",
        path=path,
    )


def image_file(info: dict[str, Any], ann_file: str | Path | None = None) -> str:
    """The path of an image relative to its images folder: ``file_name``, or for LVIS (no
    ``file_name``) ``<folder>/<name>`` from ``coco_url`` (``train2017/000000391895.jpg``)."""
    name = info.get("file_name")
    if isinstance(name, str) and name:
        return name
    url = info.get("coco_url")
    if isinstance(url, str) and url:
        parts = PurePosixPath(urlparse(url).path).parts
        return "/".join(p for p in parts[-2:] if p != "/")
    raise OwpInputError(
        f"image {info.get('id')} has neither 'file_name' nor 'coco_url', so it cannot be read",
        path=ann_file,
    )


def image_path(images_dir: str | Path, info: dict[str, Any]) -> Path:
    """Where the image ``info`` is under ``images_dir``.

    Images named by ``file_name`` are ``images_dir/file_name``. Images named only by
    ``coco_url`` (LVIS) are ``<COCO root>/<folder>/<name>``, where the COCO root is
    ``images_dir`` — or its parent when ``images_dir`` is itself a COCO image folder such as
    ``coco/val2017`` (LVIS v1 val draws from both train2017 and val2017).
    """
    images_dir = Path(images_dir)
    relative = image_file(info)
    if info.get("file_name"):
        return images_dir / relative
    if COCO_IMAGE_FOLDER.fullmatch(images_dir.name):
        return images_dir.parent / relative
    return images_dir / relative


def check_image_files(coco: dict[str, Any], ann_file: str | Path) -> None:
    """Raise :class:`OwpInputError` when an image of ``coco`` has no path (neither
    ``file_name`` nor ``coco_url``); only where images are read."""
    for info in coco["images"]:
        image_file(info, ann_file)


def find_image_folder(ann_file: str | Path, coco: dict[str, Any]) -> Path:
    """Guess where the images of ``ann_file`` live.

    Tries, next to the JSON: ``<stem>/`` (``val.json`` -> ``val/``), ``images/``, the JSON's own
    folder, and COCO's ``annotations/instances_val2017.json`` -> ``../val2017/``; for LVIS
    files (images named by ``coco_url``) a COCO root: ``../coco/`` (detectron2's
    ``datasets/lvis/`` beside ``datasets/coco/``), ``coco/``, ``../``. The first folder holding
    any of the first listed images wins (a missing image is then reported by whoever reads it,
    naming the file).
    """
    ann_file = Path(ann_file)
    here = ann_file.parent
    candidates = [here / ann_file.stem, here / "images", here]
    if ann_file.stem.startswith("instances_"):
        part = ann_file.stem.removeprefix("instances_")
        candidates += [here.parent / part, here.parent / "images" / part]
    entries = coco["images"][:FOLDER_PROBES]
    if any(not img.get("file_name") for img in entries):
        candidates += [here.parent / "coco", here / "coco", here.parent]
    if not entries:
        return candidates[0] if candidates[0].is_dir() else here
    check_image_files({"images": entries}, ann_file)
    for folder in candidates:
        if any(image_path(folder, img).is_file() for img in entries):
            return folder
    raise OwpInputError(
        f"cannot find the images folder (none of the first {len(entries)} images, e.g. "
        f"{image_file(entries[0])!r}, is in any of: "
        + ", ".join(str(c) for c in candidates)
        + "); pass the images folder explicitly",
        path=ann_file,
    )


def is_federated(coco: dict[str, Any]) -> bool:
    """Whether ``coco`` is an LVIS-style federated dataset: its images carry
    ``neg_category_ids`` or ``not_exhaustive_category_ids``."""
    return any(
        "neg_category_ids" in img or "not_exhaustive_category_ids" in img for img in coco["images"]
    )


def __getattr__(name: str) -> Any:
    # CocoDetection needs torch; it lives in owp.data.dataset and is imported on first use, so
    # that the evaluation and data tools never import torch.
    if name in ("CocoDetection", "Target", "Transforms"):
        from owp.data import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    # file_name is optional (LVIS has coco_url instead, and evaluation never opens an image);
    # where present, both must be non-empty strings.
    for key in ("file_name", "coco_url"):
        if key in img and (not isinstance(img[key], str) or not img[key]):
            raise OwpInputError(f"image {img['id']} has an invalid '{key}'", path=path)
    for key in ("neg_category_ids", "not_exhaustive_category_ids"):
        if key in img and (not isinstance(img[key], list) or not all(map(is_int, img[key]))):
            raise OwpInputError(
                f"image {img['id']} has an invalid '{key}' (expected a list of category ids)",
                path=path,
            )
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


def subset_categories(coco: dict[str, Any], category_ids: Iterable[int]) -> dict[str, Any]:
    """A COCO dict with every image, but the annotations and categories of ``category_ids`` only."""
    keep = set(category_ids)
    return {
        **{k: v for k, v in coco.items() if k not in ("annotations", "categories")},
        "annotations": [a for a in coco["annotations"] if a["category_id"] in keep],
        "categories": [c for c in coco["categories"] if c["id"] in keep],
    }

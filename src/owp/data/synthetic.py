"""Embedded synthetic open-world detection dataset.

:func:`generate_synthetic_dataset` writes a small, real COCO-format dataset that the ordinary
COCO loader reads, so that a CPU-only user can train and evaluate an open-world proposal model
in minutes. The scene style (:mod:`owp.data.scenes`) draws objects of *base* families (labelled
for training) and *novel* families that the model must find without ever being taught them.
Layout of ``out_dir``::

    train/000000000001.jpg ...  images of the train part (file name = zero-padded image id)
    val/000000000801.jpg ...    images of the val part (ids continue after the train ids)
    train.json, val.json        COCO instances (all the style's categories in both)
    split.yaml                  {"name": "synthetic", "base": [...], "novel": [...]}
    objects.json                every rendered object, annotated or not
    manifest.json               generator, version, config and sha256 of every file; written last

Labelling rules: an object whose visible fraction (visible in-image pixels over the pixels of
its whole, unoccluded, untruncated mask) is below 0.25 is never annotated. ``val.json`` is
exhaustive above that threshold. ``train.json`` annotates novel objects too (the training code
drops them through the split) but omits exactly ``floor(unannotated_base_fraction * n + 0.5)``
of the ``n`` eligible base objects of the train part, chosen with a generator seeded by ``seed``,
to mimic non-exhaustive labels. Boxes are tight around the visible pixels; ``area`` is the number
of visible pixels. Objects hidden completely by others are not listed anywhere. The same config
always gives byte-identical files.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image
from tqdm import tqdm

from owp.data.scenes import STYLES, SceneStyle
from owp.data.scenes.common import SceneObject
from owp.errors import OwpInputError
from owp.parallel import ordered_map

__all__ = [
    "STYLES",
    "SynthConfig",
    "generate_synthetic_dataset",
    "is_synthetic_dataset",
]


MIN_VISIBLE_FRACTION = 0.25
GENERATOR = "owp.data.synthetic"
FORMAT_VERSION = 1
PARTS: tuple[str, ...] = ("train", "val")
METADATA_FILES: tuple[str, ...] = ("train.json", "val.json", "split.yaml", "objects.json")
MANIFEST = "manifest.json"

_MANIFEST_TMP = "manifest.json.tmp"
_JPEG_QUALITY = 92
_PNG_COMPRESS_LEVEL = 6


@dataclass(frozen=True)
class SynthConfig:
    """Settings of the synthetic dataset; invalid values raise :class:`OwpInputError`.

    ``style`` names the scene style (:data:`owp.data.scenes.STYLES`): ``"photo"`` (the
    default), scenes built to behave like real photos for proposal methods, with COCO's size
    mix at the default 640 px, or ``"flat"``, the first generator, reproduced byte for byte at
    ``image_size=320`` (the old tables' set). ``max_objects`` left ``None`` becomes the style's
    default (8 flat, 15 photo).
    """

    num_train: int = 800
    num_val: int = 200
    image_size: int = 640
    seed: int = 0
    min_objects: int = 2
    max_objects: int | None = None
    unannotated_base_fraction: float = 0.15
    image_format: str = "jpg"
    style: str = "photo"

    def __post_init__(self) -> None:
        if not isinstance(self.style, str) or self.style not in STYLES:
            raise OwpInputError(
                f"invalid synthetic config: style must be one of {', '.join(STYLES)}, "
                f"got {self.style!r}"
            )
        if self.max_objects is None:
            object.__setattr__(self, "max_objects", STYLES[self.style].default_max_objects)
        _check_int("num_train", self.num_train, 1, None)
        _check_int("num_val", self.num_val, 1, None)
        _check_int("image_size", self.image_size, 64, 2048)
        _check_int("seed", self.seed, 0, None)
        _check_int("min_objects", self.min_objects, 1, 64)
        _check_int("max_objects", self.max_objects, self.min_objects, 64)
        fraction = self.unannotated_base_fraction
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, (int, float))
            or not 0.0 <= fraction <= 1.0
        ):
            raise OwpInputError(
                f"invalid synthetic config: unannotated_base_fraction must be a number in "
                f"[0, 1], got {fraction!r}"
            )
        if self.image_format not in ("jpg", "png"):
            raise OwpInputError(
                f"invalid synthetic config: image_format must be 'jpg' or 'png', "
                f"got {self.image_format!r}"
            )


def _manifest_config(config: SynthConfig) -> dict[str, Any]:
    """The config as the manifest records it; the flat style's omits ``style``, so that its
    manifest stays byte-identical to the one written before styles existed."""
    fields = asdict(config)
    if config.style == "flat":
        del fields["style"]
    return fields


def _check_int(name: str, value: object, low: int, high: int | None) -> None:
    """Raise OwpInputError unless value is an int in [low, high]."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise OwpInputError(
            f"invalid synthetic config: {name} must be an integer {bound}, got {value!r}"
        )


def generate_synthetic_dataset(
    out_dir: str | Path,
    config: SynthConfig = SynthConfig(),
    *,
    force: bool = False,
    progress: bool = False,
    workers: int | None = None,
) -> Path:
    """Write the dataset into out_dir and return out_dir as a Path.

    ``workers`` processes render the images (``None``: one per available CPU; small sets
    render in this process, :func:`owp.parallel.resolve_workers`). Every image has its own
    generator, so the files are the same for any number of workers.
    """
    if not isinstance(config, SynthConfig):
        raise OwpInputError(f"config must be a SynthConfig, got {type(config).__name__}")
    style = STYLES[config.style]
    out = Path(out_dir)
    _prepare_out_dir(out, force)
    image_hashes: dict[str, str] = {}
    images: dict[str, list[dict[str, Any]]] = {part: [] for part in PARTS}
    objects: dict[str, list[tuple[int, SceneObject]]] = {part: [] for part in PARTS}
    jobs = [(config, out, part, image_id) for part, image_id in _image_ids(config)]
    with tqdm(total=len(jobs), desc="synthetic dataset", unit="img", disable=not progress) as bar:
        rendered_images = ordered_map(_write_image, jobs, workers)
        for (_, _, part, image_id), (name, digest, rendered) in zip(
            jobs, rendered_images, strict=True
        ):
            image_hashes[f"{part}/{name}"] = digest
            size = config.image_size
            images[part].append({"id": image_id, "file_name": name, "width": size, "height": size})
            objects[part].extend((image_id, obj) for obj in rendered)
            bar.update()
    annotated = _choose_annotated(config, style, objects)
    metadata = _metadata_files(config, style, images, objects, annotated)
    hashes: dict[str, str] = {}
    for name, data in metadata.items():
        (out / name).write_bytes(data)
        hashes[name] = _sha256(data)
    manifest = {
        "generator": GENERATOR,
        "version": FORMAT_VERSION,
        "config": _manifest_config(config),
        "files": {**hashes, **image_hashes},
    }
    (out / _MANIFEST_TMP).write_bytes(_json_bytes(manifest))
    os.replace(out / _MANIFEST_TMP, out / MANIFEST)
    return out


def is_synthetic_dataset(path: str | Path, config: SynthConfig | None = None) -> bool:
    """True when path holds a complete dataset written by this generator (from ``config``,
    when given).

    The manifest must name this generator and version (and record exactly ``config``: style,
    size, seed, counts, ...), the metadata files must match their recorded sha256, and the image
    folders must hold exactly the listed images.
    """
    root = Path(path)
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        if not isinstance(manifest, dict) or manifest.get("generator") != GENERATOR:
            return False
        if config is not None and manifest.get("config") != _manifest_config(config):
            return False
        files = manifest.get("files")
        if manifest.get("version") != FORMAT_VERSION or not isinstance(files, dict):
            return False
        for name in METADATA_FILES:
            if files.get(name) != _sha256((root / name).read_bytes()):
                return False
        listed = {name for name in files if name not in METADATA_FILES}
        on_disk = {f"{part}/{p.name}" for part in PARTS for p in (root / part).iterdir()}
        return listed == on_disk and all((root / name).is_file() for name in listed)
    except (OSError, ValueError):
        return False


def _prepare_out_dir(out: Path, force: bool) -> None:
    """Check out_dir, clear the generator's own files when forced, create the part folders."""
    if out.exists() and not out.is_dir():
        raise OwpInputError("exists and is not a directory", path=out)
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise OwpInputError(
                "already exists and is not empty; pass --force to overwrite", path=out
            )
        for name in (MANIFEST, _MANIFEST_TMP, *METADATA_FILES, *PARTS):
            _remove(out / name)
    try:
        for part in PARTS:
            (out / part).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OwpInputError(f"cannot create the dataset folder ({exc.strerror})", path=out) from exc


def _remove(path: Path) -> None:
    """Delete a file, link or folder if present."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _image_ids(config: SynthConfig) -> Iterator[tuple[str, int]]:
    """Yield (part, image id): train ids 1..num_train, then val ids."""
    for image_id in range(1, config.num_train + 1):
        yield "train", image_id
    for image_id in range(config.num_train + 1, config.num_train + config.num_val + 1):
        yield "val", image_id


def _write_image(job: tuple[SynthConfig, Path, str, int]) -> tuple[str, str, list[SceneObject]]:
    """Render, encode and write one image of ``(config, out, part, image_id)``; returns its
    file name, the sha256 of its bytes and its visible objects (run in a worker process)."""
    config, out, part, image_id = job
    pixels, rendered = STYLES[config.style].render(config, image_id)
    name = f"{image_id:012d}.{config.image_format}"
    data = _encode(pixels, config.image_format)
    (out / part / name).write_bytes(data)
    return name, _sha256(data), rendered


def _sha256(data: bytes) -> str:
    """Hex sha256 of data."""
    return hashlib.sha256(data).hexdigest()


def _json_bytes(obj: object) -> bytes:
    """Compact, deterministic JSON encoding."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode("utf-8")


def _encode(pixels: np.ndarray, image_format: str) -> bytes:
    """Encode an RGB uint8 array with fixed save arguments."""
    buffer = io.BytesIO()
    image = Image.fromarray(pixels, mode="RGB")
    if image_format == "jpg":
        image.save(buffer, format="JPEG", quality=_JPEG_QUALITY, optimize=False)
    else:
        image.save(buffer, format="PNG", compress_level=_PNG_COMPRESS_LEVEL, optimize=False)
    return buffer.getvalue()


def _choose_annotated(
    config: SynthConfig, style: SceneStyle, objects: dict[str, list[tuple[int, SceneObject]]]
) -> dict[str, list[bool]]:
    """Decide which objects appear in each part's JSON."""
    annotated = {
        part: [obj.visible_fraction >= MIN_VISIBLE_FRACTION for _, obj in objects[part]]
        for part in PARTS
    }
    eligible_base = [
        index
        for index, (_, obj) in enumerate(objects["train"])
        if annotated["train"][index] and obj.family in style.base_families
    ]
    count = math.floor(config.unannotated_base_fraction * len(eligible_base) + 0.5)
    rng = np.random.default_rng([config.seed, 0])
    for pick in rng.choice(len(eligible_base), size=count, replace=False):
        annotated["train"][eligible_base[int(pick)]] = False
    return annotated


def _metadata_files(
    config: SynthConfig,
    style: SceneStyle,
    images: dict[str, list[dict[str, Any]]],
    objects: dict[str, list[tuple[int, SceneObject]]],
    annotated: dict[str, list[bool]],
) -> dict[str, bytes]:
    """Build train.json, val.json, split.yaml and objects.json."""
    categories = [
        {
            "id": index + 1,
            "name": family,
            "supercategory": "base" if family in style.base_families else "novel",
        }
        for index, family in enumerate(style.families)
    ]
    files: dict[str, bytes] = {}
    records: list[dict[str, Any]] = []
    next_id = 1
    for part in PARTS:
        annotations = []
        for (image_id, obj), keep in zip(objects[part], annotated[part], strict=True):
            category_id = style.families.index(obj.family) + 1
            bbox = list(obj.bbox)
            records.append(
                {
                    "image_id": image_id,
                    "part": part,
                    "family": obj.family,
                    "category_id": category_id,
                    "bbox": bbox,
                    "annotated": keep,
                    "visible_fraction": obj.visible_fraction,
                }
            )
            if keep:
                annotations.append(
                    {
                        "id": next_id,
                        "image_id": image_id,
                        "category_id": category_id,
                        "bbox": bbox,
                        "area": float(obj.area),
                        "iscrowd": 0,
                    }
                )
                next_id += 1
        info = {
            "description": f"{style.description}, {part} part",
            "version": str(FORMAT_VERSION),
            "seed": config.seed,
        }
        coco = {
            "info": info,
            "images": images[part],
            "annotations": annotations,
            "categories": categories,
        }
        files[f"{part}.json"] = _json_bytes(coco)
    split = {
        "name": "synthetic",
        "base": list(style.base_families),
        "novel": list(style.novel_families),
    }
    files["split.yaml"] = yaml.safe_dump(split, sort_keys=False).encode("utf-8")
    files["objects.json"] = _json_bytes(records)
    return files

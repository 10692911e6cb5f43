"""Embedded synthetic open-world detection dataset.

:func:`generate_synthetic_dataset` writes a small, real COCO-format dataset that the ordinary
COCO loader reads, so that a CPU-only user can train and evaluate an open-world proposal model
in minutes. Sixteen shape families are drawn on textured, cluttered backgrounds; eight are
*base* families (labelled for training) and eight are *novel* families that the model must find
without ever being taught them. Layout of ``out_dir``::

    train/000000000001.jpg ...  images of the train part (file name = zero-padded image id)
    val/000000000801.jpg ...    images of the val part (ids continue after the train ids)
    train.json, val.json        COCO instances (all 16 categories listed in both)
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
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

from owp.errors import OwpInputError

BASE_FAMILIES: tuple[str, ...] = (
    "disc",
    "ring",
    "square",
    "triangle",
    "star",
    "cross",
    "pentagon",
    "heart",
)
NOVEL_FAMILIES: tuple[str, ...] = (
    "hexagon",
    "ellipse",
    "crescent",
    "arrow",
    "l_shape",
    "diamond",
    "trapezoid",
    "semicircle",
)
SHAPE_FAMILIES: tuple[str, ...] = BASE_FAMILIES + NOVEL_FAMILIES

MIN_VISIBLE_FRACTION = 0.25
GENERATOR = "owp.data.synthetic"
FORMAT_VERSION = 1
PARTS: tuple[str, ...] = ("train", "val")
METADATA_FILES: tuple[str, ...] = ("train.json", "val.json", "split.yaml", "objects.json")
MANIFEST = "manifest.json"

_MANIFEST_TMP = "manifest.json.tmp"
_JPEG_QUALITY = 92
_PNG_COMPRESS_LEVEL = 6
_REFERENCE_SIZE = 320
# Probability of each COCO size bucket and the range of sqrt(mask area) at 320 px.
_SIZE_BUCKETS: tuple[tuple[float, float, float], ...] = (
    (0.30, 11.0, 30.0),
    (0.45, 36.0, 90.0),
    (0.25, 102.0, 160.0),
)
# Largest aspect stretch per family; small for families whose identity depends on proportions.
_MAX_STRETCH: dict[str, float] = {
    "disc": 1.15,
    "ring": 1.2,
    "pentagon": 1.2,
    "hexagon": 1.2,
    "ellipse": 1.25,
    "diamond": 1.25,
    "star": 1.3,
    "heart": 1.3,
    "crescent": 1.3,
    "semicircle": 1.3,
}
_DEFAULT_STRETCH = 1.6
_PLACEMENT_TRIES = 3


@dataclass(frozen=True)
class SynthConfig:
    """Settings of the synthetic dataset; invalid values raise :class:`OwpInputError`."""

    num_train: int = 800
    num_val: int = 200
    image_size: int = 320
    seed: int = 0
    min_objects: int = 2
    max_objects: int = 8
    unannotated_base_fraction: float = 0.15
    image_format: str = "jpg"

    def __post_init__(self) -> None:
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


@dataclass(frozen=True)
class _Object:
    """One rendered object after all drawing."""

    family: str
    bbox: tuple[float, float, float, float]
    area: int
    visible_fraction: float


def generate_synthetic_dataset(
    out_dir: str | Path,
    config: SynthConfig = SynthConfig(),
    *,
    force: bool = False,
    progress: bool = False,
) -> Path:
    """Write the dataset into out_dir and return out_dir as a Path."""
    if not isinstance(config, SynthConfig):
        raise OwpInputError(f"config must be a SynthConfig, got {type(config).__name__}")
    out = Path(out_dir)
    _prepare_out_dir(out, force)
    image_hashes: dict[str, str] = {}
    images: dict[str, list[dict[str, Any]]] = {part: [] for part in PARTS}
    objects: dict[str, list[tuple[int, _Object]]] = {part: [] for part in PARTS}
    total = config.num_train + config.num_val
    with tqdm(total=total, desc="synthetic dataset", unit="img", disable=not progress) as bar:
        for part, image_id in _image_ids(config):
            pixels, rendered = _render_image(config, image_id)
            name = f"{image_id:012d}.{config.image_format}"
            data = _encode(pixels, config.image_format)
            (out / part / name).write_bytes(data)
            image_hashes[f"{part}/{name}"] = _sha256(data)
            size = config.image_size
            images[part].append({"id": image_id, "file_name": name, "width": size, "height": size})
            objects[part].extend((image_id, obj) for obj in rendered)
            bar.update()
    annotated = _choose_annotated(config, objects)
    metadata = _metadata_files(config, images, objects, annotated)
    hashes: dict[str, str] = {}
    for name, data in metadata.items():
        (out / name).write_bytes(data)
        hashes[name] = _sha256(data)
    manifest = {
        "generator": GENERATOR,
        "version": FORMAT_VERSION,
        "config": asdict(config),
        "files": {**hashes, **image_hashes},
    }
    (out / _MANIFEST_TMP).write_bytes(_json_bytes(manifest))
    os.replace(out / _MANIFEST_TMP, out / MANIFEST)
    return out


def is_synthetic_dataset(path: str | Path) -> bool:
    """True when path holds a complete dataset written by this generator.

    The manifest must name this generator and version, the metadata files must match their
    recorded sha256, and the image folders must hold exactly the listed images.
    """
    root = Path(path)
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        if not isinstance(manifest, dict) or manifest.get("generator") != GENERATOR:
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
    config: SynthConfig, objects: dict[str, list[tuple[int, _Object]]]
) -> dict[str, list[bool]]:
    """Decide which objects appear in each part's JSON."""
    annotated = {
        part: [obj.visible_fraction >= MIN_VISIBLE_FRACTION for _, obj in objects[part]]
        for part in PARTS
    }
    eligible_base = [
        index
        for index, (_, obj) in enumerate(objects["train"])
        if annotated["train"][index] and obj.family in BASE_FAMILIES
    ]
    count = math.floor(config.unannotated_base_fraction * len(eligible_base) + 0.5)
    rng = np.random.default_rng([config.seed, 0])
    for pick in rng.choice(len(eligible_base), size=count, replace=False):
        annotated["train"][eligible_base[int(pick)]] = False
    return annotated


def _metadata_files(
    config: SynthConfig,
    images: dict[str, list[dict[str, Any]]],
    objects: dict[str, list[tuple[int, _Object]]],
    annotated: dict[str, list[bool]],
) -> dict[str, bytes]:
    """Build train.json, val.json, split.yaml and objects.json."""
    categories = [
        {
            "id": index + 1,
            "name": family,
            "supercategory": "base" if family in BASE_FAMILIES else "novel",
        }
        for index, family in enumerate(SHAPE_FAMILIES)
    ]
    files: dict[str, bytes] = {}
    records: list[dict[str, Any]] = []
    next_id = 1
    for part in PARTS:
        annotations = []
        for (image_id, obj), keep in zip(objects[part], annotated[part], strict=True):
            category_id = SHAPE_FAMILIES.index(obj.family) + 1
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
            "description": f"owp synthetic open-world shapes, {part} part",
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
    split = {"name": "synthetic", "base": list(BASE_FAMILIES), "novel": list(NOVEL_FAMILIES)}
    files["split.yaml"] = yaml.safe_dump(split, sort_keys=False).encode("utf-8")
    files["objects.json"] = _json_bytes(records)
    return files


# --------------------------------------------------------------------------- scene rendering


def _render_image(config: SynthConfig, image_id: int) -> tuple[np.ndarray, list[_Object]]:
    """Render one image and return its RGB pixels and its visible objects."""
    rng = np.random.default_rng([config.seed, image_id])
    size = config.image_size
    scale = size / _REFERENCE_SIZE
    canvas = _background(rng, size, scale)
    count = int(rng.integers(config.min_objects, config.max_objects + 1))
    families = _pick_families(rng, count)
    sides = [_sample_side(rng, scale) for _ in families]
    jitter = rng.uniform(0.7, 1.3, size=count)
    order = sorted(range(count), key=lambda i: -sides[i] * jitter[i])
    labels = np.zeros((size, size), dtype=np.int16)
    drawn: list[tuple[str, int, int, int, int, int]] = []
    for index in order:
        placed = _draw_object(rng, canvas, labels, families[index], sides[index], scale, len(drawn))
        if placed is not None:
            drawn.append((families[index], *placed))
    _finish(rng, canvas, scale)
    counts = np.bincount(labels.ravel(), minlength=len(drawn) + 1)
    objects = []
    for number, (family, full, x0, y0, x1, y1) in enumerate(drawn, start=1):
        visible = int(counts[number])
        if visible == 0:
            continue
        hit = labels[y0:y1, x0:x1] == number
        rows = np.flatnonzero(hit.any(axis=1))
        cols = np.flatnonzero(hit.any(axis=0))
        bbox = (
            float(x0 + cols[0]),
            float(y0 + rows[0]),
            float(cols[-1] - cols[0] + 1),
            float(rows[-1] - rows[0] + 1),
        )
        objects.append(_Object(family, bbox, visible, round(visible / full, 4)))
    return np.clip(canvas, 0, 255).astype(np.uint8), objects


def _pick_families(rng: np.random.Generator, count: int) -> list[str]:
    """Families of one image: at least one base and one novel when count >= 2."""
    families = [SHAPE_FAMILIES[int(i)] for i in rng.integers(len(SHAPE_FAMILIES), size=count)]
    if count >= 2:
        families[0] = BASE_FAMILIES[int(rng.integers(len(BASE_FAMILIES)))]
        families[1] = NOVEL_FAMILIES[int(rng.integers(len(NOVEL_FAMILIES)))]
    return [families[int(i)] for i in rng.permutation(count)]


def _sample_side(rng: np.random.Generator, scale: float) -> float:
    """Square root of the target mask area, drawn from the COCO size buckets."""
    weights = [bucket[0] for bucket in _SIZE_BUCKETS]
    _, low, high = _SIZE_BUCKETS[int(rng.choice(len(_SIZE_BUCKETS), p=weights))]
    return max(8.0, float(np.exp(rng.uniform(np.log(low), np.log(high)))) * scale)


def _coords(height: int, width: int, angle: float) -> np.ndarray:
    """Coordinate along direction angle for every pixel of a height x width grid."""
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    return xs * np.float32(math.cos(angle)) + ys * np.float32(math.sin(angle))


def _background(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    """Textured, cluttered background as float32 HxWx3 in [0, 255]."""
    low, high = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
    ramp = _coords(size, size, rng.uniform(0, 2 * math.pi))
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1.0)
    canvas = low + (high - low) * ramp[..., None]
    octaves = ((int(rng.integers(3, 10)), 0.8, 0.5), (int(rng.integers(14, 40)), 0.5, 0.3))
    for cells, probability, strength in octaves:
        if rng.random() < probability:
            grid = rng.integers(0, 256, size=(cells, cells, 3), dtype=np.uint8)
            noise = np.asarray(Image.fromarray(grid).resize((size, size), Image.BICUBIC))
            weight = np.float32(rng.uniform(0.1, strength))
            canvas = canvas * (1 - weight) + noise.astype(np.float32) * weight
    if rng.random() < 0.35:
        period = rng.uniform(6, 40) * scale
        wave = np.sin(
            _coords(size, size, rng.uniform(0, math.pi)) * np.float32(2 * math.pi / period)
        )
        tint = rng.uniform(0.3, 1.0, size=3).astype(np.float32) * np.float32(rng.uniform(8, 30))
        canvas = canvas + wave[..., None] * tint
    if rng.random() < 0.6:
        canvas = _add_blobs(rng, canvas, size, scale)
    return _add_strokes(rng, canvas, size, scale)


def _add_blobs(rng: np.random.Generator, canvas: np.ndarray, size: int, scale: float) -> np.ndarray:
    """Faint, heavily blurred smudges (unannotated, shapeless)."""
    layer = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(layer)
    for _ in range(int(rng.integers(2, 7))):
        cx, cy = rng.uniform(0, size, size=2)
        rx, ry = rng.uniform(0.04, 0.2, size=2) * size
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=int(rng.integers(120, 256)))
    blurred = layer.filter(ImageFilter.GaussianBlur(float(rng.uniform(5, 12)) * scale))
    alpha = np.asarray(blurred, dtype=np.float32)[..., None] * np.float32(
        rng.uniform(0.12, 0.3) / 255
    )
    colour = rng.uniform(0, 255, size=3).astype(np.float32)
    return canvas * (1 - alpha) + colour * alpha


def _add_strokes(
    rng: np.random.Generator, canvas: np.ndarray, size: int, scale: float
) -> np.ndarray:
    """Thin polylines and small dots (unannotated clutter)."""
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(image)
    if rng.random() < 0.75:
        for _ in range(int(rng.integers(2, 12))):
            points = rng.uniform(-0.1, 1.1, size=(int(rng.integers(2, 5)), 2)) * size
            colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
            width = max(1, round(float(rng.uniform(1, 2.5)) * scale))
            draw.line([tuple(p) for p in points.tolist()], fill=colour, width=width)
    if rng.random() < 0.6:
        for _ in range(int(rng.integers(5, 60))):
            cx, cy = rng.uniform(0, size, size=2)
            radius = float(rng.uniform(0.7, 2.2)) * scale
            colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
            draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour)
    return np.array(image, dtype=np.float32)


def _finish(rng: np.random.Generator, canvas: np.ndarray, scale: float) -> None:
    """Sensor noise and, sometimes, a slight blur, in place."""
    if rng.random() < 0.3:
        image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), mode="RGB")
        radius = float(rng.uniform(0.4, 0.9)) * scale
        canvas[...] = np.asarray(image.filter(ImageFilter.GaussianBlur(radius)), np.float32)
    sigma = np.float32(rng.uniform(0, 6))
    canvas += rng.standard_normal(canvas.shape[:2], dtype=np.float32)[..., None] * sigma


def _circle(count: int = 64, radius: float = 1.0, cx: float = 0.0) -> np.ndarray:
    """Polygon approximating a circle."""
    angles = np.linspace(0, 2 * math.pi, count, endpoint=False)
    return np.stack([cx + radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def _regular(sides: int, radius: float = 1.0) -> np.ndarray:
    """Regular polygon with a vertex pointing up."""
    angles = -math.pi / 2 + np.arange(sides) * 2 * math.pi / sides
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def _shape_parts(family: str, rng: np.random.Generator) -> list[tuple[np.ndarray, bool]]:
    """Unit-sized polygons of a family: (points, True to fill / False to cut out)."""
    if family == "disc":
        return [(_circle(), True)]
    if family == "ring":
        return [(_circle(), True), (_circle(radius=rng.uniform(0.45, 0.65)), False)]
    if family == "square":
        return [(np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=float), True)]
    if family == "triangle":
        return [(_regular(3), True)]
    if family == "star":
        outer = _regular(10)
        outer[1::2] *= rng.uniform(0.38, 0.5)
        return [(outer, True)]
    if family == "cross":
        t = rng.uniform(0.28, 0.38)
        points = [(-t, -1), (t, -1), (t, -t), (1, -t), (1, t), (t, t)]
        points += [(t, 1), (-t, 1), (-t, t), (-1, t), (-1, -t), (-t, -t)]
        return [(np.array(points, dtype=float), True)]
    if family == "pentagon":
        return [(_regular(5), True)]
    if family == "heart":
        t = np.linspace(0, 2 * math.pi, 72, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        return [(np.stack([x, y], axis=1) / 16, True)]
    if family == "hexagon":
        return [(_regular(6), True)]
    if family == "ellipse":
        return [(_circle() * np.array([1.0, 0.55]), True)]
    if family == "crescent":
        cut = _circle(radius=rng.uniform(0.8, 0.95), cx=rng.uniform(0.35, 0.55))
        return [(_circle(), True), (cut, False)]
    if family == "arrow":
        w = rng.uniform(0.16, 0.28)
        points = [(-1, -w), (0.15, -w), (0.15, -0.6), (1, 0), (0.15, 0.6), (0.15, w), (-1, w)]
        return [(np.array(points, dtype=float), True)]
    if family == "l_shape":
        t = rng.uniform(0.55, 0.8)
        points = [(-0.8, -1), (-0.8 + t, -1), (-0.8 + t, 1 - t), (0.8, 1 - t), (0.8, 1), (-0.8, 1)]
        return [(np.array(points, dtype=float), True)]
    if family == "diamond":
        return [(np.array([[0, -1], [0.6, 0], [0, 1], [-0.6, 0]], dtype=float), True)]
    if family == "trapezoid":
        top = rng.uniform(0.35, 0.6)
        points = [(-1, 0.6), (1, 0.6), (top, -0.6), (-top, -0.6)]
        return [(np.array(points, dtype=float), True)]
    if family == "semicircle":
        angles = np.linspace(0, math.pi, 33)
        return [(np.stack([np.cos(angles), 0.4 - np.sin(angles)], axis=1), True)]
    raise ValueError(f"unknown shape family {family!r}")


def _rasterise(parts: list[tuple[np.ndarray, bool]], width: int, height: int) -> np.ndarray:
    """Boolean mask of polygons already in pixel coordinates of a width x height canvas."""
    layer = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(layer)
    for points, fill in parts:
        draw.polygon([tuple(p) for p in points.tolist()], fill=255 if fill else 0)
    return np.asarray(layer) > 0


def _unit_area(parts: list[tuple[np.ndarray, bool]]) -> float:
    """Area of unit-sized shape parts, measured by rasterising at 64 px per unit."""
    resolution = 64.0
    pixels = [(points * resolution + 1.25 * resolution, fill) for points, fill in parts]
    extent = int(2.5 * resolution)
    return max(float(_rasterise(pixels, extent, extent).sum()), 1.0) / resolution**2


def _draw_object(
    rng: np.random.Generator,
    canvas: np.ndarray,
    labels: np.ndarray,
    family: str,
    side: float,
    scale: float,
    number: int,
) -> tuple[int, int, int, int, int] | None:
    """Draw one object on top; return (mask pixels, clipped box x0, y0, x1, y1) or None."""
    size = canvas.shape[0]
    parts = _shape_parts(family, rng)
    factor = side / math.sqrt(_unit_area(parts))
    limit = math.log(_MAX_STRETCH.get(family, _DEFAULT_STRETCH))
    aspect = math.exp(rng.uniform(-limit, limit))
    angle = rng.uniform(0, 2 * math.pi)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    stretch = np.array([math.sqrt(aspect), 1 / math.sqrt(aspect)]) * factor
    parts = [((points * stretch) @ rotation.T, fill) for points, fill in parts]
    low = np.min([points.min(axis=0) for points, fill in parts if fill], axis=0) - 1
    high = np.max([points.max(axis=0) for points, fill in parts if fill], axis=0) + 1
    width, height = (int(v) for v in np.ceil(high - low))
    mask = _rasterise([(points - low, fill) for points, fill in parts], width, height)
    full = int(mask.sum())
    if full == 0:
        return None
    x0, y0 = _place(rng, labels, width, height)
    ix0, iy0 = max(x0, 0), max(y0, 0)
    ix1, iy1 = min(x0 + width, size), min(y0 + height, size)
    if ix0 >= ix1 or iy0 >= iy1:
        return None
    region = canvas[iy0:iy1, ix0:ix1]
    colour = _contrasting_colour(rng, region.reshape(-1, 3).mean(axis=0))
    texture = _texture(rng, height, width, colour, scale)
    if rng.random() < 0.35:
        _outline(rng, texture, mask, colour, scale)
    window = mask[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
    region[window] = texture[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0][window]
    labels[iy0:iy1, ix0:ix1][window] = number + 1
    return full, ix0, iy0, ix1, iy1


def _place(
    rng: np.random.Generator, labels: np.ndarray, width: int, height: int
) -> tuple[int, int]:
    """Top-left corner of the least crowded of a few random placements."""
    size = labels.shape[0]
    truncate = rng.random() < 0.3
    best: tuple[int, int] = (0, 0)
    best_overlap = -1
    for _ in range(_PLACEMENT_TRIES):
        corner = []
        for extent in (width, height):
            low = -0.35 * extent if truncate else 0.0
            high = size - (0.65 if truncate else 1.0) * extent
            corner.append(int(rng.uniform(low, high)) if high > low else int(size / 2 - extent / 2))
        x0, y0 = corner
        window = labels[max(y0, 0) : max(y0 + height, 0), max(x0, 0) : max(x0 + width, 0)]
        overlap = int(np.count_nonzero(window))
        if best_overlap < 0 or overlap < best_overlap:
            best, best_overlap = (x0, y0), overlap
    return best


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A random colour, re-drawn a few times to stand out from the local background."""
    best = rng.uniform(0, 255, size=3)
    for _ in range(6):
        if np.linalg.norm(best - background) >= 80:
            break
        candidate = rng.uniform(0, 255, size=3)
        if np.linalg.norm(candidate - background) > np.linalg.norm(best - background):
            best = candidate
    return best.astype(np.float32)


def _texture(
    rng: np.random.Generator, height: int, width: int, colour: np.ndarray, scale: float
) -> np.ndarray:
    """Object fill: solid, stripes, checker, gradient or speckle (float32 HxWx3)."""
    second = np.clip(colour + rng.uniform(-110, 110, size=3), 0, 255).astype(np.float32)
    kind = int(rng.integers(5))
    along = _coords(height, width, rng.uniform(0, 2 * math.pi))
    if kind == 0:
        span = max(float(np.ptp(along)), 1.0)
        shade = 1 + np.float32(rng.uniform(-0.25, 0.25)) * (along - along.min()) / span
        return colour * shade[..., None]
    if kind == 1:
        period = np.float32(rng.uniform(3, 12) * scale)
        stripes = (np.sin(along * (2 * np.pi / period)) > 0)[..., None]
        return np.where(stripes, colour, second)
    if kind == 2:
        period = np.float32(rng.uniform(3, 10) * scale)
        across = _coords(height, width, rng.uniform(0, 2 * math.pi))
        cells = (np.floor(along / period) + np.floor(across / period)) % 2
        return np.where(cells[..., None] > 0, colour, second)
    if kind == 3:
        t = ((along - along.min()) / max(float(np.ptp(along)), 1.0))[..., None]
        return colour + (second - colour) * t
    amount = np.float32(rng.uniform(12, 40))
    speckle = rng.standard_normal((height, width, 1), dtype=np.float32) * amount
    return np.broadcast_to(colour, (height, width, 3)) + speckle


def _outline(
    rng: np.random.Generator,
    texture: np.ndarray,
    mask: np.ndarray,
    colour: np.ndarray,
    scale: float,
) -> None:
    """Paint a darker or lighter rim along the inside of the mask, in place."""
    inner = mask.copy()
    for _ in range(max(1, round(float(rng.uniform(1, 2.5)) * scale))):
        shrunk = inner.copy()
        shrunk[1:] &= inner[:-1]
        shrunk[:-1] &= inner[1:]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        inner = shrunk
    edge = colour * 0.45 if rng.random() < 0.6 else colour * 0.5 + 127
    texture[mask & ~inner] = edge

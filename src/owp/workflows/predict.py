"""``owp predict``: proposals for image files, as per-image JSON or one COCO file, with overlays.

:func:`predict_run` loads a run for :func:`predict_images_to_files`, which runs any model under the
owp contract — a trained run, a torchvision source (:func:`owp.engine.runs.load_source`) or an
exported ONNX file (:class:`owp.export.OnnxProposer`) — over image files, in batches of similar
aspect ratio (the batch is padded to its largest image), and writes for every image
``<name>.png`` (an overlay of the best boxes, coloured by score, with a legend) and either
``<name>.json`` (``--format json``) or, for the whole input, one
``predictions.json`` in the COCO layout (``--format coco``).

Output names are the image stems; images whose stems collide (``a/x.jpg`` and ``b/x.png``) get
distinct names (``x.jpg``, ``x.png``; then ``a-x.jpg``, ...). Nothing is ever written over an
input file: an output folder that holds input images is refused.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from tqdm import tqdm

from owp.data.images import read_image_tensor
from owp.engine.batching import InputShape, inference_batches, input_shape_of, to_device
from owp.engine.inference import DEFAULT_RUNTIME, InferenceRuntime
from owp.engine.precision import autocast
from owp.errors import OwpInputError
from owp.files import write_json
from owp.viz.overlays import save_overlay

FORMATS: tuple[str, ...] = ("json", "coco")
COCO_FILE = "predictions.json"

log = logging.getLogger(__name__)


@dataclass
class PredictionReport:
    """What :func:`predict_images_to_files` wrote: ``overlays`` (PNG paths), ``files`` (JSON paths),
    ``images`` (count), ``boxes`` (written in all), ``seconds`` (model time and I/O)."""

    overlays: list[Path] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    images: int = 0
    boxes: int = 0
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


def output_names(paths: Sequence[Path]) -> list[str]:
    """A distinct output name per input: the stem, else the file name, else ``parent-name``,
    else a numbered name — whichever first tells colliding inputs apart."""
    names: list[str] = []
    taken: set[str] = set()
    stems: dict[str, int] = {}
    for path in paths:
        stems[path.stem.lower()] = stems.get(path.stem.lower(), 0) + 1
    for path in paths:
        candidates = [path.name, f"{path.parent.name}-{path.name}"]
        if stems[path.stem.lower()] == 1:
            candidates.insert(0, path.stem)
        name = next((c for c in candidates if c.lower() not in taken), None)
        counter = 1
        while name is None or name.lower() in taken:
            name = f"{path.stem}-{counter}"
            counter += 1
        taken.add(name.lower())
        names.append(name)
    return names


def check_output_folder(out_dir: Path, paths: Sequence[Path]) -> None:
    """Refuse an output folder that holds input images (outputs could overwrite them, and a
    later run over the folder would take the overlays for inputs)."""
    folder = out_dir.resolve()
    for path in paths:
        if path.resolve().parent == folder:
            raise OwpInputError(
                f"--out holds input images (e.g. {path.name}); write the predictions to "
                "another folder so that no input is overwritten",
                path=out_dir,
            )


def aspect_batches(
    paths: Sequence[Path], batch_size: int, input_shape: InputShape | None = None
) -> list[list[int]]:
    """Indices of ``paths`` in batches of at most ``batch_size`` images that the model pads to
    one input shape (``input_shape``: :func:`owp.engine.batching.input_shape_of`; default one
    image size), sizes read from the file headers, so that batching changes no result."""
    if batch_size <= 1:
        return [[index] for index in range(len(paths))]
    sizes = []
    for index, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                width, height = image.size
            sizes.append((height, width))
        except Exception:  # unreadable: decoding reports it when its batch comes
            sizes.append((-1, -1 - index))  # a batch of its own
    shape = input_shape or (lambda height, width: (height, width))
    return inference_batches(sizes, batch_size, lambda h, w: shape(h, w) if h > 0 else (h, w))


def _device(model: Any) -> torch.device:
    if not model.TORCH:  # an ONNX graph runs on the CPU
        return torch.device("cpu")
    first = next(model.parameters(), None)
    return torch.device("cpu") if first is None else first.device


def _records(output: dict[str, torch.Tensor], class_names: Sequence[str] | None) -> list[dict]:
    boxes = output["boxes"].double()
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
    scores, objectness = output["scores"].tolist(), output["objectness"].tolist()
    records = []
    for index, box in enumerate(xywh):
        record = {
            "bbox": [round(v, 2) for v in box],
            "score": round(scores[index], 5),
            "objectness": round(objectness[index], 5),
        }
        if "labels" in output:
            label = int(output["labels"][index])
            named = class_names is not None and 0 <= label < len(class_names)
            record["label"] = class_names[label] if named else label
            record["class_score"] = round(float(output["class_scores"][index]), 5)
        records.append(record)
    return records


def predict_images_to_files(
    model: Any,
    paths: Sequence[Path],
    out_dir: str | Path,
    *,
    top_k: int | None = None,
    draw: int = 20,
    score_thresh: float | None = None,
    batch_size: int = 1,
    output_format: str = "json",
    class_names: Sequence[str] | None = None,
    category_ids: Sequence[int] | None = None,
    image_ids: Sequence[int] | None = None,
    precision: str = "none",
    progress: bool = False,
) -> PredictionReport:
    """Run ``model`` over image files and write JSON and overlays into ``out_dir``.

    Args:
        model: a model under the owp contract (called with a list of ``[3, H, W]`` images).
        paths: image files.
        out_dir: output folder (created); it must not hold any of the inputs.
        top_k: boxes kept per image (best first; ``None``: all the model returns).
        draw: boxes drawn on each overlay.
        score_thresh: drop boxes scoring at or below this.
        batch_size: images per model call, of one padded input shape (:func:`aspect_batches`:
            the boxes do not depend on it; ONNX files run one by one).
        output_format: ``json`` (``<name>.json`` per image: a list of ``{"bbox": [x, y, w, h],
            "score", "objectness"}`` plus ``"label"``, ``"class_score"`` when the model
            classifies) or ``coco`` (one ``predictions.json``: ``images`` with the input file
            names, paths and sizes, ``annotations`` — one per box, a valid COCO results list —
            and ``categories``).
        class_names: names of the model's labels (0-based), written instead of numbers.
        category_ids: the dataset category id of each label (the model's ``category_ids``;
            default: label + 1).
        image_ids: the dataset image id of each path, written by ``coco`` (default: 1..N).
        precision: autocast ``none`` (fp32), ``bf16`` or ``fp16`` (PyTorch models).
        progress: show a progress bar (images/s).

    Returns:
        A :class:`PredictionReport`.
    """
    if output_format not in FORMATS:
        raise OwpInputError(f"unknown --format {output_format!r}; use one of {', '.join(FORMATS)}")
    if batch_size < 1:
        raise OwpInputError(f"--batch-size must be a positive integer, got {batch_size}")
    if top_k is not None and top_k < 1:
        raise OwpInputError(f"--top-k must be a positive integer, got {top_k}")
    out_dir = Path(out_dir)
    paths = [Path(p) for p in paths]
    check_output_folder(out_dir, paths)
    names = output_names(paths)
    device = _device(model)
    model.eval()
    report = PredictionReport()
    by_index: dict[int, tuple] = {}
    overlays: dict[int, Path] = {}
    files: dict[int, Path] = {}
    begin = time.perf_counter()
    bar = tqdm(total=len(paths), desc="predicting", unit="img", disable=not progress)
    shape = input_shape_of(model)
    with torch.inference_mode(), autocast(device, precision):
        for batch in aspect_batches(paths, batch_size, shape):
            images = [read_image_tensor(paths[index]) for index in batch]
            outputs = model(to_device(images, device))
            for index, image, output in zip(batch, images, outputs, strict=True):
                output = {k: v.detach().cpu() for k, v in output.items()}
                if score_thresh is not None:
                    keep = output["scores"] > score_thresh
                    output = {k: v[keep] for k, v in output.items()}
                if top_k is not None:
                    output = {k: v[:top_k] for k, v in output.items()}
                records = _records(output, class_names)
                report.boxes += len(records)
                name = names[index]
                if output_format == "json":
                    files[index] = write_json(out_dir / f"{name}.json", records)
                else:
                    labels = output["labels"].tolist() if "labels" in output else None
                    by_index[index] = (records, labels, tuple(image.shape[-2:]))
                overlays[index] = save_overlay(
                    out_dir / f"{name}.png", image, output["boxes"], output["scores"], top_k=draw
                )
            bar.update(len(batch))
    bar.close()
    report.overlays = [overlays[index] for index in sorted(overlays)]
    report.files = [files[index] for index in sorted(files)]
    if output_format == "coco":
        report.files.append(
            write_json(
                out_dir / COCO_FILE,
                _coco_document(paths, names, by_index, class_names, category_ids, image_ids, top_k),
                indent=None,
            )
        )
    report.images = len(paths)
    report.seconds = time.perf_counter() - begin
    return report


def _coco_document(
    paths, names, by_index, class_names, category_ids, image_ids, top_k
) -> dict[str, Any]:
    """The COCO layout of the predictions: ``images`` (input order, ``image_ids`` or ids from
    1), one annotation per box (``category_id``: ``category_ids[label]``, by default label + 1;
    1 = "object" for class-agnostic proposals). Its ``annotations`` are a COCO results list."""
    ids = list(category_ids) if category_ids is not None else None
    numbers = list(image_ids) if image_ids is not None else list(range(1, len(paths) + 1))
    images, annotations = [], []
    classifies = any(labels is not None for _, labels, _ in by_index.values())
    seen: set[int] = set()
    for index, path in enumerate(paths):
        records, labels, (height, width) = by_index[index]
        images.append(
            {
                "id": numbers[index],
                "file_name": path.name,
                "path": str(path),
                "output": names[index],
                "height": int(height),
                "width": int(width),
            }
        )
        for position, record in enumerate(records):
            w, h = record["bbox"][2:]
            entry = {
                "id": len(annotations) + 1,
                "image_id": numbers[index],
                "category_id": 1 if labels is None else _category(labels[position], ids),
                "bbox": record["bbox"],
                "area": round(w * h, 2),
                "iscrowd": 0,
                "score": record["score"],
                "objectness": record["objectness"],
            }
            if "class_score" in record:
                entry["class_score"] = record["class_score"]
            seen.add(entry["category_id"])
            annotations.append(entry)
    if not classifies:
        categories = [{"id": 1, "name": "object"}]
    elif class_names:
        categories = [
            {"id": _category(i, ids), "name": str(n)}
            for i, n in enumerate(class_names)
            if _category(i, ids) is not None
        ]
    else:
        categories = [{"id": c, "name": str(c)} for c in sorted(seen)]
    return {
        "info": {
            "description": "owp predict",
            "boxes_per_image": top_k,
            "image_ids": "dataset" if image_ids is not None else "numbered from 1",
        },
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def ids_by_file_name(
    paths: Sequence[Path],
    known: Sequence[Path],
    ids: Sequence[int],
    dataset: str | Path,
    *,
    strict: bool,
) -> list[int] | None:
    """The dataset image id of each of ``paths``, matched by file name against the dataset's
    image files ``known`` (ids ``ids``). A name the dataset lacks, or names it holds twice,
    raise a one-line :class:`OwpInputError` (``strict``) or give ``None``."""
    by_name: dict[str, int] = {}
    repeated = set()
    for path, image_id in zip(known, ids, strict=True):
        if path.name in by_name:
            repeated.add(path.name)
        by_name[path.name] = image_id
    missing = [p.name for p in paths if p.name not in by_name]
    clash = [p.name for p in paths if p.name in repeated]
    if not missing and not clash:
        return [by_name[p.name] for p in paths]
    if not strict:
        return None
    if clash:
        raise OwpInputError(
            f"holds {clash[0]} more than once: image ids cannot be matched by name", path=dataset
        )
    raise OwpInputError(
        f"has no image named {missing[0]} ({len(missing)} of the {len(paths)} inputs are not "
        "in it): predict its own images or name the dataset they belong to",
        path=dataset,
    )


def _category(label: int, ids: list[int] | None) -> int | None:
    if ids is None:
        return label + 1
    return ids[label] if 0 <= label < len(ids) else None


def predict_run(
    run: str | Path,
    inputs: Sequence[str | Path],
    out_dir: Path,
    *,
    output_format: str = "json",
    top_k: int | None = None,
    score_thresh: float | None = None,
    draw: int = 20,
    batch_size: int = 1,
    data: str | Path | None = None,
    part: str = "val",
    images: Path | None = None,
    scoring: str | None = None,
    runtime: InferenceRuntime = DEFAULT_RUNTIME,
    weights: Path | None = None,
    progress: bool = False,
) -> PredictionReport:
    """``owp predict``: load ``run`` (a run folder, checkpoint, model source or ONNX file) and
    :func:`predict_images_to_files` over ``inputs`` (default: the run's val images), with
    dataset image ids from ``data`` or the run's val set (see :func:`_images_and_ids`)."""
    from owp.engine.inference import image_paths, load_for_inference
    from owp.engine.runs import ONNX_SUFFIX, is_source
    from owp.evaluation.proposals import DEFAULT_MAX_DETS

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        raise OwpInputError(
            f"owp predict runs in one process: under torchrun (WORLD_SIZE={world}) every rank "
            "would write the same files; run it without torchrun (owp eval shares a dataset "
            "among ranks)"
        )
    for flag, value in (("--top-k", top_k), ("--draw", draw), ("--batch-size", batch_size)):
        if value is not None and value < 1:
            raise OwpInputError(f"{flag} must be a positive integer, got {value}")
    paths = image_paths(inputs) if inputs else None
    source = is_source(run)
    if paths is None and source:
        raise OwpInputError(
            "name the image files or folders to predict (a model source has no val images)",
            path=run,
        )
    overrides: dict[str, Any] = {"scoring": scoring} if scoring else {}
    if not str(run).lower().endswith(ONNX_SUFFIX):  # an ONNX graph has them built in
        if top_k is not None:
            overrides["post_nms_top_n"] = top_k
        elif output_format == "coco":  # the budget owp eval scores, so that AR@1000 means it
            overrides["post_nms_top_n"] = max(DEFAULT_MAX_DETS)
        if score_thresh is not None:
            overrides["score_thresh"] = score_thresh
    model, saved, precision = load_for_inference(run, runtime, weights=weights, **overrides)
    paths, image_ids = _images_and_ids(run, paths, saved, source, data, part, images)
    names = model.class_names
    if names is None and model.classifies and model.category_ids is None:
        log.warning("labels are written as numbers: the run's classes are unknown")
    return predict_images_to_files(
        model,
        paths,
        out_dir,
        top_k=top_k,
        draw=draw,
        score_thresh=score_thresh,
        batch_size=batch_size,
        output_format=output_format,
        class_names=names,
        category_ids=model.category_ids,
        image_ids=image_ids,
        precision=precision,
        progress=progress,
    )


def _images_and_ids(
    run: str | Path,
    paths: list[Path] | None,
    saved: dict,
    source: bool,
    data: str | Path | None,
    part: str,
    images: Path | None,
) -> tuple[list[Path], list[int] | None]:
    """The images ``owp predict`` runs on and their dataset image ids: ``data``'s (its images
    by default, inputs matched by file name), else the run's own val set's (its images by
    default, or inputs that all carry its file names); ``None`` (numbered from 1) otherwise."""
    from owp.data.locate import dataset_images, run_images

    if data is not None:
        known, ids = dataset_images(data, part, images)
        if paths is None:
            return known, ids
        return paths, ids_by_file_name(paths, known, ids, data, strict=True)
    if source:
        return paths, None
    known, ids = run_images(run, saved.get("data")) if paths is None else _run_val(run, saved)
    if paths is None:
        return known, ids
    return paths, ids_by_file_name(paths, known, ids, run, strict=False)


def _run_val(run: str | Path, saved: dict) -> tuple[list[Path], list[int]]:
    """The run's val images and ids, or none when its data is not found."""
    from owp.data.locate import run_images

    try:
        return run_images(run, saved.get("data"))
    except OwpInputError:
        return [], []

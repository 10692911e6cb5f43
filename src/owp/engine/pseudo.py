"""Self-training: pseudo labels for the unannotated objects of the training images.

A trained proposer is run over the *training* images (:func:`mine_pseudo_labels`); per image,
:func:`select_pseudo_boxes` keeps the proposals that are likely objects nobody annotated:
objectness at least ``min_score``, overlap below ``max_iou`` with every annotated box of the
image (base boxes by IoU, crowd regions by the share of the proposal they cover — COCO's crowd
rule), less than ``max_cover`` of its area inside any annotated box (a part of an annotated
object has a low IoU with it, but is no unannotated object), surviving a class-agnostic NMS at
``nms_iou``, at most ``per_image`` of them, best first.
The result is a COCO instances dict of class-agnostic boxes (:data:`~owp.data.pseudo.
PSEUDO_CATEGORY`, each ``"pseudo": true`` with its ``score``) that training reads through
``data.pseudo_labels``.

On the synthetic set, whose ``objects.json`` lists every rendered object with its
``annotated`` flag, :func:`pseudo_label_quality` measures what no COCO user can: precision and
recall of the pseudo boxes against the objects that are truly unlabelled in training (novel
objects, whose annotations the split drops, and base objects left unannotated), by side and by
size.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.ops import box_iou, nms

from owp.data.coco import CocoDetection, read_json
from owp.data.pseudo import PSEUDO_CATEGORY
from owp.data.splits import ClassSplit
from owp.engine import dist
from owp.engine.inference import predict_dataset
from owp.errors import OwpInputError
from owp.files import write_json

log = logging.getLogger(__name__)

OBJECTS_FILE = "objects.json"
"""The synthetic set's list of every rendered object (beside its ``train.json``)."""
QUALITY_SUFFIX = ".quality.json"
MATCH_IOU = 0.5
SIZE_BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("small", 0.0, 32.0**2),
    ("medium", 32.0**2, 96.0**2),
    ("large", 96.0**2, float("inf")),
)
"""COCO's area ranges (box area here: ``objects.json`` lists boxes, not masks)."""
POOR_LOCALISATION_IOU = 0.1
"""A wrong pseudo box overlapping an object at IoU in [0.1, 0.5) localises it poorly (a part,
a merge of neighbours); below 0.1 it is on background."""


@dataclass(frozen=True)
class PseudoLabelSettings:
    """Which proposals become pseudo boxes (see the module docstring).

    ``min_score``: least objectness kept (0 keeps every proposal: then ``per_image`` alone
    selects). ``per_image``: most boxes kept per image. ``max_iou``: a proposal overlapping an
    annotated box (IoU) or a crowd region (share of the proposal covered) this much or more
    is dropped. ``max_cover``: a proposal whose area lies this much or more inside one
    annotated box (intersection over the proposal's area, the crowd rule's overlap) is
    dropped. ``nms_iou``: IoU of the class-agnostic NMS among the kept proposals.
    """

    min_score: float = 0.5
    per_image: int = 5
    max_iou: float = 0.3
    max_cover: float = 0.5
    nms_iou: float = 0.5

    def __post_init__(self) -> None:
        for name in ("min_score", "max_iou", "max_cover", "nms_iou"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise OwpInputError(f"pseudo labels: {name} must lie in [0, 1], got {value}")
        if self.per_image < 1:
            raise OwpInputError(f"pseudo labels: per_image must be positive, got {self.per_image}")


def select_pseudo_boxes(
    boxes: Tensor,
    scores: Tensor,
    annotated: Tensor,
    crowd: Tensor,
    settings: PseudoLabelSettings = PseudoLabelSettings(),
) -> Tensor:
    """The proposals of one image that become pseudo boxes, best first.

    Args:
        boxes: ``[N, 4]`` proposals, xyxy pixels; ``scores``: ``[N]`` their objectness.
        annotated: ``[A, 4]`` the image's annotated (non-crowd) boxes in training, xyxy.
        crowd: ``[C, 4]`` its crowd regions, xyxy.
        settings: the thresholds.

    Returns:
        int64 ``[K]`` indices into ``boxes``, ``K <= settings.per_image``, by decreasing score.
    """
    keep = scores >= settings.min_score
    if len(annotated):
        keep &= box_iou(boxes, annotated).amax(dim=1) < settings.max_iou
        keep &= covered_share(boxes, annotated).amax(dim=1) < settings.max_cover
    if len(crowd):
        keep &= covered_share(boxes, crowd).amax(dim=1) < settings.max_iou
    candidates = keep.nonzero(as_tuple=True)[0]
    survivors = candidates[nms(boxes[candidates], scores[candidates], settings.nms_iou)]
    return survivors[: settings.per_image]


def covered_share(boxes: Tensor, regions: Tensor) -> Tensor:
    """``[N, R]``: the share of each box's area (``[N, 4]`` xyxy) inside each region
    (``[R, 4]``) — COCO's overlap of a detection with a crowd region (intersection over the
    detection's area, ``pycocotools/mask.py`` ``iou`` with ``iscrowd``)."""
    top_left = torch.maximum(boxes[:, None, :2], regions[None, :, :2])
    bottom_right = torch.minimum(boxes[:, None, 2:], regions[None, :, 2:])
    intersection = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    area = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(dim=1)
    return intersection / area.clamp(min=1e-6)[:, None]


def mine_pseudo_labels(
    model: nn.Module,
    dataset: CocoDetection,
    settings: PseudoLabelSettings = PseudoLabelSettings(),
    *,
    batch_size: int = 8,
    num_workers: int = 2,
    progress: bool = False,
    info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Pseudo labels of every image of ``dataset`` (the training images, read with
    ``training=False`` so that none is skipped) from ``model``'s proposals, ranked by its
    scoring.

    The annotated and crowd boxes of an image are the dataset's: its split's base classes
    (novel annotations are dropped, as in training). Returns a COCO instances dict:
    ``images`` copied from the dataset, one category :data:`~owp.data.pseudo.PSEUDO_CATEGORY`,
    ``annotations`` with ``"pseudo": true`` and ``score`` (in dataset image order, ids from 1),
    and ``info`` (the settings, plus ``info``).

    Under ``torchrun`` every rank mines its share of the images (every world-size-th one,
    from its rank) and the selections are gathered: each rank returns the whole dict, the same
    as one process would.
    """
    shard = _shard(dataset)
    results = predict_dataset(
        model,
        shard,
        batch_size=batch_size,
        num_workers=num_workers,
        progress=progress and dist.is_main_process(),
    )
    proposals: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for result in results:
        proposals[result["image_id"]].append(result)
    chosen_here: dict[int, list[dict[str, Any]]] = {}
    for index, image in enumerate(shard.images):
        found = proposals.get(image["id"], [])
        if found:
            annotated, crowd = shard.annotated_boxes(index)
            chosen_here[image["id"]] = image_pseudo_annotations(
                image["id"], found, annotated, crowd, settings
            )
    chosen: dict[int, list[dict[str, Any]]] = {}
    for part in dist.all_gather_object(chosen_here):
        chosen.update(part)
    annotations = [
        {"id": number, **ann}
        for number, ann in enumerate(
            (ann for image in dataset.images for ann in chosen.get(image["id"], [])), start=1
        )
    ]
    return {
        "info": {
            "description": "owp pseudo labels (class-agnostic boxes on unannotated objects)",
            "scoring": model.postprocess_config.scoring,
            "settings": asdict(settings),
            **(info or {}),
        },
        "images": read_json(dataset.ann_file)["images"],
        "annotations": annotations,
        "categories": [dict(PSEUDO_CATEGORY)],
    }


def _shard(dataset: CocoDetection) -> CocoDetection:
    """This rank's images of ``dataset`` (every world-size-th one from its rank);
    ``dataset`` itself in one process."""
    world = dist.get_world_size()
    if world == 1:
        return dataset
    return dataset.subset(range(dist.get_rank(), len(dataset), world))


def image_pseudo_annotations(
    image_id: int,
    found: list[dict[str, Any]],
    annotated: np.ndarray,
    crowd: np.ndarray,
    settings: PseudoLabelSettings,
) -> list[dict[str, Any]]:
    """The pseudo annotations (without ``id``) of one image from its proposals ``found``
    (COCO results) and its annotated boxes (``[N, 4]`` xywh, ``crowd`` ``[N]`` bool flags)."""
    boxes = _xyxy([p["bbox"] for p in found])
    scores = torch.tensor([p["score"] for p in found], dtype=torch.float64)
    chosen = select_pseudo_boxes(
        boxes,
        scores,
        _xyxy(annotated[~crowd].tolist()),
        _xyxy(annotated[crowd].tolist()),
        settings,
    )
    annotations = []
    for index in chosen.tolist():
        x, y, w, h = found[index]["bbox"]
        annotations.append(
            {
                "image_id": image_id,
                "category_id": PSEUDO_CATEGORY["id"],
                "bbox": [x, y, w, h],
                "area": round(w * h, 2),
                "iscrowd": 0,
                "score": found[index]["score"],
                "pseudo": True,
            }
        )
    return annotations


def pseudo_label_quality(
    pseudo: Mapping[str, Any],
    objects: Sequence[Mapping[str, Any]],
    split: ClassSplit,
    *,
    iou: float = MATCH_IOU,
) -> dict[str, Any]:
    """Precision and recall of pseudo labels against the truly unlabelled objects.

    The targets are the ``objects`` (``objects.json`` records: ``image_id``, ``bbox``
    ``[x, y, w, h]``, ``category_id``, ``annotated``) on the images of ``pseudo`` that training
    does not see labelled: novel objects (the split drops their annotations) and base objects
    with ``annotated: false`` (non-exhaustive labels, and objects hidden below the synthetic
    set's visibility threshold). Each image's pseudo boxes, best score first, take the
    unmatched target of highest IoU, when at least ``iou`` (one to one, COCO's greedy rule).

    Returns a JSON-ready dict: ``precision`` (matched pseudo boxes / pseudo boxes), ``recall``
    (matched targets / targets), ``by_side`` (``novel`` / ``base``: targets, found, recall, and
    ``share_of_pseudo``: the fraction of all pseudo boxes that hit that side), ``by_size``
    (COCO area buckets: precision over the pseudo boxes of that size, recall over the targets
    of that size) and ``false_positives`` (unmatched pseudo boxes: ``duplicate`` of a target
    already taken or a labelled object at IoU >= ``iou``, ``poor_localisation`` at IoU in
    [0.1, ``iou``) with some object, ``background`` below). Ratios are ``None`` where their
    denominator is 0.
    """
    image_ids = {image["id"] for image in pseudo["images"]}
    listed: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for record in objects:
        if record["image_id"] in image_ids:
            listed[record["image_id"]].append(record)
    boxes_of: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for ann in pseudo["annotations"]:
        boxes_of[ann["image_id"]].append(ann)

    pseudo_sizes: list[str] = []
    pseudo_hits: list[str | None] = []  # the side each pseudo box hit, None for a miss
    target_sides: list[str] = []
    target_sizes: list[str] = []
    target_found: list[bool] = []
    misses = {"duplicate": 0, "poor_localisation": 0, "background": 0}
    for image_id in sorted(image_ids):
        everything = listed.get(image_id, [])
        unlabelled = [r for r in everything if _unlabelled(r, split)]
        sides = ["novel" if split.is_novel(r["category_id"]) else "base" for r in unlabelled]
        anns = sorted(boxes_of.get(image_id, []), key=lambda a: -a["score"])
        taken = [False] * len(unlabelled)
        overlap = box_iou(_xyxy([a["bbox"] for a in anns]), _xyxy([r["bbox"] for r in unlabelled]))
        any_object = box_iou(
            _xyxy([a["bbox"] for a in anns]), _xyxy([r["bbox"] for r in everything])
        )
        for row, ann in enumerate(anns):
            pseudo_sizes.append(_size(ann["bbox"]))
            free = overlap[row].clone()
            free[torch.tensor(taken, dtype=torch.bool)] = -1.0
            best = int(free.argmax()) if len(free) else -1
            if best >= 0 and float(free[best]) >= iou:
                taken[best] = True
                pseudo_hits.append(sides[best])
                continue
            pseudo_hits.append(None)
            nearest = float(any_object[row].max()) if len(everything) else 0.0
            kind = (
                "duplicate"
                if nearest >= iou
                else "poor_localisation"
                if nearest >= POOR_LOCALISATION_IOU
                else "background"
            )
            misses[kind] += 1
        target_sides += sides
        target_sizes += [_size(r["bbox"]) for r in unlabelled]
        target_found += taken

    hits = sum(side is not None for side in pseudo_hits)
    by_side = {}
    for side in ("novel", "base"):
        of_side = [found for s, found in zip(target_sides, target_found, strict=True) if s == side]
        by_side[side] = {
            "targets": len(of_side),
            "found": sum(of_side),
            "recall": _ratio(sum(of_side), len(of_side)),
            "share_of_pseudo": _ratio(sum(h == side for h in pseudo_hits), len(pseudo_hits)),
        }
    by_size = {}
    for name, _, _ in SIZE_BUCKETS:
        mine = [h for h, s in zip(pseudo_hits, pseudo_sizes, strict=True) if s == name]
        theirs = [f for f, s in zip(target_found, target_sizes, strict=True) if s == name]
        by_size[name] = {
            "pseudo_boxes": len(mine),
            "precision": _ratio(sum(h is not None for h in mine), len(mine)),
            "targets": len(theirs),
            "recall": _ratio(sum(theirs), len(theirs)),
        }
    return {
        "iou": iou,
        "pseudo_boxes": len(pseudo_hits),
        "targets": len(target_found),
        "precision": _ratio(hits, len(pseudo_hits)),
        "recall": _ratio(sum(target_found), len(target_found)),
        "by_side": by_side,
        "by_size": by_size,
        "false_positives": misses,
    }


def read_objects(path: str | Path) -> list[dict[str, Any]]:
    """The records of an ``objects.json``, checked for the fields :func:`pseudo_label_quality`
    reads."""
    records = read_json(path, "objects file")
    keys = ("image_id", "bbox", "category_id", "annotated")
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and all(k in r for k in keys) for r in records
    ):
        raise OwpInputError(f"not an objects list: every entry needs {', '.join(keys)}", path=path)
    return records


def quality_path(pseudo_file: str | Path) -> Path:
    """Where the quality report of a pseudo-label file goes: ``pseudo.json`` ->
    ``pseudo.quality.json``."""
    path = Path(pseudo_file)
    return path.with_name(path.name.removesuffix(".json") + QUALITY_SUFFIX)


@dataclass
class MinedLabels:
    """What :func:`mine_from_run` wrote: the pseudo-label file, its dict, and its quality
    (``None`` without ``objects.json``) and quality file."""

    path: Path
    coco: dict[str, Any]
    quality: dict[str, Any] | None
    quality_file: Path | None


def mine_from_run(
    run: str | Path,
    ann_file: str | Path,
    images_dir: str | Path,
    split: str | Path,
    out: str | Path,
    settings: PseudoLabelSettings = PseudoLabelSettings(),
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    num_workers: int = 2,
    progress: bool = False,
) -> MinedLabels:
    """Load the proposer of ``run`` (run folder or checkpoint; ranked by the run's
    ``eval.proposal_scoring`` when it names one, else its model's scoring), mine pseudo labels
    on the training set ``ann_file`` / ``images_dir``, write them to ``out`` and, when the
    dataset folder has an ``objects.json``, their quality to :func:`quality_path`.

    ``out`` and its quality file must not be an input (the training annotations, the run's
    checkpoint): that is refused before any work. Under ``torchrun`` every rank calls it: the
    mining is sharded (:func:`mine_pseudo_labels`) and rank 0 writes the files.
    """
    from owp.engine.runs import checkpoint_of, load_with_config

    out = Path(out)
    checkpoint = checkpoint_of(run)
    outputs = (out, quality_path(out))
    for path in outputs:
        for source in (Path(ann_file), checkpoint):
            if path.resolve() == source.resolve():
                raise OwpInputError(
                    "is an input of the pseudo-labelling; write elsewhere", path=out
                )
    objects_file = Path(ann_file).parent / OBJECTS_FILE
    objects = read_objects(objects_file) if objects_file.is_file() else None
    model, saved = load_with_config(checkpoint)
    scoring = (saved.get("eval") or {}).get("proposal_scoring")
    if scoring:
        model.postprocess_config = replace(model.postprocess_config, scoring=scoring)
    model.to(device)
    dataset = CocoDetection(images_dir, ann_file, split, training=False)
    coco = mine_pseudo_labels(
        model,
        dataset,
        settings,
        batch_size=batch_size,
        num_workers=num_workers,
        progress=progress,
        info={
            "checkpoint": str(checkpoint.resolve()),
            "checkpoint_mtime_ns": checkpoint.stat().st_mtime_ns,
            "train": str(Path(ann_file).resolve()),
        },
    )
    writes = dist.is_main_process()
    if writes:
        write_json(out, coco, indent=None)
    quality = quality_file = None
    if objects is not None:
        quality = pseudo_label_quality(coco, objects, dataset.split)
        quality_file = quality_path(out)
        if writes:
            write_json(quality_file, quality)
    dist.barrier()
    return MinedLabels(out, coco, quality, quality_file)


def describe_quality(quality: Mapping[str, Any]) -> list[str]:
    """Human-readable lines of a :func:`pseudo_label_quality` result (percentages)."""

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f} %"

    lines = [
        f"pseudo-label quality at IoU {quality['iou']:g} against the {quality['targets']} "
        f"unlabelled objects: precision {pct(quality['precision'])}, recall "
        f"{pct(quality['recall'])} ({quality['pseudo_boxes']} pseudo boxes)"
    ]
    for side, entry in quality["by_side"].items():
        lines.append(
            f"  {side:>6}: recall {pct(entry['recall'])} of {entry['targets']}, "
            f"{pct(entry['share_of_pseudo'])} of the pseudo boxes"
        )
    for size, entry in quality["by_size"].items():
        lines.append(
            f"  {size:>6}: precision {pct(entry['precision'])} of {entry['pseudo_boxes']}, "
            f"recall {pct(entry['recall'])} of {entry['targets']}"
        )
    wrong = quality["false_positives"]
    lines.append(
        "  wrong boxes: "
        + ", ".join(f"{count} {kind.replace('_', ' ')}" for kind, count in wrong.items())
    )
    return lines


def _unlabelled(record: Mapping[str, Any], split: ClassSplit) -> bool:
    """Whether training sees no label on this object: only annotated base objects have one."""
    return not (split.is_base(record["category_id"]) and record["annotated"])


def _size(bbox: Sequence[float]) -> str:
    area = float(bbox[2]) * float(bbox[3])
    return next(name for name, low, high in SIZE_BUCKETS if low <= area < high)


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _xyxy(boxes: Sequence[Sequence[float]]) -> Tensor:
    """COCO ``[x, y, w, h]`` boxes -> ``[N, 4]`` xyxy float64."""
    tensor = torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4)
    return torch.cat([tensor[:, :2], tensor[:, :2] + tensor[:, 2:]], dim=1)

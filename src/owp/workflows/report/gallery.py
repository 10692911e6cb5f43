"""The report's gallery: val images with the top-k proposals marked, as data for the page.

Greedy matching in score order makes the top-k matches a prefix of the top-``max_k`` matches,
so the page carries each proposal's status and each novel object's matching rank once, and
its script only compares ranks with the slider's k.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.ops import box_iou

from owp.data.coco import image_path
from owp.data.images import read_rgb
from owp.workflows.report.runs import RunEvaluation

GALLERY_SIDE = 640
"""Gallery images are shrunk to this longest side (boxes stay in original pixels)."""
MATCH_IOU = 0.5
STATUSES = ("novel", "base", "none")
"""Proposal statuses in the gallery data (index = the code the page carries)."""


def gallery_marks(
    proposals: np.ndarray, novel: np.ndarray, base: np.ndarray, iou: float = MATCH_IOU
) -> tuple[list[int], list[int | None]]:
    """Statuses of ranked proposals and matching ranks of novel objects in one image.

    Args:
        proposals: ``[P, 4]`` xywh boxes, best first.
        novel: ``[N, 4]`` xywh novel (non-crowd) objects.
        base: ``[B, 4]`` xywh base-class objects.

    Returns:
        Per proposal, an index into :data:`STATUSES`: ``novel`` when, in rank order, it takes the
        still-free novel object it overlaps most at IoU >= ``iou`` (the later one on ties, as
        COCOeval), else ``base`` when it overlaps a base object that much, else ``none``; and per
        novel object the rank of the proposal that took it (``None``: not found).
    """
    to_novel = _iou(proposals, novel)
    on_base = (_iou(proposals, base) >= iou).any(axis=1)
    found: list[int | None] = [None] * len(novel)
    statuses = []
    for rank in range(len(proposals)):
        free = np.array([f is None for f in found], dtype=bool)
        candidates = np.flatnonzero(free & (to_novel[rank] >= iou))
        if candidates.size:
            best = candidates[to_novel[rank, candidates] == to_novel[rank, candidates].max()][-1]
            found[best] = rank
            statuses.append(STATUSES.index("novel"))
        else:
            statuses.append(STATUSES.index("base" if on_base[rank] else "none"))
    return statuses, found


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[len(a), len(b)]`` IoU of xywh boxes."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    xyxy = [torch.from_numpy(np.asarray(x, dtype=np.float64).reshape(-1, 4)) for x in (a, b)]
    xyxy = [torch.cat([x[:, :2], x[:, :2] + x[:, 2:]], dim=1) for x in xyxy]
    return box_iou(*xyxy).numpy()


def gallery_items(
    run: RunEvaluation, count: int, max_k: int, prefix: str
) -> dict[str, dict[str, Any]]:
    """Gallery data of the ``count`` val images with the most novel objects (file order on
    ties), keyed ``<prefix>-<index>``: the image as a JPEG data URI, the top ``max_k``
    proposals ``[x, y, w, h, status]`` and the novel objects ``[x, y, w, h, matching rank or
    -1]``."""
    novel_of: dict[int, list[list[float]]] = {info["id"]: [] for info in run.coco["images"]}
    base_of: dict[int, list[list[float]]] = {info["id"]: [] for info in run.coco["images"]}
    for ann in run.coco["annotations"]:
        if ann.get("iscrowd"):
            continue
        if run.split.is_novel(ann["category_id"]):
            novel_of[ann["image_id"]].append(ann["bbox"])
        elif run.split.is_base(ann["category_id"]):
            base_of[ann["image_id"]].append(ann["bbox"])
    proposals_of: dict[int, list[dict[str, Any]]] = {}
    for proposal in run.proposals:
        proposals_of.setdefault(proposal["image_id"], []).append(proposal)
    chosen = sorted(run.coco["images"], key=lambda info: -len(novel_of[info["id"]]))[:count]
    items = {}
    for index, info in enumerate(chosen):
        ranked = sorted(proposals_of.get(info["id"], []), key=lambda p: -p["score"])[:max_k]
        boxes = np.array([p["bbox"] for p in ranked], dtype=np.float64).reshape(-1, 4)
        novel = np.array(novel_of[info["id"]], dtype=np.float64).reshape(-1, 4)
        statuses, found = gallery_marks(boxes, novel, np.array(base_of[info["id"]]).reshape(-1, 4))
        items[f"{prefix}-{index}"] = {
            "file": str(info.get("file_name", info["id"])),
            "width": info["width"],
            "height": info["height"],
            "src": _jpeg_uri(read_rgb(image_path(run.images_dir, info))),
            "proposals": [[*_rounded(b), s] for b, s in zip(boxes, statuses, strict=True)],
            "novel": [[*_rounded(b), -1 if f is None else f] for b, f in zip(novel, found,
                                                                             strict=True)],
        }  # fmt: skip
    return items


def figure_tag(key: str, item: Mapping[str, Any]) -> str:
    """A gallery image's ``<figure>``: the image, an empty SVG its script draws on, a caption."""
    return (
        f'<figure class="shot" data-key="{key}"><div class="frame">'
        f'<img alt="{html.escape(item["file"])}" src="{item["src"]}">'
        f'<svg viewBox="0 0 {item["width"]} {item["height"]}" preserveAspectRatio="none"></svg>'
        f"</div><figcaption>{html.escape(item['file'])}</figcaption></figure>"
    )


def _rounded(box: np.ndarray) -> list[float]:
    return [round(float(v), 1) for v in box]


def _jpeg_uri(image: np.ndarray) -> str:
    """An RGB array as a JPEG data URI, shrunk to :data:`GALLERY_SIDE` on its longest side."""
    picture = Image.fromarray(image)
    picture.thumbnail((GALLERY_SIDE, GALLERY_SIDE))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")

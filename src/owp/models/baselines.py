"""Non-learned proposal baselines: what "no learning" scores on the open-world protocol.

All follow the model output contract (:class:`owp.models.contract.ProposalModel`): a dict with
``boxes`` (float32 ``[N, 4]`` xyxy pixels) and ``scores`` (float32 ``[N]``, descending),
``objectness`` equal to ``scores``. Sliding windows and random boxes need only the image size and
are written by hand (no library ships these trivial generators); Selective Search (Uijlings et al.,
IJCV 2013) needs the pixels and is OpenCV's contrib implementation (the ``baselines`` extra).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
from functools import cache
from typing import Any

import numpy as np
import torch

from owp.errors import OwpInputError

BASELINES: tuple[str, ...] = ("sliding-window", "random", "selective-search")
PIXEL_BASELINES: tuple[str, ...] = ("selective-search",)
"""Baselines that read the image (the others see only its width and height)."""
SELECTIVE_SEARCH_MODES: tuple[str, ...] = ("fast", "quality")
SELECTIVE_SEARCH_MAX_SIDE = 500
"""Images whose longest side is larger are shrunk to it for Selective Search (boxes are mapped
back): its cost grows with the pixel count, and 500 px is the scale of the PASCAL VOC images it
was designed on."""
INSTALL_HINT = 'pip install "owp[baselines]"'


def sliding_window_proposals(
    width: int,
    height: int,
    num: int = 1000,
    *,
    min_size: float = 16.0,
    scales_per_octave: int = 2,
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0),
    overlap: float = 0.5,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Multi-scale sliding windows, ranked by a scale-interleaved random order.

    Window areas grow geometrically from ``min_size**2`` up to the image area
    (``scales_per_octave`` sizes per doubling of the side) for each aspect ratio (h / w); the
    stride is ``(1 - overlap)`` times the window side. Windows are ranked round-robin across
    sizes (a random order within each size, fixed by ``seed``) so that every budget k covers
    all scales. Scores fall linearly with rank from 1.
    """
    generator = torch.Generator().manual_seed(seed)
    per_size: list[torch.Tensor] = []
    max_side = float(max(width, height))
    octaves = max(math.log2(max_side / min_size), 0.0)
    for step in range(int(octaves * scales_per_octave) + 1):
        side = min_size * 2.0 ** (step / scales_per_octave)
        for ratio in aspect_ratios:
            w = min(side / math.sqrt(ratio), float(width))
            h = min(side * math.sqrt(ratio), float(height))
            windows = _tile(width, height, w, h, overlap)
            per_size.append(windows[torch.randperm(len(windows), generator=generator)])
    boxes = _round_robin(per_size)[:num]
    return _ranked(boxes)


def random_proposals(
    width: int, height: int, num: int = 1000, *, min_size: float = 8.0, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Uniformly placed boxes with log-uniform width and height in ``[min_size, image side]``."""
    generator = torch.Generator().manual_seed(seed)
    low = math.log(min_size)
    sides = torch.rand(num, 2, generator=generator)
    w = torch.exp(low + sides[:, 0] * (math.log(max(width, min_size)) - low)).clamp(max=width)
    h = torch.exp(low + sides[:, 1] * (math.log(max(height, min_size)) - low)).clamp(max=height)
    corner = torch.rand(num, 2, generator=generator)
    x0, y0 = corner[:, 0] * (width - w), corner[:, 1] * (height - h)
    return _ranked(torch.stack([x0, y0, x0 + w, y0 + h], dim=1))


def selective_search_proposals(
    image: np.ndarray,
    num: int = 1000,
    *,
    mode: str = "fast",
    max_side: int = SELECTIVE_SEARCH_MAX_SIDE,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Selective Search boxes of an RGB ``uint8`` image ``[H, W, 3]``, in its own ranking.

    OpenCV's ``createSelectiveSearchSegmentation`` with ``switchToSelectiveSearchFast`` or
    ``...Quality`` (the paper's two settings, OpenCV's defaults: graph-segmentation k from 150 in
    steps of 150, sigma 0.8) on the image shrunk so its longest side is at most ``max_side``.
    Its output order is kept: OpenCV ranks each hierarchy's regions by ``rand() x level`` (the
    paper's pseudo-random ranking, opencv_contrib modules/ximgproc/src/
    selectivesearchsegmentation.cpp, ``hierarchicalGrouping``: "Compute regions' rank"),
    dropping repeated boxes. That ``rand()`` is the C library's: it is seeded with ``seed``
    (glibc takes 0 as 1) before each image, so that the same image gives the same boxes (where
    ctypes finds no C library, as on Windows, it is not seeded). The first ``num`` boxes are
    mapped back to the image's pixels (a rectangle of pixels ``x .. x+w-1`` is the box
    ``[x, x+w]``, scaled by the resize factor of each axis); scores fall linearly with rank.
    """
    if mode not in SELECTIVE_SEARCH_MODES:
        raise OwpInputError(
            f"unknown Selective Search mode {mode!r}; use {' or '.join(SELECTIVE_SEARCH_MODES)}"
        )
    cv2 = require_opencv_contrib()
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    small_w, small_h = max(round(width * scale), 1), max(round(height * scale), 1)
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    if scale < 1.0:
        bgr = cv2.resize(bgr, (small_w, small_h), interpolation=cv2.INTER_AREA)
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(bgr)
    if mode == "fast":
        search.switchToSelectiveSearchFast()
    else:
        search.switchToSelectiveSearchQuality()
    _seed_c_rand(seed)
    rects = np.asarray(search.process(), dtype=np.float64).reshape(-1, 4)[:num]
    factors = np.array([width / small_w, height / small_h] * 2)
    boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1) * factors
    boxes = np.minimum(boxes, [width, height, width, height])
    return _ranked(torch.from_numpy(boxes))


def selective_search_available() -> bool:
    """Whether OpenCV with its contrib module ``ximgproc`` (Selective Search) is installed."""
    try:
        require_opencv_contrib()
    except OwpInputError:
        return False
    return True


def require_opencv_contrib() -> Any:
    """The ``cv2`` module with ``cv2.ximgproc``, else one line saying what to install."""
    try:
        import cv2
    except ImportError:
        raise OwpInputError(
            f"Selective Search needs OpenCV's contrib modules: {INSTALL_HINT}"
        ) from None
    if not hasattr(cv2, "ximgproc"):
        raise OwpInputError(
            f"Selective Search needs OpenCV's contrib modules, and this cv2 has no ximgproc: "
            f"{INSTALL_HINT} (if opencv-python still shadows it: pip install --force-reinstall "
            "--no-deps opencv-contrib-python-headless)"
        )
    return cv2


@cache
def _c_library() -> ctypes.CDLL | None:
    """The C library whose ``rand()`` OpenCV calls (``None`` where ctypes cannot find it)."""
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name else None


def _seed_c_rand(seed: int) -> None:
    library = _c_library()
    if library is not None:
        library.srand(ctypes.c_uint(seed))


def _tile(width: int, height: int, w: float, h: float, overlap: float) -> torch.Tensor:
    """All ``w x h`` windows on a grid with stride ``(1 - overlap) * side``, shape ``[N, 4]``."""
    xs = _starts(width, w, max((1.0 - overlap) * w, 1.0))
    ys = _starts(height, h, max((1.0 - overlap) * h, 1.0))
    y0, x0 = torch.meshgrid(ys, xs, indexing="ij")
    x0, y0 = x0.reshape(-1), y0.reshape(-1)
    return torch.stack([x0, y0, x0 + w, y0 + h], dim=1)


def _starts(extent: int, size: float, stride: float) -> torch.Tensor:
    """Window starts covering ``[0, extent]``, the last one flush with the far edge."""
    count = max(math.ceil((extent - size) / stride), 0) + 1
    return torch.linspace(0.0, max(extent - size, 0.0), count)


def _round_robin(groups: list[torch.Tensor]) -> torch.Tensor:
    """Interleave rows: first of every group, then second of every group, ..."""
    rank = torch.cat([torch.arange(len(g)) * len(groups) + i for i, g in enumerate(groups)])
    order = torch.argsort(rank, stable=True)
    return torch.cat(groups)[order]


def _ranked(boxes: torch.Tensor) -> dict[str, torch.Tensor]:
    boxes = boxes.float()
    scores = 1.0 - torch.arange(len(boxes), dtype=torch.float32) / max(len(boxes), 1)
    return {"boxes": boxes, "scores": scores, "objectness": scores.clone()}

"""Objectness heat maps (the paper's Figure 7): what each objectness branch sees, per FPN level."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import torch
from torch import Tensor
from torch.nn import functional

from owp.models.fcos.model import FCOSOWP
from owp.viz.plots import save_figure

matplotlib.use("Agg")
import matplotlib.pyplot as plt

# Objectness branch -> its head output, in the order the rows of a grid show them.
BRANCH_OUTPUTS: dict[str, str] = {"iou": "bbox_iou", "centerness": "bbox_ctrness"}
FIRST_LEVEL = 3  # FCOS levels are P3..P7


def objectness_maps(model: FCOSOWP, image: Tensor) -> dict[str, list[Tensor]]:
    """Sigmoid of every objectness branch of ``model`` on one image, per pyramid level.

    Args:
        model: an FCOS-OWP model (run in eval mode, then restored to its mode).
        image: ``[3, H, W]`` in 0..1.

    Returns:
        ``{"iou": [...], "centerness": [...]}`` for the branches the model has: one CPU tensor
        ``[H_l, W_l]`` per level (P3 first), the level's grid over the resized image; cells that
        only cover the transform's padding are cut off.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            batch, _ = model.transform([image.to(device)])
            features = list(model.backbone(batch.tensors).values())
            outputs = model.head(features)
    finally:
        model.train(was_training)
    padded_h, padded_w = batch.tensors.shape[-2:]
    resized_h, resized_w = batch.image_sizes[0]
    sizes = [(int(f.shape[-2]), int(f.shape[-1])) for f in features]
    maps: dict[str, list[Tensor]] = {}
    for branch, key in BRANCH_OUTPUTS.items():
        if key not in outputs:
            continue
        levels = outputs[key][0, :, 0].float().sigmoid().cpu().split([h * w for h, w in sizes])
        maps[branch] = [
            level.reshape(h, w)[
                : math.ceil(resized_h * h / padded_h), : math.ceil(resized_w * w / padded_w)
            ].clone()
            for level, (h, w) in zip(levels, sizes, strict=True)
        ]
    return maps


def save_heatmap_grid(
    path: str | Path,
    image: Tensor,
    runs: Sequence[tuple[str, Mapping[str, Sequence[Tensor]]]],
    *,
    alpha: float = 0.55,
) -> Path:
    """Draw maps of :func:`objectness_maps` over ``image`` ``[3, H, W]`` (0..1) and save a PNG.

    One row per run and branch (``runs``: ``(name, maps)`` pairs), one column per level; each
    ``[H_l, W_l]`` map is upsampled (bilinear) to the image size and overlaid in colour.
    """
    rows = [
        (f"{name}\n{branch}", maps[branch])
        for name, maps in runs
        for branch in BRANCH_OUTPUTS
        if branch in maps
    ]
    if not rows:
        raise ValueError("no objectness maps to draw")
    height, width = image.shape[-2:]
    columns = max(len(levels) for _, levels in rows)
    cell = 2.2
    fig, axes = plt.subplots(
        len(rows),
        columns,
        figsize=(cell * columns + 1.0, cell * len(rows) * height / width + 0.6),
        squeeze=False,
        layout="constrained",
    )
    picture = image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    shown = None
    for row, (label, levels) in enumerate(rows):
        for column, ax in enumerate(axes[row]):
            ax.set_xticks([])
            ax.set_yticks([])
            if column >= len(levels):
                ax.set_visible(False)
                continue
            level = levels[column].float()[None, None]
            upsampled = functional.interpolate(
                level, size=(height, width), mode="bilinear", align_corners=False
            )[0, 0]
            ax.imshow(picture)
            shown = ax.imshow(upsampled.numpy(), cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0)
            if row == 0:
                ax.set_title(f"P{FIRST_LEVEL + column}")
            if column == 0:
                ax.set_ylabel(label, fontsize="small")
    fig.colorbar(shown, ax=axes, shrink=0.8, label="sigmoid(branch logit)")
    return save_figure(fig, path)

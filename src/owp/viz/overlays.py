"""Proposal overlays: the top-k boxes drawn on the image, brighter for higher objectness."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torchvision.utils import draw_bounding_boxes


def overlay(
    image: Tensor,
    boxes: Tensor,
    scores: Tensor,
    *,
    top_k: int = 20,
    labels: list[str] | None = None,
) -> Image.Image:
    """Draw the ``top_k`` highest-scored boxes on ``image``.

    Args:
        image: ``[3, H, W]`` float in 0..1 (or uint8).
        boxes: ``[N, 4]`` xyxy pixels; ``scores``: ``[N]``.
        top_k: how many boxes to draw.
        labels: optional text per box (default: the score with two decimals).

    Returns:
        An RGB PIL image. Colours run from yellow (best) to blue (k-th).
    """
    pixels = image if image.dtype == torch.uint8 else (image.clamp(0, 1) * 255).to(torch.uint8)
    order = scores.argsort(descending=True)[:top_k]
    chosen, chosen_scores = boxes[order].float().cpu(), scores[order].float().cpu()
    texts = [labels[i] for i in order.tolist()] if labels else [f"{s:.2f}" for s in chosen_scores]
    count = max(len(order), 1)
    colours = [_ramp(1.0 - rank / count) for rank in range(len(order))]
    drawn = draw_bounding_boxes(pixels.cpu(), chosen, labels=texts, colors=colours, width=2)
    return Image.fromarray(drawn.permute(1, 2, 0).numpy())


def save_overlay(path: str | Path, image: Tensor, boxes: Tensor, scores: Tensor, **kwargs) -> Path:
    """:func:`overlay` written as a PNG to ``path`` (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    overlay(image, boxes, scores, **kwargs).save(path)
    return path


def _ramp(value: float) -> tuple[int, int, int]:
    """Blue (0) to yellow (1)."""
    return (int(255 * value), int(200 * value + 55), int(255 * (1 - value)))

"""Proposal overlays: the top-k boxes drawn on the image, coloured by score, with a legend."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torchvision.utils import draw_bounding_boxes

LEGEND_HEIGHT = 28
"""Pixels added below the image for the colour legend."""


def overlay(
    image: Tensor,
    boxes: Tensor,
    scores: Tensor,
    *,
    top_k: int = 20,
    labels: list[str] | None = None,
    legend: bool = True,
) -> Image.Image:
    """Draw the ``top_k`` highest-scored boxes on ``image``, coloured by their score.

    Args:
        image: ``[3, H, W]`` float in 0..1 (or uint8).
        boxes: ``[N, 4]`` xyxy pixels; ``scores``: ``[N]``.
        top_k: how many boxes to draw (the best ones; drawn worst first, so that the best lie
            on top).
        labels: optional text per box (default: the score with two decimals).
        legend: add a strip below the image: the colour scale from the lowest to the highest
            drawn score, and how many of the ``N`` boxes are drawn.

    Returns:
        An RGB PIL image. Colours run from blue (the lowest drawn score) to yellow (the highest).
    """
    pixels = image if image.dtype == torch.uint8 else (image.clamp(0, 1) * 255).to(torch.uint8)
    order = scores.argsort(descending=True)[:top_k].flip(0)
    chosen, chosen_scores = boxes[order].float().cpu(), scores[order].float().cpu()
    texts = [labels[i] for i in order.tolist()] if labels else [f"{s:.2f}" for s in chosen_scores]
    low, high = _range(chosen_scores)
    colours = [_ramp(_position(float(s), low, high)) for s in chosen_scores]
    drawn = pixels.cpu()
    if len(chosen):
        drawn = draw_bounding_boxes(drawn, chosen, labels=texts, colors=colours, width=2)
    picture = Image.fromarray(drawn.permute(1, 2, 0).numpy())
    if not legend:
        return picture
    return _with_legend(picture, low, high, len(order), len(scores))


def save_overlay(path: str | Path, image: Tensor, boxes: Tensor, scores: Tensor, **kwargs) -> Path:
    """:func:`overlay` written as a PNG to ``path`` (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    overlay(image, boxes, scores, **kwargs).save(path)
    return path


def _range(scores: Tensor) -> tuple[float, float]:
    if not len(scores):
        return 0.0, 1.0
    return float(scores.min()), float(scores.max())


def _position(value: float, low: float, high: float) -> float:
    """Where ``value`` lies between ``low`` (0) and ``high`` (1); 1 when they are equal."""
    return 1.0 if high - low < 1e-12 else min(max((value - low) / (high - low), 0.0), 1.0)


def _ramp(value: float) -> tuple[int, int, int]:
    """Blue (0) to yellow (1)."""
    return (int(255 * value), int(200 * value + 55), int(255 * (1 - value)))


def _with_legend(picture: Image.Image, low: float, high: float, drawn: int, total: int):
    """``picture`` with a legend strip below: a colour bar from ``low`` to ``high``."""
    width, height = picture.size
    canvas = Image.new("RGB", (width, height + LEGEND_HEIGHT), (255, 255, 255))
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    left_text, right_text = f"score {low:.2f}", f"{high:.2f}"
    caption = f"top {drawn} of {total}"
    left_width = draw.textlength(left_text, font=font)
    right_width = draw.textlength(right_text, font=font)
    caption_width = draw.textlength(caption, font=font)
    bar_left = int(left_width) + 8
    bar_right = width - int(right_width + caption_width) - 20
    top = height + 6
    draw.text((2, top + 2), left_text, fill=(0, 0, 0), font=font)
    if bar_right > bar_left:
        for x in range(bar_left, bar_right + 1):
            colour = _ramp((x - bar_left) / max(bar_right - bar_left, 1))
            draw.line([(x, top), (x, top + 14)], fill=colour)
    after = max(bar_right, bar_left) + 4
    draw.text((after, top + 2), right_text, fill=(0, 0, 0), font=font)
    draw.text((after + right_width + 10, top + 2), caption, fill=(80, 80, 80), font=font)
    return canvas


HIT_COLOUR, MISS_COLOUR, TRUTH_COLOUR = (40, 220, 60), (255, 150, 40), (255, 255, 255)


def hit_overlay(
    image: Tensor, boxes: Tensor, hits: Tensor, ground_truth: Tensor, *, legend: str = ""
) -> Image.Image:
    """Proposals marked by whether they find an object: ``boxes`` ``[K, 4]`` xyxy drawn green
    where ``hits`` ``[K]`` (bool) is set, orange elsewhere, over the ``ground_truth``
    ``[M, 4]`` boxes in thin white; ``legend`` is written in a strip below."""
    pixels = image if image.dtype == torch.uint8 else (image.clamp(0, 1) * 255).to(torch.uint8)
    drawn = pixels.cpu()
    if len(ground_truth):
        drawn = draw_bounding_boxes(drawn, ground_truth.float().cpu(), colors=TRUTH_COLOUR, width=1)
    order = hits.to(torch.int64).argsort(stable=True)  # hits drawn last, on top
    if len(boxes):
        colours = [HIT_COLOUR if bool(hits[i]) else MISS_COLOUR for i in order.tolist()]
        drawn = draw_bounding_boxes(drawn, boxes[order].float().cpu(), colors=colours, width=2)
    picture = Image.fromarray(drawn.permute(1, 2, 0).numpy())
    width, height = picture.size
    canvas = Image.new("RGB", (width, height + LEGEND_HEIGHT), (255, 255, 255))
    canvas.paste(picture, (0, 0))
    ImageDraw.Draw(canvas).text((4, height + 8), legend, fill=(0, 0, 0))
    return canvas

"""Proposal overlays: the top-k boxes drawn on the image, coloured by score, with a legend; and
the ground truth beside the top proposals, novel objects found and missed marked (the demo's)."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torchvision.ops import box_iou
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


PANEL_SIDE = 640
"""The least pixels of a panel's longer side in :func:`hits_side_by_side`."""
NOVEL_COLOUR, BASE_COLOUR = (255, 60, 200), (60, 140, 255)
HIT_COLOUR, MISS_COLOUR, OTHER_COLOUR = (40, 220, 60), (255, 150, 40), (200, 200, 200)


def match_novel(boxes: Tensor, truth: Tensor, iou: float = 0.5) -> tuple[Tensor, Tensor]:
    """Which proposals find a novel object and which objects are found.

    Args:
        boxes: ``[K, 4]`` proposals, xyxy pixels; ``truth``: ``[M, 4]`` novel objects, xyxy.
        iou: the least IoU of a hit.

    Returns:
        ``(hits [K] bool, found [M] bool)``: a proposal hits when its IoU with some object is at
        least ``iou``; an object is found when some proposal hits it.
    """
    if not len(boxes) or not len(truth):
        return torch.zeros(len(boxes), dtype=torch.bool), torch.zeros(len(truth), dtype=torch.bool)
    close = box_iou(boxes.float(), truth.float()) >= iou
    return close.any(dim=1), close.any(dim=0)


def hits_side_by_side(
    image: Tensor,
    novel: Tensor,
    base: Tensor,
    boxes: Tensor,
    *,
    iou: float = 0.5,
    panel_side: int = PANEL_SIDE,
) -> Image.Image:
    """The ground truth and the top proposals side by side, with a caption below.

    Left: the image with the ``novel`` ``[M, 4]`` (magenta) and ``base`` ``[B, 4]`` (blue)
    ground-truth boxes. Right: the proposals ``boxes`` ``[K, 4]`` (xyxy pixels, all drawn), green
    where they find a novel object (IoU >= ``iou``, :func:`match_novel`), light grey elsewhere,
    and the novel objects no proposal finds as dashed orange boxes. Each panel is scaled up so
    that its longer side has at least ``panel_side`` pixels. ``image`` is ``[3, H, W]`` float in
    0..1 or uint8. Returns an RGB PIL image ``2 * W' + gap`` wide.
    """
    pixels = image if image.dtype == torch.uint8 else (image.clamp(0, 1) * 255).to(torch.uint8)
    picture = Image.fromarray(pixels.cpu().permute(1, 2, 0).numpy())
    scale = max(1.0, panel_side / max(picture.size))
    size = (round(picture.width * scale), round(picture.height * scale))
    picture = picture.resize(size, Image.Resampling.BILINEAR)
    hits, found = match_novel(boxes, novel, iou)
    left, right = picture.copy(), picture.copy()
    draw = ImageDraw.Draw(left)
    for box in base.tolist():
        draw.rectangle(_scaled(box, scale), outline=BASE_COLOUR, width=3)
    for box in novel.tolist():
        draw.rectangle(_scaled(box, scale), outline=NOVEL_COLOUR, width=3)
    draw = ImageDraw.Draw(right)
    order = hits.to(torch.int64).argsort(stable=True).tolist()  # hits drawn last, on top
    for index in order:
        colour, width = (HIT_COLOUR, 3) if bool(hits[index]) else (OTHER_COLOUR, 2)
        draw.rectangle(_scaled(boxes[index].tolist(), scale), outline=colour, width=width)
    for box, seen in zip(novel.tolist(), found.tolist(), strict=True):
        if not seen:
            _dashed_rectangle(draw, _scaled(box, scale), MISS_COLOUR, width=3)
    gap, strip = 8, 2 * LEGEND_HEIGHT
    canvas = Image.new("RGB", (2 * size[0] + gap, size[1] + strip), (255, 255, 255))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (size[0] + gap, 0))
    draw = ImageDraw.Draw(canvas)
    font = _font(16)
    caption = (
        f"left: ground truth; right: {len(boxes)} proposals: {int(found.sum())} of "
        f"{len(novel)} novel objects found at IoU >= {iou:g}"
    )
    draw.text((4, size[1] + 6), caption, fill=(0, 0, 0), font=font)
    keys = (
        ("novel truth", NOVEL_COLOUR),
        ("base truth", BASE_COLOUR),
        ("proposal finding a novel object", HIT_COLOUR),
        ("other proposal", OTHER_COLOUR),
        ("novel object missed (dashed)", MISS_COLOUR),
    )
    x, y = 4, size[1] + 6 + LEGEND_HEIGHT
    for text, colour in keys:
        draw.rectangle([x, y + 2, x + 12, y + 14], outline=colour, width=3)
        draw.text((x + 18, y), text, fill=(0, 0, 0), font=font)
        x += 18 + int(draw.textlength(text, font=font)) + 16
    return canvas


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's default font at ``size`` px; its fixed small bitmap font before Pillow 10.1."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def _scaled(box: list[float], scale: float) -> list[float]:
    """An xyxy box in the scaled panel's pixels."""
    return [value * scale for value in box]


def _dashed_rectangle(
    draw: ImageDraw.ImageDraw, box: list[float], colour: tuple[int, int, int], width: int
) -> None:
    """An xyxy rectangle outline of dashes 8 pixels long with gaps of 6."""
    x0, y0, x1, y1 = box
    for start, end in (
        ((x0, y0), (x1, y0)),
        ((x1, y0), (x1, y1)),
        ((x1, y1), (x0, y1)),
        ((x0, y1), (x0, y0)),
    ):
        length = max(abs(end[0] - start[0]), abs(end[1] - start[1]))
        steps = max(1, int(length // 14) + 1)
        for step in range(steps):
            a, b = step * 14 / max(length, 1e-9), min(step * 14 + 8, length) / max(length, 1e-9)
            point_a = (start[0] + (end[0] - start[0]) * a, start[1] + (end[1] - start[1]) * a)
            point_b = (start[0] + (end[0] - start[0]) * b, start[1] + (end[1] - start[1]) * b)
            draw.line([point_a, point_b], fill=colour, width=width)

"""The demo's overlay: ground truth beside the top proposals, novel hits and misses marked."""

from __future__ import annotations

import torch

from owp.viz.overlays import (
    HIT_COLOUR,
    LEGEND_HEIGHT,
    MISS_COLOUR,
    NOVEL_COLOUR,
    hits_side_by_side,
    match_novel,
)

NOVEL = torch.tensor([[10.0, 10.0, 40.0, 40.0], [60.0, 60.0, 90.0, 90.0]])
BASE = torch.tensor([[50.0, 5.0, 70.0, 25.0]])
PROPOSALS = torch.tensor(
    [
        [11.0, 11.0, 41.0, 41.0],  # IoU 0.88 with the first novel object: a hit
        [60.0, 60.0, 75.0, 75.0],  # IoU 0.25 with the second: not a hit
        [0.0, 0.0, 95.0, 95.0],  # covers both, IoU < 0.5 with each
    ]
)


def test_hits_and_found_objects_by_iou() -> None:
    hits, found = match_novel(PROPOSALS, NOVEL, 0.5)
    assert hits.tolist() == [True, False, False]
    assert found.tolist() == [True, False]
    hits, found = match_novel(PROPOSALS, NOVEL, 0.2)
    assert hits.tolist() == [True, True, False] and found.tolist() == [True, True]
    hits, found = match_novel(torch.zeros(0, 4), NOVEL)
    assert hits.shape == (0,) and found.tolist() == [False, False]


def test_panels_are_large_and_hits_and_misses_drawn_as_matched() -> None:
    image = torch.zeros(3, 100, 100)  # black, so every coloured pixel is a drawn box
    picture = hits_side_by_side(image, NOVEL, BASE, PROPOSALS, iou=0.5)
    scale, gap = 6.4, 8  # 100 px scaled to the 640-px panel side
    assert picture.size == (2 * 640 + gap, 640 + 2 * LEGEND_HEIGHT)
    pixels = picture.load()

    def right(x: float, y: float) -> tuple[int, int, int]:
        return pixels[round(640 + gap + x * scale), round(y * scale)]

    # Left panel: the novel truth in its colour.
    assert pixels[round(25 * scale), round(10 * scale)] == NOVEL_COLOUR
    # Right panel: the hit proposal green; the missed second object dashed orange (a dash
    # starts at each corner), the found first object not marked as missed.
    assert right(26, 11) == HIT_COLOUR
    assert right(60, 61) == MISS_COLOUR
    assert right(25, 10) != MISS_COLOUR
    # A larger image is not scaled: the panel keeps its pixels.
    assert hits_side_by_side(torch.zeros(3, 700, 800), NOVEL, BASE, PROPOSALS).size == (
        2 * 800 + gap,
        700 + 2 * LEGEND_HEIGHT,
    )

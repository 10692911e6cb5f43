"""Non-learned proposal baselines: geometry, ranking and determinism."""

import pytest
import torch

from owp.models.baselines import random_proposals, sliding_window_proposals


@pytest.mark.parametrize("generate", [sliding_window_proposals, random_proposals])
def test_boxes_lie_inside_the_image_with_descending_scores(generate):
    out = generate(320, 200, 500)
    boxes, scores = out["boxes"], out["scores"]
    assert boxes.shape == (500, 4) and boxes.dtype == torch.float32
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= 320 + 1e-4).all() and (boxes[:, 3] <= 200 + 1e-4).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert (scores[1:] < scores[:-1]).all()
    assert torch.equal(out["objectness"], scores)


@pytest.mark.parametrize("generate", [sliding_window_proposals, random_proposals])
def test_same_seed_same_boxes(generate):
    assert torch.equal(
        generate(256, 256, 100, seed=3)["boxes"], generate(256, 256, 100, seed=3)["boxes"]
    )
    assert not torch.equal(
        generate(256, 256, 100, seed=3)["boxes"], generate(256, 256, 100, seed=4)["boxes"]
    )


def test_sliding_window_top_k_spans_every_scale():
    out = sliding_window_proposals(
        256, 256, 2000, min_size=16.0, scales_per_octave=1, aspect_ratios=(1.0,)
    )
    sides = (out["boxes"][:, 2] - out["boxes"][:, 0]).round()
    # Square sides 16, 32, 64, 128, 256: the first five proposals are one of each.
    assert sorted(sides[:5].tolist()) == [16.0, 32.0, 64.0, 128.0, 256.0]
    # Windows tile with half overlap: 16 px windows at stride 8 cover 31 x 31 positions.
    assert (sides == 16.0).sum() == 31 * 31

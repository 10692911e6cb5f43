"""Study figures and objectness heat maps: shapes, and PNGs that open."""

import math

import pytest
import torch
from PIL import Image

from owp.models.registry import create_model
from owp.viz.heatmaps import objectness_maps, save_heatmap_grid
from owp.viz.plots import plot_recall_vs_iou, plot_recall_vs_k, plot_score_histograms


def opened_size(path):
    with Image.open(path) as picture:
        assert picture.format == "PNG"
        return picture.size


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return create_model("fcos_owp_tiny", min_size=96, max_size=96, objectness=["centerness", "iou"])


def test_recall_plots_skip_missing_values(tmp_path):
    curves = {"a": {10: 0.1, 100: 0.3, 1000: None}, "b": {10: 0.2, 100: 0.4}}
    width, height = opened_size(plot_recall_vs_k(tmp_path / "k.png", curves))
    assert width > 400 and height > 250
    thresholds = [0.5, 0.75, 0.95]
    by_iou = {"a": [0.6, 0.3, 0.0], "b": [math.nan] * 3}
    path = plot_recall_vs_iou(tmp_path / "sub" / "iou.png", thresholds, by_iou, k=100)
    assert path == tmp_path / "sub" / "iou.png" and opened_size(path)[0] > 400


def test_score_histograms_one_panel_per_run(tmp_path):
    panels = [
        ("a (iou)", [0.8, 0.9, 0.7], [0.1, 0.2, 0.3, 0.2]),
        ("b (centerness)", [], [0.5, 0.6]),
        ("c", [0.4], []),
        ("d", [], []),
    ]
    width, height = opened_size(plot_score_histograms(tmp_path / "h.png", panels))
    assert width > 4 * 400 and height > 250  # one row of four


def test_objectness_maps_per_level(tiny_model):
    tiny_model.train()
    maps = objectness_maps(tiny_model, torch.rand(3, 96, 96))
    assert set(maps) == {"iou", "centerness"} and tiny_model.training
    for levels in maps.values():
        assert [tuple(level.shape) for level in levels] == [
            (12, 12),
            (6, 6),
            (3, 3),
            (2, 2),
            (1, 1),
        ]
        assert all(((level > 0) & (level < 1)).all() for level in levels)
    # 80 x 96 is padded to 96 x 96: cells covering only the padding rows are cut off.
    wide = objectness_maps(tiny_model, torch.rand(3, 80, 96))["iou"]
    assert [tuple(level.shape) for level in wide] == [(10, 12), (5, 6), (3, 3), (2, 2), (1, 1)]


def test_objectness_maps_of_a_one_branch_model():
    model = create_model("fcos_owp_tiny", min_size=64, max_size=64, objectness=["iou"])
    maps = objectness_maps(model, torch.rand(3, 64, 64))
    assert list(maps) == ["iou"] and [tuple(m.shape) for m in maps["iou"]][0] == (8, 8)


def test_heatmap_grid_is_runs_by_branches_by_levels(tiny_model, tmp_path):
    image = torch.rand(3, 96, 96)
    maps = objectness_maps(tiny_model, image)
    runs = [("both", maps), ("iou only", {"iou": maps["iou"]})]
    width, height = opened_size(save_heatmap_grid(tmp_path / "maps.png", image, runs))
    assert width > 5 * 150 and height > 3 * 150  # 3 rows (2 + 1 branches) x 5 levels
    with pytest.raises(ValueError, match="no objectness maps"):
        save_heatmap_grid(tmp_path / "none.png", image, [("x", {})])

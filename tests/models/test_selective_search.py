"""Selective Search (OpenCV contrib): valid boxes, OpenCV's own ranking, reproducible, resized
images mapped back, and the missing-package error."""

import ctypes
import ctypes.util
import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import box_iou

from owp.cli import main
from owp.engine.inference import baseline_proposer, propose_for_images
from owp.errors import OwpInputError
from owp.models import baselines
from owp.models.baselines import (
    require_opencv_contrib,
    selective_search_available,
    selective_search_proposals,
)
from owp.parallel import MIN_ITEMS_PER_WORKER

needs_contrib = pytest.mark.skipif(
    not selective_search_available(), reason="OpenCV's contrib module cv2.ximgproc is missing"
)


def _one_rectangle(width: int, height: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """A dull noisy background with one bright rectangle at ``box`` (x0, y0, x1, y1)."""
    rng = np.random.default_rng(0)
    image = rng.integers(60, 90, size=(height, width, 3), dtype=np.uint8)
    x0, y0, x1, y1 = box
    image[y0:y1, x0:x1] = (250, 240, 20)
    return image


def _scene(seed: int = 1, width: int = 160, height: int = 120) -> np.ndarray:
    """A few coloured rectangles on a noisy background."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
    for _ in range(5):
        x0, y0 = rng.integers(0, width - 30), rng.integers(0, height - 30)
        w, h = rng.integers(10, 30, size=2)
        image[y0 : y0 + h, x0 : x0 + w] = rng.integers(80, 255, size=3)
    return image


@needs_contrib
def test_boxes_are_valid_xyxy_inside_the_image_and_ranked():
    image = _scene(width=200, height=150)
    output = selective_search_proposals(image, num=50)
    boxes, scores = output["boxes"], output["scores"]
    assert boxes.dtype == torch.float32 and boxes.shape == (len(scores), 4) and len(boxes) == 50
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 200).all() and (boxes[:, 3] <= 150).all()
    assert (scores[1:] < scores[:-1]).all() and torch.equal(output["objectness"], scores)


@needs_contrib
def test_the_same_image_gives_the_same_boxes_even_after_other_rand_calls():
    image = _scene()
    first = selective_search_proposals(image)
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    for _ in range(17):
        libc.rand()  # moves the C library's generator OpenCV ranks with
    second = selective_search_proposals(image)
    assert torch.equal(first["boxes"], second["boxes"])
    other_seed = selective_search_proposals(image, seed=7)  # (glibc takes seed 0 as 1)
    assert not torch.equal(first["boxes"], other_seed["boxes"])


@needs_contrib
@pytest.mark.parametrize("mode", ["fast", "quality"])
def test_opencvs_own_order_is_kept(mode):
    cv2 = require_opencv_contrib()
    image = _scene(seed=2, width=120, height=90)  # under 500 px: no resize
    ours = selective_search_proposals(image, num=10_000, mode=mode, seed=3)["boxes"]
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(np.ascontiguousarray(image[:, :, ::-1]))
    if mode == "fast":
        search.switchToSelectiveSearchFast()
    else:
        search.switchToSelectiveSearchQuality()
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.srand(3)
    rects = torch.from_numpy(search.process().astype(np.float32))
    expected = torch.cat([rects[:, :2], rects[:, :2] + rects[:, 2:]], dim=1)
    assert torch.equal(ours, expected)


@needs_contrib
def test_a_large_image_is_shrunk_and_its_boxes_mapped_back():
    rectangle = (400, 300, 1000, 700)
    image = _one_rectangle(1500, 1000, rectangle)  # shrunk by 3 to 500 x 333
    boxes = selective_search_proposals(image)["boxes"]
    best = box_iou(boxes, torch.tensor([rectangle], dtype=torch.float32)).max()
    assert best > 0.7
    assert boxes[:, 2].max() > 500 and boxes[:, 3].max() > 333  # in the original's pixels
    assert boxes[:, 2].max() <= 1500 and boxes[:, 3].max() <= 1000


@needs_contrib
def test_the_resize_factor_of_each_axis_maps_back(monkeypatch):
    """A hand check of the mapping: a 1000 x 333 image becomes 500 x 166 (x by 2, y by
    333/166), and the rectangle of pixels x 10..29, y 5..14 becomes [20, 10.03, 60, 30.09]."""
    cv2 = require_opencv_contrib()

    class FakeSearch:
        def setBaseImage(self, image):
            assert image.shape == (166, 500, 3)

        def switchToSelectiveSearchFast(self):
            pass

        def process(self):
            return np.array([[10, 5, 20, 10]], dtype=np.int32)

    class FakeSegmentation:
        createSelectiveSearchSegmentation = FakeSearch

    fake = type(sys)("cv2")
    fake.ximgproc = type("ximgproc", (), {"segmentation": FakeSegmentation})
    fake.resize, fake.INTER_AREA = cv2.resize, cv2.INTER_AREA
    monkeypatch.setattr(baselines, "require_opencv_contrib", lambda: fake)
    boxes = selective_search_proposals(np.zeros((333, 1000, 3), np.uint8))["boxes"]
    expected = torch.tensor([[20.0, 5 * 333 / 166, 60.0, 15 * 333 / 166]])
    torch.testing.assert_close(boxes, expected)


@needs_contrib
def test_an_unknown_mode_is_refused():
    with pytest.raises(OwpInputError, match="unknown Selective Search mode 'slow'"):
        selective_search_proposals(_scene(), mode="slow")


def test_without_contrib_one_line_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 fails
    with pytest.raises(OwpInputError, match=r'pip install "owp\[baselines\]"') as info:
        require_opencv_contrib()
    assert "\n" not in str(info.value)
    monkeypatch.setitem(sys.modules, "cv2", type(sys)("cv2"))  # a cv2 without ximgproc
    with pytest.raises(OwpInputError, match="this cv2 has no ximgproc"):
        require_opencv_contrib()
    assert not baselines.selective_search_available()


@needs_contrib
def test_cli_writes_selective_search_proposals(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    entries = []
    for index in range(2):
        Image.fromarray(_scene(seed=index)).save(images / f"{index}.png")
        entries.append({"id": index + 1, "file_name": f"{index}.png", "width": 160, "height": 120})
    gt = {"images": entries, "annotations": [], "categories": [{"id": 1, "name": "thing"}]}
    ann_file = tmp_path / "gt.json"
    ann_file.write_text(json.dumps(gt))
    out = tmp_path / "ss.json"
    code = main(
        ["propose-baseline", "--data", str(ann_file), "--images", str(images),
         "--method", "selective-search", "--num", "20", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    results = json.loads(out.read_text())
    assert [r["image_id"] for r in results] == [1] * 20 + [2] * 20
    direct = selective_search_proposals(_scene(seed=1), num=20)["boxes"][0].tolist()
    first = results[20]["bbox"]
    assert first == pytest.approx([direct[0], direct[1], direct[2] - direct[0],
                                   direct[3] - direct[1]])  # fmt: skip


@needs_contrib
def test_worker_processes_give_the_same_proposals(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    entries = []
    for index in range(2 * MIN_ITEMS_PER_WORKER):
        Image.fromarray(_scene(seed=index, width=64, height=48)).save(images / f"{index}.png")
        entries.append({"id": index + 1, "file_name": f"{index}.png", "width": 64, "height": 48})
    proposer = baseline_proposer("selective-search", 20)
    serial = propose_for_images(entries, proposer, images_dir=images, workers=1)
    pooled = propose_for_images(entries, proposer, images_dir=images, workers=2)
    assert {r["image_id"] for r in serial} == set(range(1, 2 * MIN_ITEMS_PER_WORKER + 1))
    assert pooled == serial


def test_cli_without_contrib_fails_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "cv2", None)
    code = main(
        ["propose-baseline", "--data", str(tmp_path), "--method", "selective-search",
         "--out", str(tmp_path / "x.json")]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install "owp[baselines]"' in err

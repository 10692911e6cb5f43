"""Tests of the training-time (image, target) augmentation."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from owp.data.transforms import Compose, RandomHorizontalFlip, training_transforms
from owp.errors import OwpInputError


def _sample(boxes: list[list[float]], height: int = 4, width: int = 10) -> tuple[torch.Tensor, Any]:
    """An image with distinct pixels and a dataset-style target holding ``boxes``."""
    image = torch.arange(3 * height * width, dtype=torch.float32).reshape(3, height, width) / 120
    n = len(boxes)
    target = {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(n, 4),
        "labels": torch.arange(1, n + 1, dtype=torch.int64),
        "iscrowd": torch.zeros(n, dtype=torch.int64),
        "ignore": torch.zeros(n, dtype=torch.bool),
        "image_id": 7,
        "orig_size": torch.tensor([height, width]),
    }
    return image, target


def _copy(image: torch.Tensor, target: Any) -> tuple[torch.Tensor, Any]:
    """Deep copies to compare the inputs with after a transform."""
    return image.clone(), {k: v.clone() if torch.is_tensor(v) else v for k, v in target.items()}


def _same(a: tuple[torch.Tensor, Any], b: tuple[torch.Tensor, Any]) -> bool:
    """Whether two (image, target) pairs are equal."""
    if not torch.equal(a[0], b[0]) or a[1].keys() != b[1].keys():
        return False
    return all(
        torch.equal(v, b[1][k]) if torch.is_tensor(v) else v == b[1][k] for k, v in a[1].items()
    )


def test_hand_case() -> None:
    image, target = _sample([[1, 2, 4, 5], [0, 0, 10, 4]])
    before = _copy(image, target)
    flipped, out = RandomHorizontalFlip(p=1.0)(image, target)
    assert out["boxes"].tolist() == [[6, 2, 9, 5], [0, 0, 10, 4]]
    assert out["boxes"].dtype == torch.float32
    assert torch.equal(flipped, image[:, :, torch.arange(9, -1, -1)])
    for key in ("labels", "iscrowd", "ignore", "image_id", "orig_size"):
        assert out[key] is target[key]
    assert _same((image, target), before)
    assert out is not target


def test_flipping_twice_is_identity() -> None:
    sample = _sample([[1.5, 2, 4.25, 3], [3, 0, 7, 1]])
    flip = RandomHorizontalFlip(p=1.0)
    assert _same(flip(*flip(*sample)), sample)


def test_probability_zero_is_identity() -> None:
    image, target = _sample([[1, 2, 4, 5]])
    before = _copy(image, target)
    flip = RandomHorizontalFlip(p=0.0)
    for _ in range(20):
        assert _same(flip(image, target), before)


def test_empty_boxes() -> None:
    image, target = _sample([])
    flipped, out = RandomHorizontalFlip(p=1.0)(image, target)
    assert out["boxes"].shape == (0, 4) and out["boxes"].dtype == torch.float32
    assert torch.equal(flipped, image.flip(-1))


def _decisions(flip: RandomHorizontalFlip, n: int = 64) -> list[bool]:
    """Whether each of n calls flipped a sample."""
    image, target = _sample([[1, 2, 4, 5]])
    return [not torch.equal(flip(image, target)[0], image) for _ in range(n)]


def test_reproducible_under_torch_seed() -> None:
    flip = RandomHorizontalFlip(p=0.5)
    torch.manual_seed(123)
    first = _decisions(flip)
    torch.manual_seed(123)
    assert _decisions(flip) == first
    assert 10 < sum(first) < 54
    assert _decisions(RandomHorizontalFlip(p=1.0)) == [True] * 64


def test_own_generator() -> None:
    first = _decisions(RandomHorizontalFlip(0.5, generator=torch.Generator().manual_seed(9)))
    torch.manual_seed(0)
    again = _decisions(RandomHorizontalFlip(0.5, generator=torch.Generator().manual_seed(9)))
    assert first == again


def test_compose_and_training_transforms() -> None:
    sample = _sample([[1, 2, 4, 5]])
    twice = Compose([RandomHorizontalFlip(1.0), RandomHorizontalFlip(1.0)])
    assert _same(twice(*sample), sample)
    assert _same(Compose([])(*sample), sample)
    assert training_transforms(horizontal_flip=1.0)(*sample)[1]["boxes"].tolist() == [[6, 2, 9, 5]]
    assert _same(training_transforms(horizontal_flip=0.0)(*sample), sample)
    assert "RandomHorizontalFlip(p=0.5)" in repr(training_transforms())


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_bad_probability(p: float) -> None:
    with pytest.raises(OwpInputError, match="probability"):
        RandomHorizontalFlip(p)

"""Training-time augmentation of ``(image, target)`` pairs from the detection datasets.

An image is a ``Tensor[3, H, W]``; a target is a dict with ``boxes`` ``Tensor[N, 4]`` (xyxy,
pixels) and per-box / per-image entries that geometry does not change (``labels``,
``iscrowd``, ``ignore``, ``image_id``, ``orig_size``). Resizing happens later, in the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from owp.errors import OwpInputError

Target = dict[str, Any]
PairTransform = Callable[[torch.Tensor, Target], tuple[torch.Tensor, Target]]


class RandomHorizontalFlip:
    """Mirror the image and its boxes left-right with probability ``p``.

    The decision is one ``torch.rand`` draw from ``generator`` (torch's global generator when
    ``None``) on every call, so seeding torch makes the flips reproducible. A flip returns a new
    image, boxes and target dict (other entries shared); the inputs are never modified.
    """

    def __init__(self, p: float = 0.5, *, generator: torch.Generator | None = None) -> None:
        if not 0.0 <= p <= 1.0:
            raise OwpInputError(f"the horizontal flip probability must be in [0, 1], got {p}")
        self.p = p
        self.generator = generator

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        device = None if self.generator is None else self.generator.device
        if torch.rand((), generator=self.generator, device=device).item() >= self.p:
            return image, target
        width = image.shape[-1]
        boxes = target["boxes"]
        flipped = torch.stack(
            [width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1
        )
        return image.flip(-1), {**target, "boxes": flipped}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


class Compose:
    """Apply ``(image, target)`` transforms one after the other."""

    def __init__(self, transforms: Sequence[PairTransform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        for transform in self.transforms:
            image, target = transform(image, target)
        return image, target

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transforms!r})"


def training_transforms(horizontal_flip: float = 0.5) -> Compose:
    """The training augmentation: a horizontal flip with probability ``horizontal_flip``."""
    return Compose([RandomHorizontalFlip(horizontal_flip)])

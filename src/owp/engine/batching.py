"""Inference batches whose results do not depend on the batch size.

A detector pads the images of a batch to one input shape, and padding changes what a network
computes near (and, through deep receptive fields and the head's group norm, far from) the
image border. So :func:`inference_batches` puts together only images that the model would pad
to the same input shape on their own: those of one size, or, for models with torchvision's
``GeneralizedRCNNTransform``, those that resize and pad to the same shape (one aspect-ratio
bucket). A batch then adds no padding and every image gets what it gets alone, whatever the
batch size; callers put the results back in input order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from owp.models.contract import ProposalModel

InputShape = Callable[[int, int], tuple[int, int]]


def input_shape_of(model: ProposalModel) -> InputShape:
    """``(height, width) -> (H, W)``: the padded input shape ``model`` makes of one image.

    For a model whose ``transform`` is torchvision's ``GeneralizedRCNNTransform`` (eval mode,
    no ``fixed_size``) this follows its resize: scale ``min(min_size / short side, max_size /
    long side)``, each side ``floor(side * scale)`` (``interpolate`` with
    ``recompute_scale_factor=True``), then rounded up to ``size_divisible``
    (torchvision ``transform.py`` ``_resize_image_and_masks`` and ``batch_images``). For a
    model without one (``transform`` None, e.g. an ONNX graph) it is the image size itself.
    """
    transform = model.transform
    if transform is None or transform.fixed_size is not None:
        return lambda height, width: (height, width)
    min_size, max_size = float(transform.min_size[-1]), float(transform.max_size)
    divisible = int(transform.size_divisible)

    def shape(height: int, width: int) -> tuple[int, int]:
        scale = min(min_size / min(height, width), max_size / max(height, width))
        resized = (math.floor(height * scale), math.floor(width * scale))
        return tuple(math.ceil(side / divisible) * divisible for side in resized)

    return shape


def inference_batches(
    sizes: Sequence[tuple[int, int]], batch_size: int, input_shape: InputShape | None = None
) -> list[list[int]]:
    """Indices of images with ``sizes`` (``(height, width)`` each) in batches of at most
    ``batch_size`` that share one :func:`input_shape_of` (default: one size).

    Batches come in the order their shape first appears; within one, indices ascend.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    shape = input_shape or (lambda height, width: (height, width))
    groups: dict[tuple[int, int], list[int]] = {}
    for index, (height, width) in enumerate(sizes):
        groups.setdefault(shape(int(height), int(width)), []).append(index)
    return [
        members[start : start + batch_size]
        for members in groups.values()
        for start in range(0, len(members), batch_size)
    ]


def to_device(images: Sequence[Tensor], device: torch.device) -> list[Tensor]:
    """Images on ``device``; on CUDA copied from pinned memory without blocking the host."""
    if device.type != "cuda":
        return [image.to(device) for image in images]
    return [
        (image if image.is_pinned() else image.pin_memory()).to(device, non_blocking=True)
        for image in images
    ]

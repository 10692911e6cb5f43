"""Named model configurations: ``create_model(name, **overrides)`` and ``list_models()``.

Plain functions and dataclasses, no string registry of callables: each name maps to the
overrides it applies to :class:`~owp.models.fcos.FCOSOWPConfig`. Every model is built with
random weights unless ``weights_backbone`` names local weights; nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from owp.errors import OwpInputError
from owp.models.fcos import FCOSOWP, FCOSOWPConfig

MODEL_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "fcos_owp_r50_fpn": (
        "FCOS-OWP, ResNet-50 + FPN (256 ch, 4-conv towers): the paper's model",
        {"depth": 50},
    ),
    "fcos_owp_r18_fpn": ("FCOS-OWP, ResNet-18 + FPN (256 ch, 4-conv towers)", {"depth": 18}),
    "fcos_owp_tiny": (
        "FCOS-OWP sized for CPU: ResNet-18 + FPN at 64 ch, 2-conv towers, 320-512 px inputs",
        {
            "depth": 18,
            "out_channels": 64,
            "num_convs": 2,
            "norm_groups": 16,
            "min_size": 320,
            "max_size": 512,
        },
    ),
}


def list_models() -> dict[str, str]:
    """Model name -> one-line description."""
    return {name: description for name, (description, _) in MODEL_CONFIGS.items()}


def model_config(name: str, **overrides: Any) -> FCOSOWPConfig:
    """The configuration of model ``name`` with ``overrides`` applied."""
    if name not in MODEL_CONFIGS:
        raise OwpInputError(f"unknown model {name!r}; available: {', '.join(MODEL_CONFIGS)}")
    known = {f.name for f in fields(FCOSOWPConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise OwpInputError(
            f"unknown option(s) for {name}: {', '.join(unknown)}; valid: {', '.join(sorted(known))}"
        )
    try:
        return FCOSOWPConfig(**{**MODEL_CONFIGS[name][1], **overrides})
    except ValueError as err:
        raise OwpInputError(f"{name}: {err}") from None


def create_model(name: str, **overrides: Any) -> FCOSOWP:
    """Build model ``name`` (see :func:`list_models`) with random weights.

    ``overrides`` are :class:`~owp.models.fcos.FCOSOWPConfig` fields: torchvision's transform
    arguments (``min_size``, ``max_size``, ``image_mean``, ``image_std``), head options
    (``num_classes``, ``objectness``, ``conditional``, ...), target options and postprocess
    options (``scoring``, ``score_thresh``, ``nms_thresh``, ``pre_nms_top_n``,
    ``post_nms_top_n``).
    """
    return FCOSOWP(model_config(name, **overrides))

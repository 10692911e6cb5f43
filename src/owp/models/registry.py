"""Named model configurations: ``create_model(name, **overrides)`` and ``list_models()``.

Plain functions and dataclasses, no string registry of callables: each name maps to a
:class:`ModelSpec` — a model class, its config dataclass and the overrides the name applies.
Every model is built with random weights unless ``weights_backbone`` names pretrained trunk
weights (:mod:`owp.models.weights`: fetched into the torch hub cache as torchvision does).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, get_type_hints

from torch import nn

from owp.checks import Range, check_value
from owp.errors import OwpInputError
from owp.models.fcos.config import FCOSOWPConfig
from owp.models.fcos.model import FCOSOWP
from owp.models.two_stage.double_head import DoubleHeadConfig, DoubleHeadRCNN
from owp.models.two_stage.oln import OLN, OLNConfig
from owp.models.two_stage.rpn import RPNConfig, RPNProposer


@dataclass(frozen=True)
class ModelSpec:
    """What a model name builds: ``model_type(config_type(**defaults, **overrides))``."""

    description: str
    model_type: type[nn.Module]
    config_type: type
    defaults: dict[str, Any] = field(default_factory=dict)


# CPU-sized variants: ResNet-18 + FPN at 64 channels on 320-512 px inputs.
_TINY = {"depth": 18, "out_channels": 64, "min_size": 320, "max_size": 512}
_TINY_RCNN = {**_TINY, "representation_size": 256}

MODEL_CONFIGS: dict[str, ModelSpec] = {
    "fcos_owp_r50_fpn": ModelSpec(
        "FCOS-OWP, ResNet-50 + FPN (256 ch, 4-conv towers): the paper's model",
        FCOSOWP,
        FCOSOWPConfig,
        {"depth": 50},
    ),
    "fcos_owp_r18_fpn": ModelSpec(
        "FCOS-OWP, ResNet-18 + FPN (256 ch, 4-conv towers)", FCOSOWP, FCOSOWPConfig, {"depth": 18}
    ),
    "fcos_owp_tiny": ModelSpec(
        "FCOS-OWP sized for CPU: ResNet-18 + FPN at 64 ch, 2-conv towers, 320-512 px inputs",
        FCOSOWP,
        FCOSOWPConfig,
        {**_TINY, "num_convs": 2, "norm_groups": 16},
    ),
    "rpn_r50_fpn": ModelSpec(
        "Faster R-CNN RPN objectness proposals (torchvision), ResNet-50 + FPN P2-P6",
        RPNProposer,
        RPNConfig,
        {"depth": 50},
    ),
    "rpn_r18_fpn": ModelSpec(
        "Faster R-CNN RPN objectness proposals, ResNet-18 + FPN P2-P6",
        RPNProposer,
        RPNConfig,
        {"depth": 18},
    ),
    "rpn_tiny": ModelSpec(
        "Faster R-CNN RPN proposals sized for CPU: ResNet-18 + FPN at 64 ch, 320-512 px",
        RPNProposer,
        RPNConfig,
        _TINY_RCNN,
    ),
    "oln_r50_fpn": ModelSpec(
        "OLN (centerness RPN + IoU-scoring RoI head), ResNet-50 + FPN P2-P6",
        OLN,
        OLNConfig,
        {"depth": 50},
    ),
    "oln_r18_fpn": ModelSpec("OLN, ResNet-18 + FPN P2-P6", OLN, OLNConfig, {"depth": 18}),
    "oln_tiny": ModelSpec(
        "OLN sized for CPU: ResNet-18 + FPN at 64 ch, 256-wide fc head, 320-512 px",
        OLN,
        OLNConfig,
        _TINY_RCNN,
    ),
    "double_head_r50_fpn": ModelSpec(
        "Double-Head R-CNN (2-fc classification, conv box regression), ResNet-50 + FPN",
        DoubleHeadRCNN,
        DoubleHeadConfig,
        {"depth": 50},
    ),
    "double_head_r18_fpn": ModelSpec(
        "Double-Head R-CNN, ResNet-18 + FPN", DoubleHeadRCNN, DoubleHeadConfig, {"depth": 18}
    ),
    # The conv head runs on every sampled RoI: on a CPU it dominates the step, so the tiny
    # variant has a 128-channel, one-bottleneck conv head and samples 128 RoIs per image.
    "double_head_tiny": ModelSpec(
        "Double-Head R-CNN sized for CPU: ResNet-18 + FPN at 64 ch, 256-wide fc head, "
        "128-ch conv head with 1 bottleneck, 128 RoIs per image, 320-512 px",
        DoubleHeadRCNN,
        DoubleHeadConfig,
        {
            **_TINY_RCNN,
            "conv_channels": 128,
            "num_res_blocks": 1,
            "box_batch_size_per_image": 128,
        },
    ),
}


def list_models() -> dict[str, str]:
    """Model name -> one-line description."""
    return {name: spec.description for name, spec in MODEL_CONFIGS.items()}


def model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``; unknown names list the valid ones."""
    if name not in MODEL_CONFIGS:
        raise OwpInputError(f"unknown model {name!r}; available: {', '.join(MODEL_CONFIGS)}")
    return MODEL_CONFIGS[name]


def model_config(name: str, **overrides: Any) -> Any:
    """The configuration dataclass of model ``name`` with ``overrides`` applied."""
    spec = model_spec(name)
    known = {f.name for f in fields(spec.config_type)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise OwpInputError(
            f"unknown option(s) for {name}: {', '.join(unknown)}; valid: {', '.join(sorted(known))}"
        )
    hints = get_type_hints(spec.config_type)
    checked = {
        key: check_value(f"{name}: {key}", value, hints[key], _MODEL_RULES.get(key))
        for key, value in overrides.items()
    }
    try:
        return spec.config_type(**{**spec.defaults, **checked})
    except ValueError as err:
        raise OwpInputError(f"{name}: {err}") from None


# Ranges of the model options every family shares (the config dataclasses check the rest).
_MODEL_RULES: dict[str, Range] = {
    "min_size": Range(1),
    "max_size": Range(1),
    "out_channels": Range(1),
    "num_convs": Range(0),
    "norm_groups": Range(1),
    "score_thresh": Range(0, 1),
    "center_radius": Range(0, open_low=True),
    "iou_sample_threshold": Range(0, 1),
    "unknown_mask_thresh": Range(0, 1),
    "unknown_mask_start": Range(0),
    "representation_size": Range(1),
}


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build model ``name`` (see :func:`list_models`) with random weights.

    ``overrides`` are fields of the model's config dataclass:
    :class:`~owp.models.fcos.config.FCOSOWPConfig` for ``fcos_owp_*``,
    :class:`~owp.models.two_stage.rpn.RPNConfig` for ``rpn_*``,
    :class:`~owp.models.two_stage.oln.OLNConfig` for ``oln_*`` and
    :class:`~owp.models.two_stage.double_head.DoubleHeadConfig` for ``double_head_*``:
    torchvision's transform arguments (``min_size``, ``max_size``, ...), head options
    (``num_classes``, ``objectness``, ...), target options and output options (``scoring``,
    ``score_thresh``, ``nms_thresh``, ``post_nms_top_n``, ...).
    """
    config = model_config(name, **overrides)
    try:
        return model_spec(name).model_type(config)
    except ValueError as err:  # e.g. a GroupNorm whose groups do not divide the channels
        raise OwpInputError(f"{name}: {err}") from None

"""ResNet + FPN backbones, named exactly as torchvision's FCOS and Faster R-CNN backbones.

:func:`resnet_fpn_backbone` builds torchvision's own parts (a ResNet trunk with
:class:`~torchvision.ops.misc.FrozenBatchNorm2d`, wrapped in
:class:`~torchvision.models.detection.backbone_utils.BackboneWithFPN`), so the state dict keys
are ``body.*`` and ``fpn.*``: P3-P7 with a
:class:`~torchvision.ops.feature_pyramid_network.LastLevelP6P7` block as in
``fcos_resnet50_fpn().backbone``, or P2-P6 with
:class:`~torchvision.ops.feature_pyramid_network.LastLevelMaxPool` as in
``fasterrcnn_resnet50_fpn().backbone``; their checkpoints load unchanged. Pretrained ImageNet
trunks are fetched as torchvision fetches them (:mod:`owp.models.weights`: downloaded into the
torch hub cache on first use unless ``OWP_OFFLINE=1``) or read from a local file.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models import (
    ResNet,
    WeightsEnum,
    get_model_weights,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
)
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import misc as misc_nn_ops
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from owp.errors import OwpInputError
from owp.models.freezing import freeze_batch_norm
from owp.models.weights import fetch_weights

RESNET_DEPTHS: tuple[int, ...] = (18, 34, 50, 101)
NORMS: tuple[str, ...] = ("auto", "frozen", "batch")
LEVELS: tuple[str, ...] = ("p3-p7", "p2-p6")

_BUILDERS: dict[int, Callable[..., ResNet]] = {
    18: resnet18,
    34: resnet34,
    50: resnet50,
    101: resnet101,
}

# Trunk stages in the order they are unfrozen by ``trainable_layers`` (1 = layer4 only, ...,
# 5 = everything including the stem), the same order as torchvision's ``_resnet_fpn_extractor``.
_TRAINABLE_STAGES: tuple[tuple[str, ...], ...] = (
    ("layer4",),
    ("layer3",),
    ("layer2",),
    ("layer1",),
    ("conv1", "bn1"),
)

# "IMAGENET1K_V1", "DEFAULT" or "ResNet50_Weights.IMAGENET1K_V1"; anything else is a file path.
_ENUM_NAME = re.compile(r"^(?:\w+_Weights\.)?[A-Z][A-Z0-9_]*$")


def resnet_fpn_backbone(
    depth: int,
    *,
    out_channels: int = 256,
    weights_backbone: str | Path | None = None,
    trainable_layers: int | None = None,
    norm: str = "auto",
    levels: str = "p3-p7",
) -> BackboneWithFPN:
    """A ResNet-``depth`` trunk (frozen batch norm) with an FPN giving P3..P7 or P2..P6.

    ``levels="p3-p7"`` (FCOS): the trunk returns C3, C4, C5 (``layer2``..``layer4``); the FPN
    maps them to ``out_channels`` and ``LastLevelP6P7`` adds P6 (from P5) and P7. The returned
    module maps an image batch ``[B, 3, H, W]`` to an ordered dict of five
    ``[B, out_channels, H_l, W_l]`` maps with keys ``"0"``, ``"1"``, ``"2"``, ``"p6"``, ``"p7"``
    at strides 8, 16, 32, 64, 128 (each stride-2 step rounds up: ``H_l = ceil(H_{l-1} / 2)``).
    ``levels="p2-p6"`` (Faster R-CNN, OLN): C2..C5 (``layer1``..``layer4``) and a max-pooled
    P6: keys ``"0"``, ``"1"``, ``"2"``, ``"3"``, ``"pool"`` at strides 4..64.
    ``.out_channels`` is set.

    Args:
        depth: ResNet depth, one of :data:`RESNET_DEPTHS`.
        out_channels: channels of every pyramid level.
        weights_backbone: ``None`` for random initialisation; a torchvision weights name such
            as ``"IMAGENET1K_V1"`` or ``"ResNet50_Weights.IMAGENET1K_V1"``, read from the torch
            hub cache (``<torch.hub.get_dir()>/checkpoints/``) and downloaded there on first
            use unless ``OWP_OFFLINE=1`` (:func:`owp.models.weights.fetch_weights`); or the
            path of a local trunk state dict (optionally under a ``"model"`` or
            ``"state_dict"`` key; ``fc.*`` entries are ignored, every other trunk key must
            match).
        trainable_layers: how many trunk stages train, counted from the top: 0 freezes the
            whole trunk, 1 trains ``layer4``, ..., 4 adds ``layer1``, 5 adds the stem
            (``conv1``). The FPN always trains. ``None``: 3 with pretrained weights, 5 without
            (torchvision's rule: a random trunk is trained whole).
        norm: trunk normalisation: ``"frozen"`` (``FrozenBatchNorm2d``, for pretrained trunks),
            ``"batch"`` (trainable ``BatchNorm2d``, for training from scratch) or ``"auto"``
            (frozen with ``weights_backbone``, batch without — what torchvision's FCOS builder
            does).
        levels: the pyramid, one of :data:`LEVELS`.

    Raises:
        OwpInputError: bad depth, channel count or ``trainable_layers``; unknown weights name;
            weights neither cached nor downloadable; a file unreadable or not a matching trunk.
    """
    if depth not in _BUILDERS:
        choices = ", ".join(map(str, RESNET_DEPTHS))
        raise OwpInputError(f"unsupported ResNet depth {depth!r}; choose one of {choices}")
    if out_channels < 1:
        raise OwpInputError(f"out_channels must be positive, got {out_channels}")
    if levels not in LEVELS:
        raise OwpInputError(f"unknown FPN levels {levels!r}; choose one of {', '.join(LEVELS)}")
    if norm not in NORMS:
        raise OwpInputError(f"unknown backbone norm {norm!r}; choose one of {', '.join(NORMS)}")
    pretrained = weights_backbone is not None
    if trainable_layers is None:
        trainable_layers = 3 if pretrained else len(_TRAINABLE_STAGES)
    if norm == "auto":
        norm = "frozen" if pretrained else "batch"
    if not 0 <= trainable_layers <= len(_TRAINABLE_STAGES):
        raise OwpInputError(
            f"trainable_layers must be in [0, {len(_TRAINABLE_STAGES)}] (0 = frozen trunk, "
            f"{len(_TRAINABLE_STAGES)} = all stages), got {trainable_layers}"
        )

    norm_layer = misc_nn_ops.FrozenBatchNorm2d if norm == "frozen" else nn.BatchNorm2d
    trunk = _BUILDERS[depth](weights=None, norm_layer=norm_layer)
    # After layer4 ``inplanes`` is C5's width; each earlier stage has half the width of the next.
    c5_channels = trunk.inplanes
    stages = (
        ["layer2", "layer3", "layer4"]
        if levels == "p3-p7"
        else ["layer1", "layer2", "layer3", "layer4"]
    )
    backbone = BackboneWithFPN(
        trunk,
        return_layers={stage: str(index) for index, stage in enumerate(stages)},
        in_channels_list=[c5_channels >> (len(stages) - 1 - i) for i in range(len(stages))],
        out_channels=out_channels,
        extra_blocks=LastLevelP6P7(out_channels, out_channels)
        if levels == "p3-p7"
        else LastLevelMaxPool(),
    )
    if weights_backbone is not None:
        file = _weights_file(depth, weights_backbone)
        _load_trunk(backbone.body, read_state_dict(file, "backbone weights"), file, depth)

    trainable = {name for stage in _TRAINABLE_STAGES[:trainable_layers] for name in stage}
    for name, parameter in backbone.body.named_parameters():
        if name.split(".", 1)[0] not in trainable:
            parameter.requires_grad_(False)
    # A frozen stage is frozen completely: its batch norm keeps its running statistics.
    freeze_batch_norm(backbone.body)
    return backbone


def backbone_for(config: Any, *, levels: str = "p3-p7") -> BackboneWithFPN:
    """:func:`resnet_fpn_backbone` from a model config's ``depth``, ``out_channels``,
    ``weights_backbone``, ``trainable_layers`` and ``backbone_norm`` fields."""
    return resnet_fpn_backbone(
        config.depth,
        out_channels=config.out_channels,
        weights_backbone=config.weights_backbone,
        trainable_layers=config.trainable_layers,
        norm=config.backbone_norm,
        levels=levels,
    )


def _weights_file(depth: int, weights_backbone: str | Path) -> Path:
    """The file holding ``weights_backbone``: a path as given, or the torch hub cache's file of
    the torchvision weights (downloaded on first use)."""
    if isinstance(weights_backbone, Path) or not _ENUM_NAME.match(weights_backbone):
        return Path(weights_backbone)
    return fetch_weights(_resolve_weights(depth, weights_backbone))


def _resolve_weights(depth: int, name: str) -> WeightsEnum:
    """The member of ``ResNet<depth>_Weights`` called ``name`` (bare or ``Class.MEMBER``)."""
    enum = get_model_weights(_BUILDERS[depth])
    class_name, _, member = name.rpartition(".")
    choices = ", ".join(f"{enum.__name__}.{m}" for m in enum.__members__)
    if class_name not in ("", enum.__name__) or member not in enum.__members__:
        raise OwpInputError(
            f"unknown weights {name!r} for a ResNet-{depth} backbone; choose one of {choices} "
            "or give the path of a local state dict file"
        )
    return enum[member]


def read_state_dict(file: Path, what: str = "weights") -> dict[str, Tensor]:
    """Tensors of a saved state dict, unwrapped from a ``"model"``/``"state_dict"`` entry.

    Raises :class:`OwpInputError` naming ``file`` (and ``what`` it should hold) when it is
    missing, unreadable or not a mapping of names to tensors.
    """
    if not file.is_file():
        raise OwpInputError(f"{what} file not found", path=file)
    try:
        content = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # any unpickling/zip failure means an unreadable file
        raise OwpInputError(f"cannot read {what} ({type(error).__name__})", path=file) from None
    if isinstance(content, dict):
        for key in ("model", "state_dict"):
            if isinstance(content.get(key), dict):
                content = content[key]
                break
    if not isinstance(content, dict) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in content.items()
    ):
        raise OwpInputError(f"{what} file is not a state dict of tensors", path=file)
    return content


def _load_trunk(body: nn.Module, state: dict[str, Tensor], file: Path, depth: int) -> None:
    """Load ``state`` into the trunk: every trunk key required, ``fc.*`` ignored.

    ``num_batches_tracked`` is never required nor taken from the file: torchvision's files lack
    it, ``FrozenBatchNorm2d`` has none and a trainable ``BatchNorm2d`` starts counting at 0.
    """
    given = {k: v for k, v in state.items() if not k.startswith("fc.") and not _is_counter(k)}
    expected = {k: v for k, v in body.state_dict().items() if not _is_counter(k)}
    missing = sorted(expected.keys() - given.keys())
    unexpected = sorted(given.keys() - expected.keys())
    mismatched = sorted(
        k for k in expected.keys() & given.keys() if expected[k].shape != given[k].shape
    )
    problems = [
        f"{len(keys)} {what} (e.g. {keys[0]})"
        for keys, what in (
            (missing, "missing keys"),
            (unexpected, "unexpected keys"),
            (mismatched, "keys with a different shape"),
        )
        if keys
    ]
    if problems:
        raise OwpInputError(
            f"not a ResNet-{depth} trunk state dict: {'; '.join(problems)}", path=file
        )
    # strict=False: the only keys left out are the batch counters, which stay as they are.
    body.load_state_dict(given, strict=False)


def _is_counter(key: str) -> bool:
    return key.endswith(".num_batches_tracked")

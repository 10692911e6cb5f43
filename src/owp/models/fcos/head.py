"""The FCOS-OWP head: torchvision's FCOS head plus learned objectness branches.

:class:`FCOSOWPHead` keeps torchvision's ``FCOSHead`` module names (``classification_head.conv``,
``classification_head.cls_logits``, ``regression_head.conv``, ``regression_head.bbox_reg``,
``regression_head.bbox_ctrness``) so that a torchvision FCOS state dict loads into it, and adds
``regression_head.bbox_iou``, a localisation-quality (IoU) logit on the box tower. Both
objectness branches may be *conditional*: they then also see the box regression at their
location. Without classes (``num_classes=None``) the head is class-agnostic and has no
classification tower at all.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import torch
from torch import Tensor, nn

from owp.errors import OwpInputError

OBJECTNESS_BRANCHES: tuple[str, ...] = ("centerness", "iou")

# Objectness branch -> its conv in the regression head, also the key of its forward output.
_BRANCH_MODULES: dict[str, str] = {"centerness": "bbox_ctrness", "iou": "bbox_iou"}


def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    """A 3x3, stride-1, same-padding conv with weights ~ N(0, 0.01) and zero bias."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
    nn.init.normal_(conv.weight, std=0.01)
    nn.init.zeros_(conv.bias)
    return conv


def _tower(channels: int, num_convs: int, norm_groups: int) -> nn.Sequential:
    """``num_convs`` x [conv3x3, GroupNorm, ReLU] in one flat Sequential, as torchvision's."""
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers += [_conv3x3(channels, channels), nn.GroupNorm(norm_groups, channels), nn.ReLU()]
    return nn.Sequential(*layers)


def _flatten(x: Tensor) -> Tensor:
    """``[B, K, H, W]`` -> ``[B, H*W, K]`` in row-major location order."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1])


class FCOSOWPClassificationHead(nn.Module):
    """Class tower and per-class logits, as torchvision's ``FCOSClassificationHead``.

    Attributes:
        conv: the shared tower, ``[B, C, H, W] -> [B, C, H, W]``.
        cls_logits: ``[B, C, H, W] -> [B, num_classes, H, W]``, bias set to the prior logit.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        num_convs: int,
        prior_probability: float,
        norm_groups: int,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv = _tower(in_channels, num_convs, norm_groups)
        self.cls_logits = _conv3x3(in_channels, num_classes)
        nn.init.constant_(
            self.cls_logits.bias, -math.log((1 - prior_probability) / prior_probability)
        )

    def forward(self, features: list[Tensor]) -> Tensor:
        """Levels ``[B, C, H_l, W_l]`` -> logits ``[B, P, num_classes]``, ``P = sum H_l*W_l``."""
        return torch.cat([_flatten(self.cls_logits(self.conv(x))) for x in features], dim=1)


class FCOSOWPRegressionHead(nn.Module):
    """Box tower, box regression and objectness logits (centerness and/or IoU).

    Attributes:
        conv: the box tower, ``[B, C, H, W] -> [B, C, H, W]``.
        bbox_reg: ``[B, C, H, W] -> [B, 4, H, W]``; relu'd, these are the (left, top, right,
            bottom) distances in units of the level's stride.
        bbox_ctrness: centerness logit conv (``None`` without the ``"centerness"`` branch).
        bbox_iou: IoU logit conv (``None`` without the ``"iou"`` branch).
        Both branch convs map ``C`` channels (``C + 4`` when conditional) to 1.
    """

    def __init__(
        self,
        in_channels: int,
        num_convs: int,
        objectness: tuple[str, ...],
        conditional: bool,
        conditional_detach: bool,
        norm_groups: int,
    ) -> None:
        super().__init__()
        self.objectness = objectness
        self.conditional = conditional
        self.conditional_detach = conditional_detach
        self.conv = _tower(in_channels, num_convs, norm_groups)
        self.bbox_reg = _conv3x3(in_channels, 4)
        branch_channels = in_channels + 4 if conditional else in_channels
        for name, attribute in _BRANCH_MODULES.items():
            branch = _conv3x3(branch_channels, 1) if name in objectness else None
            setattr(self, attribute, branch)

    def forward(
        self, features: list[Tensor], outputs: Collection[str] | None = None
    ) -> dict[str, Tensor]:
        """Levels ``[B, C, H_l, W_l]`` -> ``"bbox_regression"`` ``[B, P, 4]`` (relu'd, stride
        units) and, per branch, ``"bbox_ctrness"`` / ``"bbox_iou"`` logits ``[B, P, 1]``.

        ``outputs`` limits the branches computed to those named (``None``: all).
        """
        branches = [
            name for name in self.objectness if outputs is None or _BRANCH_MODULES[name] in outputs
        ]
        per_level: dict[str, list[Tensor]] = {"bbox_regression": []}
        per_level.update({_BRANCH_MODULES[name]: [] for name in branches})
        for x in features:
            box_feature = self.conv(x)
            regression = nn.functional.relu(self.bbox_reg(box_feature))
            per_level["bbox_regression"].append(_flatten(regression))
            if self.conditional:
                cue = regression.detach() if self.conditional_detach else regression
                box_feature = torch.cat([box_feature, cue], dim=1)
            for name in branches:
                key = _BRANCH_MODULES[name]
                per_level[key].append(_flatten(getattr(self, key)(box_feature)))
        return {key: torch.cat(levels, dim=1) for key, levels in per_level.items()}


class FCOSOWPHead(nn.Module):
    """FCOS head with optional classes and learned objectness branches.

    Args:
        in_channels: channels ``C`` of every pyramid level.
        num_classes: number of class logits, or ``None`` for a class-agnostic head (no
            ``classification_head``, no ``"cls_logits"`` output).
        num_convs: conv + GroupNorm + ReLU blocks in each tower.
        objectness: objectness branches on the box tower, a non-empty subset of
            :data:`OBJECTNESS_BRANCHES`: ``"centerness"`` (``regression_head.bbox_ctrness``) and
            ``"iou"`` (``regression_head.bbox_iou``).
        conditional: feed the objectness branches the box tower feature concatenated with the
            box regression ``[B, 4, H, W]`` (relu'd, stride units), so they take ``C + 4``
            channels.
        conditional_detach: with ``conditional``, stop objectness gradients from reaching the
            regression through that extra input (they still reach the box tower).
        prior_probability: initial foreground probability of every class logit.
        norm_groups: GroupNorm groups in the towers; must divide ``in_channels``.

    Raises:
        OwpInputError: (a ``ValueError``) for any invalid argument.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int | None,
        *,
        num_convs: int = 4,
        objectness: Sequence[str] = ("centerness",),
        conditional: bool = False,
        conditional_detach: bool = True,
        prior_probability: float = 0.01,
        norm_groups: int = 32,
    ) -> None:
        super().__init__()
        branches = (objectness,) if isinstance(objectness, str) else tuple(objectness)
        _validate(in_channels, num_classes, num_convs, branches, prior_probability, norm_groups)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.objectness = branches
        self.classification_head = (
            None
            if num_classes is None
            else FCOSOWPClassificationHead(
                in_channels, num_classes, num_convs, prior_probability, norm_groups
            )
        )
        self.regression_head = FCOSOWPRegressionHead(
            in_channels, num_convs, branches, conditional, conditional_detach, norm_groups
        )

    def forward(
        self, features: list[Tensor], outputs: Collection[str] | None = None
    ) -> dict[str, Tensor]:
        """Run the head on every pyramid level and concatenate the locations.

        Args:
            features: pyramid levels, each ``[B, C, H_l, W_l]``.
            outputs: compute only these outputs' objectness branches (``None``: all); the
                classification and regression outputs are always computed.

        Returns:
            With ``P = sum_l H_l * W_l`` locations ordered level by level, row-major within a
            level (torchvision's order): ``"cls_logits"`` ``[B, P, num_classes]`` (not in
            class-agnostic mode), ``"bbox_regression"`` ``[B, P, 4]`` (relu'd ltrb distances in
            stride units), and per branch ``"bbox_ctrness"`` / ``"bbox_iou"`` logits
            ``[B, P, 1]``.
        """
        if not features:
            raise OwpInputError("FCOSOWPHead needs at least one feature level")
        results: dict[str, Tensor] = {}
        if self.classification_head is not None:
            results["cls_logits"] = self.classification_head(features)
        results.update(self.regression_head(features, outputs))
        return results


def _validate(
    in_channels: int,
    num_classes: int | None,
    num_convs: int,
    objectness: tuple[str, ...],
    prior_probability: float,
    norm_groups: int,
) -> None:
    """Raise :class:`OwpInputError` naming the first invalid head argument."""
    valid = ", ".join(repr(name) for name in OBJECTNESS_BRANCHES)
    if in_channels < 1:
        raise OwpInputError(f"in_channels must be positive, got {in_channels}")
    if num_classes is not None and num_classes < 1:
        raise OwpInputError(
            f"num_classes must be at least 1 (or None for a class-agnostic head), got {num_classes}"
        )
    if num_convs < 0:
        raise OwpInputError(f"num_convs must be 0 or more, got {num_convs}")
    if not objectness:
        raise OwpInputError(f"objectness needs at least one branch out of {valid}")
    unknown = [name for name in objectness if name not in OBJECTNESS_BRANCHES]
    if unknown:
        raise OwpInputError(f"unknown objectness branch {unknown[0]!r}; choose from {valid}")
    if len(set(objectness)) != len(objectness):
        raise OwpInputError(f"objectness branches repeat: {list(objectness)}")
    if not 0.0 < prior_probability < 1.0:
        raise OwpInputError(f"prior_probability must be in (0, 1), got {prior_probability}")
    if norm_groups < 1 or in_channels % norm_groups:
        raise OwpInputError(
            f"GroupNorm needs in_channels divisible by norm_groups: {in_channels} channels "
            f"cannot form {norm_groups} groups (pick norm_groups dividing {in_channels})"
        )

"""Double-Head R-CNN (Wu et al., "Rethinking Classification and Localization for Object
Detection", CVPR 2020) on torchvision's Faster R-CNN.

The RoI head splits in two (:class:`DoubleHeadBoxHead`): a **2-fc head** (torchvision's
``TwoMLPHead``) that classifies, and a **conv head** — one residual block widening to
``conv_channels`` (3x3 and 1x1 convs with a 1x1 shortcut), ``num_res_blocks`` torchvision
``Bottleneck`` blocks, global average pooling — that regresses class-specific box deltas.
Losses (torchvision's ``fastrcnn_loss``: cross-entropy and smooth L1):
``fc_loss_weight * L_cls(fc) + conv_loss_weight * L_reg(conv)``. With ``complementary`` the
paper's Double-Head-Ext: the fc head also regresses and the conv head also classifies,
``w_fc (l_fc L_cls(fc) + (1 - l_fc) L_reg(fc)) + w_conv ((1 - l_conv) L_cls(conv) +
l_conv L_reg(conv))`` (w 2.0 / 2.5, l 0.7 / 0.8), and the class scores fuse as
``s_fc + s_conv (1 - s_fc)``.

Loss normalisers, checked against mmdetection 2.8 (the Double-Head code base;
``DoubleConvFCBBoxHead`` inherits ``BBoxHead.loss`` of
``mmdet/models/roi_heads/bbox_heads/bbox_head.py``): classification is averaged over the
sampled RoIs (``avg_factor = sum(label_weights > 0)``, L157) and box regression is summed over
the positive RoIs and divided by the sampled RoIs (``avg_factor=bbox_targets.size(0)``, L190);
torchvision's ``fastrcnn_loss`` (mean cross-entropy, smooth-L1 sum / ``labels.numel()``)
divides by the same counts. The smooth-L1 ``beta`` is torchvision's 1/9 (mmdetection's config
uses 1.0), and the branch weights are the paper's 2.0 / 2.5 (mmdetection's config: 2.0 / 2.0).

Both branches read the same 7x7 RoIAlign features (mmdetection's config also enlarges the conv
branch's RoIs 1.3x; the paper's head does not need it and owp does not do it).

It is a classifying detector (``scoring="cls"``: per-class scores, per-class NMS; base AP).
Its open-world proposals come from ``scoring="rpn"`` (the RPN's class-agnostic objectness on
the RPN boxes — the presets use this) or ``scoring="roi"`` (the best foreground class
probability on that class's refined box, class-agnostic NMS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.models.resnet import Bottleneck
from torchvision.ops.misc import Conv2dNormActivation

from owp.models.two_stage.base import (
    ROI_EXPORT_REFUSAL,
    ROI_SIZE,
    RCNNConfig,
    TwoStageDetector,
    select_boxes,
    select_each,
)
from owp.models.two_stage.rpn import build_rpn, rpn_forward


@dataclass
class DoubleHeadConfig(RCNNConfig):
    """:class:`~owp.models.two_stage.base.RCNNConfig` of Double-Head R-CNN.

    ``num_classes``: base classes (required). ``conv_channels``, ``num_res_blocks``: the conv
    head. ``complementary``: Double-Head-Ext losses and score fusion; ``fc_loss_weight``,
    ``conv_loss_weight``, ``fc_classification_share`` (l_fc), ``conv_regression_share``
    (l_conv) weight them. ``detection_score_thresh``: per-class scores at or below it are
    dropped before NMS with ``scoring="cls"`` (torchvision's ``box_score_thresh``).
    Scorings: ``cls`` (detections), ``rpn`` and ``roi`` (class-agnostic proposals).
    """

    SCORINGS: ClassVar[tuple[str, ...]] = ("cls", "rpn", "roi")

    num_classes: int | None = 80
    conv_channels: int = 1024
    num_res_blocks: int = 4
    complementary: bool = False
    fc_loss_weight: float = 2.0
    conv_loss_weight: float = 2.5
    fc_classification_share: float = 0.7
    conv_regression_share: float = 0.8
    detection_score_thresh: float = 0.05
    scoring: str = "cls"
    nms_thresh: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_classes is None:
            raise ValueError("Double-Head classifies: give num_classes (the base classes)")
        if self.conv_channels % 4:
            raise ValueError(f"conv_channels must be a multiple of 4, got {self.conv_channels}")


class ResidualBlock(nn.Module):
    """``[N, C_in, S, S]`` → ``[N, C_out, S, S]``: 3x3 conv, 1x1 conv, plus a 1x1 shortcut."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = Conv2dNormActivation(in_channels, in_channels, 3)
        self.conv2 = Conv2dNormActivation(in_channels, out_channels, 1, activation_layer=None)
        self.shortcut = Conv2dNormActivation(in_channels, out_channels, 1, activation_layer=None)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class DoubleHeadBoxHead(nn.Module):
    """RoI features ``[N, C, 7, 7]`` → (fc features ``[N, R]``, conv features ``[N, D]``)."""

    def __init__(
        self, in_channels: int, representation_size: int, conv_channels: int, num_blocks: int
    ) -> None:
        super().__init__()
        self.fc_branch = TwoMLPHead(in_channels * ROI_SIZE**2, representation_size)
        self.conv_branch = nn.Sequential(
            ResidualBlock(in_channels, conv_channels),
            *(Bottleneck(conv_channels, conv_channels // 4) for _ in range(num_blocks)),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.fc_branch(x), self.conv_branch(x)


class DoubleHeadPredictor(nn.Module):
    """Class logits ``[N, K+1]`` from the fc features, box deltas ``[N, 4(K+1)]`` from the conv
    features; with ``complementary`` also the other way round (:meth:`complementary`)."""

    def __init__(
        self, representation_size: int, conv_channels: int, num_classes: int, complementary: bool
    ) -> None:
        super().__init__()
        self.cls_score = nn.Linear(representation_size, num_classes)
        self.bbox_pred = nn.Linear(conv_channels, num_classes * 4)
        if complementary:
            self.cls_score_conv = nn.Linear(conv_channels, num_classes)
            self.bbox_pred_fc = nn.Linear(representation_size, num_classes * 4)

    def forward(self, features: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        fc, conv = features
        return self.cls_score(fc), self.bbox_pred(conv)

    def complementary(self, features: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """Double-Head-Ext: class logits from the conv features, deltas from the fc features."""
        fc, conv = features
        return self.cls_score_conv(conv), self.bbox_pred_fc(fc)


class DoubleHeadRoIHeads(RoIHeads):
    """torchvision's ``RoIHeads`` (sampling, RoIAlign, box coder) with the double head."""

    def __init__(self, config: DoubleHeadConfig) -> None:
        super().__init__(
            box_head=DoubleHeadBoxHead(
                config.out_channels,
                config.representation_size,
                config.conv_channels,
                config.num_res_blocks,
            ),
            box_predictor=DoubleHeadPredictor(
                config.representation_size,
                config.conv_channels,
                config.num_classes + 1,
                config.complementary,
            ),
            **config.roi_arguments(),
        )
        self.config = config

    def losses(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_sizes: list,
        targets: list[dict[str, Tensor]],
    ) -> dict[str, Tensor]:
        """Weighted ``fastrcnn_loss`` terms (see the module docstring)."""
        cfg = self.config
        rois, _, labels, regression_targets = self.select_training_samples(proposals, targets)
        branches = self.box_head(self.box_roi_pool(features, rois, image_sizes))
        outputs = [t.float() for t in self.box_predictor(branches)]  # fp32 under autocast
        cls_fc, box_conv = fastrcnn_loss(*outputs, labels, regression_targets)
        if not cfg.complementary:
            return {
                "roi_classification": cfg.fc_loss_weight * cls_fc,
                "roi_box_regression": cfg.conv_loss_weight * box_conv,
            }
        complementary = [t.float() for t in self.box_predictor.complementary(branches)]
        cls_conv, box_fc = fastrcnn_loss(*complementary, labels, regression_targets)
        fc_share, conv_share = cfg.fc_classification_share, cfg.conv_regression_share
        return {
            "roi_classification": cfg.fc_loss_weight * fc_share * cls_fc,
            "roi_box_regression_fc": cfg.fc_loss_weight * (1 - fc_share) * box_fc,
            "roi_classification_conv": cfg.conv_loss_weight * (1 - conv_share) * cls_conv,
            "roi_box_regression": cfg.conv_loss_weight * conv_share * box_conv,
        }

    def predict(
        self, features: dict[str, Tensor], proposals: list[Tensor], image_sizes: list
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Per image class probabilities ``[P, K+1]`` (column 0: background) and class-specific
        refined boxes ``[P, K+1, 4]``."""
        branches = self.box_head(self.box_roi_pool(features, proposals, image_sizes))
        class_logits, deltas = (t.float() for t in self.box_predictor(branches))  # fp32 boxes
        probabilities = torch.softmax(class_logits, -1)
        if self.config.complementary:
            conv_logits = self.box_predictor.complementary(branches)[0].float()
            conv_probabilities = torch.softmax(conv_logits, -1)
            probabilities = probabilities + conv_probabilities * (1 - probabilities)
        boxes = self.box_coder.decode(deltas, proposals)
        counts = [len(p) for p in proposals]
        return list(probabilities.split(counts)), list(boxes.split(counts))


class DoubleHeadRCNN(TwoStageDetector):
    """Faster R-CNN (torchvision's RPN) with the Double-Head RoI head."""

    EXPORT_REFUSAL: ClassVar[str] = f"Double-Head R-CNN {ROI_EXPORT_REFUSAL}"

    PARTS: ClassVar[dict[str, tuple[str, ...]]] = {
        "backbone": ("backbone.",),
        "classification": (
            "roi_heads.box_head.fc_branch.",
            "roi_heads.box_predictor.cls_score",
        ),
        "localization": (
            "rpn.",
            "roi_heads.box_head.conv_branch.",
            "roi_heads.box_predictor.bbox_pred",
        ),
    }
    # Double-Head-Ext's complementary terms cross the branches: fc features -> box deltas and
    # conv features -> class scores, so each depends on both parts.
    LOSS_PARTS: ClassVar[dict[str, tuple[str, ...]]] = {
        "rpn_objectness": ("localization",),
        "rpn_box_regression": ("localization",),
        "roi_classification": ("classification",),
        "roi_box_regression": ("localization",),
        "roi_box_regression_fc": ("classification", "localization"),
        "roi_classification_conv": ("classification", "localization"),
    }

    def __init__(self, config: DoubleHeadConfig) -> None:
        super().__init__(config)
        self.rpn = build_rpn(config)
        self.roi_heads = DoubleHeadRoIHeads(config)

    def compute_losses(self, images, features, targets):
        proposals, _, losses = rpn_forward(self.rpn, images, features, targets)
        losses.update(self.roi_heads.losses(features, proposals, images.image_sizes, targets))
        return losses

    def detect(self, images, features):
        proposals, objectness, _ = rpn_forward(self.rpn, images, features)
        config = self.postprocess_config
        if config.scoring == "rpn":
            return select_each(proposals, objectness, images.image_sizes, config)
        probabilities, refined = self.roi_heads.predict(features, proposals, images.image_sizes)
        results = []
        for probs, boxes, rpn_scores, size in zip(
            probabilities, refined, objectness, images.image_sizes, strict=True
        ):
            foreground, boxes = probs[:, 1:], boxes[:, 1:]
            if config.scoring == "roi":
                best, label = foreground.max(dim=1)
                picked = boxes[torch.arange(len(boxes), device=boxes.device), label]
                results.append(select_boxes(picked, best, size, config, objectness=rpn_scores))
                continue
            roi, label = torch.nonzero(
                foreground > self.config.detection_score_thresh, as_tuple=True
            )
            scores = foreground[roi, label]
            results.append(
                select_boxes(
                    boxes[roi, label],
                    scores,
                    size,
                    config,
                    objectness=rpn_scores[roi],
                    labels=label,
                    class_scores=scores,
                )
            )
        return results

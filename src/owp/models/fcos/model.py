"""FCOS-OWP: transform → backbone → head → (losses | postprocess).

The one-stage open-world proposal model of Konan, Liang and Yin ("Extending One-Stage Detection
with Open-World Proposals"): torchvision's FCOS with learned objectness branches (centerness,
IoU, conditional variants), center sampling, IoU sampling and objectness sample sets. Every part
it shares with torchvision's FCOS keeps torchvision's state-dict name and location convention,
so a torchvision ``fcos_resnet50_fpn`` checkpoint loads (new branches keep their init) and,
scored as ``cls*centerness``, gives torchvision's detections.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from owp.models.backbones import backbone_for
from owp.models.contract import ExportKind, TrainedModelState
from owp.models.fcos.assign import (
    BACKGROUND,
    IGNORE,
    assign_targets,
    assigned_to_flagged,
    inside_flagged,
    pad_box_flags,
    pad_targets,
)
from owp.models.fcos.config import FCOSOWPConfig
from owp.models.fcos.head import FCOSOWPHead
from owp.models.fcos.losses import (
    classification_loss,
    global_normalizer,
    objectness_loss,
    regression_loss,
)
from owp.models.fcos.masking import unknown_object_mask
from owp.models.fcos.points import Points, make_points
from owp.models.fcos.postprocess import (
    PostprocessConfig,
    decode_boxes,
    location_objectness,
    postprocess,
)
from owp.models.fcos.targets import (
    centerness_targets,
    check_labels,
    gather_boxes,
    iou_targets,
    ltrb_targets,
    objectness_samples,
)

# The per-box entries of a target (the rest, e.g. image_id and orig_size, are per image).
_PER_BOX = ("boxes", "labels", "ignore", "iscrowd", "pseudo")


class FCOSOWP(TrainedModelState, nn.Module):
    """FCOS with learned objectness; a :class:`~owp.models.contract.ProposalModel`.

    ``model(images)`` with ``images`` a list of ``Tensor[3, H, W]`` in 0..1:

    * training mode, with ``targets`` (per image ``boxes`` ``[N, 4]`` xyxy, ``labels`` ``[N]``
      0-based, optional ``ignore`` and ``pseudo`` ``[N]`` bool): a dict of losses
      ``classification`` (when the model classifies), ``bbox_regression``, ``bbox_ctrness`` /
      ``bbox_iou`` (per branch);
    * eval mode: per image ``boxes`` ``[K, 4]`` (xyxy, original image coordinates), ``scores``,
      ``objectness``, and when the model classifies ``labels`` and ``class_scores``.

    ``PARTS`` names the parameter-name prefixes of the parts training recipes act on, and
    ``LOSS_PARTS`` the parts that compute each loss (a recipe that freezes one of them does not
    backpropagate that loss; see :mod:`owp.engine.recipes`). It exports to ONNX (every
    scoring), weights pseudo boxes by ``pseudo_weight`` and has per-location objectness maps.
    """

    EXPORT_AS: ClassVar[ExportKind | None] = "fcos"
    EXPORT_REFUSAL: ClassVar[str] = ""
    WEIGHTS_PSEUDO: ClassVar[bool] = True
    OBJECTNESS_MAPS: ClassVar[bool] = True
    COMPILED_PARTS: ClassVar[tuple[str, ...]] = ("backbone", "head")
    TORCH: ClassVar[bool] = True

    PARTS: ClassVar[dict[str, tuple[str, ...]]] = {
        "backbone": ("backbone.",),
        "classification": ("head.classification_head.",),
        "localization": ("head.regression_head.",),
        "objectness": ("head.regression_head.bbox_ctrness.", "head.regression_head.bbox_iou."),
    }
    LOSS_PARTS: ClassVar[dict[str, tuple[str, ...]]] = {
        "classification": ("classification",),
        "bbox_regression": ("localization",),
        "bbox_ctrness": ("localization",),
        "bbox_iou": ("localization",),
    }

    def __init__(self, config: FCOSOWPConfig) -> None:
        super().__init__()
        self.config = config
        self.transform = GeneralizedRCNNTransform(
            config.min_size, config.max_size, list(config.image_mean), list(config.image_std)
        )
        self.backbone = backbone_for(config)
        self.head = FCOSOWPHead(
            config.out_channels,
            config.num_classes,
            num_convs=config.num_convs,
            objectness=config.objectness,
            conditional=config.conditional,
            conditional_detach=config.conditional_detach,
            norm_groups=config.norm_groups,
        )
        self.postprocess_config = config.postprocess_config()
        self.last_masked = 0  # locations masked in the last training forward (for logging)

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        if self.training and targets is None:
            raise ValueError("FCOSOWP needs targets in training mode")
        if not self.training:
            return self.detect_per_config(images, [self.postprocess_config])[0]
        image_list, targets = self.transform(images, targets)
        outputs, points = self._head_outputs(image_list.tensors, None)
        return self.compute_losses(outputs, points, targets)

    def detect_per_config(
        self, images: list[Tensor], configs: list[PostprocessConfig]
    ) -> list[list[dict[str, Tensor]]]:
        """Detections of ``images`` (each ``[3, H, W]``) under each postprocess config.

        The backbone and head run once; only the branches the configs' scorings read are
        computed, and each config ranks and selects from the same outputs. Returns one list of
        per-image outputs (the ``forward`` eval contract, original image coordinates) per
        config; ``forward`` in eval mode returns the one for ``self.postprocess_config``.
        """
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        image_list, _ = self.transform(images, None)
        required = tuple(dict.fromkeys(k for c in configs for k in c.required_outputs()))
        outputs, points = self._head_outputs(image_list.tensors, required)
        sizes = image_list.image_sizes
        return [
            self.transform.postprocess(
                postprocess(outputs, points.xy, points.stride, points.num_per_level, sizes, c),
                sizes,
                original_sizes,
            )
            for c in configs
        ]

    def _head_outputs(
        self, tensors: Tensor, required: tuple[str, ...] | None
    ) -> tuple[dict[str, Tensor], Points]:
        """Head outputs (each ``[B, P, K]``, fp32) of a padded batch ``[B, 3, H, W]`` and its
        locations; ``required`` names the outputs to compute (``None``: all)."""
        features = list(self.backbone(tensors).values())
        outputs = self.head(features, required)
        # Under autocast the head's outputs are bf16/fp16: targets (IoU of the predicted box),
        # losses and box decoding are computed from fp32 copies.
        outputs = {name: value.float() for name, value in outputs.items()}
        points = make_points(
            [(f.shape[-2], f.shape[-1]) for f in features],
            image_size=(tensors.shape[-2], tensors.shape[-1]),
            device=tensors.device,
        )
        return outputs, points

    def training_stats(self) -> dict[str, float]:
        """Extra values the trainer logs: ``masked`` locations when unknown-object masking is on."""
        return {"masked": float(self.last_masked)} if self.config.unknown_mask else {}

    def compute_losses(
        self, outputs: dict[str, Tensor], points: Points, targets: list[dict[str, Tensor]]
    ) -> dict[str, Tensor]:
        """The FCOS-OWP losses for a batch (docs/reference/models.md), each already normalised.

        Pseudo boxes (``target["pseudo"]``, self-training) never take an annotated object's
        locations: the annotated boxes are assigned first, and a pseudo box claims only the
        locations that are background for all of them and not ignored
        (:func:`~owp.models.fcos.assign.assign_targets`). Its locations train regression and
        objectness and count ``self.pseudo_weight`` times, in the sums and in the normalisers
        alike (weight 1: exactly as an annotated box would there). The classifier sees the
        annotated assignment, with every location inside a pseudo box that is not an annotated
        positive left out (the crowd rule): never background, never a positive of a class.
        Weight 0 is no pseudo boxes at all: the losses equal, bit for bit, those of the targets
        without them (ignore regions of the classifier included).
        """
        cfg = self.config
        if self.pseudo_weight == 0:
            targets = [_without_pseudo(target) for target in targets]
        boxes, valid, ignore, labels = pad_targets(
            [t["boxes"] for t in targets],
            [t.get("ignore", torch.zeros(len(t["boxes"]), dtype=torch.bool)) for t in targets],
            [t["labels"] for t in targets],
        )
        pseudo = pad_box_flags(
            [t.get("pseudo", torch.zeros(len(t["boxes"]), dtype=torch.bool)) for t in targets],
            valid,
        )
        if cfg.num_classes is not None:
            check_labels(labels[valid & ~ignore & ~pseudo], cfg.num_classes)
        matched = assign_targets(
            points, boxes, valid, ignore, pseudo, center_radius=cfg.center_radius
        )
        foreground = matched >= 0
        on_pseudo = assigned_to_flagged(matched, pseudo)
        has_pseudo = bool(on_pseudo.any())
        counts = [torch.where(on_pseudo, self.pseudo_weight, foreground.float()).sum()]
        classifies = "cls_logits" in outputs
        if classifies:
            # The annotated assignment, with the pseudo boxes as ignore regions.
            cls_matched = matched
            if bool(pseudo.any()):
                cls_matched = matched.masked_fill(on_pseudo, BACKGROUND)
                in_pseudo = inside_flagged(points, boxes, valid & pseudo)
                cls_matched = cls_matched.masked_fill(
                    in_pseudo & (cls_matched == BACKGROUND), IGNORE
                )
            counts.append((cls_matched >= 0).sum().float())
        # One all-reduce for both normalisers: the weighted foreground and the classifier's.
        normalizers = global_normalizer(torch.stack(counts), boxes.device)
        num_foreground = normalizers[0]
        losses: dict[str, Tensor] = {}
        regression = outputs["bbox_regression"]
        pred_boxes = decode_boxes(points.xy, points.stride, regression)
        if classifies:
            cls_foreground = cls_matched >= 0
            fg_labels = (
                labels.gather(1, cls_matched.clamp(min=0))
                if labels.shape[1]
                else torch.zeros_like(cls_matched)
            )
            # Per location: crowd and pseudo regions (IGNORE) and masked unknown objects are
            # left out.
            cls_locations = cls_matched != IGNORE
            if cfg.unknown_mask and self.iteration >= cfg.unknown_mask_start:
                masked = self._unknown_mask(outputs, points, cls_matched, pred_boxes)
                cls_locations &= ~masked
                self.last_masked = int(masked.sum())
            losses["classification"] = classification_loss(
                outputs["cls_logits"], fg_labels, cls_foreground, cls_locations, normalizers[1]
            )
        target_boxes = gather_boxes(boxes, matched)
        annotated = foreground & ~on_pseudo
        losses["bbox_regression"] = regression_loss(
            pred_boxes[annotated], target_boxes[annotated], num_foreground
        )
        if has_pseudo:
            losses["bbox_regression"] = losses["bbox_regression"] + self.pseudo_weight * (
                regression_loss(pred_boxes[on_pseudo], target_boxes[on_pseudo], num_foreground)
            )
        losses.update(
            self._objectness_losses(outputs, points, boxes, valid, ignore, pseudo, matched)
        )
        return losses

    def _unknown_mask(self, outputs, points, matched, pred_boxes) -> Tensor:
        """Background locations the classifier must not learn as background (§4 masking)."""
        cfg = self.config
        with torch.no_grad():
            objectness = location_objectness(outputs, cfg.unknown_mask_objectness)
            return unknown_object_mask(
                objectness,
                matched,
                cfg.unknown_mask_thresh,
                points=points if cfg.unknown_mask == "area" else None,
                pred_boxes=pred_boxes.detach() if cfg.unknown_mask == "area" else None,
                nms_thresh=cfg.unknown_mask_nms,
            )

    def _objectness_losses(self, outputs, points, boxes, valid, ignore, pseudo, matched) -> dict:
        cfg = self.config
        matched_no_cs = (
            matched
            if cfg.objectness_samples == "center"
            else assign_targets(points, boxes, valid, ignore, pseudo, center_radius=None)
        )
        samples = objectness_samples(cfg.objectness_samples, matched, matched_no_cs)
        positive = samples.matched >= 0
        target_ltrb = ltrb_targets(points, gather_boxes(boxes, samples.matched))
        # Samples on pseudo boxes weigh pseudo_weight, in the sum and in the normaliser.
        on_pseudo = assigned_to_flagged(samples.matched, pseudo)
        annotated = samples.mask & ~on_pseudo
        has_pseudo = bool(on_pseudo.any())
        normalizer = global_normalizer(
            annotated.sum() + self.pseudo_weight * on_pseudo.sum(), boxes.device
        )
        targets = {}
        if "bbox_ctrness" in outputs:
            targets["bbox_ctrness"] = torch.where(positive, centerness_targets(target_ltrb), 0.0)
        if "bbox_iou" in outputs:
            pred_ltrb = outputs["bbox_regression"] * points.stride[:, None]
            iou = iou_targets(pred_ltrb, target_ltrb, threshold=cfg.iou_sample_threshold)
            targets["bbox_iou"] = torch.where(positive, iou, 0.0)
        losses = {}
        for name, target in targets.items():
            logits = outputs[name][..., 0]
            loss = objectness_loss(logits[annotated], target[annotated], normalizer)
            if has_pseudo:
                loss = loss + self.pseudo_weight * objectness_loss(
                    logits[on_pseudo], target[on_pseudo], normalizer
                )
            losses[name] = loss
        return losses


def _without_pseudo(target: dict[str, Tensor]) -> dict[str, Tensor]:
    """``target`` with its pseudo boxes removed (every per-box entry: ``boxes``, ``labels``,
    ``ignore``, ``iscrowd``, ``pseudo``)."""
    pseudo = target.get("pseudo")
    if pseudo is None or not bool(pseudo.any()):
        return target
    keep = ~pseudo
    return {key: value[keep] if key in _PER_BOX else value for key, value in target.items()}

"""OLN: Object Localization Network (Kim, Lin, Angelova, Kweon, Kuo 2021).

A two-stage proposer that never learns to classify; both stages learn localization quality:

* **OLN-RPN** (:class:`OLNRPN`, a torchvision ``RegionProposalNetwork``): one square anchor per
  location (sizes 32..512 on P2-P6), an ``RPNHead`` whose shared conv output is L2-normalised
  (OLN's stabiliser), ltrb box regression in anchor-size units (torchvision's
  ``BoxLinearCoder(normalize_by_size=True)``) trained with the IoU loss ``1 - IoU`` (weight 10)
  on anchors matched at IoU >= 0.7 (torchvision's RPN matcher and 256-anchor sampler), and
  **centerness** objectness: ``sigmoid(logit)`` regressed with L1 onto the centerness of the
  anchor centre in its matched box, on up to 256 anchors per image with IoU >= 0.3 (negatives
  with IoU < 0.1 fill the rest of the 256 at target 0 when positives are fewer, as OLN's
  released sampler does; there is no classification). At test time there is **no NMS**: the
  top ``rpn_pre_nms_top_n_test`` per level, then the best ``rpn_post_nms_top_n_test``.
* **OLN-Box** (:class:`OLNRoIHeads`, a torchvision ``RoIHeads``): two-fc head, class-agnostic
  box regression (L1 on torchvision's box deltas) and a box IoU score: ``sigmoid(logit)``
  regressed with L1 onto IoU(RoI, matched ground truth) on positive RoIs, divided by every
  sampled RoI (OLN's normaliser).
* Final score ``sqrt(rpn centerness x RoI IoU)`` on the refined boxes, NMS 0.7.

Where OLN's mmdetection code and torchvision differ, owp keeps torchvision's conventions for
sampling and matching (every anchor trains, where OLN drops anchors crossing the image border),
but every loss normaliser is OLN's own, cited from its reference file in the loss docstrings:
the RPN losses divide by the box sampler's anchor count, the RoI losses by the sampled RoIs.

Written by hand (no library has them): the centerness targets for anchors, the OLN sampling,
the IoU score head and loss; everything else is torchvision's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import (
    RegionProposalNetwork,
    RPNHead,
    concat_box_prediction_layers,
)
from torchvision.ops import box_iou, clip_boxes_to_image, remove_small_boxes

from owp.models.fcos.targets import centerness_targets
from owp.models.two_stage.base import (
    MIN_BOX_SIZE,
    ROI_EXPORT_REFUSAL,
    ROI_SIZE,
    RCNNConfig,
    TwoStageDetector,
    aligned_box_iou,
    select_each,
)


@dataclass
class OLNConfig(RCNNConfig):
    """:class:`~owp.models.two_stage.base.RCNNConfig` of OLN, with OLN's defaults.

    ``objectness_fg_iou_thresh`` / ``objectness_bg_iou_thresh`` / ``objectness_batch_size``:
    the centerness samples (IoU >= 0.3 positives, < 0.1 negatives, 256 per image, positives
    first). ``rpn_box_loss_weight``: weight of the RPN IoU loss (10).
    Scorings: ``oln`` (sqrt(RPN centerness x RoI IoU) on the refined boxes, the paper's),
    ``rpn`` (RPN centerness on the RPN boxes), ``iou`` (RoI IoU on the refined boxes).
    """

    SCORINGS: ClassVar[tuple[str, ...]] = ("oln", "rpn", "iou")

    aspect_ratios: tuple[float, ...] = (1.0,)
    rpn_pre_nms_top_n_test: int = 2000
    rpn_post_nms_top_n_test: int = 2000
    objectness_fg_iou_thresh: float = 0.3
    objectness_bg_iou_thresh: float = 0.1
    objectness_batch_size: int = 256
    rpn_box_loss_weight: float = 10.0
    scoring: str = "oln"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_classes is not None:
            raise ValueError("OLN is class-agnostic: num_classes must be null")
        if len(self.aspect_ratios) != 1:
            raise ValueError("OLN uses one anchor per location: give one aspect ratio")


class OLNRPNHead(RPNHead):
    """torchvision's ``RPNHead`` with the shared conv output L2-normalised over channels.

    ``cls_logits`` is the centerness logit, ``bbox_pred`` the ltrb distances (anchor units).
    The ``bbox_pred`` bias starts at 0.5 so that every anchor first proposes itself, as a
    delta-coded RPN does at zero output (owp's choice: at OLN's zero init every box is a point,
    dropped as empty, and an IoU loss gives no gradient to a box of negative width).
    """

    def __init__(self, in_channels: int, num_anchors: int) -> None:
        super().__init__(in_channels, num_anchors)
        nn.init.constant_(self.bbox_pred.bias, 0.5)

    def forward(self, x: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        logits, boxes = [], []
        for feature in x:
            shared = F.normalize(self.conv(feature), p=2, dim=1)
            logits.append(self.cls_logits(shared))
            boxes.append(self.bbox_pred(shared))
        return logits, boxes


def oln_num_total_samples(positive: Tensor, negative: Tensor, num_images: int) -> int:
    """OLN-RPN's loss normaliser from the box sampler's flat masks ``[B*A]`` (``B`` images of
    ``A`` anchors): ``sum_i max(pos_i, 1) + sum_i max(neg_i, 1)`` (see
    :meth:`OLNRPN.compute_losses` for the reference lines)."""
    per_image = torch.stack([positive, negative]).view(2, num_images, -1).sum(dim=2)
    return int(per_image.clamp(min=1).sum())


def anchor_centerness_targets(anchors: Tensor, gt_boxes: Tensor) -> Tensor:
    """Centerness of each anchor's centre in its box: ``[N, 4]``, ``[N, 4]`` → ``[N]``.

    ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))`` with (l, t, r, b) the distances
    from the anchor centre to the box sides; 0 when the centre lies outside the box.
    """
    centers = (anchors[:, :2] + anchors[:, 2:]) / 2
    ltrb = torch.cat([centers - gt_boxes[:, :2], gt_boxes[:, 2:] - centers], dim=1)
    return centerness_targets(ltrb)


class OLNRPN(RegionProposalNetwork):
    """OLN-RPN on torchvision's ``RegionProposalNetwork`` (see the module docstring).

    :meth:`forward` returns ``(boxes, centerness, losses)``: per image proposals ``[P, 4]``,
    their centerness ``[P]``, and in training the losses ``rpn_centerness``, ``rpn_box_iou``.
    """

    def __init__(self, config: OLNConfig) -> None:
        super().__init__(
            config.anchor_generator(),
            OLNRPNHead(config.out_channels, 1),
            **config.rpn_arguments(),
        )
        self.box_coder = det_utils.BoxLinearCoder(normalize_by_size=True)
        self.objectness_matcher = det_utils.Matcher(
            config.objectness_fg_iou_thresh,
            config.objectness_bg_iou_thresh,
            allow_low_quality_matches=False,
        )
        self.objectness_sampler = det_utils.BalancedPositiveNegativeSampler(
            config.objectness_batch_size, 1.0
        )
        self.box_loss_weight = config.rpn_box_loss_weight

    def forward(
        self,
        images: ImageList,
        features: dict[str, Tensor],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[Tensor], list[Tensor], dict[str, Tensor]]:
        levels = list(features.values())
        logits, deltas = self.head(levels)
        anchors = self.anchor_generator(images, levels)
        num_per_level = [o[0].numel() for o in logits]
        logits, deltas = concat_box_prediction_layers(logits, deltas)
        # Under autocast the head's outputs are bf16/fp16: decoding, proposals and losses are fp32.
        logits, deltas = logits.float(), deltas.float()
        proposals = self.box_coder.decode(deltas.detach(), torch.cat(anchors))
        proposals = proposals.view(len(anchors), -1, 4)
        boxes, scores = self.filter_proposals(proposals, logits, images.image_sizes, num_per_level)
        losses = {}
        if self.training:
            losses = self.compute_losses(anchors, logits, deltas, targets)
        return boxes, scores, losses

    def filter_proposals(
        self,
        proposals: Tensor,
        objectness: Tensor,
        image_shapes: list[tuple[int, int]],
        num_anchors_per_level: list[int],
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Top ``pre_nms_top_n`` per level, clipped, then the best ``post_nms_top_n``: no NMS."""
        objectness = objectness.detach().reshape(len(proposals), -1)
        top = self._get_top_n_idx(objectness, num_anchors_per_level)
        batch = torch.arange(len(proposals), device=proposals.device)[:, None]
        scores, proposals = torch.sigmoid(objectness[batch, top]), proposals[batch, top]
        final_boxes, final_scores = [], []
        for boxes, box_scores, size in zip(proposals, scores, image_shapes, strict=True):
            boxes = clip_boxes_to_image(boxes, size)
            keep = remove_small_boxes(boxes, MIN_BOX_SIZE)
            keep = keep[box_scores[keep].argsort(descending=True)][: self.post_nms_top_n()]
            final_boxes.append(boxes[keep])
            final_scores.append(box_scores[keep])
        return final_boxes, final_scores

    def compute_losses(
        self,
        anchors: list[Tensor],
        logits: Tensor,
        deltas: Tensor,
        targets: list[dict[str, Tensor]],
    ) -> dict[str, Tensor]:
        """OLN-RPN losses from logits ``[B*A, 1]`` and ltrb deltas ``[B*A, 4]``.

        Both losses are sums divided by OLN's ``num_total_samples``: the anchors drawn by the
        *box* sampler (256 per image), counted as ``sum_i max(pos_i, 1) + sum_i max(neg_i, 1)``
        over the images — ``mmdet/models/dense_heads/oln_rpn_head.py`` in
        mcahny/object_localization_network: ``loss_single`` passes ``avg_factor=
        num_total_samples`` to both ``loss_bbox`` (L141-145) and ``loss_objectness``
        (L154-158); ``loss`` sets it to ``num_total_pos + num_total_neg`` (L214-215), which
        ``get_targets`` counts per image with ``max(inds.numel(), 1)`` (L494-495).

        ``rpn_centerness``: L1 between sigmoid(logit) and the centerness targets, summed over
        the anchors of the objectness sampler (IoU >= 0.3 positives, negatives filling the 256).
        ``rpn_box_iou``: ``weight * sum(1 - IoU)`` over the positive anchors of torchvision's
        RPN sampler whose centre lies inside the box.
        """
        box_labels, matched = self.assign_targets_to_anchors(anchors, targets)
        box_positive, box_negative = self._sample_box_anchors(box_labels)
        objectness_labels, objectness_matched = self.assign_objectness(anchors, targets)
        positive, negative = self.objectness_sampler(objectness_labels)
        positive, negative = torch.cat(positive).bool(), torch.cat(negative).bool()
        all_anchors, all_matched = torch.cat(anchors), torch.cat(objectness_matched)
        centerness = torch.zeros(len(all_anchors), device=all_anchors.device)
        centerness[positive] = anchor_centerness_targets(
            all_anchors[positive], all_matched[positive]
        )
        sampled = positive | negative
        normalizer = oln_num_total_samples(box_positive, box_negative, len(anchors))
        probability = torch.sigmoid(logits.flatten())
        centerness_loss = (
            F.l1_loss(probability[sampled], centerness[sampled], reduction="sum") / normalizer
        )

        box_targets = torch.cat(matched)
        centers = (all_anchors[:, :2] + all_anchors[:, 2:]) / 2
        inside = (centers > box_targets[:, :2]).all(1) & (centers < box_targets[:, 2:]).all(1)
        positives = box_positive & inside
        predicted = self.box_coder.decode(deltas[positives], all_anchors[positives])
        iou = aligned_box_iou(predicted, box_targets[positives])
        box_loss = self.box_loss_weight * (1 - iou).sum() / normalizer
        return {"rpn_centerness": centerness_loss, "rpn_box_iou": box_loss}

    def _sample_box_anchors(self, labels: list[Tensor]) -> tuple[Tensor, Tensor]:
        """torchvision's RPN sampling (``batch_size_per_image``, ``positive_fraction``) of the
        box-regression anchors, as flat masks ``[B*A]``."""
        positive, negative = self.fg_bg_sampler(labels)
        return torch.cat(positive).bool(), torch.cat(negative).bool()

    def assign_objectness(
        self, anchors: list[Tensor], targets: list[dict[str, Tensor]]
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Centerness sample labels per anchor (1: IoU >= 0.3, 0: IoU < 0.1, -1: neither) and
        the matched box ``[A, 4]`` per image (no low-quality matches)."""
        labels, matched_boxes = [], []
        for image_anchors, target in zip(anchors, targets, strict=True):
            gt_boxes = target["boxes"]
            if gt_boxes.numel() == 0:
                labels.append(torch.zeros(len(image_anchors), device=image_anchors.device))
                matched_boxes.append(torch.zeros_like(image_anchors))
                continue
            matches = self.objectness_matcher(box_iou(gt_boxes, image_anchors))
            image_labels = (matches >= 0).float()
            image_labels[matches == self.objectness_matcher.BETWEEN_THRESHOLDS] = -1.0
            labels.append(image_labels)
            matched_boxes.append(gt_boxes[matches.clamp(min=0)])
        return labels, matched_boxes


class OLNBoxPredictor(nn.Module):
    """Class-agnostic box deltas ``[N, 4]`` and the box IoU logit ``[N, 1]`` from RoI features."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.bbox_pred = nn.Linear(in_channels, 4)
        self.bbox_score = nn.Linear(in_channels, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.flatten(start_dim=1)
        return self.bbox_pred(x), self.bbox_score(x)


class OLNRoIHeads(RoIHeads):
    """OLN-Box on torchvision's ``RoIHeads`` (sampling, RoIAlign, box coder are torchvision's)."""

    def __init__(self, config: OLNConfig) -> None:
        super().__init__(
            box_head=TwoMLPHead(config.out_channels * ROI_SIZE**2, config.representation_size),
            box_predictor=OLNBoxPredictor(config.representation_size),
            **config.roi_arguments(),
        )

    def predict(
        self, features: dict[str, Tensor], proposals: list[Tensor], image_sizes: list
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Refined boxes ``[P, 4]`` and predicted IoU ``[P]`` (sigmoid) per image."""
        pooled = self.box_roi_pool(features, proposals, image_sizes)
        deltas, iou_logits = (t.float() for t in self.box_predictor(self.box_head(pooled)))
        boxes = self.box_coder.decode(deltas, proposals)[:, 0]
        counts = [len(p) for p in proposals]
        return list(boxes.split(counts)), list(torch.sigmoid(iou_logits[:, 0]).split(counts))

    def losses(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_sizes: list,
        targets: list[dict[str, Tensor]],
    ) -> dict[str, Tensor]:
        """``roi_box_regression`` and ``roi_iou``, both divided by the number of sampled RoIs.

        ``roi_box_regression``: L1 on the positive RoIs' deltas (summed over the 4 coordinates).
        ``roi_iou``: L1 between sigmoid(score) and IoU(RoI, matched box) on the positive RoIs
        (negatives have weight 0). The normaliser of both is every sampled RoI, positive or
        negative, as OLN's ``ConvFCBBoxScoreHead.loss`` does in
        ``mmdet/models/roi_heads/bbox_heads/convfc_bbox_score_head.py``
        (mcahny/object_localization_network): ``avg_factor=bbox_targets.size(0)`` for
        ``loss_bbox`` (L235) and ``avg_factor=bbox_score_targets.size(0)`` for
        ``loss_bbox_score`` (L246), where both sizes are the sampled RoIs (512 per image at
        pos_fraction 0.25, configs/oln_box/oln_box.py).
        """
        rois, matched_idxs, labels, regression_targets = self.select_training_samples(
            proposals, targets
        )
        pooled = self.box_roi_pool(features, rois, image_sizes)
        deltas, iou_logits = (t.float() for t in self.box_predictor(self.box_head(pooled)))
        labels = torch.cat(labels)
        positive = labels > 0
        regression_targets = torch.cat(regression_targets)
        box_loss = F.l1_loss(deltas[positive], regression_targets[positive], reduction="sum") / max(
            1, labels.numel()
        )
        matched_gt = torch.cat(
            [
                target["boxes"][idxs] if target["boxes"].numel() else torch.zeros_like(image_rois)
                for target, idxs, image_rois in zip(targets, matched_idxs, rois, strict=True)
            ]
        )
        iou_targets = roi_iou_targets(torch.cat(rois)[positive], matched_gt[positive])
        iou_loss = F.l1_loss(
            torch.sigmoid(iou_logits[positive, 0]), iou_targets, reduction="sum"
        ) / max(1, labels.numel())
        return {"roi_box_regression": box_loss, "roi_iou": iou_loss}


def roi_iou_targets(rois: Tensor, matched_boxes: Tensor) -> Tensor:
    """OLN-Box score targets: IoU of each positive RoI ``[N, 4]`` with its matched box."""
    return aligned_box_iou(rois, matched_boxes).detach()


def oln_score(rpn_centerness: Tensor, roi_iou: Tensor) -> Tensor:
    """OLN's final score: the geometric mean ``sqrt(centerness x IoU)``."""
    return torch.sqrt(rpn_centerness * roi_iou)


class OLN(TwoStageDetector):
    """OLN-RPN + OLN-Box; see the module docstring."""

    EXPORT_REFUSAL: ClassVar[str] = f"OLN {ROI_EXPORT_REFUSAL}"

    PARTS: ClassVar[dict[str, tuple[str, ...]]] = {
        "backbone": ("backbone.",),
        "classification": (),
        "localization": ("rpn.", "roi_heads."),
    }
    LOSS_PARTS: ClassVar[dict[str, tuple[str, ...]]] = {
        "rpn_centerness": ("localization",),
        "rpn_box_iou": ("localization",),
        "roi_box_regression": ("localization",),
        "roi_iou": ("localization",),
    }

    def __init__(self, config: OLNConfig) -> None:
        super().__init__(config)
        self.rpn = OLNRPN(config)
        self.roi_heads = OLNRoIHeads(config)

    def compute_losses(self, images, features, targets):
        proposals, _, losses = self.rpn(images, features, targets)
        losses.update(self.roi_heads.losses(features, proposals, images.image_sizes, targets))
        return losses

    def detect(self, images, features):
        proposals, centerness, _ = self.rpn(images, features)
        config = self.postprocess_config
        if config.scoring == "rpn":
            return select_each(proposals, centerness, images.image_sizes, config)
        refined, iou = self.roi_heads.predict(features, proposals, images.image_sizes)
        scores = [
            oln_score(rpn_scores, roi_iou) if config.scoring == "oln" else roi_iou
            for rpn_scores, roi_iou in zip(centerness, iou, strict=True)
        ]
        return select_each(refined, scores, images.image_sizes, config)

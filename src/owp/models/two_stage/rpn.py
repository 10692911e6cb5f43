"""Faster R-CNN's RPN objectness as open-world proposals, and :func:`rpn_proposals`.

:class:`RPNProposer` is torchvision's Faster R-CNN front end trained class-agnostically: its
``RegionProposalNetwork`` (anchors of three aspect ratios, objectness by BCE on anchors with
IoU >= 0.7 / < 0.3, smooth-L1 box deltas) and, with ``roi_heads=True``, a class-agnostic
two-fc box head ("object" vs background) that refines the proposals. Proposals are the RPN's
boxes (torchvision keeps the top ``rpn_post_nms_top_n_test`` after per-level NMS) with their
objectness probability, then one class-agnostic NMS across levels and the top-k per image.

:func:`rpn_proposals` does the same for any torchvision Faster R-CNN, e.g. the COCO-pretrained
``fasterrcnn_resnet50_fpn`` when its weights are on disk.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import ClassVar

import torch
from torch import Tensor
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import (
    RegionProposalNetwork,
    RPNHead,
    concat_box_prediction_layers,
)

from owp.models.contract import ExportKind
from owp.models.two_stage.base import (
    ROI_SIZE,
    RCNNConfig,
    RCNNPostprocessConfig,
    TwoStageDetector,
    select_boxes,
    select_each,
)


@dataclass
class RPNConfig(RCNNConfig):
    """:class:`~owp.models.two_stage.base.RCNNConfig` of the RPN proposer.

    ``roi_heads``: add torchvision's class-agnostic box head (TwoMLPHead + 2-way predictor).
    Scorings: ``rpn`` (RPN objectness on the RPN boxes) and ``roi`` (the box head's object
    probability on its refined boxes; needs ``roi_heads``).
    """

    SCORINGS: ClassVar[tuple[str, ...]] = ("rpn", "roi")

    roi_heads: bool = False
    scoring: str = "rpn"

    def __post_init__(self) -> None:
        if self.scoring == "roi" and not self.roi_heads:
            raise ValueError("scoring 'roi' needs roi_heads: true")
        super().__post_init__()
        if self.num_classes is not None:
            raise ValueError("the RPN proposer is class-agnostic: num_classes must be null")

    def postprocess_config(self) -> RCNNPostprocessConfig:
        """As the base class, offering ``roi`` only with ``roi_heads``."""
        return replace(
            super().postprocess_config(), choices=self.SCORINGS if self.roi_heads else ("rpn",)
        )


def build_rpn(config: RCNNConfig) -> RegionProposalNetwork:
    """torchvision's ``RegionProposalNetwork`` with ``RPNHead`` for ``config``'s anchors."""
    anchors = config.anchor_generator()
    return RegionProposalNetwork(
        anchors,
        RPNHead(config.out_channels, anchors.num_anchors_per_location()[0]),
        **config.rpn_arguments(),
    )


def rpn_forward(
    rpn: RegionProposalNetwork,
    images: ImageList,
    features: dict[str, Tensor],
    targets: list[dict[str, Tensor]] | None = None,
) -> tuple[list[Tensor], list[Tensor], dict[str, Tensor]]:
    """torchvision's ``RegionProposalNetwork.forward``, also returning the objectness.

    Returns per image the proposals ``[P, 4]`` (input coordinates, after torchvision's
    per-level NMS and top-k) and their objectness probabilities ``[P]``, and in training mode
    the losses ``rpn_objectness`` and ``rpn_box_regression`` (torchvision's, renamed).
    """
    levels = list(features.values())
    objectness, deltas = rpn.head(levels)
    anchors = rpn.anchor_generator(images, levels)
    num_per_level = [o[0].numel() for o in objectness]
    objectness, deltas = concat_box_prediction_layers(objectness, deltas)
    # Under autocast the head's outputs are bf16/fp16: decoding, proposals and losses are fp32.
    objectness, deltas = objectness.float(), deltas.float()
    proposals = rpn.box_coder.decode(deltas.detach(), anchors).view(len(anchors), -1, 4)
    boxes, scores = rpn.filter_proposals(proposals, objectness, images.image_sizes, num_per_level)
    losses = {}
    if rpn.training:
        labels, matched_boxes = rpn.assign_targets_to_anchors(anchors, targets)
        regression_targets = rpn.box_coder.encode(matched_boxes, anchors)
        objectness_loss, box_loss = rpn.compute_loss(objectness, deltas, labels, regression_targets)
        losses = {"rpn_objectness": objectness_loss, "rpn_box_regression": box_loss}
    return boxes, scores, losses


class RPNProposer(TwoStageDetector):
    """Faster R-CNN's RPN (optionally with a class-agnostic box head) as a proposal model; it
    exports to ONNX with the ``rpn`` scoring."""

    EXPORT_AS: ClassVar[ExportKind | None] = "rpn"

    PARTS: ClassVar[dict[str, tuple[str, ...]]] = {
        "backbone": ("backbone.",),
        "classification": (),
        "localization": ("rpn.", "roi_heads."),
    }
    # The optional box head is class-agnostic (object vs background): localization too.
    LOSS_PARTS: ClassVar[dict[str, tuple[str, ...]]] = {
        "rpn_objectness": ("localization",),
        "rpn_box_regression": ("localization",),
        "roi_classification": ("localization",),
        "roi_box_regression": ("localization",),
    }

    def __init__(self, config: RPNConfig) -> None:
        super().__init__(config)
        self.rpn = build_rpn(config)
        self.roi_heads = None
        if config.roi_heads:
            self.roi_heads = RoIHeads(
                box_head=TwoMLPHead(config.out_channels * ROI_SIZE**2, config.representation_size),
                box_predictor=FastRCNNPredictor(config.representation_size, 2),
                **config.roi_arguments(),
            )

    def compute_losses(self, images, features, targets):
        proposals, _, losses = rpn_forward(self.rpn, images, features, targets)
        if self.roi_heads is not None:
            _, roi_losses = self.roi_heads(features, proposals, images.image_sizes, targets)
            losses["roi_classification"] = roi_losses["loss_classifier"]
            losses["roi_box_regression"] = roi_losses["loss_box_reg"]
        return losses

    def detect(self, images, features):
        proposals, objectness, _ = rpn_forward(self.rpn, images, features)
        config = self.postprocess_config
        if config.scoring == "rpn":
            return select_each(proposals, objectness, images.image_sizes, config)
        heads = self.roi_heads
        pooled = heads.box_roi_pool(features, proposals, images.image_sizes)
        class_logits, regression = heads.box_predictor(heads.box_head(pooled))
        class_logits, regression = class_logits.float(), regression.float()
        refined = heads.box_coder.decode(regression, proposals)[:, 1]
        object_probability = torch.softmax(class_logits, -1)[:, 1]
        counts = [len(p) for p in proposals]
        return select_each(
            list(refined.split(counts)),
            list(object_probability.split(counts)),
            images.image_sizes,
            config,
        )


@torch.inference_mode()
def rpn_proposals(
    model: torch.nn.Module,
    images: list[Tensor],
    *,
    nms_thresh: float | None = 0.7,
    top_n: int | None = None,
) -> list[dict[str, Tensor]]:
    """RPN objectness proposals of any torchvision Faster R-CNN.

    Detection ``scores`` of a Faster R-CNN are *class* probabilities of its second stage
    (softmax over the trained classes plus background, per class, after per-class NMS): a
    confident "not one of my classes" is a low score, so objects of unseen classes rank low.
    The RPN's objectness is the first stage's class-agnostic "any object here" probability:
    these are the proposals to compare with open-world proposers.

    Args:
        model: a torchvision ``FasterRCNN`` (``transform``, ``backbone``, ``rpn``), e.g.
            ``fasterrcnn_resnet50_fpn(weights=...)``; any train/eval mode (restored after).
        images: ``Tensor[3, H, W]`` in 0..1, on the model's device.
        nms_thresh: IoU of the class-agnostic NMS across levels applied on top of
            torchvision's per-level NMS; ``None`` returns torchvision's RPN boxes as they are.
        top_n: boxes kept per image after that NMS (``None``: all of them, at most the
            model's ``rpn.post_nms_top_n()`` in eval mode).

    Returns:
        Per image ``boxes`` ``[K, 4]`` (xyxy, original image coordinates) and ``scores``
        ``[K]`` (objectness probabilities in [0, 1]), best first.
    """
    for part in ("transform", "backbone", "rpn"):
        if not hasattr(model, part):
            raise TypeError(
                f"rpn_proposals needs a torchvision Faster R-CNN (no .{part} on "
                f"{type(model).__name__})"
            )
    if type(model.rpn) is not RegionProposalNetwork:
        raise TypeError(
            "rpn_proposals needs model.rpn to be torchvision's RegionProposalNetwork, got "
            f"{type(model.rpn).__name__} (owp models: set scoring='rpn' and call the model)"
        )
    if not isinstance(images, (list, tuple)) or not all(
        isinstance(image, Tensor) and image.dim() == 3 and image.shape[0] == 3 for image in images
    ):
        raise ValueError("images must be a list of Tensor[3, H, W] with values in 0..1")
    was_training = model.training
    model.eval()
    try:
        original_sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in images]
        image_list, _ = model.transform(list(images))
        features = model.backbone(image_list.tensors)
        if isinstance(features, Tensor):
            features = OrderedDict([("0", features)])
        proposals, scores, _ = rpn_forward(model.rpn, image_list, features)
        config = RCNNPostprocessConfig(
            scoring="rpn",
            nms_thresh=1.0 if nms_thresh is None else nms_thresh,
            post_nms_top_n=top_n or max(1, max((len(p) for p in proposals), default=1)),
            score_thresh=-1.0,
            choices=("rpn",),
        )
        results = []
        for boxes, box_scores, size in zip(proposals, scores, image_list.image_sizes, strict=True):
            if nms_thresh is None and top_n is None:
                selected = {"boxes": boxes, "scores": box_scores}
            else:
                selected = select_boxes(boxes, box_scores, size, config, objectness=box_scores)
                selected = {"boxes": selected["boxes"], "scores": selected["scores"]}
            results.append(selected)
        return model.transform.postprocess(results, image_list.image_sizes, original_sizes)
    finally:
        model.train(was_training)

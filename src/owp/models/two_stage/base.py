"""The two-stage skeleton shared by the RPN, OLN and Double-Head references.

torchvision's GeneralizedRCNN split — :class:`GeneralizedRCNNTransform` → ResNet + FPN (P2-P6, named
as ``fasterrcnn_resnet50_fpn().backbone``) → a proposal network → RoI heads — with owp's model
contract (:class:`owp.models.contract.ProposalModel`): eval outputs carry ``boxes`` (original image
coordinates), ``scores`` (what the boxes are ranked by), ``objectness`` and, for classifying models,
0-based ``labels`` and ``class_scores``. Subclasses build their proposal network and RoI heads from
torchvision's blocks and implement :meth:`TwoStageDetector.compute_losses` and
:meth:`TwoStageDetector.detect`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign, batched_nms, clip_boxes_to_image, remove_small_boxes

from owp.models.backbones import backbone_for
from owp.models.contract import ExportKind, TrainedModelState
from owp.models.fcos.postprocess import MIN_OUTPUT_BOX_SIZE
from owp.models.fcos.targets import check_labels

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ROI_FEATURE_MAPS = ["0", "1", "2", "3"]  # P2-P5; P6 ("pool") feeds the RPN only
ROI_SIZE = 7
MIN_BOX_SIZE = 1e-3  # torchvision's RPN and RoI heads drop boxes thinner than this


@dataclass(frozen=True)
class RCNNPostprocessConfig:
    """How a two-stage model ranks and selects its output boxes.

    Attributes:
        scoring: one of ``choices`` (the model's scoring modes; ``"cls"`` = per-class detection
            scores with per-class NMS, the only classifying mode).
        score_thresh: boxes at or below this score are dropped.
        nms_thresh: IoU above which a lower-scored box is suppressed (1.0: no NMS).
        post_nms_top_n: boxes kept per image.
        choices: the scoring modes the model offers.
    """

    scoring: str
    score_thresh: float = 0.0
    nms_thresh: float = 0.7
    post_nms_top_n: int = 100
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.scoring not in self.choices:
            raise ValueError(
                f"unknown scoring {self.scoring!r}; use one of {', '.join(self.choices)}"
            )
        if self.post_nms_top_n < 1:
            raise ValueError("post_nms_top_n must be positive")
        if not 0.0 <= self.nms_thresh <= 1.0:
            raise ValueError(f"nms_thresh must lie in [0, 1], got {self.nms_thresh}")

    @property
    def classifying(self) -> bool:
        return self.scoring == "cls"

    def detection_scoring(self) -> str:
        """The scoring used for base-class AP."""
        return "cls"


@dataclass
class RCNNConfig:
    """Everything that defines a two-stage model; subclasses add their own fields.

    Backbone: ``depth``, ``out_channels``, ``weights_backbone``, ``trainable_layers``,
    ``backbone_norm`` (see :func:`~owp.models.backbones.resnet_fpn_backbone`).
    ``num_classes``: base classes a classifying model predicts (``None``: class-agnostic).
    Anchors: ``anchor_sizes`` (one per level P2-P6) and ``aspect_ratios``.
    RPN training and selection (torchvision's ``RegionProposalNetwork`` arguments):
    ``rpn_fg_iou_thresh``, ``rpn_bg_iou_thresh``, ``rpn_batch_size_per_image``,
    ``rpn_positive_fraction``, ``rpn_pre_nms_top_n_{train,test}`` (per level),
    ``rpn_post_nms_top_n_{train,test}`` (per image), ``rpn_nms_thresh`` (per level).
    RoI heads (torchvision's ``RoIHeads`` arguments): ``representation_size`` (fc width),
    ``box_fg_iou_thresh``, ``box_bg_iou_thresh``, ``box_batch_size_per_image``,
    ``box_positive_fraction``.
    Output: ``scoring``, ``score_thresh``, ``nms_thresh``, ``post_nms_top_n``.
    Input transform: ``min_size``, ``max_size``, ``image_mean``, ``image_std``.
    """

    SCORINGS: ClassVar[tuple[str, ...]] = ()

    depth: int = 50
    out_channels: int = 256
    weights_backbone: str | None = None
    trainable_layers: int | None = None
    backbone_norm: str = "auto"
    num_classes: int | None = None
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_fg_iou_thresh: float = 0.7
    rpn_bg_iou_thresh: float = 0.3
    rpn_batch_size_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    rpn_pre_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_test: int = 1000
    rpn_nms_thresh: float = 0.7
    representation_size: int = 1024
    box_fg_iou_thresh: float = 0.5
    box_bg_iou_thresh: float = 0.5
    box_batch_size_per_image: int = 512
    box_positive_fraction: float = 0.25
    scoring: str = ""
    score_thresh: float = 0.0
    nms_thresh: float = 0.7
    post_nms_top_n: int = 100
    min_size: int = 800
    max_size: int = 1333
    image_mean: tuple[float, ...] = field(default=IMAGENET_MEAN)
    image_std: tuple[float, ...] = field(default=IMAGENET_STD)

    def __post_init__(self) -> None:
        self.anchor_sizes = tuple(int(s) for s in self.anchor_sizes)
        self.aspect_ratios = tuple(float(r) for r in self.aspect_ratios)
        self.image_mean, self.image_std = tuple(self.image_mean), tuple(self.image_std)
        if len(self.anchor_sizes) != 5:
            raise ValueError(
                f"anchor_sizes needs one size per level P2-P6 (5), got {self.anchor_sizes}"
            )
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"num_classes must be positive or null, got {self.num_classes}")
        self.postprocess_config()  # validates the scoring and selection options

    def postprocess_config(self) -> RCNNPostprocessConfig:
        return RCNNPostprocessConfig(
            scoring=self.scoring,
            score_thresh=self.score_thresh,
            nms_thresh=self.nms_thresh,
            post_nms_top_n=self.post_nms_top_n,
            choices=self.SCORINGS,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def anchor_generator(self) -> AnchorGenerator:
        """torchvision's anchors (one size per level, every aspect ratio at each location),
        always fp32 (:class:`Float32AnchorGenerator`)."""
        return Float32AnchorGenerator(
            tuple((size,) for size in self.anchor_sizes),
            (self.aspect_ratios,) * len(self.anchor_sizes),
        )

    def rpn_arguments(self) -> dict[str, Any]:
        """Keyword arguments of torchvision's ``RegionProposalNetwork`` (after head, anchors)."""
        return {
            "fg_iou_thresh": self.rpn_fg_iou_thresh,
            "bg_iou_thresh": self.rpn_bg_iou_thresh,
            "batch_size_per_image": self.rpn_batch_size_per_image,
            "positive_fraction": self.rpn_positive_fraction,
            "pre_nms_top_n": {
                "training": self.rpn_pre_nms_top_n_train,
                "testing": self.rpn_pre_nms_top_n_test,
            },
            "post_nms_top_n": {
                "training": self.rpn_post_nms_top_n_train,
                "testing": self.rpn_post_nms_top_n_test,
            },
            "nms_thresh": self.rpn_nms_thresh,
        }

    def roi_arguments(self) -> dict[str, Any]:
        """Keyword arguments of torchvision's ``RoIHeads`` (sampling and selection)."""
        return {
            "box_roi_pool": MultiScaleRoIAlign(ROI_FEATURE_MAPS, ROI_SIZE, sampling_ratio=2),
            "fg_iou_thresh": self.box_fg_iou_thresh,
            "bg_iou_thresh": self.box_bg_iou_thresh,
            "batch_size_per_image": self.box_batch_size_per_image,
            "positive_fraction": self.box_positive_fraction,
            "bbox_reg_weights": None,
            "score_thresh": self.score_thresh,
            "nms_thresh": self.nms_thresh,
            "detections_per_img": self.post_nms_top_n,
        }


ROI_EXPORT_REFUSAL = (
    "does not export to ONNX: its RoI stage pools with torchvision's "
    "MultiScaleRoIAlign, which picks its pyramid scales from the feature-map sizes of each "
    "call (Python floats taken from tensors), and torch.export cannot trace that with "
    "dynamic image sizes; export an FCOS-OWP or RPN model instead"
)
"""Why a model whose outputs come from its RoI stage does not export (after its name)."""


class Float32AnchorGenerator(AnchorGenerator):
    """torchvision's ``AnchorGenerator`` whose anchors are fp32 whatever the features' dtype.

    torchvision builds the anchors in the dtype of the feature maps, so under bf16 autocast
    every anchor coordinate above 256 px would snap to a 2-8 px grid. Only the features'
    shapes and device are read: they are handed over as zero-storage fp32 stand-ins.
    """

    def forward(self, image_list: ImageList, feature_maps: list[Tensor]) -> list[Tensor]:
        stand_ins = [
            torch.zeros((), device=f.device, dtype=torch.float32).expand(f.shape)
            for f in feature_maps
        ]
        return super().forward(image_list, stand_ins)


class TwoStageDetector(TrainedModelState, nn.Module, ABC):
    """transform → backbone (P2-P6) → ``self.rpn`` → ``self.roi_heads``; the owp contract.

    ``model(images)`` with ``images`` a list of ``Tensor[3, H, W]`` in 0..1:

    * training mode, with ``targets`` (per image ``boxes`` ``[N, 4]`` xyxy, ``labels`` ``[N]``
      0-based, optional ``ignore`` and ``pseudo`` ``[N]`` bool): a dict of named losses.
      Ignored (crowd) boxes are dropped: torchvision's matchers have no ignore state. Pseudo
      boxes are class-agnostic positives (see :meth:`_rcnn_targets`).
    * eval mode: per image ``boxes`` ``[K, 4]`` (original image coordinates), ``scores``,
      ``objectness``, and with ``scoring="cls"`` ``labels`` (0-based) and ``class_scores``.

    ``PARTS`` names the parameter-name prefixes of the parts training recipes act on, and
    ``LOSS_PARTS`` the parts that compute each named loss (the
    :class:`~owp.models.contract.ProposalModel` contract). Pseudo boxes count at weight 1
    (torchvision's samplers draw them); only the backbone is compiled.
    """

    PARTS: ClassVar[dict[str, tuple[str, ...]]] = {}
    LOSS_PARTS: ClassVar[dict[str, tuple[str, ...]]] = {}
    EXPORT_AS: ClassVar[ExportKind | None] = None
    EXPORT_REFUSAL: ClassVar[str] = ""
    WEIGHTS_PSEUDO: ClassVar[bool] = False
    OBJECTNESS_MAPS: ClassVar[bool] = False
    COMPILED_PARTS: ClassVar[tuple[str, ...]] = ("backbone",)
    TORCH: ClassVar[bool] = True

    def __init__(self, config: RCNNConfig) -> None:
        super().__init__()
        self.config = config
        self.transform = GeneralizedRCNNTransform(
            config.min_size, config.max_size, list(config.image_mean), list(config.image_std)
        )
        self.backbone = backbone_for(config, levels="p2-p6")
        self.postprocess_config = config.postprocess_config()

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        if self.training and targets is None:
            raise ValueError(f"{type(self).__name__} needs targets in training mode")
        if self.training:
            image_list, rcnn_targets = self.transform(images, self._rcnn_targets(targets))
            features = self.backbone(image_list.tensors)
            return self.compute_losses(image_list, features, rcnn_targets)
        return self.detect_per_config(images, [self.postprocess_config])[0]

    def detect_per_config(
        self, images: list[Tensor], configs: list[RCNNPostprocessConfig]
    ) -> list[list[dict[str, Tensor]]]:
        """Detections of ``images`` (each ``[3, H, W]``) under each postprocess config: one list
        of per-image outputs (original image coordinates) per config.

        The backbone runs once; the proposal and RoI stages run once per config (they depend
        on its scoring). ``forward`` in eval mode is
        ``detect_per_config(images, [self.postprocess_config])[0]``.
        """
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        image_list, _ = self.transform(images)
        features = self.backbone(image_list.tensors)
        own = self.postprocess_config
        results = []
        try:
            for config in configs:
                self.postprocess_config = config
                detections = self.detect(image_list, features)
                results.append(
                    self.transform.postprocess(detections, image_list.image_sizes, original_sizes)
                )
        finally:
            self.postprocess_config = own
        return results

    @abstractmethod
    def compute_losses(
        self, images: ImageList, features: dict[str, Tensor], targets: list[dict[str, Tensor]]
    ) -> dict[str, Tensor]:
        """Named losses; ``targets`` are in torchvision's form (labels 1.., 0 = background)."""

    @abstractmethod
    def detect(self, images: ImageList, features: dict[str, Tensor]) -> list[dict[str, Tensor]]:
        """Per image outputs in the resized input coordinates (see the class docstring)."""

    def training_stats(self) -> dict[str, float]:
        """Extra values the trainer logs per log step (none for two-stage models)."""
        return {}

    def _rcnn_targets(self, targets: list[dict[str, Tensor]]) -> list[dict[str, Tensor]]:
        """owp targets → torchvision's: ignored boxes dropped; labels ``+1`` when classifying
        (0 is torchvision's background), all 1 (object) when class-agnostic.

        Pseudo boxes (``pseudo``, self-training) stay: torchvision's RPN reads only the boxes,
        so they are RPN positives, and class-agnostic RoI heads (label 1) take them as
        positives too. A classifying model labels them ``-1``: a proposal matched to one gets
        label -1, which torchvision's ``BalancedPositiveNegativeSampler`` draws neither as a
        positive (``>= 1``) nor as background (``== 0``), so the class-specific RoI losses
        ignore it.
        """
        converted = []
        for target in targets:
            count = len(target["boxes"])
            ignore = target.get("ignore", torch.zeros(count, dtype=torch.bool))
            pseudo = target.get("pseudo", torch.zeros(count, dtype=torch.bool))
            keep = ~ignore.to(target["boxes"].device)
            labels, pseudo = target["labels"][keep], pseudo.to(keep.device)[keep]
            if self.config.num_classes is not None:
                check_labels(labels[~pseudo], self.config.num_classes)
                labels = torch.where(pseudo, -1, labels + 1)
            else:
                labels = torch.ones_like(labels)
            converted.append({"boxes": target["boxes"][keep], "labels": labels})
        return converted


def select_boxes(
    boxes: Tensor,
    scores: Tensor,
    image_size: tuple[int, int],
    config: RCNNPostprocessConfig,
    *,
    objectness: Tensor,
    labels: Tensor | None = None,
    class_scores: Tensor | None = None,
) -> dict[str, Tensor]:
    """Clip, drop empty (side < ``MIN_OUTPUT_BOX_SIZE``) and low-scored boxes, NMS, keep the
    best ``post_nms_top_n``.

    Args:
        boxes: ``[N, 4]`` xyxy candidates; ``scores``, ``objectness``: ``[N]``.
        image_size: ``(height, width)`` to clip to.
        labels: ``[N]`` 0-based classes: NMS runs per class; ``None``: one class-agnostic NMS.
        class_scores: ``[N]``, kept alongside when given.

    Returns:
        ``boxes``, ``scores``, ``objectness`` (and ``labels``, ``class_scores``), sorted by score.
    """
    boxes = clip_boxes_to_image(boxes, image_size)
    keep = remove_small_boxes(boxes, MIN_OUTPUT_BOX_SIZE)
    keep = keep[scores[keep] > config.score_thresh]
    if config.nms_thresh < 1.0:
        groups = labels[keep] if labels is not None else torch.zeros_like(keep)
        keep = keep[batched_nms(boxes[keep], scores[keep], groups, config.nms_thresh)]
    else:
        keep = keep[scores[keep].argsort(descending=True, stable=True)]
    keep = keep[: config.post_nms_top_n]
    result = {"boxes": boxes[keep], "scores": scores[keep], "objectness": objectness[keep]}
    if labels is not None:
        result["labels"] = labels[keep]
    if class_scores is not None:
        result["class_scores"] = class_scores[keep]
    return result


def select_each(
    boxes: list[Tensor],
    scores: list[Tensor],
    image_sizes: list[tuple[int, int]],
    config: RCNNPostprocessConfig,
) -> list[dict[str, Tensor]]:
    """:func:`select_boxes` per image for class-agnostic boxes whose score is their objectness."""
    return [
        select_boxes(image_boxes, image_scores, size, config, objectness=image_scores)
        for image_boxes, image_scores, size in zip(boxes, scores, image_sizes, strict=True)
    ]


def aligned_box_iou(boxes: Tensor, others: Tensor) -> Tensor:
    """IoU of ``boxes[i]`` with ``others[i]`` (both ``[N, 4]`` xyxy) → ``[N]``, differentiable.

    torchvision's ``box_iou`` is pairwise (``[N, M]``); this is its diagonal without the N².
    """
    top_left = torch.maximum(boxes[:, :2], others[:, :2])
    bottom_right = torch.minimum(boxes[:, 2:], others[:, 2:])
    intersection = (bottom_right - top_left).clamp(min=0).prod(dim=1)
    area = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(dim=1)
    other_area = (others[:, 2:] - others[:, :2]).clamp(min=0).prod(dim=1)
    return intersection / (area + other_area - intersection).clamp(min=1e-6)

"""The FCOS-OWP configuration: one dataclass of every option that defines a model."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from owp.models.fcos.head import OBJECTNESS_BRANCHES
from owp.models.fcos.postprocess import PostprocessConfig
from owp.models.fcos.targets import SAMPLE_SETS

UNKNOWN_MASKS = (None, "pixel", "area")
# Head output -> what the model needs to produce it (an objectness branch or the classifier).
_BRANCH_OF_OUTPUT = {"bbox_ctrness": "centerness", "bbox_iou": "iou", "cls_logits": "classifier"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class FCOSOWPConfig:
    """Everything that defines an FCOS-OWP model (docs/reference/models.md describes the methods).

    Architecture: ``depth`` (ResNet), ``out_channels`` (FPN and head width), ``num_convs`` (per
    tower), ``norm_groups``, ``num_classes`` (``None``: class-agnostic, no classifier),
    ``objectness`` branches and ``conditional`` / ``conditional_detach``.
    Backbone: ``weights_backbone`` (torchvision weights name in the local cache, or a file),
    ``trainable_layers`` and ``backbone_norm`` (see
    :func:`~owp.models.backbones.resnet_fpn_backbone`: frozen BN for pretrained trunks,
    trainable BN from scratch).
    Training targets: ``center_radius`` (center sampling, ``None`` disables),
    ``iou_sample_threshold`` (IoU sampling, ``None`` disables), ``objectness_samples``
    (``center`` / ``foreground`` / ``all``).
    Unknown-object masking of the classification loss: ``unknown_mask`` (``None``, ``"pixel"``
    or ``"area"``), ``unknown_mask_thresh`` (objectness above which a background location is
    masked), ``unknown_mask_start`` (first training iteration it applies), and
    ``unknown_mask_objectness`` (``iou``, ``centerness`` or ``geomean``: which prediction
    decides), ``unknown_mask_nms`` (area variant: NMS IoU applied to the masking boxes first,
    ``None`` for none).
    Inference: ``scoring``, ``score_thresh``, ``nms_thresh``, ``pre_nms_top_n``,
    ``post_nms_top_n``. Input transform (torchvision's): ``min_size``, ``max_size``,
    ``image_mean``, ``image_std``.
    """

    depth: int = 50
    out_channels: int = 256
    num_convs: int = 4
    norm_groups: int = 32
    num_classes: int | None = None
    objectness: tuple[str, ...] = ("centerness", "iou")
    conditional: bool = False
    conditional_detach: bool = True
    weights_backbone: str | None = None
    trainable_layers: int | None = None
    backbone_norm: str = "auto"
    center_radius: float | None = 1.5
    iou_sample_threshold: float | None = 0.3
    objectness_samples: str = "center"
    unknown_mask: str | None = None
    unknown_mask_thresh: float = 0.925
    unknown_mask_start: int = 0
    unknown_mask_objectness: str = "iou"
    unknown_mask_nms: float | None = None
    scoring: str = "iou"
    score_thresh: float = 0.0
    nms_thresh: float = 0.6
    pre_nms_top_n: int = 2000
    post_nms_top_n: int = 100
    min_size: int = 800
    max_size: int = 1333
    image_mean: tuple[float, ...] = field(default=IMAGENET_MEAN)
    image_std: tuple[float, ...] = field(default=IMAGENET_STD)

    def __post_init__(self) -> None:
        self.objectness = (
            (self.objectness,) if isinstance(self.objectness, str) else tuple(self.objectness)
        )
        self.image_mean, self.image_std = tuple(self.image_mean), tuple(self.image_std)
        if self.objectness_samples not in SAMPLE_SETS:
            raise ValueError(
                f"unknown objectness_samples {self.objectness_samples!r}; "
                f"use one of {', '.join(SAMPLE_SETS)}"
            )
        scoring = self.postprocess_config()  # validates the scoring and selection options
        branches = set(self.objectness)
        if not branches or not branches <= set(OBJECTNESS_BRANCHES):
            raise ValueError(
                f"objectness {list(self.objectness)} must name one or both of "
                f"{', '.join(OBJECTNESS_BRANCHES)}"
            )
        missing = {_BRANCH_OF_OUTPUT[o] for o in scoring.required_outputs()} - branches
        if "classifier" in missing and self.num_classes is None:
            raise ValueError(
                f"scoring {self.scoring!r} needs a classifier: set num_classes, or use a "
                "class-agnostic scoring (centerness, iou, geomean)"
            )
        missing.discard("classifier")
        if missing:
            raise ValueError(
                f"scoring {self.scoring!r} needs the {', '.join(sorted(missing))} branch; add it "
                f"to objectness {list(self.objectness)} or choose another scoring"
            )
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"num_classes must be positive or null, got {self.num_classes}")
        if self.unknown_mask and self.num_classes is None:
            raise ValueError("unknown_mask masks the classification loss: it needs num_classes")
        if self.unknown_mask not in UNKNOWN_MASKS:
            raise ValueError(
                f"unknown unknown_mask {self.unknown_mask!r}; use one of "
                f"{', '.join(str(m) for m in UNKNOWN_MASKS)}"
            )
        needs = {"iou": ("iou",), "centerness": ("centerness",), "geomean": ("centerness", "iou")}
        if self.unknown_mask_objectness not in needs:
            raise ValueError(
                f"unknown unknown_mask_objectness {self.unknown_mask_objectness!r}; "
                "use iou, centerness or geomean"
            )
        missing = set(needs[self.unknown_mask_objectness]) - set(self.objectness)
        if self.unknown_mask and missing:
            raise ValueError(
                f"unknown_mask_objectness {self.unknown_mask_objectness!r} needs the "
                f"{', '.join(sorted(missing))} branch in objectness {list(self.objectness)}"
            )

    def postprocess_config(self) -> PostprocessConfig:
        return PostprocessConfig(
            scoring=self.scoring,
            score_thresh=self.score_thresh,
            nms_thresh=self.nms_thresh,
            pre_nms_top_n=self.pre_nms_top_n,
            post_nms_top_n=self.post_nms_top_n,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

"""torchvision's COCO detectors as owp model sources.

Wherever a run folder or checkpoint is accepted (``owp predict``, ``owp eval``, ``owp export``,
``owp.load``; the dispatch is :func:`owp.engine.runs.load_source`) these work too:

* ``torchvision:fcos_resnet50_fpn`` — torchvision's FCOS loaded into owp's FCOS-OWP (same
  state-dict names; the model has only the centerness branch): class-agnostic proposals scored
  by its centerness (``scoring="centerness"``, the default) or torchvision's own detections
  (``scoring="cls*centerness"``, with torchvision's thresholds: identical to torchvision's
  output).
* ``torchvision:fasterrcnn_resnet50_fpn`` and ``torchvision:fasterrcnn_resnet50_fpn_v2`` — the
  RPN objectness proposals of torchvision's Faster R-CNN (:func:`owp.rpn_proposals`), one
  class-agnostic NMS, the top ``post_nms_top_n``.

Weights come from the torch hub cache
(``<torch.hub.get_dir()>/checkpoints/<file of the weights URL>``, i.e.
``$TORCH_HOME/hub/checkpoints``), downloaded there on first use as torchvision does
(:mod:`owp.models.weights`; ``OWP_OFFLINE=1`` forbids it), or from a file given as
``weights``. These detectors were trained on all 80 COCO classes: their "novel-class" recall
on COCO is not an open-world result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from owp.errors import OwpInputError
from owp.models.backbones import read_state_dict
from owp.models.contract import ExportKind, TrainedModelState
from owp.models.registry import create_model
from owp.models.two_stage.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RCNNPostprocessConfig,
    select_each,
)
from owp.models.two_stage.rpn import rpn_forward
from owp.models.weights import fetch_weights

TORCHVISION_PREFIX = "torchvision:"


@dataclass(frozen=True)
class TorchvisionSource:
    """A torchvision detector owp can load: its weights enum member and how it is built."""

    description: str
    weights: str  # "<EnumClass>.<MEMBER>" in torchvision.models.detection
    kind: str  # "fcos" or "faster_rcnn"
    builder: str = ""  # torchvision.models.detection function (faster_rcnn kinds)


TORCHVISION_SOURCES: dict[str, TorchvisionSource] = {
    "fcos_resnet50_fpn": TorchvisionSource(
        "torchvision's COCO FCOS (R50-FPN) as FCOS-OWP: centerness proposals or its detections",
        "FCOS_ResNet50_FPN_Weights.COCO_V1",
        "fcos",
    ),
    "fasterrcnn_resnet50_fpn": TorchvisionSource(
        "torchvision's COCO Faster R-CNN (R50-FPN): RPN objectness proposals",
        "FasterRCNN_ResNet50_FPN_Weights.COCO_V1",
        "faster_rcnn",
        "fasterrcnn_resnet50_fpn",
    ),
    "fasterrcnn_resnet50_fpn_v2": TorchvisionSource(
        "torchvision's COCO Faster R-CNN v2 (R50-FPN, improved recipe): RPN objectness proposals",
        "FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1",
        "faster_rcnn",
        "fasterrcnn_resnet50_fpn_v2",
    ),
}

# FCOS-OWP options giving torchvision's FCOS: its architecture, and for ``cls*centerness`` its
# selection (FCOS(score_thresh=0.2, nms_thresh=0.6, detections_per_img=100,
# topk_candidates=1000)). Class-agnostic scorings keep every candidate (score_thresh 0).
FCOS_OPTIONS: dict[str, Any] = {
    "num_classes": 91,
    "objectness": ("centerness",),
    "backbone_norm": "frozen",
    "center_radius": 1.5,
    "iou_sample_threshold": None,
    "pre_nms_top_n": 1000,
    "nms_thresh": 0.6,
    "post_nms_top_n": 100,
    "min_size": 800,
    "max_size": 1333,
}
FCOS_DETECTION_THRESH = 0.2
FASTER_RCNN_OPTIONS: dict[str, Any] = {"min_size": 800, "max_size": 1333}
"""torchvision's Faster R-CNN resize (its ``GeneralizedRCNNTransform`` defaults)."""


def torchvision_name(source: str) -> str:
    """``"torchvision:NAME"`` → ``NAME``, checked against :data:`TORCHVISION_SOURCES`."""
    name = str(source).removeprefix(TORCHVISION_PREFIX)
    if name not in TORCHVISION_SOURCES:
        raise OwpInputError(
            f"unknown model source {source!r}; torchvision sources: "
            + ", ".join(TORCHVISION_PREFIX + n for n in TORCHVISION_SOURCES)
        )
    return name


def weights_enum(name: str):
    """The torchvision weights enum member of source ``name``."""
    from torchvision.models import detection

    class_name, member = TORCHVISION_SOURCES[name].weights.split(".")
    return getattr(getattr(detection, class_name), member)


def weights_file(name: str, weights: str | Path | None = None) -> Path:
    """The file holding source ``name``'s weights: ``weights`` if given, else the torch hub
    cache file of its torchvision weights, downloaded on first use
    (:func:`~owp.models.weights.fetch_weights`; an error names that file and the URL)."""
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise OwpInputError("weights file not found", path=path)
        return path
    return fetch_weights(weights_enum(name))


def _load_strict(model: nn.Module, state: dict[str, Tensor], file: Path, what: str) -> None:
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        problems = [
            f"{len(keys)} {label} (e.g. {keys[0]})"
            for keys, label in (
                (missing, "missing keys"),
                (result.unexpected_keys, "unexpected keys"),
            )
            if keys
        ]
        raise OwpInputError(f"not {what} weights: {'; '.join(problems)}", path=file)


# --------------------------------------------------------------------------- Faster R-CNN


@dataclass
class FasterRCNNSourceConfig:
    """What a torchvision Faster R-CNN proposal source is: its transform and selection.

    ``scoring`` is ``rpn`` (RPN objectness); ``nms_thresh`` is the class-agnostic NMS across
    levels on top of torchvision's per-level NMS (0.7, OLN's and the RPN proposer's),
    ``post_nms_top_n`` the boxes kept per image, ``score_thresh`` drops boxes at or below it.
    """

    SCORINGS: ClassVar[tuple[str, ...]] = ("rpn",)

    source: str = ""
    num_classes: int | None = None  # class-agnostic proposals
    scoring: str = "rpn"
    score_thresh: float = 0.0
    nms_thresh: float = 0.7
    post_nms_top_n: int = 100
    min_size: int = 800
    max_size: int = 1333
    image_mean: tuple[float, ...] = field(default=IMAGENET_MEAN)
    image_std: tuple[float, ...] = field(default=IMAGENET_STD)

    def postprocess_config(self) -> RCNNPostprocessConfig:
        return RCNNPostprocessConfig(
            scoring=self.scoring,
            score_thresh=self.score_thresh,
            nms_thresh=self.nms_thresh,
            post_nms_top_n=self.post_nms_top_n,
            choices=self.SCORINGS,
        )


class FasterRCNNProposals(TrainedModelState, nn.Module):
    """A torchvision Faster R-CNN under the owp model contract: its RPN objectness proposals.

    Eval outputs per image: ``boxes`` (input pixels), ``scores`` = ``objectness`` = the RPN's
    object probability, best first, after one class-agnostic NMS (``nms_thresh``) and the top
    ``post_nms_top_n`` — :func:`owp.rpn_proposals` with owp's selection
    (:func:`owp.models.two_stage.base.select_boxes`). Exports to ONNX like the RPN proposer; it
    does not train (no parts, no losses).
    """

    PARTS: ClassVar[dict[str, tuple[str, ...]]] = {}
    LOSS_PARTS: ClassVar[dict[str, tuple[str, ...]]] = {}
    EXPORT_AS: ClassVar[ExportKind | None] = "rpn"
    EXPORT_REFUSAL: ClassVar[str] = ""
    WEIGHTS_PSEUDO: ClassVar[bool] = False
    OBJECTNESS_MAPS: ClassVar[bool] = False
    COMPILED_PARTS: ClassVar[tuple[str, ...]] = ("backbone",)
    TORCH: ClassVar[bool] = True

    def __init__(self, detector: nn.Module, config: FasterRCNNSourceConfig) -> None:
        super().__init__()
        self.detector = detector.eval()
        self.config = config
        self.postprocess_config = config.postprocess_config()
        transform = detector.transform
        transform.min_size, transform.max_size = (config.min_size,), config.max_size
        transform.image_mean, transform.image_std = list(config.image_mean), list(config.image_std)

    @property
    def classifies(self) -> bool:
        """Always ``False``: class-agnostic RPN proposals."""
        return False

    @property
    def transform(self) -> nn.Module:
        return self.detector.transform

    @property
    def backbone(self) -> nn.Module:
        return self.detector.backbone

    @property
    def rpn(self) -> nn.Module:
        return self.detector.rpn

    def training_stats(self) -> dict[str, float]:
        """Nothing to log: the detector does not train."""
        return {}

    def forward(self, images: list[Tensor], targets=None) -> list[dict[str, Tensor]]:
        if self.training:
            raise OwpInputError(
                f"{self.config.source} is a fixed torchvision detector: it predicts, it does not "
                "train here (train an owp model, e.g. --preset coco-all-iou-from-torchvision)"
            )
        return self.detect_per_config(images, [self.postprocess_config])[0]

    def detect_per_config(
        self, images: list[Tensor], configs: list[RCNNPostprocessConfig]
    ) -> list[list[dict[str, Tensor]]]:
        """The eval outputs of ``images`` under each selection config (NMS threshold, top-k):
        the backbone and RPN run once, the selection once per config."""
        detector = self.detector
        original_sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in images]
        with torch.no_grad():
            image_list, _ = detector.transform(list(images))
            features = detector.backbone(image_list.tensors)
            proposals, objectness, _ = rpn_forward(detector.rpn, image_list, features)
            sizes = image_list.image_sizes
            return [
                detector.transform.postprocess(
                    select_each(proposals, objectness, sizes, config), sizes, original_sizes
                )
                for config in configs
            ]


def _faster_rcnn(name: str, weights: str | Path | None, options: dict[str, Any]) -> nn.Module:
    from torchvision.models import detection

    spec = TORCHVISION_SOURCES[name]
    known = {f for f in FasterRCNNSourceConfig.__dataclass_fields__ if f != "source"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise OwpInputError(
            f"unknown option(s) for {TORCHVISION_PREFIX}{name}: {', '.join(unknown)}; valid: "
            + ", ".join(sorted(known - {"num_classes"}))
        )
    if options.get("num_classes") is not None:
        raise OwpInputError(f"{TORCHVISION_PREFIX}{name} gives class-agnostic proposals")
    try:
        config = FasterRCNNSourceConfig(
            source=TORCHVISION_PREFIX + name, **{**FASTER_RCNN_OPTIONS, **options}
        )
        config.postprocess_config()
    except (TypeError, ValueError) as error:
        raise OwpInputError(f"{TORCHVISION_PREFIX}{name}: {error}") from None
    file = weights_file(name, weights)
    builder: Callable[..., nn.Module] = getattr(detection, spec.builder)
    detector = builder(weights=None, weights_backbone=None, num_classes=91)
    _load_strict(detector, read_state_dict(file), file, f"{spec.builder} (91 COCO classes)")
    return FasterRCNNProposals(detector, config).eval()


# --------------------------------------------------------------------------- FCOS


def fcos_options(scoring: str | None = None, **options: Any) -> dict[str, Any]:
    """FCOS-OWP options of torchvision's COCO FCOS for ``scoring`` (default ``centerness``):
    :data:`FCOS_OPTIONS`, with torchvision's ``score_thresh`` 0.2 for ``cls*centerness``."""
    scoring = scoring or "centerness"
    defaults = {
        **FCOS_OPTIONS,
        "scoring": scoring,
        "score_thresh": FCOS_DETECTION_THRESH if scoring.startswith("cls*") else 0.0,
    }
    return {**defaults, **options}


def _fcos(name: str, weights: str | Path | None, options: dict[str, Any]) -> nn.Module:
    for fixed in ("num_classes", "objectness"):
        given = options.get(fixed, FCOS_OPTIONS[fixed])
        if (tuple(given) if isinstance(given, list) else given) != FCOS_OPTIONS[fixed]:
            raise OwpInputError(
                f"{TORCHVISION_PREFIX}{name}: {fixed} is fixed by torchvision's weights "
                f"({FCOS_OPTIONS[fixed]!r})"
            )
    options = fcos_options(**options)
    model = create_model("fcos_owp_r50_fpn", **options)
    file = weights_file(name, weights)
    _load_strict(model, read_state_dict(file), file, "fcos_resnet50_fpn (91 COCO classes)")
    # torchvision's label i is COCO category id i (0 = background, "N/A" = unused ids).
    model.class_names = list(weights_enum(name).meta["categories"])
    model.category_ids = list(range(len(model.class_names)))
    return model.eval()


# --------------------------------------------------------------------------- loading


def torchvision_model(
    source: str, *, weights: str | Path | None = None, **options: Any
) -> nn.Module:
    """The model of ``torchvision:NAME`` (in eval mode) with model ``options`` (``scoring``,
    ``post_nms_top_n``, ...); ``weights`` a local weights file instead of the torch hub cache."""
    name = torchvision_name(source)
    build = _fcos if TORCHVISION_SOURCES[name].kind == "fcos" else _faster_rcnn
    return build(name, weights, options)


def init_state(source: str, model: nn.Module, *, weights: str | Path | None = None) -> dict:
    """Weights to start training ``model`` from a torchvision source (``train.init``).

    Returns ``{"model": state_dict}`` holding the torchvision weights that fit ``model``: the
    classifier (``head.classification_head.*``) is left out when ``model`` has none (a
    class-agnostic FCOS-OWP), and branches torchvision lacks (the IoU branch) stay missing, to
    keep their initialisation. A shape mismatch is an :class:`OwpInputError`.
    """
    name = torchvision_name(source)
    file = weights_file(name, weights)
    state = read_state_dict(file)
    own = model.state_dict()
    kept = {}
    for key, value in state.items():
        if key not in own:
            if key.startswith("head.classification_head.") or key.endswith("num_batches_tracked"):
                continue
            raise OwpInputError(f"{source} weights do not fit this model (e.g. {key!r})", path=file)
        if own[key].shape != value.shape:
            raise OwpInputError(
                f"{source} weight {key!r} has shape {tuple(value.shape)}, the model "
                f"{tuple(own[key].shape)}",
                path=file,
            )
        kept[key] = value
    return {"model": kept}


def describe_sources() -> dict[str, str]:
    """Source name → one-line description (for listings)."""
    return {TORCHVISION_PREFIX + n: s.description for n, s in TORCHVISION_SOURCES.items()}

"""The contract every owp proposal model keeps: :class:`ProposalModel`.

Engine, export, workflows and viz read these members and nothing else about a model: they never
probe with ``hasattr`` nor branch on a model family. A model is called like a torchvision
detection model, ``model(images, targets=None)`` with ``images`` a list of ``Tensor[3, H, W]``
in 0..1: in training mode it returns a dict of named losses, in eval mode per image a dict of
``boxes`` ``[K, 4]`` (xyxy, original image coordinates), ``scores`` ``[K]``, ``objectness``
``[K]`` and, where it classifies, ``labels`` ``[K]`` (0-based) and ``class_scores`` ``[K]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from torch import Tensor, nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform

ExportKind = Literal["fcos", "rpn"]
"""How a model exports to ONNX: ``fcos`` (the model has FCOS-OWP's ``backbone`` and ``head``
and an FCOS-OWP ``config``), ``rpn`` (a ``backbone`` and a torchvision ``rpn``; only the
``rpn`` scoring exports)."""

Detections = list[dict[str, Tensor]]
"""Eval outputs of a batch: one dict per image (see the module docstring)."""


@runtime_checkable
class ProposalModel(Protocol):
    """What every proposal model provides (FCOS-OWP, the two-stage models, the torchvision
    sources and an exported ONNX file alike).

    Attributes:
        PARTS: part name (``backbone``, ``classification``, ``localization``, ``objectness``)
            -> the parameter-name prefixes of that part, the parts a training recipe can freeze
            or rescale (:mod:`owp.engine.recipes`).
        LOSS_PARTS: loss name -> the parts that compute it (a recipe that freezes one of them
            does not backpropagate that loss).
        EXPORT_AS: how the model exports to ONNX (:data:`ExportKind`), ``None``: it does not.
        EXPORT_REFUSAL: when ``EXPORT_AS`` is ``None``, the one line that says why.
        WEIGHTS_PSEUDO: whether the losses of pseudo boxes are weighted by ``pseudo_weight``
            (else pseudo boxes count at weight 1 only).
        OBJECTNESS_MAPS: whether the model has per-location objectness maps (its ``head``
            gives FCOS-OWP's outputs, drawn by :mod:`owp.viz.heatmaps`).
        COMPILED_PARTS: the submodules ``torch.compile`` acts on (``--compile``).
        TORCH: whether the model is a torch ``nn.Module`` (devices, autocast, channels-last,
            compilation and training apply); ``False`` for an ONNX Runtime graph.
        config: the model's configuration dataclass (``num_classes``, ``min_size``, ...).
        postprocess_config: the selection eval mode applies (scoring, thresholds, top-k).
        transform: torchvision's ``GeneralizedRCNNTransform`` the model resizes and pads its
            inputs with (``None``: the input size is the image size).
        backbone: the feature extractor (``None`` for an ONNX graph).
        category_ids: the dataset category id of each label of a classifying model (label
            ``i`` -> ``category_ids[i]``), ``None`` when unknown or class-agnostic.
        class_names: the name of each label, ``None`` when unknown or class-agnostic.
        pseudo_weight: loss weight of pseudo boxes (set by the trainer when
            ``WEIGHTS_PSEUDO``).
        iteration: the training iteration (set by the trainer each step).
    """

    PARTS: ClassVar[Mapping[str, tuple[str, ...]]]
    LOSS_PARTS: ClassVar[Mapping[str, tuple[str, ...]]]
    EXPORT_AS: ClassVar[ExportKind | None]
    EXPORT_REFUSAL: ClassVar[str]
    WEIGHTS_PSEUDO: ClassVar[bool]
    OBJECTNESS_MAPS: ClassVar[bool]
    COMPILED_PARTS: ClassVar[tuple[str, ...]]
    TORCH: ClassVar[bool]

    config: Any
    postprocess_config: Any
    transform: GeneralizedRCNNTransform | None
    backbone: nn.Module | None
    category_ids: list[int] | None
    class_names: list[str] | None
    pseudo_weight: float
    iteration: int

    @property
    def classifies(self) -> bool:
        """Whether eval outputs carry ``labels`` and ``class_scores``."""
        ...

    def detect_per_config(
        self, images: Sequence[Tensor], configs: Sequence[Any]
    ) -> list[Detections]:
        """Eval outputs of ``images`` under each postprocess config, from one forward pass of
        what the configs share; ``forward`` in eval mode is its ``[postprocess_config]`` case."""
        ...

    def training_stats(self) -> dict[str, float]:
        """Extra values the trainer logs each log step (e.g. masked locations)."""
        ...


class TrainedModelState:
    """The contract's per-instance state, with its defaults, for owp's torch models (mixed in
    before ``nn.Module``): the trainer sets ``iteration`` each step and ``pseudo_weight`` when
    ``WEIGHTS_PSEUDO``; the trainer, or the checkpoint when loaded, sets a classifying model's
    ``category_ids`` and ``class_names`` (``None`` while unknown)."""

    config: Any
    iteration: int = 0
    pseudo_weight: float = 1.0
    category_ids: list[int] | None = None
    class_names: list[str] | None = None

    @property
    def classifies(self) -> bool:
        """Whether the model has a classifier (``config.num_classes`` set)."""
        return self.config.num_classes is not None

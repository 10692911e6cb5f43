"""ONNX export of the whole proposal pipeline (run the files with
:class:`owp.export.runtime.OnnxProposer`).

``export_onnx(model, "model.onnx")`` writes one ONNX graph that does everything
``model([image])`` does in eval mode: torchvision's transform (normalisation, resize to
``min_size`` / ``max_size``, zero padding to a multiple of 32), the backbone, the head, box
decoding, the per-level top-k, clipping, NMS, the final top-k and the rescale to input pixels.
A model says how it exports (:class:`~owp.models.contract.ProposalModel`'s ``EXPORT_AS``):
FCOS-OWP (every scoring) and the RPN proposers (``rpn_*`` and torchvision's Faster R-CNNs,
scoring ``rpn``) do; OLN and Double-Head R-CNN do not (their ``EXPORT_REFUSAL`` says why).

The graph's contract:

* input ``image``: ``float32 [3, H, W]``, RGB in 0..1, any ``H`` and ``W`` (dynamic), one
  image per call;
* outputs, best first: ``boxes`` ``[K, 4]`` (xyxy, input pixels), ``scores`` ``[K]`` (what the
  boxes are ranked by), ``objectness`` ``[K]`` and, when the model classifies, ``labels``
  ``[K]`` (int64, 0-based) and ``class_scores`` ``[K]``; ``K`` is at most ``top_k``.
  Exporting several scorings adds the same outputs for each further scoring, named
  ``<output>:<scoring>`` (e.g. ``boxes:cls*iou``): one backbone pass, proposals and detections.

The ONNX metadata holds ``owp_version``, ``owp_model`` (the model name or source),
``owp_config`` (the model configuration, JSON), ``owp_scorings``, ``owp_outputs``,
``owp_input`` and, when known, ``owp_class_names``: :class:`OnnxProposer` (``owp predict
model.onnx``) needs nothing else.

The selection is written here rather than taken from :mod:`owp.models.fcos.postprocess` because
``torch.export`` needs data-dependent sizes without Python branches on them; it follows the
same steps, and the parity tests compare both on images of sizes never seen at export time.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.ops import nms

from owp.errors import OwpInputError
from owp.export.runtime import (
    AGNOSTIC_OUTPUTS,
    CLASS_OUTPUTS,
    INPUT_NAME,
    OnnxProposer,
    require_extra,
)
from owp.models.contract import ProposalModel

log = logging.getLogger(__name__)

DEFAULT_OPSET = 18
SIZE_DIVISIBLE = 32  # torchvision's GeneralizedRCNNTransform pads batches to this multiple
# Input sides the graph is traced for; any size in this range runs.
MIN_SIDE, MAX_SIDE = 16, 16384

# --------------------------------------------------------------------------- graph pieces


def _resize_and_pad(
    image: Tensor, min_size: int, max_size: int, mean: Sequence[float], std: Sequence[float]
) -> tuple[Tensor, Tensor, Tensor]:
    """torchvision's eval transform of one image, in traceable form.

    Returns the padded batch ``[1, 3, H', W']``, the resized size ``(h, w)`` (int64 ``[2]``,
    before padding) and the ratios input / resized (float32 ``[2]``, height then width).

    torchvision scales by ``min(min_size / short side, max_size / long side)`` in Python
    doubles and floors ``side * scale``; the same arithmetic runs here on float64 tensors
    (ONNX Runtime computes them in doubles too), so the resized size matches to the pixel
    (float32 would give e.g. 1333 where torchvision gives 1332).
    """
    mean_t = torch.tensor(mean, dtype=image.dtype)[:, None, None]
    std_t = torch.tensor(std, dtype=image.dtype)[:, None, None]
    normalized = (image - mean_t) / std_t
    original = torch.stack(
        [
            torch.scalar_tensor(image.shape[-2], dtype=torch.float64),
            torch.scalar_tensor(image.shape[-1], dtype=torch.float64),
        ]
    )
    scale = torch.minimum(min_size / original.min(), max_size / original.max())
    resized = torch.floor(original * scale).to(torch.int64)
    height, width = resized[0].item(), resized[1].item()
    torch._check(height >= 1)
    torch._check(width >= 1)
    batch = nn.functional.interpolate(
        normalized[None], size=(height, width), mode="bilinear", align_corners=False
    )
    padded_height = (height + SIZE_DIVISIBLE - 1) // SIZE_DIVISIBLE * SIZE_DIVISIBLE
    padded_width = (width + SIZE_DIVISIBLE - 1) // SIZE_DIVISIBLE * SIZE_DIVISIBLE
    batch = nn.functional.pad(batch, (0, padded_width - width, 0, padded_height - height))
    ratios = original.to(torch.float32) / resized.to(torch.float32)
    return batch, resized, ratios


def _clip(boxes: Tensor, size: Tensor) -> Tensor:
    """Boxes ``[N, 4]`` clipped to ``size`` = ``(height, width)`` (a tensor), as torchvision."""
    limits = size.flip(0).repeat(2).to(boxes.dtype)  # (w, h, w, h)
    return torch.minimum(boxes.clamp(min=0), limits)


def _big_enough(boxes: Tensor, min_size: float) -> Tensor:
    """Indices of the boxes whose sides are both at least ``min_size`` (remove_small_boxes)."""
    sides = boxes[:, 2:] - boxes[:, :2]
    return torch.where((sides[:, 0] >= min_size) & (sides[:, 1] >= min_size))[0]


def _rescale(boxes: Tensor, ratios: Tensor) -> Tensor:
    """Boxes from the resized image to the input image (``ratios`` = height, width)."""
    return boxes * ratios.flip(0).repeat(2)


def _level_top_k(
    scores: Tensor, num_per_level: Sequence[Any], k: int, above: float = float("-inf")
) -> Tensor:
    """Indices into ``scores`` of the ``k`` best of every level that score above ``above``,
    level by level, best first (``topk(min(k, count))`` of each level's candidates).

    Each level is padded with ``k`` entries of ``-inf`` so that ``topk`` has a fixed ``k``:
    a symbolic ``min(k, count)`` costs ``torch.export`` far more time.
    """
    keep = []
    offset = 0
    for count in num_per_level:
        level = scores[offset : offset + count]
        values, indices = torch.cat([level, level.new_full((k,), float("-inf"))]).topk(k)
        keep.append((indices + offset)[values > above])
        offset = offset + count
    return torch.cat(keep)


def _per_class_nms(boxes: Tensor, scores: Tensor, labels: Tensor, threshold: float) -> Tensor:
    """NMS within each label, indices best first: torchvision's coordinate trick (boxes of
    different labels are moved apart so that they never overlap), what ``batched_nms`` does
    itself for up to 1000 boxes on the CPU."""
    extent = torch.cat([boxes.flatten(), boxes.new_zeros(1)]).max() + 1
    shifted = boxes + (labels.to(boxes.dtype) * extent)[:, None]
    return nms(shifted, scores, threshold)


def _points(features: Sequence[Tensor], batch: Tensor) -> tuple[Tensor, Tensor, list]:
    """FCOS-OWP's location grid (:func:`owp.models.fcos.points.make_points` with the padded batch
    size) without turning the symbolic feature sizes into Python integers."""
    from owp.models.fcos.points import FCOS_STRIDES

    xy, strides, counts = [], [], []
    for feature, stride in zip(features, FCOS_STRIDES, strict=True):
        height, width = feature.shape[-2], feature.shape[-1]
        rows = torch.arange(height, dtype=batch.dtype) * (batch.shape[-2] // height)
        cols = torch.arange(width, dtype=batch.dtype) * (batch.shape[-1] // width)
        grid_y, grid_x = torch.meshgrid(rows, cols, indexing="ij")
        xy.append(torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1))
        strides.append(torch.full((height * width,), float(stride), dtype=batch.dtype))
        counts.append(height * width)
    return torch.cat(xy), torch.cat(strides), counts


# --------------------------------------------------------------------------- pipelines


class _Pipeline(nn.Module):
    """One image ``[3, H, W]`` → a flat tuple of outputs, ``len(output_names)`` of them."""

    output_names: tuple[str, ...]

    def __init__(self, transform: dict[str, Any]) -> None:
        super().__init__()
        self.transform = transform

    def prepare(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        t = self.transform
        return _resize_and_pad(image, t["min_size"], t["max_size"], t["mean"], t["std"])


def _names(outputs: Sequence[str], scorings: Sequence[str]) -> tuple[str, ...]:
    """Output names: plain for the first scoring, ``<name>:<scoring>`` for the others."""
    names: list[str] = []
    for index, scoring in enumerate(scorings):
        names += [name if index == 0 else f"{name}:{scoring}" for name in outputs]
    return tuple(names)


class FCOSPipeline(_Pipeline):
    """FCOS-OWP's eval forward (:mod:`owp.models.fcos.postprocess`) for one image, per scoring."""

    def __init__(self, model: nn.Module, scorings: Sequence[str], transform: dict, top_k: int):
        super().__init__(transform)
        self.model = model
        self.configs = [
            replace(model.postprocess_config, scoring=s, post_nms_top_n=top_k) for s in scorings
        ]
        self.classifies = model.classifies
        outputs = AGNOSTIC_OUTPUTS + (CLASS_OUTPUTS if self.classifies else ())
        self.output_names = _names(outputs, scorings)
        self.required = tuple(sorted({k for c in self.configs for k in c.required_outputs()}))

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        batch, size, ratios = self.prepare(image)
        features = list(self.model.backbone(batch).values())
        outputs = {k: v[0] for k, v in self.model.head(features, self.required).items()}
        xy, strides, counts = _points(features, batch)
        result: list[Tensor] = []
        for config in self.configs:
            result += self._select(outputs, xy, strides, counts, size, ratios, config)
        return tuple(result)

    def _select(self, outputs, xy, strides, counts, size, ratios, config) -> list[Tensor]:
        from owp.models.fcos.postprocess import (
            MIN_OUTPUT_BOX_SIZE,
            decode_boxes,
            location_objectness,
        )

        objectness = location_objectness({k: v[None] for k, v in outputs.items()}, config.scoring)
        objectness = objectness[0]
        regression = outputs["bbox_regression"]
        probs = torch.sigmoid(outputs["cls_logits"]) if self.classifies else None
        labels = class_scores = None
        if config.classifying:
            num_classes = probs.shape[-1]
            combined = probs * objectness[:, None]
            if config.scoring == "cls*centerness":
                combined = torch.sqrt(combined)
            flat = combined.flatten()
            chosen = _level_top_k(
                flat, [n * num_classes for n in counts], config.pre_nms_top_n, config.score_thresh
            )
            where = torch.div(chosen, num_classes, rounding_mode="floor")
            labels = chosen % num_classes
            scores = flat[chosen]
            class_scores = probs[where, labels]
        else:
            where = _level_top_k(objectness, counts, config.pre_nms_top_n, config.score_thresh)
            scores = objectness[where]
            if probs is not None:
                class_scores, labels = probs[where].max(dim=1)
        boxes = _clip(decode_boxes(xy[where], strides[where], regression[where]), size)
        keep = _big_enough(boxes, MIN_OUTPUT_BOX_SIZE)
        if config.classifying:
            kept = _per_class_nms(boxes[keep], scores[keep], labels[keep], config.nms_thresh)
        else:
            kept = nms(boxes[keep], scores[keep], config.nms_thresh)
        keep = keep[kept][: config.post_nms_top_n]
        result = [_rescale(boxes[keep], ratios), scores[keep], objectness[where][keep]]
        if probs is not None:
            result += [labels[keep], class_scores[keep]]
        return result


class RPNPipeline(_Pipeline):
    """A torchvision ``RegionProposalNetwork``'s proposals with their objectness, then owp's
    class-agnostic selection (:func:`owp.models.two_stage.base.select_boxes`), for one image."""

    output_names = AGNOSTIC_OUTPUTS

    def __init__(self, backbone: nn.Module, rpn: nn.Module, select: Any, transform: dict):
        super().__init__(transform)
        self.backbone = backbone
        self.rpn = rpn
        self.select = select

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        from torchvision.models.detection.image_list import ImageList
        from torchvision.models.detection.rpn import concat_box_prediction_layers

        from owp.models.fcos.postprocess import MIN_OUTPUT_BOX_SIZE

        rpn = self.rpn
        batch, size, ratios = self.prepare(image)
        features = list(self.backbone(batch).values())
        logits, deltas = rpn.head(features)
        anchors = rpn.anchor_generator(ImageList(batch, [(0, 0)]), features)[0]
        counts = [level[0].numel() for level in logits]
        logits, deltas = concat_box_prediction_layers(logits, deltas)
        proposals = rpn.box_coder.decode_single(deltas, anchors)
        logits = logits.reshape(-1)
        # torchvision's RegionProposalNetwork.filter_proposals for one image.
        top = _level_top_k(logits, counts, rpn.pre_nms_top_n())
        level = torch.cat(
            [torch.full((n,), index, dtype=torch.int64) for index, n in enumerate(counts)]
        )[top]
        scores = torch.sigmoid(logits[top])
        boxes = _clip(proposals[top], size)
        keep = _big_enough(boxes, rpn.min_size)
        keep = keep[scores[keep] >= rpn.score_thresh]
        boxes, scores, level = boxes[keep], scores[keep], level[keep]
        kept = []
        for index in range(len(counts)):  # NMS within each level, as batched_nms does
            at = torch.where(level == index)[0]
            kept.append(at[nms(boxes[at], scores[at], rpn.nms_thresh)])
        keep = torch.cat(kept)
        keep = keep[scores[keep].argsort(descending=True)][: rpn.post_nms_top_n()]
        boxes, scores = boxes[keep], scores[keep]
        # owp's select_boxes: clip, drop empty and low-scored boxes, one NMS, the top-k.
        keep = _big_enough(boxes, MIN_OUTPUT_BOX_SIZE)
        keep = keep[scores[keep] > self.select.score_thresh]
        if self.select.nms_thresh < 1.0:
            keep = keep[nms(boxes[keep], scores[keep], self.select.nms_thresh)]
        else:
            keep = keep[scores[keep].argsort(descending=True, stable=True)]
        keep = keep[: self.select.post_nms_top_n]
        return _rescale(boxes[keep], ratios), scores[keep], scores[keep]


# --------------------------------------------------------------------------- export


def pipeline_for(
    model: ProposalModel,
    *,
    scorings: Sequence[str] | None = None,
    min_size: int | None = None,
    max_size: int | None = None,
    top_k: int | None = None,
) -> _Pipeline:
    """The traceable one-image pipeline of ``model`` (by its ``EXPORT_AS``: FCOS-OWP, the RPN
    proposer or a torchvision Faster R-CNN source); :class:`OwpInputError` for models that do
    not export (their ``EXPORT_REFUSAL``)."""
    if model.EXPORT_AS is None:
        raise OwpInputError(model.EXPORT_REFUSAL)
    kind = type(model).__name__
    config = model.postprocess_config
    scorings = list(scorings or [config.scoring])
    transform = {
        "min_size": int(min_size or model.config.min_size),
        "max_size": int(max_size or model.config.max_size),
        "mean": tuple(model.config.image_mean),
        "std": tuple(model.config.image_std),
    }
    if transform["min_size"] < 1 or transform["max_size"] < 1:
        raise OwpInputError("--min-size and --max-size must be positive")
    top_k = int(top_k or config.post_nms_top_n)
    if top_k < 1:
        raise OwpInputError(f"--top-k must be a positive integer, got {top_k}")
    if model.EXPORT_AS == "fcos":
        from owp.models.fcos.postprocess import SCORING_MODES

        for scoring in scorings:
            if scoring not in SCORING_MODES:
                raise OwpInputError(
                    f"unknown scoring {scoring!r}; use one of {', '.join(SCORING_MODES)}"
                )
            branches = replace(config, scoring=scoring).required_outputs()
            have = {"cls_logits"} if model.classifies else set()
            have |= {
                "bbox_ctrness" if b == "centerness" else "bbox_iou" for b in model.config.objectness
            }
            missing = [b for b in branches if b not in have]
            if missing:
                raise OwpInputError(
                    f"scoring {scoring!r} needs {', '.join(missing)}, which this model lacks"
                )
        return FCOSPipeline(model, scorings, transform, top_k)
    if scorings != ["rpn"]:  # EXPORT_AS "rpn": the backbone and the RPN's proposals
        raise OwpInputError(
            f"only scoring 'rpn' exports for {kind} (asked: {', '.join(scorings)}): the RoI "
            "box head pools with MultiScaleRoIAlign, whose scales torch.export cannot trace"
        )
    select = replace(config, post_nms_top_n=top_k)
    return RPNPipeline(model.backbone, model.rpn, select, transform)


def export_onnx(
    model: ProposalModel,
    out: str | Path,
    *,
    opset: int | None = None,
    scorings: Sequence[str] | None = None,
    min_size: int | None = None,
    max_size: int | None = None,
    top_k: int | None = None,
    metadata: dict[str, str] | None = None,
    verify: bool = True,
) -> Path:
    """Write ``model``'s whole eval pipeline to the ONNX file ``out`` (see the module doc).

    Args:
        model: an FCOS-OWP model, an RPN proposer or a torchvision Faster R-CNN source.
        out: the ``.onnx`` file to write (atomically; parent folders are created).
        opset: ONNX opset (default :data:`DEFAULT_OPSET`).
        scorings: scorings exported, the first one under the plain output names (default: the
            model's own).
        min_size, max_size: the resize of the graph (default: the model's); e.g. a smaller
            ``max_size`` for a faster, coarser deployment.
        top_k: boxes kept per image (default: the model's ``post_nms_top_n``).
        metadata: extra ``owp_*`` metadata entries (e.g. ``model``, ``class_names``).
        verify: run the written file once with ONNX Runtime on an image of another size.

    Returns:
        ``out``.
    """
    require_extra("onnx")
    require_extra("onnxscript")
    from owp.files import write_atomic
    from owp.version import __version__

    out = Path(out)
    opset = int(opset or DEFAULT_OPSET)
    if not 18 <= opset <= 23:
        raise OwpInputError(
            f"--opset must be between 18 and 23 (the exporter's range), got {opset}"
        )
    pipeline = pipeline_for(
        model, scorings=scorings, min_size=min_size, max_size=max_size, top_k=top_k
    ).eval()
    example = torch.rand(3, 224, 288)
    dims = {
        1: torch.export.Dim("height", min=MIN_SIDE, max=MAX_SIDE),
        2: torch.export.Dim("width", min=MIN_SIDE, max=MAX_SIDE),
    }
    begin = time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.export.export(
                pipeline, (example,), dynamic_shapes=(dims,), strict=False
            )
            onnx_program = torch.onnx.export(
                program,
                dynamo=True,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=list(pipeline.output_names),
                optimize=True,
                verbose=False,
            )
    except OwpInputError:
        raise
    except Exception as error:  # a model the tracer cannot follow: one line, not a traceback
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise OwpInputError(
            f"ONNX export of {type(model).__name__} failed ({type(error).__name__}: {first})",
            path=out,
        ) from error
    finally:
        model.train(was_training)
    proto = onnx_program.model_proto
    info = {
        "version": __version__,
        "config": json.dumps(_plain(model.config)),
        "scorings": json.dumps([c for c in (scorings or [model.postprocess_config.scoring])]),
        "outputs": json.dumps(list(pipeline.output_names)),
        "input": f"{INPUT_NAME}: float32 [3, H, W], RGB in 0..1",
        "transform": json.dumps(pipeline.transform),
        "model": type(model).__name__,
        **(metadata or {}),
    }
    del proto.metadata_props[:]
    for key, value in info.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = f"owp_{key}", str(value)
    proto.producer_name = "owp"
    proto.producer_version = __version__
    data = proto.SerializeToString()
    write_atomic(out, lambda f: f.write(data))
    log.info("exported %s to %s in %.0f s", type(model).__name__, out, time.perf_counter() - begin)
    if verify:
        OnnxProposer(out)([torch.rand(3, 97, 131)])
    return out


def _plain(config: Any) -> Any:
    """A model config (dataclass) as JSON-ready data."""
    from dataclasses import asdict, is_dataclass

    data = asdict(config) if is_dataclass(config) else dict(config)
    return json.loads(json.dumps(data, default=str))

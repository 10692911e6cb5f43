"""``owp bench``: FCOS-OWP against torchvision's FCOS on this device, with owp's speed options.

Both models get the same random images, the same random targets and the same weights
(torchvision's state dict loaded into owp's model where names match), and ``min_size`` and
``max_size`` equal to the input's sides so that nothing is resized. owp does the same work as
torchvision (91 classes, ``cls*centerness``, thresh 0.2, NMS 0.6, top 1000 per level, 100 per
image; class-logit bias 0 and box bias 1 stride so that every candidate is ranked and
suppressed). Timings are medians over ``iters`` calls after ``warmup`` excluded ones (which
also absorb ``torch.compile``'s compilation); the variants take turns within every iteration so
that drifting machine load hits all of them alike. Two tables:

* inference images/s (eval mode, ``torch.inference_mode``) at each batch size: torchvision fp32,
  owp fp32, bf16, bf16 + channels-last (and + ``torch.compile`` when asked), as a ratio to
  torchvision fp32 at the same batch size;
* training step time (forward, backward, SGD step) at ``train_batch``: torchvision fp32, owp
  fp32, bf16, bf16 + channels-last, as a ratio to owp fp32 and to torchvision fp32;

with the peak CUDA memory of each (above what was allocated before; none on CPU).
``benchmarks/bench_fcos.py`` uses the same builders and timers for its parity table.
"""

from __future__ import annotations

import math
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import partial
from typing import Any

import torch
import torchvision
from torch import Tensor, nn

from owp.engine.precision import autocast, compile_parts, use_channels_last

NUM_CLASSES = 91
TRAIN_BOXES = 5
MIB = 2**20
DEPTHS: tuple[int, ...] = (18, 34, 50, 101)


@dataclass(frozen=True)
class BenchSettings:
    """What ``owp bench`` measures: input ``height`` x ``width``, ResNet ``depth``, inference
    ``batches``, the training ``train_batch``, ``iters`` timed calls after ``warmup`` ones, and
    whether the compiled variant runs (``compile``)."""

    height: int = 800
    width: int = 1333
    depth: int = 50
    batches: tuple[int, ...] = (1, 8)
    train_batch: int = 8
    iters: int = 10
    warmup: int = 3
    compile: bool = False
    seed: int = 0


QUICK = BenchSettings(
    height=128, width=128, depth=18, batches=(2,), train_batch=2, iters=2, warmup=1
)
"""``owp bench --quick``: about a minute on a small CPU."""


@dataclass(frozen=True)
class Variant:
    """How owp's model runs: autocast ``precision``, ``channels_last``, ``compiled``."""

    precision: str = "none"
    channels_last: bool = False
    compiled: bool = False

    @property
    def name(self) -> str:
        parts = ["fp32" if self.precision == "none" else self.precision]
        parts += ["channels-last"] * self.channels_last + ["compile"] * self.compiled
        return " + ".join(parts)


FP32, BF16 = Variant(), Variant("bf16")
BF16_CL = Variant("bf16", channels_last=True)
BF16_CL_COMPILE = Variant("bf16", channels_last=True, compiled=True)


@dataclass
class BenchResult:
    """The two tables as rows of plain values (``owp bench --json`` writes them)."""

    setup: dict[str, Any]
    inference: list[dict[str, Any]]
    training: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Trunk set-ups: name -> (torchvision norm layer, trainable stages counted from the top).
BACKBONES: dict[str, tuple[type[nn.Module], int]] = {
    "frozen": (torchvision.ops.misc.FrozenBatchNorm2d, 3),
    "batch": (nn.BatchNorm2d, 5),
}


def torchvision_fcos(depth: int, norm: str, height: int, width: int | None = None) -> nn.Module:
    """torchvision's FCOS as ``fcos_resnet50_fpn`` builds it (``LastLevelP6P7(256, 256)``, 91
    classes, FCOS's default postprocess), with the trunk set up for ``norm`` (one of
    :data:`BACKBONES`) and sized not to resize ``height`` x ``width`` inputs."""
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    norm_layer, trainable_layers = BACKBONES[norm]
    trunk = getattr(torchvision.models, f"resnet{depth}")(weights=None, norm_layer=norm_layer)
    backbone = _resnet_fpn_extractor(
        trunk, trainable_layers, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256)
    )
    width = height if width is None else width
    return FCOS(backbone, NUM_CLASSES, min_size=min(height, width), max_size=max(height, width))


def owp_fcos(
    state: dict[str, Tensor], depth: int, norm: str, height: int, width: int, **overrides: Any
) -> nn.Module:
    """``fcos_owp_r50_fpn`` with ``overrides``, torchvision's weights ``state`` loaded where the
    names match (all but owp's IoU branch)."""
    from owp.models.registry import create_model

    model = create_model(
        "fcos_owp_r50_fpn",
        depth=depth,
        backbone_norm=norm,
        trainable_layers=BACKBONES[norm][1],
        min_size=min(height, width),
        max_size=max(height, width),
        **overrides,
    )
    result = model.load_state_dict(state, strict=False)
    unexpected = [
        k for k in result.missing_keys if not k.startswith("head.regression_head.bbox_iou.")
    ]
    if unexpected:
        raise RuntimeError(f"torchvision's state dict lacks {unexpected[:3]} ...")
    return model


SAME_WORK = {
    "num_classes": NUM_CLASSES,
    "objectness": ("centerness", "iou"),
    "scoring": "cls*centerness",
    "score_thresh": 0.2,
    "nms_thresh": 0.6,
    "pre_nms_top_n": 1000,
    "post_nms_top_n": 100,
}
"""owp options doing torchvision FCOS's postprocess work (plus the IoU branch)."""


def random_boxes(count: int, height: int, width: int, generator: torch.Generator) -> Tensor:
    """``[count, 4]`` xyxy boxes inside an image, sides log-uniform in [8, min(H, W)] px before
    clipping, half a pixel inside the border (where owp's half-open size ranges and
    torchvision's open ones differ by design)."""
    centre = torch.rand(count, 2, generator=generator) * torch.tensor([width, height])
    longest = min(height, width)
    side = torch.exp(torch.rand(count, 2, generator=generator) * math.log(longest / 8)) * 8
    boxes = torch.cat([centre - side / 2, centre + side / 2], dim=1)
    high = torch.tensor([width, height, width, height]) - 0.5
    return boxes.clamp(min=0.5).minimum(high)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def elapsed(function: Callable[[], object], device: torch.device) -> float:
    """Wall time of one call in seconds, the device synchronised on both sides."""
    synchronize(device)
    start = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - start


def take_turns(
    functions: dict[str, Callable[[], object]], warmup: int, iters: int, device: torch.device
) -> dict[str, float]:
    """Median seconds per call of each function; they alternate within every iteration."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for index in range(warmup + iters):
        for name, function in functions.items():
            seconds = elapsed(function, device)
            if index >= warmup:
                times[name].append(seconds)
    return {name: statistics.median(values) for name, values in times.items()}


def peak_mib(function: Callable[[], object], device: torch.device) -> float | None:
    """Peak CUDA memory of one call above what was allocated before it, MiB (None on CPU)."""
    if device.type != "cuda":
        return None
    synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    function()
    synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / MIB


def make_step(
    model: nn.Module,
    images: list[Tensor],
    targets: list[dict[str, Tensor]],
    device: torch.device | None = None,
    precision: str = "none",
) -> Callable[[], None]:
    """One SGD training step of ``model`` per call (lr 1e-3, momentum 0.9, decay 1e-4), the
    forward under autocast ``precision`` (fp16 would need a loss scaler: not offered)."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(parameters, lr=1e-3, momentum=0.9, weight_decay=1e-4)
    device = images[0].device if device is None else device

    def step() -> None:
        optimizer.zero_grad()
        with autocast(device, precision):
            losses = model(images, targets)
        sum(losses.values()).backward()
        optimizer.step()

    return step


def predict(
    model: nn.Module,
    images: list[Tensor],
    device: torch.device | None = None,
    precision: str = "none",
) -> list[dict[str, Tensor]]:
    """``model(images)`` in inference mode under autocast ``precision`` on ``device`` (default:
    the images')."""
    device = images[0].device if device is None else device
    with torch.inference_mode(), autocast(device, precision):
        return model(images)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _owp_variant(state, settings: BenchSettings, variant: Variant) -> nn.Module:
    model = owp_fcos(state, settings.depth, "frozen", settings.height, settings.width, **SAME_WORK)
    if variant.channels_last:
        use_channels_last(model)
    if variant.compiled:
        compile_parts(model)
    return model


def run_bench(
    settings: BenchSettings, device: torch.device, *, say: Callable[[str], None] = print
) -> BenchResult:
    """Measure both tables (see the module docstring) on ``device``."""
    torch.manual_seed(settings.seed)
    height, width = settings.height, settings.width
    reference = torchvision_fcos(settings.depth, "frozen", height, width)
    with torch.no_grad():
        reference.head.classification_head.cls_logits.bias.fill_(0.0)
        reference.head.regression_head.bbox_reg.bias.fill_(1.0)
    state = reference.state_dict()
    variants = [FP32, BF16, BF16_CL] + ([BF16_CL_COMPILE] if settings.compile else [])
    models = {v: _owp_variant(state, settings, v).to(device) for v in (FP32, *variants[2:])}
    models[BF16] = models[FP32]  # the same model under autocast
    reference.to(device)
    generator = torch.Generator().manual_seed(settings.seed)
    largest = max(*settings.batches, settings.train_batch)
    images = [torch.rand(3, height, width, generator=generator).to(device) for _ in range(largest)]
    setup = {
        "device": device_name(device),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "input": f"{height}x{width}",
        "model": f"FCOS ResNet-{settings.depth} FPN, frozen BN, 91 classes",
        **{k: v for k, v in asdict(settings).items() if k in ("iters", "warmup")},
    }
    say(f"owp bench on {setup['device']}: {setup['input']} inputs, {setup['model']}")

    inference: list[dict[str, Any]] = []
    for model in (reference, *models.values()):
        model.eval()
    for batch in settings.batches:
        say(f"inference, batch {batch} ...")
        inputs = images[:batch]
        calls = {"torchvision fp32": partial(predict, reference, inputs, device)}
        for variant in variants:
            calls[variant.name] = partial(
                predict, models[variant], inputs, device, variant.precision
            )
        seconds = take_turns(calls, settings.warmup, settings.iters, device)
        memory = {name: peak_mib(call, device) for name, call in calls.items()}
        base = batch / seconds["torchvision fp32"]
        for name, value in seconds.items():
            reference_row = name == "torchvision fp32"
            inference.append(
                {
                    "model": "torchvision" if reference_row else "owp",
                    "variant": "fp32" if reference_row else name,
                    "batch": batch,
                    "images_per_second": batch / value,
                    "vs_torchvision_fp32": batch / value / base,
                    "peak_mib": memory[name],
                }
            )

    batch = settings.train_batch
    say(f"training step, batch {batch} ...")
    targets = [
        {
            "boxes": random_boxes(TRAIN_BOXES, height, width, generator).to(device),
            "labels": torch.randint(NUM_CLASSES, (TRAIN_BOXES,), generator=generator).to(device),
        }
        for _ in range(batch)
    ]
    train_variants = [FP32, BF16, BF16_CL]
    steps = {"torchvision fp32": make_step(reference.train(), images[:batch], targets, device)}
    for variant in train_variants:
        model = models[variant].train()
        steps[variant.name] = make_step(model, images[:batch], targets, device, variant.precision)
    seconds = take_turns(steps, settings.warmup, settings.iters, device)
    memory = {name: peak_mib(step, device) for name, step in steps.items()}
    training = [
        {
            "model": "torchvision" if name.startswith("torch") else "owp",
            "variant": "fp32" if name.startswith("torch") else name,
            "batch": batch,
            "ms_per_step": value * 1000,
            "vs_owp_fp32": value / seconds[FP32.name],
            "vs_torchvision_fp32": value / seconds["torchvision fp32"],
            "peak_mib": memory[name],
        }
        for name, value in seconds.items()
    ]
    return BenchResult(setup, inference, training)


INFERENCE_COLUMNS = ("model", "variant", "batch", "img/s", "× torchvision fp32", "peak MiB")
TRAINING_COLUMNS = (
    "model",
    "variant",
    "batch",
    "ms/step",
    "× owp fp32",
    "× torchvision fp32",
    "peak MiB",
)


def tables(result: BenchResult) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """The inference and training tables as rows of cells (the first row: the header)."""
    inference = [INFERENCE_COLUMNS] + [
        (
            row["model"],
            row["variant"],
            str(row["batch"]),
            f"{row['images_per_second']:.2f}",
            f"{row['vs_torchvision_fp32']:.2f}",
            _mib(row["peak_mib"]),
        )
        for row in result.inference
    ]
    training = [TRAINING_COLUMNS] + [
        (
            row["model"],
            row["variant"],
            str(row["batch"]),
            f"{row['ms_per_step']:.1f}",
            f"{row['vs_owp_fp32']:.2f}",
            f"{row['vs_torchvision_fp32']:.2f}",
            _mib(row["peak_mib"]),
        )
        for row in result.training
    ]
    return inference, training


def markdown(rows: list[tuple[str, ...]]) -> str:
    """A Markdown table of ``rows`` (the first is the header)."""
    header, *body = rows
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def _mib(value: float | None) -> str:
    return "n/a (CPU)" if value is None else f"{value:.0f}"


CPU_TIMING = {"iters": 3, "warmup": 1}
"""The full (not ``--quick``) timing on a CPU, where one 800 x 1333 step takes seconds."""


def settings_for(quick: bool, device: torch.device, **changes: Any) -> BenchSettings:
    """:data:`QUICK` or the defaults (fewer iterations on CPU: :data:`CPU_TIMING`), with the
    given fields (those not ``None``) changed."""
    base = QUICK if quick else BenchSettings()
    if not quick and device.type != "cuda":
        base = replace(base, **CPU_TIMING)
    return replace(base, **{k: v for k, v in changes.items() if v is not None})


Rows = list[tuple[str, ...]]


def bench_tables(
    quick: bool, device: str = "auto", **changes: Any
) -> tuple[BenchResult, Rows, Rows]:
    """``owp bench``: :func:`run_bench` on ``device`` (``auto``: CUDA when present) with
    :func:`settings_for`'s settings; returns the result and its inference and training
    tables (:func:`tables`)."""
    from owp.engine.dist import resolve_device

    target = resolve_device(device)
    result = run_bench(settings_for(quick, target, **changes), target)
    return (result, *tables(result))

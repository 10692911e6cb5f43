"""FCOS-OWP vs torchvision's FCOS: inference, training step, assignment and memory, one process.

Run by hand: ``python benchmarks/bench_fcos.py [--size 512] [--batch 2] [--iters N]
[--device cpu|cuda] [--depth 50]``. Both models get the same random images, the same random
targets and the same weights (torchvision's state dict loaded into owp's model with
``strict=False``), and ``min_size = max_size = --size`` so that nothing is resized. Prints the
setup, then a table of torchvision, owp, their ratio and the goal for:

1. inference (eval mode, ``torch.inference_mode``), images/s: owp classifying with the same
   work as torchvision (91 classes, ``cls*centerness``, thresh 0.2, NMS 0.6, top 1000 per
   level, 100 per image) and owp's proposal configuration (class-agnostic, centerness + IoU
   branches, ``iou`` scoring, thresh 0, top 2000 per level, 100 per image);
2. training step (forward + backward + SGD step, ``zero_grad`` each step), ms: owp classifying
   with the centerness and IoU branches, and with centerness only;
3. target assignment at the benchmarked feature sizes (``--batch`` images, 10 boxes each):
   owp's batched ``pad_targets`` + ``assign`` vs the torchvision-style per-image loop of
   ``benchmarks/bench_assign.py``;
4. peak memory per phase on CUDA (``max_memory_allocated`` above what was allocated before);
   "n/a (CPU)" on CPU.

Timings are medians over ``--iters`` iterations after ``--warmup`` excluded ones; the models
take turns within each iteration so that drifting machine load hits all of them alike.

Two choices keep the comparison like for like:

* Both trunks are set up alike (``--backbone``): ``frozen`` (default) is the pretrained-trunk
  configuration, ``FrozenBatchNorm2d`` with 3 trainable stages, what ``fcos_resnet50_fpn`` does
  with ``weights_backbone`` and owp with ``backbone_norm="frozen"``; ``batch`` is the
  from-scratch one, trainable ``BatchNorm2d`` with all 5 stages, what both builders do without
  any weights. The torchvision model is built from torchvision's parts as ``fcos_resnet50_fpn``
  builds it (``LastLevelP6P7(256, 256)``, 91 classes, FCOS's default postprocess settings), so
  that ``--depth`` and ``--backbone`` apply to it too.
* With random weights the class logits sit at the prior (-4.6), so ``sqrt(0.01 * 0.5) < 0.2``
  everywhere and the classifying postprocess would do no work. The class-logit bias is set to
  ``--cls-bias`` (0: every candidate passes, the heaviest case) and the box-regression bias to
  1 stride, before the state dict is copied, so both models rank and suppress real candidates.
"""

from __future__ import annotations

import argparse

import torch
import torchvision
from torch import Tensor, nn

import bench_assign  # a sibling script: run as a script, benchmarks/ is on sys.path
from owp.models.fcos.assign import assign, pad_targets
from owp.models.fcos.points import make_points
from owp.workflows import bench
from owp.workflows.bench import (
    BACKBONES,
    NUM_CLASSES,
    TRAIN_BOXES,
    device_name,
    make_step,
    peak_mib,
    predict,
    random_boxes,
    synchronize,
    take_turns,
    torchvision_fcos,
)

ASSIGN_BOXES = 10


def owp_fcos(state: dict[str, Tensor], args: argparse.Namespace, **overrides: object) -> nn.Module:
    """``fcos_owp_r50_fpn`` with ``overrides``, torchvision's weights loaded where names match."""
    return bench.owp_fcos(state, args.depth, args.backbone, args.size, args.size, **overrides)


def classifying_pair(args: argparse.Namespace) -> tuple[nn.Module, nn.Module]:
    """torchvision's FCOS (``--depth``, ``--backbone``, ``--size``) with the class-logit bias at
    ``--cls-bias`` and the box-regression bias at 1 stride (see the module docstring), and
    FCOS-OWP classifying with the same work (91 classes, ``cls*centerness``, thresh 0.2, NMS
    0.6, 1000 per level, 100 per image) on its weights."""
    reference = torchvision_fcos(args.depth, args.backbone, args.size)
    with torch.no_grad():
        reference.head.classification_head.cls_logits.bias.fill_(args.cls_bias)
        reference.head.regression_head.bbox_reg.bias.fill_(1.0)
    classifier = owp_fcos(
        reference.state_dict(),
        args,
        num_classes=NUM_CLASSES,
        objectness=("centerness", "iou"),
        scoring="cls*centerness",
        score_thresh=0.2,
        nms_thresh=0.6,
        pre_nms_top_n=1000,
        post_nms_top_n=100,
    )
    return reference, classifier


def same_detections(first: list[dict[str, Tensor]], second: list[dict[str, Tensor]]) -> bool:
    """Equal labels and (to float tolerance) boxes and scores, image by image."""
    for a, b in zip(first, second, strict=True):
        if a["boxes"].shape != b["boxes"].shape or not torch.equal(a["labels"], b["labels"]):
            return False
        for key in ("boxes", "scores"):
            if not torch.allclose(a[key], b[key], rtol=1e-4, atol=1e-3):
                return False
    return True


def feature_layout(
    model: nn.Module, images: list[Tensor]
) -> tuple[list[tuple[int, int]], tuple[int, int]]:
    """The ``(H_l, W_l)`` of every pyramid level and the padded batch size for ``images``."""
    with torch.inference_mode():
        image_list, _ = model.transform(images)
        features = model.backbone(image_list.tensors)
    sizes = [(int(f.shape[-2]), int(f.shape[-1])) for f in features.values()]
    padded = image_list.tensors.shape[-2:]
    return sizes, (int(padded[0]), int(padded[1]))


def benchmark_assignment(
    feature_sizes: list[tuple[int, int]],
    padded: tuple[int, int],
    boxes: list[Tensor],
    repeat: int,
    device: torch.device,
) -> tuple[float, float, bool]:
    """Milliseconds of owp's batched assignment and of the per-image loop; equal results?"""
    points = make_points(feature_sizes, image_size=padded, device=device)
    half = points.stride[:, None] / 2
    anchors = torch.cat([points.xy - half, points.xy + half], dim=1)

    def batched() -> Tensor:
        gt_boxes, valid, ignore, _ = pad_targets(boxes)
        matched = assign(points, gt_boxes, valid, ignore)
        synchronize(device)
        return matched

    def loop() -> Tensor:
        matched = bench_assign.torchvision_matching(anchors, boxes, points.num_per_level)
        synchronize(device)
        return matched

    equal = torch.equal(batched(), loop())
    for _ in range(2):
        batched(), loop()
    return bench_assign.median_ms(batched, repeat), bench_assign.median_ms(loop, repeat), equal


def print_table(rows: list[tuple[str, str, str, str, str, str]]) -> None:
    header = ("measure", "torchvision", "owp", "ratio owp/tv", "goal", "met")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for line in [header, tuple("-" * w for w in widths), *rows]:
        cells = [line[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)]
        print("  ".join(cells))


def ratio_row(
    measure: str, tv: float, ours: float, unit: str, kind: str, goal: float | None
) -> tuple[str, str, str, str, str, str]:
    """A table row; ``kind`` is "speed" (higher is better) or "time" (lower is better)."""
    ratio = ours / tv
    if goal is None:
        goal_text, met = "-", "-"
    elif kind == "speed":
        goal_text, met = f">= {goal:g}x {kind}", "yes" if ratio >= goal else "NO"
    else:
        goal_text, met = f"<= {goal:g}x {kind}", "yes" if ratio <= goal else "NO"
    return measure, f"{tv:.2f} {unit}", f"{ours:.2f} {unit}", f"{ratio:.3f}x {kind}", goal_text, met


def memory_row(
    measure: str, tv: float | None, ours: float | None
) -> tuple[str, str, str, str, str, str]:
    if tv is None or ours is None:
        return measure, "n/a (CPU)", "n/a (CPU)", "-", "-", "-"
    return measure, f"{tv:.0f} MiB", f"{ours:.0f} MiB", f"{ours / tv:.3f}x", "-", "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="square input side, px")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--iters", type=int, default=None, help="default: 5 on CPU, 20 on CUDA")
    parser.add_argument("--warmup", type=int, default=None, help="default: 1 on CPU, 3 on CUDA")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--depth", type=int, default=50, choices=(18, 34, 50, 101))
    parser.add_argument(
        "--backbone",
        choices=tuple(BACKBONES),
        default="frozen",
        help="trunk set-up of both models: frozen BN, 3 trainable stages (pretrained trunk) or "
        "trainable BN, 5 stages (from scratch)",
    )
    parser.add_argument("--cls-bias", type=float, default=0.0, help="class-logit bias, see top")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    device = torch.device(args.device)
    on_cuda = device.type == "cuda"
    iters = args.iters if args.iters is not None else (20 if on_cuda else 5)
    warmup = args.warmup if args.warmup is not None else (3 if on_cuda else 1)

    torch.manual_seed(args.seed)
    reference, classifier = classifying_pair(args)
    state = reference.state_dict()
    proposer = owp_fcos(
        state,
        args,
        num_classes=None,
        objectness=("centerness", "iou"),
        scoring="iou",
        score_thresh=0.0,
        nms_thresh=0.6,
        pre_nms_top_n=2000,
        post_nms_top_n=100,
    )
    centerness_only = owp_fcos(
        state, args, num_classes=NUM_CLASSES, objectness=("centerness",), scoring="cls*centerness"
    )
    models = (reference, classifier, proposer, centerness_only)
    for model in models:
        model.to(device)

    generator = torch.Generator().manual_seed(args.seed)
    images = [
        torch.rand(3, args.size, args.size, generator=generator).to(device)
        for _ in range(args.batch)
    ]
    targets = [
        {
            "boxes": random_boxes(TRAIN_BOXES, args.size, args.size, generator).to(device),
            "labels": torch.randint(NUM_CLASSES, (TRAIN_BOXES,), generator=generator).to(device),
        }
        for _ in range(args.batch)
    ]
    assign_boxes = [
        random_boxes(ASSIGN_BOXES, args.size, args.size, generator).to(device)
        for _ in range(args.batch)
    ]

    print(f"device: {device_name(device)}")
    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"threads {torch.get_num_threads()}"
    )
    print(
        f"input: batch {args.batch} x 3 x {args.size} x {args.size} (min_size = max_size = "
        f"{args.size}), ResNet-{args.depth} FPN, backbone {args.backbone} "
        f"({BACKBONES[args.backbone][0].__name__}, {BACKBONES[args.backbone][1]} trainable "
        f"stages), iterations {iters} (+{warmup} warm-up), medians"
    )

    trainable = [
        sum(p.numel() for p in model.parameters() if p.requires_grad)
        for model in (reference, classifier, centerness_only)
    ]
    print(
        "trainable parameters: torchvision {:,}, owp centerness + iou {:,}, owp centerness "
        "{:,}".format(*trainable)
    )

    # 1. Inference.
    for model in models:
        model.eval()
    same = same_detections(predict(reference, images), predict(classifier, images))
    inference = take_turns(
        {
            "torchvision": lambda: predict(reference, images),
            "classifier": lambda: predict(classifier, images),
            "proposer": lambda: predict(proposer, images),
        },
        warmup,
        iters,
        device,
    )
    inference_memory = {
        "torchvision": peak_mib(lambda: predict(reference, images), device),
        "classifier": peak_mib(lambda: predict(classifier, images), device),
        "proposer": peak_mib(lambda: predict(proposer, images), device),
    }

    # 2. Training step.
    training_models = {
        "torchvision": reference,
        "centerness+iou": classifier,
        "centerness": centerness_only,
    }
    steps = {}
    for name, model in training_models.items():
        model.train()
        steps[name] = make_step(model, images, targets)
    training = take_turns(steps, warmup, iters, device)
    training_memory = {name: peak_mib(step, device) for name, step in steps.items()}
    del steps

    # 3. Assignment at the benchmarked feature sizes.
    feature_sizes, padded = feature_layout(classifier, images)
    owp_ms, loop_ms, equal = benchmark_assignment(
        feature_sizes, padded, assign_boxes, max(10, 4 * iters), device
    )

    batch = args.batch
    speed = {name: batch / seconds for name, seconds in inference.items()}
    rows = [
        ratio_row(
            "inference, 91 classes, cls*centerness",
            speed["torchvision"],
            speed["classifier"],
            "img/s",
            "speed",
            1.0,
        ),
        ratio_row(
            "inference, owp proposals (agnostic, iou)",
            speed["torchvision"],
            speed["proposer"],
            "img/s",
            "speed",
            1.0,
        ),
        ratio_row(
            "train step, centerness + iou",
            training["torchvision"] * 1000,
            training["centerness+iou"] * 1000,
            "ms",
            "time",
            1.05,
        ),
        ratio_row(
            "train step, centerness only",
            training["torchvision"] * 1000,
            training["centerness"] * 1000,
            "ms",
            "time",
            1.05,
        ),
        ratio_row(
            f"assignment, {batch} x {ASSIGN_BOXES} boxes",
            1000 / loop_ms,
            1000 / owp_ms,
            "batch/s",
            "speed",
            3.0,
        ),
        memory_row(
            "peak memory, inference 91 classes",
            inference_memory["torchvision"],
            inference_memory["classifier"],
        ),
        memory_row(
            "peak memory, inference proposals",
            inference_memory["torchvision"],
            inference_memory["proposer"],
        ),
        memory_row(
            "peak memory, train step centerness + iou",
            training_memory["torchvision"],
            training_memory["centerness+iou"],
        ),
        memory_row(
            "peak memory, train step centerness only",
            training_memory["torchvision"],
            training_memory["centerness"],
        ),
    ]
    print(
        f"feature sizes {feature_sizes}; assignment {loop_ms:.2f} ms (loop) vs {owp_ms:.2f} ms "
        f"(owp), equal: {equal}; 91-class detections equal to torchvision's: {same}"
    )
    print()
    print_table(rows)


if __name__ == "__main__":
    main()

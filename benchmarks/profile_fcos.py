"""Where FCOS-OWP's and torchvision's FCOS inference spend their time: ``torch.profiler`` shares.

Run by hand: ``python benchmarks/profile_fcos.py [--size 512] [--batch 2] [--reps 4]``. The
models are ``bench_fcos.py``'s (ResNet-50 FPN, frozen BN, same weights, class-logit bias 0 and
box bias 1 stride) and owp classifies with the same work as torchvision (91 classes,
``cls*centerness``, thresh 0.2, NMS 0.6, 1000 per level, 100 per image). The models take turns
inside one CPU profile; printed, for each: the share of its eval forward spent in each phase
(transform, trunk, FPN, class tower, box tower, postprocess), its op self time by category,
the ops by self time as shares of torchvision's total (calls per forward), and the ops only one
of them runs. Shares, not speeds: they hold on a loaded machine, absolute times do not.
"""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

import torch
from torch import nn
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

import bench_fcos  # a sibling script: run as a script, benchmarks/ is on sys.path
from owp.workflows.bench import predict

PHASES = {
    "transform": "transform",
    "trunk": "backbone.body",
    "fpn": "backbone.fpn",
    "class tower + logits": "head.classification_head",
    "box tower + branches": "head.regression_head",
}
"""Phase -> submodule (same path in both models); the rest of the forward is the postprocess."""

CATEGORIES = {
    "convolution": ("conv",),
    "elementwise (BN affine, ReLU, adds)": (
        "aten::add", "aten::mul", "aten::rsqrt", "aten::sub", "aten::clamp_min", "aten::relu",
    ),
    "group norm": ("group_norm",),
    "pool / upsample": ("pool", "upsample"),
    "selection (nms, topk, nonzero, index, sort)": (
        "nms", "topk", "nonzero", "aten::index", "sort", "sigmoid", "sqrt", "aten::gt",
        "aten::eq", "aten::where", "aten::div", "remainder",
    ),
    "copies / layout": ("copy_", "aten::cat", "clone", "_to_copy", "permute", "reshape"),
}  # fmt: skip
"""Op category -> substrings of op names; the first match wins, else "other"."""


def category(op: str) -> str:
    for name, parts in CATEGORIES.items():
        if any(part in op for part in parts):
            return name
    return "other (allocation, views, dispatch)"


def instrument(model: nn.Module, tag: str) -> None:
    """Mark each phase of ``model``'s forward as a profiler range ``TAG#PHASE``."""
    for phase, path in PHASES.items():
        module = model.get_submodule(path)

        def enter(module: nn.Module, inputs: Any, name: str = f"{tag}#{phase}") -> None:
            module._profile_range = record_function(name)
            module._profile_range.__enter__()

        def leave(module: nn.Module, inputs: Any, output: Any) -> None:
            module._profile_range.__exit__(None, None, None)

        module.register_forward_pre_hook(enter)
        module.register_forward_hook(leave)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="square input side, px")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--reps", type=int, default=4, help="profiled forwards per model")
    parser.add_argument("--top", type=int, default=25, help="ops listed")
    args = parser.parse_args()
    setup = argparse.Namespace(size=args.size, depth=50, backbone="frozen", cls_bias=0.0)
    torch.manual_seed(0)
    reference, owp = bench_fcos.classifying_pair(setup)
    models = {"torchvision": reference.eval(), "owp": owp.eval()}
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(3, args.size, args.size, generator=generator) for _ in range(args.batch)]
    same = bench_fcos.same_detections(predict(reference, images), predict(owp, images))
    print(
        f"input: batch {args.batch} x 3 x {args.size}^2, ResNet-50 FPN (frozen BN), 91 classes, "
        f"cls*centerness; {args.reps} profiled forwards each, taking turns; threads "
        f"{torch.get_num_threads()}; same detections: {same}"
    )
    for tag, model in models.items():
        instrument(model, tag)
        predict(model, images)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.reps):
            for tag, model in models.items():
                with record_function(f"{tag}#forward"):
                    predict(model, images)
    events = prof.events()
    spans = {e.key: e.cpu_time_total for e in prof.key_averages() if "#" in e.key}
    forwards = [
        (e.time_range.start, e.time_range.end, e.name.split("#")[0])
        for e in events
        if e.name.endswith("#forward")
    ]
    self_time = {tag: Counter() for tag in models}
    calls = {tag: Counter() for tag in models}
    for event in events:
        if "#" in event.name:
            continue
        for start, end, tag in forwards:
            if start <= event.time_range.start <= end:
                self_time[tag][event.name] += event.self_cpu_time_total
                calls[tag][event.name] += 1
                break

    for tag in models:
        whole = spans[f"{tag}#forward"]
        phases = {phase: spans.get(f"{tag}#{phase}", 0.0) for phase in PHASES}
        phases["postprocess (the rest)"] = whole - sum(phases.values())
        print(f"\n{tag}: share of its eval forward per phase")
        for phase, spent in phases.items():
            print(f"  {phase:44s} {100 * spent / whole:6.2f} %")
        total = sum(self_time[tag].values())
        by_category: Counter = Counter()
        for op, spent in self_time[tag].items():
            by_category[category(op)] += spent
        print(f"{tag}: op self time per category")
        for name, spent in by_category.most_common():
            print(f"  {name:44s} {100 * spent / total:6.2f} %")

    reference_total = sum(self_time["torchvision"].values())
    print("\nops by self time, % of torchvision's total self time, calls per forward")
    print(f"  {'op':34s} {'torchvision':>11s} {'owp':>7s} {'calls tv':>9s} {'calls owp':>9s}")
    ops = sorted(
        set(self_time["torchvision"]) | set(self_time["owp"]),
        key=lambda op: -(self_time["torchvision"][op] + self_time["owp"][op]),
    )
    for op in ops[: args.top]:
        shares = [100 * self_time[tag][op] / reference_total for tag in models]
        counts = [calls[tag][op] / args.reps for tag in models]
        print(f"  {op:34s} {shares[0]:10.2f}% {shares[1]:6.2f}% {counts[0]:9.0f} {counts[1]:9.0f}")
    for tag, other in (("owp", "torchvision"), ("torchvision", "owp")):
        only = sorted(op for op in self_time[tag] if op not in self_time[other])
        print(f"ops only {tag} runs: {', '.join(only) or 'none'}")
    print(
        "owp's total op self time / torchvision's: "
        f"{sum(self_time['owp'].values()) / reference_total:.3f} (a loaded machine moves it)"
    )


if __name__ == "__main__":
    main()

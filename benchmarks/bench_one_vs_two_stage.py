"""One-stage vs two-stage proposals: inference speed and peak memory at the same backbone and size.

Run by hand: ``python benchmarks/bench_one_vs_two_stage.py [--size 512] [--batch 1] [--iters N]
[--device cpu|cuda] [--depth 50]``. Builds, with random weights and the same trunk
(ResNet-``--depth`` + FPN, 256 channels, frozen BN as with a pretrained trunk) and
``min_size = max_size = --size``:

* FCOS-OWP conditional IoU-CS-IS (``fcos_owp_r50_fpn``, class-agnostic, ``iou`` scoring);
* RPN (``rpn_r50_fpn``: torchvision's RPN, 3 anchors per location, per-level NMS 0.7 over the
  top 1000 per level, then owp's cross-level NMS);
* OLN (``oln_r50_fpn``: one anchor per location, no RPN NMS, 2000 RoIs through the RoI head,
  final NMS 0.7);
* Double-Head R-CNN (``double_head_r50_fpn``, 20 classes as COCO's VOC split, ``cls`` scoring:
  the full detector with its conv head on 1000 RoIs),

all keeping 100 boxes per image, and prints images/s and peak inference memory with their
ratios against FCOS-OWP. Random weights are made to do real work: box-regression biases are set
so that every location / anchor proposes a box of about its own size (else the random-init
boxes are empty and the postprocessing and RoI heads would have nothing to do).

Speeds are medians over ``--iters`` batches after ``--warmup``; the models take turns within
each iteration so drifting machine load hits all alike. Peak memory: on CUDA
``max_memory_allocated`` above what was allocated before the call; on CPU the peak resident set
of a fresh child process per model (``ru_maxrss``) above its resident set before the first
call — the model's weights and the input batch excluded in both cases.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import bench_fcos  # a sibling script (timing helpers): benchmarks/ is on sys.path
import owp

MODELS: dict[str, tuple[str, dict[str, object]]] = {
    "FCOS-OWP (cond. IoU-CS-IS)": (
        "fcos_owp_r50_fpn",
        {"objectness": ["iou"], "conditional": True, "scoring": "iou"},
    ),
    "RPN": ("rpn_r50_fpn", {}),
    "OLN": ("oln_r50_fpn", {}),
    "Double-Head": ("double_head_r50_fpn", {"num_classes": 20}),
}
REFERENCE = "FCOS-OWP (cond. IoU-CS-IS)"
MIB = 2**20


def build(label: str, args: argparse.Namespace) -> nn.Module:
    """The model of ``label`` with random weights that propose boxes of about anchor size."""
    torch.manual_seed(args.seed)
    name, overrides = MODELS[label]
    model = owp.create_model(
        name,
        depth=args.depth,
        backbone_norm="frozen",
        trainable_layers=3,
        min_size=args.size,
        max_size=args.size,
        post_nms_top_n=100,
        **overrides,
    )
    with torch.no_grad():
        if name.startswith("fcos"):
            model.head.regression_head.bbox_reg.bias.fill_(1.0)  # 1 stride each side
        elif name.startswith("oln"):
            model.rpn.head.bbox_pred.bias.fill_(0.5)  # half the anchor size each side
    return model.to(args.device).eval()


def random_batch(args: argparse.Namespace) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(args.seed)
    return [
        torch.rand(3, args.size, args.size, generator=generator).to(args.device)
        for _ in range(args.batch)
    ]


def child_peak_mib(label: str, args: argparse.Namespace) -> float:
    """Peak CPU memory of inference for ``label``, measured in a fresh child process."""
    command = [sys.executable, __file__, "--child", label, "--size", str(args.size)]
    command += ["--batch", str(args.batch), "--depth", str(args.depth), "--seed", str(args.seed)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])["peak_mib"]


def resident_mib() -> float:
    """Current resident set size of this process (Linux ``/proc/self/statm``), MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / MIB


def run_child(label: str, args: argparse.Namespace, predict: Callable) -> None:
    """Child process: print ``{"peak_mib": ...}`` for one inference call of ``label``."""
    model, images = build(label, args), random_batch(args)
    before = resident_mib()
    predict(model, images)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"peak_mib": round(peak - before, 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="square input side, px")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iters", type=int, default=None, help="default: 5 on CPU, 20 on CUDA")
    parser.add_argument("--warmup", type=int, default=None, help="default: 1 on CPU, 3 on CUDA")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--depth", type=int, default=50, choices=(18, 34, 50, 101))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=tuple(MODELS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args.child, args, bench_fcos.predict)
        return
    device = torch.device(args.device)
    on_cuda = device.type == "cuda"
    iters = args.iters if args.iters is not None else (20 if on_cuda else 5)
    warmup = args.warmup if args.warmup is not None else (1 if not on_cuda else 3)
    images = random_batch(args)
    models = {label: build(label, args) for label in MODELS}
    print(
        f"device {bench_fcos.device_name(device)}, torch {torch.__version__}, threads "
        f"{torch.get_num_threads()}; ResNet-{args.depth} + FPN (256 ch), batch {args.batch} x "
        f"{args.size}x{args.size}, 100 boxes per image; {iters} timed iterations after {warmup}"
    )
    boxes = {
        label: [len(output["boxes"]) for output in bench_fcos.predict(model, images)]
        for label, model in models.items()
    }
    seconds = bench_fcos.take_turns(
        {label: (lambda m=m: bench_fcos.predict(m, images)) for label, m in models.items()},
        warmup,
        iters,
        device,
    )
    if on_cuda:
        peaks = {
            label: bench_fcos.peak_mib(lambda m=m: bench_fcos.predict(m, images), device)
            for label, m in models.items()
        }
    else:
        del models
        peaks = {label: child_peak_mib(label, args) for label in MODELS}
    header = ("model", "images/s", "speed vs FCOS-OWP", "peak MiB", "memory vs FCOS-OWP", "boxes")
    rows = []
    for label in MODELS:
        speed = args.batch / seconds[label]
        reference_speed = args.batch / seconds[REFERENCE]
        rows.append(
            (
                label,
                f"{speed:.2f}",
                f"{speed / reference_speed:.2f}x",
                f"{peaks[label]:.0f}",
                f"{peaks[label] / peaks[REFERENCE]:.2f}x",
                "/".join(map(str, boxes[label])),
            )
        )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for line in [header, tuple("-" * w for w in widths), *rows]:
        cells = [line[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)]
        print("  ".join(cells))


if __name__ == "__main__":
    main()

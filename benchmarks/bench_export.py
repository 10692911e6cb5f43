"""ONNX Runtime vs PyTorch eager on the CPU: images/s of the same model on the same images.

Run by hand: ``python benchmarks/bench_export.py [--iters 5] [--warmup 1] [--images 3]
[--threads N] [--only r50|tiny]``. For each model:

* ``R50-FPN 800x1333``: ``fcos_owp_r50_fpn`` (IoU-CS-IS: IoU branch, ``iou`` scoring,
  class-agnostic, frozen BN as with a pretrained trunk) on 800 x 1333 images;
* ``tiny 320``: ``fcos_owp_tiny`` (``min_size`` 320) on 320 x 427 images;

with random weights whose box regression is biased to real boxes (so that NMS has work), the
model is exported with :func:`owp.export_onnx` (whole pipeline: resize, backbone, head,
decoding, top-k, NMS) and run by ONNX Runtime's CPU provider, and by PyTorch eager
(``torch.inference_mode``), one image per call, on the same images. Both use ``--threads``
threads (default: ``torch.get_num_threads()``). Each iteration times one pass over the images
with PyTorch then with ONNX Runtime (taking turns, so that drifting load hits both); images/s
are medians over ``--iters`` iterations after ``--warmup``. The table also gives the largest
score difference between the two on these images (the same work was done) and the export time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import owp
from owp.export import OnnxProposer, export_onnx

MODELS = {
    "R50-FPN 800x1333": ("fcos_owp_r50_fpn", {"backbone_norm": "frozen"}, (800, 1333)),
    "tiny 320": ("fcos_owp_tiny", {}, (320, 427)),
}
KEYS = {"r50": "R50-FPN 800x1333", "tiny": "tiny 320"}


def build(name: str, options: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    model = owp.create_model(name, objectness=["iou"], scoring="iou", **options)
    with torch.no_grad():
        for key, parameter in model.named_parameters():
            if key.startswith("head."):
                parameter.add_(torch.randn_like(parameter) * 0.02)
        model.head.regression_head.bbox_reg.bias.fill_(1.0)  # about one stride each side
    return model.eval()


def seconds(function) -> float:
    begin = time.perf_counter()
    function()
    return time.perf_counter() - begin


def measure(label: str, args: argparse.Namespace, folder: Path) -> dict:
    name, options, (height, width) = MODELS[label]
    model = build(name, options)
    generator = torch.Generator().manual_seed(1)
    images = [torch.rand(3, height, width, generator=generator) for _ in range(args.images)]
    path = folder / f"{name}.onnx"
    export_seconds = seconds(lambda: export_onnx(model, path, verify=False))
    runtime = OnnxProposer(path, threads=args.threads)

    def eager() -> list:
        with torch.inference_mode():
            return [model([image])[0] for image in images]

    def onnx() -> list:
        return [runtime([image])[0] for image in images]

    score_gap = max(
        float((mine["scores"] - theirs["scores"]).abs().max())
        for mine, theirs in zip(onnx(), eager(), strict=True)
    )
    for _ in range(args.warmup):
        eager(), onnx()
    times = {"pytorch": [], "onnxruntime": []}
    for _ in range(args.iters):
        times["pytorch"].append(seconds(eager))
        times["onnxruntime"].append(seconds(onnx))
    rates = {key: len(images) / statistics.median(value) for key, value in times.items()}
    return {
        "label": label,
        "pytorch": rates["pytorch"],
        "onnxruntime": rates["onnxruntime"],
        "ratio": rates["onnxruntime"] / rates["pytorch"],
        "score_gap": score_gap,
        "export_s": export_seconds,
        "mib": path.stat().st_size / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--images", type=int, default=3, help="images per pass")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--only", choices=tuple(KEYS), help="one model only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    labels = [KEYS[args.only]] if args.only else list(MODELS)
    with tempfile.TemporaryDirectory() as folder:
        rows = [measure(label, args, Path(folder)) for label in labels]
    print(
        f"\nFCOS-OWP IoU, one image per call, CPU, {args.threads} threads, {args.images} images, "
        f"median of {args.iters} passes (torch {torch.__version__})\n"
    )
    print("| model | PyTorch img/s | ONNX Runtime img/s | ONNX Runtime / PyTorch "
          "| max score diff | export s | ONNX MiB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['label']} | {row['pytorch']:.2f} | {row['onnxruntime']:.2f} | "
            f"{row['ratio']:.2f}x | {row['score_gap']:.1e} | {row['export_s']:.0f} | "
            f"{row['mib']:.0f} |"
        )


if __name__ == "__main__":
    main()

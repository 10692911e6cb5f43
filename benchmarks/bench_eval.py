"""Proposal evaluator speed: owp (faster-coco-eval) vs pycocotools on one generated problem.

Run by hand: ``python benchmarks/bench_eval.py [--images 2000] [--proposals 1000]``. Prints the
wall time of each engine through the same owp entry point, the ratio, and whether every AR
figure is identical. The strict protocol is one COCOeval run; the OLN protocol adds the
base-match filter and one run per area range.
"""

from __future__ import annotations

import argparse
import time

from owp.data.splits import SplitSpec
from owp.evaluation.proposals import evaluate_proposals
from owp.testing import random_coco_problem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--proposals", type=int, default=1000, help="at most, per image")
    parser.add_argument("--protocols", default="strict,oln")
    args = parser.parse_args()
    gt, proposals = random_coco_problem(
        args.images, max_gt=20, max_dets=args.proposals, crowd_fraction=0.05, seed=0
    )
    split = SplitSpec("bench", base=(1, 2), novel=None)
    print(
        f"{args.images} images, {len(gt['annotations'])} ground-truth boxes, "
        f"{len(proposals)} proposals"
    )
    print(
        f"{'protocol':>8}  {'owp (s)':>8}  {'pycocotools (s)':>15}  {'speed-up':>8}  identical AR"
    )
    for protocol in args.protocols.split(","):
        times, results = {}, {}
        for engine in ("faster-coco-eval", "pycocotools"):
            start = time.perf_counter()
            results[engine] = evaluate_proposals(
                gt, proposals, split, protocol=protocol, engine=engine
            )
            times[engine] = time.perf_counter() - start
        fast, slow = times["faster-coco-eval"], times["pycocotools"]
        same = results["faster-coco-eval"] == results["pycocotools"]
        print(f"{protocol:>8}  {fast:8.1f}  {slow:15.1f}  {slow / fast:7.1f}x  {same}")
    print(
        f"AR@100 (strict) = {results['faster-coco-eval']['AR@100']:.4f}"
        if "strict" in args.protocols
        else ""
    )


if __name__ == "__main__":
    main()

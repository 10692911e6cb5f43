"""Proposal evaluator speed at LVIS scale: owp's vectorised matcher vs pycocotools' COCOeval.

Run by hand: ``python benchmarks/bench_eval.py [--images 20000] [--proposals 300]``. The
problem is generated in LVIS v1 val's shape: ``--images`` images (LVIS v1 val: 19.8k) with
Poisson(12.5) objects each (~250k boxes) over the 1203 LVIS v1 categories, the novel side of the
``lvis-v1`` split holding ``--novel-share`` of the boxes, and ``--proposals`` class-agnostic
proposals per image (300: 6M at full size), half of them jittered copies of objects. Each
engine runs through the same entry point (:func:`owp.evaluation.proposals.evaluate_proposals`,
from the same in-memory results list) in this one process; the script prints the wall time of
each, the speed-up, and whether every AR figure is identical.

``--images`` takes a comma-separated list to show how the ratio moves with the size (the
references take long on a small machine: pycocotools needs about 15 min for the strict
protocol on 6M proposals on one core, and the OLN protocol evaluates four area ranges).
``--engines`` names the references (``pycocotools``, ``faster-coco-eval``).
"""

from __future__ import annotations

import argparse
import gc
import time

import numpy as np

from owp.data.splits import lvis_v1_novel_ids
from owp.evaluation.proposals import evaluate_proposals
from owp.testing import random_lvis_problem

NUM_CATEGORIES = 1203
BUDGETS = (10, 20, 50, 100, 300)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="20000", help="image counts, comma-separated")
    parser.add_argument("--proposals", type=int, default=300, help="per image")
    parser.add_argument("--novel-share", type=float, default=0.25, help="of the boxes")
    parser.add_argument("--protocols", default="strict,oln")
    parser.add_argument("--engines", default="pycocotools", help="the references")
    args = parser.parse_args()
    novel = set(lvis_v1_novel_ids())
    ids = np.arange(1, NUM_CATEGORIES + 1)
    is_novel = np.isin(ids, list(novel))
    weights = np.where(
        is_novel, args.novel_share / is_novel.sum(), (1 - args.novel_share) / (~is_novel).sum()
    )
    references = [e for e in args.engines.split(",") if e]
    for size in (int(v) for v in args.images.split(",")):
        start = time.perf_counter()
        gt, proposals = random_lvis_problem(
            size,
            category_ids=ids.tolist(),
            category_weights=weights,
            proposals_per_image=args.proposals,
            seed=0,
        )
        for annotation in gt["annotations"]:
            annotation["iscrowd"] = 0  # what owp.data.coco.load_instances adds to LVIS files
        for proposal in proposals:
            del proposal["category_id"]
        novel_boxes = sum(1 for a in gt["annotations"] if a["category_id"] in novel)
        print(
            f"\n{size} images, {len(gt['annotations'])} boxes ({novel_boxes} novel), "
            f"{len(proposals)} proposals, split lvis-v1, budgets {list(BUDGETS)} "
            f"(generated in {time.perf_counter() - start:.0f} s)"
        )
        header = f"{'protocol':>8}  {'owp (s)':>8}"
        for engine in references:
            header += f"  {engine + ' (s)':>22}  {'speed-up':>8}  {'identical AR':>12}"
        print(header)
        for protocol in args.protocols.split(","):
            times, results = {}, {}
            for engine in ("owp", *references):
                gc.collect()
                start = time.perf_counter()
                results[engine] = evaluate_proposals(
                    gt, proposals, "lvis-v1", protocol=protocol, max_dets=BUDGETS, engine=engine
                )
                times[engine] = time.perf_counter() - start
            line = f"{protocol:>8}  {times['owp']:8.1f}"
            for engine in references:
                same = results[engine] == results["owp"]
                ratio = times[engine] / times["owp"]
                line += f"  {times[engine]:22.1f}  {ratio:7.1f}x  {str(same):>12}"
            print(line, flush=True)
            print(
                f"{'':>8}  AR@100 {results['owp']['AR@100']:.4f}, "
                f"AR@300 {results['owp']['AR@300']:.4f}"
            )
        del gt, proposals


if __name__ == "__main__":
    main()

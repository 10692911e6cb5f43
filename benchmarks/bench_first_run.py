"""The first demo's one-time costs in one process and in one per CPU, side by side.

Run by hand::

    python benchmarks/bench_first_run.py [--images 64] [--workers N] [--work /tmp/owp-first-run]

Times, with 1 worker process and with ``--workers`` (default: one per CPU), (1) rendering
``--images`` images of the default synthetic set (photo style, 640 px) and (2) Selective
Search fast, 1000 proposals, on the same images, the demo's baseline row. It checks that both
outputs are identical and prints seconds per image and the speed-up of each. Nothing else
should run meanwhile: the ratio is only as good as the machine is quiet.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from owp.data.coco import read_coco_json
from owp.data.synthetic import SynthConfig, generate_synthetic_dataset
from owp.engine.inference import baseline_proposer, propose_for_images
from owp.parallel import available_cpus


def timed_generation(folder: Path, config: SynthConfig, workers: int) -> float:
    start = time.perf_counter()
    generate_synthetic_dataset(folder, config, force=True, workers=workers)
    return time.perf_counter() - start


def timed_search(folder: Path, workers: int) -> tuple[float, list[dict]]:
    coco = read_coco_json(folder / "train.json")
    proposer = baseline_proposer("selective-search", 1000, mode="fast")
    start = time.perf_counter()
    results = propose_for_images(
        coco["images"], proposer, images_dir=folder / "train", workers=workers
    )
    return time.perf_counter() - start, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="images rendered and searched")
    parser.add_argument("--workers", type=int, default=available_cpus(), help="the pool size")
    parser.add_argument("--work", type=Path, default=Path("/tmp/owp-first-run"))
    args = parser.parse_args()
    config = replace(SynthConfig(), num_train=args.images, num_val=1)
    one, many = args.work / "one", args.work / "many"
    render_one = timed_generation(one, config, 1)
    render_many = timed_generation(many, config, args.workers)
    same_files = (one / "manifest.json").read_bytes() == (many / "manifest.json").read_bytes()
    search_one, boxes_one = timed_search(one, 1)
    search_many, boxes_many = timed_search(one, args.workers)
    print(
        f"{args.images} images of {config.style} at {config.image_size} px, {available_cpus()} CPUs"
    )
    print(f"{'':28}{'1 process':>12}{f'{args.workers} processes':>14}{'speed-up':>10}")
    for label, serial, pooled in (
        ("rendering (s/img)", render_one, render_many),
        ("Selective Search (s/img)", search_one, search_many),
    ):
        print(
            f"{label:28}{serial / args.images:>12.3f}{pooled / args.images:>14.3f}"
            f"{serial / pooled:>9.2f}x"
        )
    print(f"identical files: {same_files}; identical proposals: {boxes_one == boxes_many}")


if __name__ == "__main__":
    main()

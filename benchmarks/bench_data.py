"""Training-index memory and build time at COCO-train and LVIS-train size.

Run by hand: ``python benchmarks/bench_data.py [--sizes coco,lvis] [--scale 1.0] [--out DIR]``.

It writes generated instances files (unless already there) into ``--out`` (default
``/tmp/owp-bench-data``; ``--scale 1`` writes about 0.5 GB per file, delete them afterwards):

* ``coco``: COCO train2017's shape, 118,287 images and 863,867 boxes (7.3 per image) over
  COCO's 80 category ids, each with a polygon segmentation of 24 vertices (460 MB at full
  size, as the issue's 472 MB file), crowd 1 %;
* ``lvis``: LVIS v1 train's shape, 100,170 images and 1,270,141 annotations over 1,203
  categories, images named by ``coco_url`` with ``neg_category_ids`` and
  ``not_exhaustive_category_ids``, annotations without ``iscrowd``, same polygons.

Each file is then measured in a fresh Python process (``coco`` with the ``coco-voc`` split,
``lvis`` with ``lvis-v1``, ``training=True``):

* **build**: seconds for ``CocoDetection(...)``, JSON parsing included (wall clock, and the
  process's CPU time, which depends less on what else the machine runs);
* **images, boxes**: the training items and their base-class boxes (images without one are
  skipped in training);
* **index**: resident memory the process keeps after the build (after a gc), over what it held
  before it (torch imported);
* **peak**: the process's peak resident memory (``VmHWM``);
* **worker growth**: in 4 forked DataLoader workers, each reads the target of *every* item
  (``target_of``; no image is decoded), runs ``gc.collect()``, and reports how much its unique
  memory (``Private_Clean + Private_Dirty`` of ``/proc/self/smaps_rollup``) grew since it
  started; the largest of the 4 is printed;
* **first iteration**: seconds from before the build to the first batch (16 targets) out of a
  DataLoader with 4 workers fed by the training samplers (:class:`InfiniteSampler`,
  :class:`GroupedBatchSampler`), as ``owp train`` builds it; no model step and no image.

Linux only (``/proc``). Times depend on the machine's load; memory does not.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from owp.data.splits import COCO_VOC_BASE_IDS, COCO_VOC_BASE_NAMES

COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
SIZES = {
    "coco": {"images": 118_287, "annotations": 863_867, "categories": COCO_IDS, "lvis": False},
    "lvis": {
        "images": 100_170,
        "annotations": 1_270_141,
        "categories": list(range(1, 1204)),
        "lvis": True,
    },
}
SPLITS = {"coco": "coco-voc", "lvis": "lvis-v1"}
VERTICES = 24
WORKERS = 4
GIB, MIB = 2**30, 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="coco,lvis", help="comma-separated: coco, lvis")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the real size")
    parser.add_argument("--out", type=Path, default=Path("/tmp/owp-bench-data"))
    parser.add_argument("--measure", nargs=2, metavar=("FILE", "SPLIT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure[0]), args.measure[1])))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.sizes.split(","):
        path = args.out / f"{name}-{args.scale:g}.json"
        if not path.is_file():
            started = time.perf_counter()
            write_instances(path, **SIZES[name], scale=args.scale)
            print(
                f"wrote {path} ({path.stat().st_size / MIB:.0f} MiB) in "
                f"{time.perf_counter() - started:.0f} s",
                flush=True,
            )
        done = subprocess.run(
            [sys.executable, __file__, "--measure", str(path), SPLITS[name]],
            check=True,
            capture_output=True,
            text=True,
        )
        rows.append((name, json.loads(done.stdout.strip().splitlines()[-1])))
    print(
        f"\n{'file':<6} {'images':>8} {'boxes':>9} {'build s':>8} {'cpu s':>6} {'index GiB':>10} "
        f"{'peak GiB':>9} {'worker MiB':>11} {'1st iter s':>11}"
    )
    for name, r in rows:
        print(
            f"{name:<6} {r['images']:>8} {r['boxes']:>9} {r['build_s']:>8.1f} "
            f"{r['build_cpu_s']:>6.1f} "
            f"{r['index_bytes'] / GIB:>10.3f} {r['peak_bytes'] / GIB:>9.2f} "
            f"{max(r['worker_growth_bytes']) / MIB:>11.1f} {r['first_iteration_s']:>11.1f}"
        )
    print(
        f"\nworker MiB: the largest unique-memory growth of {WORKERS} forked workers after each "
        "read every target and ran a gc; index: resident memory kept after the build"
    )


def write_instances(
    path: Path, images: int, annotations: int, categories: list[int], lvis: bool, scale: float
) -> None:
    """Write a generated instances file of ``images`` x ``scale`` images (see the docstring)."""
    rng = np.random.default_rng(0)
    n_images = max(1, round(images * scale))
    n_anns = max(1, round(annotations * scale))
    widths = rng.integers(320, 641, n_images)
    heights = rng.integers(240, 641, n_images)
    owner = np.sort(rng.integers(0, n_images, n_anns))
    w = rng.uniform(0.02, 0.6, n_anns) * widths[owner]
    h = rng.uniform(0.02, 0.6, n_anns) * heights[owner]
    x = rng.uniform(0, 1, n_anns) * (widths[owner] - w)
    y = rng.uniform(0, 1, n_anns) * (heights[owner] - h)
    category = rng.choice(categories, n_anns)
    crowd = rng.random(n_anns) < 0.01
    polygons = [
        json.dumps([np.round(rng.uniform(0, 600, 2 * VERTICES), 2).tolist()]) for _ in range(997)
    ]
    with path.open("w") as f:
        f.write('{"info": {"description": "owp bench_data"}, "images": [')
        for i in range(n_images):
            name = f"{i + 1:012d}.jpg"
            if lvis:
                folder = "train2017" if i % 10 else "val2017"
                extra = (
                    f'"coco_url": "http://images.cocodataset.org/{folder}/{name}", '
                    f'"neg_category_ids": [{i % 1203 + 1}, {(i * 7) % 1203 + 1}], '
                    f'"not_exhaustive_category_ids": [{(i * 13) % 1203 + 1}]'
                )
            else:
                extra = f'"file_name": "{name}", "license": 1, "date_captured": "2013-11-14"'
            f.write(
                f'{", " if i else ""}{{"id": {i + 1}, "width": {widths[i]}, '
                f'"height": {heights[i]}, {extra}}}'
            )
        f.write('], "annotations": [')
        for k in range(n_anns):
            crowd_key = "" if lvis else f', "iscrowd": {int(crowd[k])}'
            f.write(
                f'{", " if k else ""}{{"id": {k + 1}, "image_id": {owner[k] + 1}, '
                f'"category_id": {category[k]}, "segmentation": {polygons[k % 997]}, '
                f'"area": {w[k] * h[k] * 0.7:.2f}, '
                f'"bbox": [{x[k]:.2f}, {y[k]:.2f}, {w[k]:.2f}, {h[k]:.2f}]{crowd_key}}}'
            )
        f.write('], "categories": [')
        f.write(
            ", ".join(
                f'{{"id": {c}, "name": "{VOC_NAMES.get(int(c), f"c{c}")}", "supercategory": "s"}}'
                for c in categories
            )
        )
        f.write("]}")


VOC_NAMES = dict(zip(COCO_VOC_BASE_IDS, COCO_VOC_BASE_NAMES, strict=True))
"""COCO's names of the VOC ids: the coco-voc split checks that the data names them so."""


def measure(path: Path, split: str) -> dict:
    """Build the training index of ``path`` and measure it (run in a fresh process)."""
    import torch
    from torch.utils.data import DataLoader, Dataset

    from owp.data.dataset import CocoDetection
    from owp.data.samplers import GroupedBatchSampler, InfiniteSampler, aspect_ratio_groups

    class FullPass(Dataset):
        """Item k (one per worker): read every target, gc, report the unique-memory growth."""

        def __init__(self, dataset: CocoDetection) -> None:
            self.dataset = dataset

        def __len__(self) -> int:
            return WORKERS

        def __getitem__(self, k: int) -> int:
            before = unique_memory()
            for index in range(len(self.dataset)):
                self.dataset.target_of(index)
            gc.collect()
            return unique_memory() - before

    class Targets(Dataset):
        def __init__(self, dataset: CocoDetection) -> None:
            self.dataset = dataset

        def __len__(self) -> int:
            return len(self.dataset)

        def __getitem__(self, index: int) -> dict:
            return self.dataset.target_of(index)

    torch.set_num_threads(1)
    gc.collect()
    before = resident_memory()
    started, cpu = time.perf_counter(), time.process_time()
    dataset = CocoDetection(path.parent, path, split, training=True)
    build, build_cpu = time.perf_counter() - started, time.process_time() - cpu
    gc.collect()
    index = resident_memory() - before
    loader = DataLoader(
        Targets(dataset),
        batch_sampler=GroupedBatchSampler(
            InfiniteSampler(len(dataset), seed=0), aspect_ratio_groups(dataset.aspect_ratios()), 16
        ),
        num_workers=WORKERS,
        collate_fn=list,
    )
    next(iter(loader))
    first = time.perf_counter() - started
    del loader
    growth = list(DataLoader(FullPass(dataset), num_workers=WORKERS, collate_fn=list))
    boxes = sum(len(dataset.target_of(i)["boxes"]) for i in range(len(dataset)))
    return {
        "images": len(dataset),
        "boxes": boxes,
        "build_s": build,
        "build_cpu_s": build_cpu,
        "index_bytes": index,
        "peak_bytes": status_bytes("VmHWM"),
        "worker_growth_bytes": [g[0] for g in growth],
        "first_iteration_s": first,
    }


def resident_memory() -> int:
    return status_bytes("VmRSS")


def status_bytes(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def unique_memory() -> int:
    total = 0
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1]) * 1024
    return total


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()

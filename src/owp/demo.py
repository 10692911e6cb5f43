"""``owp demo``: the synthetic open-world set, proposals on its val images, novel-class AR.

The dataset is generated once and cached (``$OWP_HOME``, default ``~/.cache/owp``). This
release evaluates the non-learned reference proposals (sliding windows and random boxes) under
both protocols, which is the floor every learned model must clear.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from owp.data.coco import find_annotation_file, read_coco_json
from owp.data.synthetic import SynthConfig, generate_synthetic_dataset, is_synthetic_dataset
from owp.engine.inference import baseline_proposer, propose_for_images
from owp.evaluation.proposals import evaluate_proposals
from owp.evaluation.report import metrics_table
from owp.files import write_json

DEMO_COLUMNS = ("method", "protocol", "AR@10", "AR@100", "AR@1000", "AR_small@100", "AR_large@100")


def cache_dir() -> Path:
    """Where owp keeps generated data: ``$OWP_HOME`` or ``~/.cache/owp``."""
    return Path(os.environ.get("OWP_HOME", Path.home() / ".cache" / "owp"))


def default_synthetic_dataset(progress: bool = True) -> Path:
    """The default synthetic set, generated on first use and reused afterwards."""
    config = SynthConfig()
    folder = cache_dir() / f"synthetic-{config.image_size}px-seed{config.seed}"
    if not is_synthetic_dataset(folder):
        print(f"generating the synthetic open-world dataset in {folder} (once)")
        generate_synthetic_dataset(folder, config, force=True, progress=progress)
    return folder


def run_demo(data: Path | None = None, out: Path = Path("runs/demo")) -> list[dict]:
    """Evaluate the reference proposals on the val part of ``data``; print and return the rows."""
    start = time.perf_counter()
    folder = data if data is not None else default_synthetic_dataset()
    gt_file = find_annotation_file(folder, "val")
    split_file = folder / "split.yaml"
    split = split_file if split_file.is_file() else "coco-voc"
    coco = read_coco_json(gt_file)
    rows = []
    for method in ("sliding-window", "random"):
        proposals = propose_for_images(coco["images"], baseline_proposer(method, 1000))
        write_json(out / f"proposals_{method}.json", proposals, indent=None)
        for protocol in ("strict", "oln"):
            metrics = evaluate_proposals(coco, proposals, split, protocol=protocol)
            rows.append({"method": method, **metrics})
    write_json(out / "metrics.json", rows)
    title = (
        f"novel-class recall (%) on {gt_file} ({rows[0]['num_images']} images, "
        f"{rows[0]['num_gt']} novel objects), non-learned proposals"
    )
    print(metrics_table(rows, DEMO_COLUMNS, title=title))
    print(f"results in {out} ({time.perf_counter() - start:.0f} s)")
    return rows

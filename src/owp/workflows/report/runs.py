"""The runs a report shows: a run or study folder -> each run's val set, proposals and metrics.

A run's saved ``eval/`` is used as it is; the run's model predicts only for another val set
than its saved proposals were made on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from owp.data.coco import read_coco_json
from owp.data.locate import locate, locate_split, run_data
from owp.data.splits import ClassSplit, resolve_split
from owp.errors import OwpInputError
from owp.evaluation.results import Results, read_results


@dataclass
class RunEvaluation:
    """What a run's section is made of: its val set, saved proposals and metrics."""

    name: str
    run_dir: Path
    config: dict[str, Any]
    coco: dict[str, Any]
    ann_file: Path
    images_dir: Path
    split: ClassSplit
    proposals: Results
    saved_metrics: dict[str, Any]


def evaluate_run(
    name: str,
    run_dir: Path,
    work_dir: Path,
    data: str | Path | None = None,
    images: str | Path | None = None,
    progress: bool = False,
) -> RunEvaluation:
    """A run's val set and proposals: its saved ``eval/`` (and the annotation file and images
    folder recorded in ``eval/predictions.json``, else the run's ``data.val``), or, for another
    ``data`` than the saved proposals were made on, a fresh evaluation in ``work_dir``."""
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        raise OwpInputError("not a run folder (no config.yaml) nor a study folder", path=run_dir)
    config = yaml.safe_load(config_file.read_text()) or {}
    own = run_data(run_dir)
    saved = _saved_key(run_dir / "eval")
    if data is not None:
        ann_file, images_dir = locate(data, "val", images)
    elif saved is not None:
        ann_file, images_dir = Path(saved["annotations"][0]), Path(saved["images"])
    else:
        ann_file, images_dir = locate(own.val, "val", own.val_images)
    coco = read_coco_json(ann_file)
    split_name = locate_split(own.split, data if data is not None else own.val)
    split = resolve_split(split_name, coco["categories"], ann_file)
    eval_dir = run_dir / "eval"
    made_for = None if saved is None else Path(saved["annotations"][0]).resolve()
    if not (eval_dir / "proposals.json").is_file() or (
        data is not None and made_for != ann_file.resolve()
    ):
        _evaluate_for_report(run_dir, ann_file, images_dir, split_name, work_dir, progress)
        eval_dir = work_dir
    image_ids = [info["id"] for info in coco["images"]]
    proposals = read_results(eval_dir / "proposals.json", image_ids)
    metrics_file = eval_dir / "metrics.json"
    saved_metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    return RunEvaluation(
        name, run_dir, config, coco, ann_file, images_dir, split, proposals, saved_metrics
    )


def study_rows(source: Path) -> list[dict[str, Any]] | None:
    """A study folder's ``results.json`` rows (run dirs made absolute), ``None`` for a run."""
    results = source / "results.json"
    if not results.is_file() or not (source / "runs").is_dir():
        return None
    rows = json.loads(results.read_text())
    for row in rows:
        run_dir = Path(row["run_dir"])
        if not run_dir.is_dir():  # a moved study: its runs are still in runs/<name>
            run_dir = source / "runs" / row["run"]
        row["run_dir"] = str(run_dir)
    return rows


def _evaluate_for_report(
    run_dir: Path, ann_file: Path, images_dir: Path, split: str | Path, work: Path, progress: bool
) -> None:
    """Predict with the run's model on ``ann_file`` into ``work`` (reused when it matches)."""
    from owp.engine.dist import resolve_device
    from owp.engine.inference import evaluate_model
    from owp.engine.runs import load_with_config

    model, saved = load_with_config(run_dir)
    model.to(resolve_device("auto"))
    evaluate_model(
        model,
        ann_file,
        images_dir,
        split,
        proposal_scoring=saved["eval"].get("proposal_scoring"),
        detection_scoring=saved["eval"].get("detection_scoring"),
        out_dir=work,
        progress=progress,
        reuse=True,
    )


def _saved_key(eval_dir: Path) -> dict[str, Any] | None:
    """What ``eval_dir/proposals.json`` was made from (``predictions.json``), if recorded."""
    path = eval_dir / "predictions.json"
    try:
        entry = json.loads(path.read_text()).get("proposals.json")
    except (OSError, ValueError, AttributeError):
        return None
    return entry if isinstance(entry, dict) and "annotations" in entry else None

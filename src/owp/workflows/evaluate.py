"""``owp eval``: predict a run's proposals on a dataset (its own val set by default), evaluate
them, keep proposals and metrics in the output folder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from owp.data.locate import locate, locate_split, run_data
from owp.engine.inference import (
    DEFAULT_RUNTIME,
    InferenceRuntime,
    evaluate_model,
    load_for_inference,
    metrics_file_name,
)
from owp.errors import OwpInputError
from owp.evaluation.proposals import category_budget, check_max_dets, per_category_recall
from owp.files import write_json


@dataclass
class RunEvaluation:
    """What :func:`evaluate_run` measured: ``metrics`` (of
    :func:`~owp.engine.inference.evaluate_model`, plus ``per_category`` when asked),
    ``ann_file`` (the ground truth used), ``out`` (the folder of proposals and metrics),
    ``metrics_file`` (the metrics JSON) and ``extra_scorings`` (the ``also_scoring`` names)."""

    metrics: dict[str, Any]
    ann_file: Path
    out: Path
    metrics_file: Path
    extra_scorings: list[str]


def evaluate_run(
    run: str | Path,
    *,
    data: str | Path | None = None,
    part: str = "val",
    images: Path | None = None,
    split: str | None = None,
    protocol: str = "strict",
    oln_pool: int = 1500,
    max_dets: str | Sequence[int] = "10,20,50,100,300,1000",
    scoring: str | None = None,
    also_scoring: str = "",
    batch_size: int = 8,
    runtime: InferenceRuntime = DEFAULT_RUNTIME,
    out: Path | None = None,
    force: bool = False,
    per_category: bool = False,
    weights: Path | None = None,
    progress: bool = False,
) -> RunEvaluation:
    """Evaluate the model of ``run`` (a run folder, checkpoint or model source) on ``data``
    (default: the run's ``data.val``), writing ``proposals.json`` and the metrics JSON into
    ``out`` (default ``<run>/eval``); predictions saved there by the same weights, scoring and
    data are evaluated again instead of recomputed unless ``force``.

    ``also_scoring`` (comma-separated) ranks the same proposals again per scoring, from the same
    forward pass; ``per_category`` adds each novel class's recall to the metrics JSON."""
    budgets = check_max_dets(max_dets)
    overrides = {"scoring": scoring} if scoring else {}
    extras = [name.strip() for name in also_scoring.split(",") if name.strip()]
    if str(run).lower().endswith(".onnx"):
        raise OwpInputError(
            "owp eval runs PyTorch models: evaluate the run or source this file was exported "
            "from (owp predict FILE IMAGES runs the ONNX file)",
            path=run,
        )
    model, saved, precision = load_for_inference(run, runtime, weights=weights, **overrides)
    own = run_data(run, saved.get("data"))  # config.yaml: absolute paths
    if data is None:
        data, images = own.val, images or own.val_images
    ann_file, images = locate(data, part, images)
    split = split or locate_split(own.split, data)
    out = out or (Path(run) if Path(run).is_dir() else Path(run).parent) / "eval"
    metrics = evaluate_model(
        model,
        ann_file,
        images,
        split,
        protocol=protocol,
        oln_pool=oln_pool,
        max_dets=budgets,
        batch_size=batch_size,
        # Without a scoring, the run's own eval settings (e.g. a Double-Head run ranks its
        # proposals by RPN objectness and its detections by class scores).
        proposal_scoring=None if scoring else saved["eval"].get("proposal_scoring"),
        detection_scoring=saved["eval"].get("detection_scoring"),
        extra_proposal_scorings=extras,
        out_dir=out,
        progress=progress,
        reuse=not force,
        precision=precision,
    )
    metrics_file = out / metrics_file_name(protocol, oln_pool)
    if per_category:
        metrics["per_category"] = per_category_recall(
            ann_file, out / "proposals.json", split, budget=category_budget(budgets)
        )
        write_json(metrics_file, metrics)
    return RunEvaluation(metrics, ann_file, out, metrics_file, extras)

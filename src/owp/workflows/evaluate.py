"""``owp eval``: predict a run's proposals on a dataset (its own val set by default), evaluate
them, keep proposals and metrics in the output folder. Under ``torchrun`` the ranks share the
prediction and rank 0 evaluates."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from owp.data.locate import locate, locate_split, run_data
from owp.engine import dist
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
) -> RunEvaluation | None:
    """Evaluate the model of ``run`` (a run folder, checkpoint or model source) on ``data``
    (default: the run's ``data.val``), writing ``proposals.json`` and the metrics JSON into
    ``out`` (default ``<run>/eval``); predictions saved there by the same weights, scoring and
    data are evaluated again instead of recomputed unless ``force``.

    ``also_scoring`` (comma-separated) ranks the same proposals again per scoring, from the same
    forward pass; ``per_category`` adds each novel class's recall to the metrics JSON.

    Under ``torchrun`` (``WORLD_SIZE`` > 1; every rank calls this) the ranks join a process
    group (NCCL on CUDA, each rank on its ``LOCAL_RANK`` GPU; gloo on the CPU), each predicts
    its share of the images, and rank 0 gathers them, evaluates, writes the files and returns
    the result; the other ranks return ``None``. The metrics equal one process's at
    ``batch_size=1``, at larger sizes up to the float rounding that batching brings (see
    :func:`~owp.engine.inference.predict_dataset_per_config`)."""
    budgets = check_max_dets(max_dets)
    overrides = {"scoring": scoring} if scoring else {}
    extras = [name.strip() for name in also_scoring.split(",") if name.strip()]
    if str(run).lower().endswith(".onnx"):
        raise OwpInputError(
            "owp eval runs PyTorch models: evaluate the run or source this file was exported "
            "from (owp predict FILE IMAGES runs the ONNX file)",
            path=run,
        )
    with _ranks_joined(runtime) as runtime:
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
            progress=progress and dist.is_main_process(),
            reuse=not force,
            precision=precision,
            shard=dist.is_distributed(),
        )
        if not dist.is_main_process():
            return None  # rank 0 evaluated every rank's predictions
        metrics_file = out / metrics_file_name(protocol, oln_pool)
        if per_category:
            metrics["per_category"] = per_category_recall(
                ann_file, out / "proposals.json", split, budget=category_budget(budgets)
            )
            write_json(metrics_file, metrics)
        return RunEvaluation(metrics, ann_file, out, metrics_file, extras)


@contextmanager
def _ranks_joined(runtime: InferenceRuntime) -> Iterator[InferenceRuntime]:
    """``runtime`` with this rank's device, inside ``torchrun``'s process group when
    ``WORLD_SIZE`` > 1 (joined here, and left on exit, unless already joined)."""
    device = runtime.device
    device = dist.resolve_device(device) if isinstance(device, str) else device
    joined = not dist.is_distributed() and dist.init_distributed(
        "nccl" if device.type == "cuda" else "gloo"
    )
    try:
        yield replace(runtime, device=device)
    finally:
        if joined:
            dist.cleanup()

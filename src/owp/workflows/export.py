"""``owp export``: a run's, checkpoint's or ``torchvision:`` source's whole proposal pipeline
as one ONNX file, its names and category ids kept in the file's metadata."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from owp.engine.inference import InferenceRuntime, load_for_inference
from owp.errors import OwpInputError


def export_run(
    run: str | Path,
    out: Path,
    *,
    opset: int | None = None,
    scorings: Sequence[str] | None = None,
    min_size: int | None = None,
    max_size: int | None = None,
    top_k: int | None = None,
    weights: Path | None = None,
) -> Path:
    """Export the model of ``run`` to the ONNX file ``out`` (see
    :func:`owp.export.export_onnx` for the options); returns the file written.

    Models and options that do not export are refused before any other work."""
    from owp.export.onnx import export_onnx, pipeline_for

    # The first scoring's own inference options (a torchvision source's 0.2 score threshold
    # for cls* scorings), as owp predict --scoring gets them.
    first = {"scoring": scorings[0]} if scorings else {}
    model, saved, _ = load_for_inference(
        run, InferenceRuntime(device="cpu"), weights=weights, **first
    )
    if not model.TORCH:
        raise OwpInputError("is already an ONNX file", path=run)
    pipeline_for(model, scorings=scorings, min_size=min_size, max_size=max_size, top_k=top_k)
    metadata = {"model": saved["model"]["name"]}
    names = model.class_names
    if names:
        metadata["class_names"] = json.dumps(list(names))
    if model.category_ids is not None:
        metadata["category_ids"] = json.dumps(list(model.category_ids))
    return export_onnx(
        model,
        out,
        opset=opset,
        scorings=scorings,
        min_size=min_size,
        max_size=max_size,
        top_k=top_k,
        metadata=metadata,
    )

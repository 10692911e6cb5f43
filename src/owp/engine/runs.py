"""Loading models (``owp.load``): from run folders and checkpoints, and from model sources:
torchvision's COCO detectors (:mod:`owp.models.two_stage.torchvision`) and files written by
``owp export`` (:class:`owp.export.runtime.OnnxProposer`; predictions only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from owp.config import ModelConfig, RunConfig, config_from_dict
from owp.data.locate import run_classes
from owp.engine.checkpoint import latest_checkpoint, load_checkpoint
from owp.errors import OwpInputError
from owp.models.contract import ProposalModel
from owp.models.registry import create_model
from owp.models.two_stage.torchvision import (
    TORCHVISION_PREFIX,
    TORCHVISION_SOURCES,
    torchvision_model,
    torchvision_name,
)

ONNX_SUFFIX = ".onnx"


def is_source(value: Any) -> bool:
    """Whether ``value`` names a model source (``torchvision:NAME`` or an ``.onnx`` file), not
    a run folder or checkpoint."""
    text = str(value)
    return text.startswith(TORCHVISION_PREFIX) or text.lower().endswith(ONNX_SUFFIX)


def load_source(
    source: str | Path, *, weights: str | Path | None = None, **overrides: Any
) -> tuple[ProposalModel, dict[str, Any]]:
    """The model of a source and a run-config dict describing it (what ``owp eval`` reads).

    ``overrides`` are model options (``scoring``, ``post_nms_top_n``, ``score_thresh``, ...);
    ``weights`` a local weights file instead of the torch hub cache (torchvision sources).
    """
    text = str(source)
    if text.lower().endswith(ONNX_SUFFIX):
        from owp.export.runtime import OnnxProposer

        if weights is not None:
            raise OwpInputError("--weights does not apply to an ONNX file (it holds its weights)")
        if overrides:
            raise OwpInputError(
                f"an exported ONNX file has its options built in ({', '.join(sorted(overrides))} "
                "cannot change); export again with other options",
                path=text,
            )
        proposer = OnnxProposer(text)
        config = RunConfig(model=ModelConfig(name=text, options={}))
        return proposer, config.to_dict()
    name = torchvision_name(text)
    options = {k: v for k, v in overrides.items() if v is not None}
    model = torchvision_model(name, weights=weights, **options)
    config = RunConfig(model=ModelConfig(name=TORCHVISION_PREFIX + name, options=options))
    config.description = TORCHVISION_SOURCES[name].description
    return model, config.to_dict()


def checkpoint_of(run_or_checkpoint: str | Path) -> Path:
    """The checkpoint named by a run folder (its ``last.pt`` or newest checkpoint) or a file."""
    path = Path(run_or_checkpoint)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise OwpInputError("no checkpoint in this folder (is it a run folder?)", path=path)
        return found
    if not path.exists():
        raise OwpInputError("run folder or checkpoint not found", path=path)
    return path


def load(run_or_checkpoint: str | Path, **overrides: Any) -> ProposalModel:
    """A trained model in eval mode, from a run folder or a checkpoint file, or a model source
    (:func:`load_source`): ``"torchvision:fcos_resnet50_fpn"`` (and the Faster R-CNNs), or an
    exported ``.onnx`` file.

    ``overrides`` change inference options (``scoring``, ``post_nms_top_n``, ...) of the saved
    model configuration; ``weights=FILE`` gives a torchvision source's weights file.
    """
    model, _ = load_with_config(run_or_checkpoint, **overrides)
    return model


def load_with_config(run_or_checkpoint: str | Path, **overrides: Any) -> tuple[ProposalModel, dict]:
    """:func:`load`, also returning the checkpoint's full run configuration dict."""
    if is_source(run_or_checkpoint):
        return load_source(run_or_checkpoint, **overrides)
    path = checkpoint_of(run_or_checkpoint)
    state = load_checkpoint(path)
    try:
        saved = config_from_dict(_flat_model(state["config"]), str(path))
    except (KeyError, TypeError, OwpInputError) as err:
        raise OwpInputError(
            f"checkpoint holds no usable owp run config ({err})", path=path
        ) from None
    try:
        model = create_model(saved.model.name, **{**saved.model.options, **overrides})
    except OwpInputError as err:
        raise OwpInputError(
            f"the checkpoint's model config is not usable here: {err}", path=path
        ) from None
    result = model.load_state_dict(state["model"], strict=False)
    if result.missing_keys or result.unexpected_keys:
        example = (result.missing_keys or result.unexpected_keys)[0]
        raise OwpInputError(
            f"weights do not fit model {saved.model.name!r} (e.g. {example!r}): a checkpoint of "
            "another model or owp version",
            path=path,
        )
    if model.classifies:
        _attach_classes(model, state, path)
    return model.eval(), state["config"]


def _attach_classes(model: ProposalModel, state: dict, path: Path) -> None:
    """Give a classifying model its ``category_ids`` (label i -> dataset category id) and
    ``class_names``: from the checkpoint, or for checkpoints of owp <= 0.1, from the split the
    run was trained with. Left unset when neither is known: evaluation then refuses to guess,
    and predictions name labels by number."""
    extra = state.get("extra") or {}
    ids, names = extra.get("category_ids"), extra.get("class_names")
    if ids is None:
        try:
            ids, names = run_classes(path, state["config"].get("data"))
        except OwpInputError:
            return
    if len(ids) != model.config.num_classes:
        raise OwpInputError(
            f"the model has {model.config.num_classes} classes but the run's split names "
            f"{len(ids)}: {', '.join(map(str, names or ids))}",
            path=path,
        )
    model.category_ids = [int(i) for i in ids]
    model.class_names = list(names) if names else None


def _flat_model(config: dict) -> dict:
    model = config["model"]
    return {**config, "model": {"name": model["name"], **model.get("options", {})}}

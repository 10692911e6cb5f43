"""Loading trained models from run folders and checkpoints (``owp.load``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from owp.config import config_from_dict
from owp.data.locate import run_classes
from owp.engine.checkpoint import latest_checkpoint, load_checkpoint
from owp.errors import OwpInputError
from owp.models.factory import create_model


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


def load(run_or_checkpoint: str | Path, **overrides: Any) -> nn.Module:
    """A trained model in eval mode, from a run folder or a checkpoint file, or a model source
    (:mod:`owp.sources`): ``"torchvision:fcos_resnet50_fpn"`` (and the Faster R-CNNs), or an
    exported ``.onnx`` file.

    ``overrides`` change inference options (``scoring``, ``post_nms_top_n``, ...) of the saved
    model configuration; ``weights=FILE`` gives a torchvision source's weights file.
    """
    model, _ = load_with_config(run_or_checkpoint, **overrides)
    return model


def load_with_config(run_or_checkpoint: str | Path, **overrides: Any) -> tuple[nn.Module, dict]:
    """:func:`load`, also returning the checkpoint's full run configuration dict."""
    from owp.sources import is_source, load_source

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
    if getattr(model.config, "num_classes", None) is not None:
        _attach_classes(model, state, path)
    return model.eval(), state["config"]


def _attach_classes(model: nn.Module, state: dict, path: Path) -> None:
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

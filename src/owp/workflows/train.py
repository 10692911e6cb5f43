"""``owp train``: the run configuration from a preset, a YAML file or a run's own
``config.yaml``, with ``--set`` overrides, trained into a run folder.

Importing this module does not import torch (the command line's ``--help`` reads
:data:`DEFAULT_PRESET`); training imports it when it starts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from owp.config import (
    RunConfig,
    apply_overrides,
    load_config_file,
    load_preset,
    resolve_data_paths,
)
from owp.errors import OwpInputError

if TYPE_CHECKING:
    from owp.engine.trainer import TrainResult

DEFAULT_PRESET = "demo"
"""The preset ``owp train`` runs when given neither a preset nor a config file."""


def _run_folder(preset: str | None, config_file: Path | None, out: Path | None) -> Path:
    """The run folder: ``out``, else ``runs/<config file stem or preset>``."""
    name = config_file.stem if config_file is not None else preset or DEFAULT_PRESET
    return out or Path("runs") / name


def run_config(
    run_dir: Path,
    *,
    preset: str | None = None,
    config_file: Path | None = None,
    overrides: Sequence[str] = (),
    resume: bool = False,
) -> RunConfig:
    """The configuration to train: ``config_file``'s, else with ``resume`` and no ``preset``
    the run's own ``config.yaml``, else ``preset``'s (default :data:`DEFAULT_PRESET`), with
    ``overrides`` (``KEY=VALUE``) applied and data paths resolved."""
    if config_file is not None:
        config = load_config_file(config_file)
    elif preset is None and resume:  # a run folder is self-contained
        own = run_dir / "config.yaml"
        if not own.is_file():
            raise OwpInputError(
                "no config.yaml to resume with; name the run's --preset or --config", path=run_dir
            )
        config = load_config_file(own)
    else:
        config = load_preset(preset or DEFAULT_PRESET)
    return resolve_data_paths(apply_overrides(config, list(overrides)))


def train_run(
    *,
    preset: str | None = None,
    config_file: Path | None = None,
    overrides: Sequence[str] = (),
    out: Path | None = None,
    resume: bool = False,
    init: str | None = None,
    device: str | None = None,
) -> TrainResult:
    """Train :func:`run_config`'s configuration into ``out`` (default ``runs/<config file stem
    or preset>``; ``resume`` continues its last checkpoint); ``init`` and ``device`` set
    ``train.init`` and ``train.device``."""
    from owp.engine.trainer import train

    run_dir = _run_folder(preset, config_file, out)
    extra = list(overrides)
    if device:
        extra.append(f"train.device={device}")
    if init:
        extra.append(f"train.init={init}")
    config = run_config(
        run_dir, preset=preset, config_file=config_file, overrides=extra, resume=resume
    )
    return train(config, run_dir, resume=resume)

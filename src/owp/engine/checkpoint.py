"""Training checkpoints: atomic writes, safe loading and exact resume.

A checkpoint is a dict written with :func:`torch.save`: the model, optimizer and scheduler state
dicts, the step, the full resolved config, the random number generator states and free-form
``extra`` data. Everything in it is tensors or plain Python data (the RNG states are stored in
that form too), so it loads with ``torch.load(weights_only=True)``, which never runs code from
the file.
"""

from __future__ import annotations

import random
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from owp.errors import OwpInputError
from owp.files import write_atomic

CHECKPOINT_FORMAT = 1

_NUMBERED = re.compile(r"checkpoint_(\d+)\.pt")
_SCALARS = (str, int, float, bool, type(None))


def checkpoint_name(step: int) -> str:
    """File name of the checkpoint taken after ``step`` optimizer steps."""
    return f"checkpoint_{step:07d}.pt"


def _check_plain(value: Any, where: str) -> None:
    """Raise ``TypeError`` unless ``value`` is tensors and plain data (loadable weights-only).

    Types are checked exactly: subclasses such as NumPy floats or enums would not load.
    """
    if type(value) in (dict, OrderedDict):
        for key, item in value.items():
            if type(key) not in (str, int):
                raise TypeError(f"{where} has a key of type {type(key).__name__}: {key!r}")
            _check_plain(item, f"{where}[{key!r}]")
    elif type(value) in (list, tuple):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
    elif type(value) not in _SCALARS and not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{where} is a {type(value).__name__}; a checkpoint holds only tensors, "
            "dicts, lists, tuples, str, int, float, bool and None"
        )


def capture_rng_states() -> dict[str, Any]:
    """The Python, NumPy, torch CPU and CUDA generator states, as tensors and plain data."""
    version, python_state, gauss = random.getstate()
    algorithm, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "python": {"version": version, "state": list(python_state), "gauss": gauss},
        "numpy": {
            "algorithm": algorithm,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def seed_rng_states(seed: int) -> None:
    """Seed the Python, NumPy and torch (CPU and CUDA) generators: a fresh run starts from the
    same states in every process, so that the states its checkpoints save are reproducible."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def restore_rng_states(rng: dict[str, Any]) -> None:
    """Set the Python, NumPy, torch and CUDA generators to states saved in a checkpoint.

    The CUDA states are restored for as many GPUs as both the checkpoint and this machine have;
    they are skipped when either has none.
    """
    python = rng["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss"]))
    numpy = rng["numpy"]
    np.random.set_state(
        (
            numpy["algorithm"],
            numpy["keys"].cpu().numpy().astype(np.uint32),
            numpy["pos"],
            numpy["has_gauss"],
            numpy["cached_gaussian"],
        )
    )
    torch.set_rng_state(rng["torch"].cpu())
    if rng["cuda"] is not None and torch.cuda.is_available():
        for device, state in enumerate(rng["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state.cpu(), device)


def _bare_model(model: nn.Module) -> nn.Module:
    """The wrapped module of a (Distributed)DataParallel model, else the model itself."""
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        return model.module
    return model


def model_classes(model: nn.Module) -> dict[str, list]:
    """A classifying model's ``category_ids`` (the dataset category id of each label) and
    ``class_names``, as checkpoints keep them in ``extra``; ``{}`` for a proposer."""
    bare = _bare_model(model)
    ids = bare.category_ids
    if ids is None:
        return {}
    names = bare.class_names
    return {"category_ids": [int(i) for i in ids], "class_names": list(names or [])}


def save_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    optimizer: Optimizer | None,
    scheduler: LRScheduler | None,
    step: int,
    config: dict[str, Any],
    extra: dict[str, Any] | None = None,
    scaler: torch.amp.GradScaler | None = None,
    rng_per_rank: list[dict[str, Any]] | None = None,
) -> Path:
    """Write a checkpoint to ``path`` atomically and return ``path``.

    The data goes to a temporary file in the same folder, is flushed to disk, then renamed over
    ``path``: an interrupted save leaves the previous file (if any) intact. The parent folder is
    created when missing. ``config`` and ``extra`` must be tensors and plain data (``TypeError``
    otherwise), so that the file loads weights-only. ``scaler``: the AMP gradient scaler, saved
    when enabled. ``rng_per_rank``: every DDP rank's generator states (from
    :func:`capture_rng_states`, gathered on rank 0); ``rng`` always holds this process's.
    """
    from owp.version import __version__

    _check_plain(config, "config")
    _check_plain(extra, "extra")
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "owp_version": __version__,
        "step": int(step),
        "model": _bare_model(model).state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "config": config,
        "rng": capture_rng_states(),
        "rng_per_rank": rng_per_rank,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "extra": extra,
    }
    return write_atomic(path, lambda f: torch.save(checkpoint, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, tensors moved to ``map_location``.

    A missing file, a folder, a file that is not a complete PyTorch file, one that is not an owp
    checkpoint and one of a newer format raise :class:`OwpInputError` naming the file.
    """
    path = Path(path)
    if path.is_dir():
        raise OwpInputError("is a folder, expected a checkpoint file", path=path)
    if not path.is_file():
        raise OwpInputError("checkpoint file not found", path=path)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise OwpInputError(
            f"not a readable owp checkpoint: truncated, corrupt or not a PyTorch file "
            f"({type(error).__name__} while loading)",
            path=path,
        ) from error
    if not isinstance(checkpoint, dict) or not {"format", "model"} <= checkpoint.keys():
        raise OwpInputError(
            "not an owp checkpoint (no 'format' and 'model' entries; was it saved by owp train?)",
            path=path,
        )
    version = checkpoint["format"]
    if not isinstance(version, int) or version < 1:
        raise OwpInputError(f"unknown checkpoint format {version!r}", path=path)
    if version > CHECKPOINT_FORMAT:
        raise OwpInputError(
            f"checkpoint format {version} is newer than this owp reads ({CHECKPOINT_FORMAT}); "
            "upgrade owp",
            path=path,
        )
    return checkpoint


# Model options that act only at inference: a resume may change them.
INFERENCE_OPTIONS = frozenset(
    {
        "scoring",
        "score_thresh",
        "nms_thresh",
        "pre_nms_top_n",
        "post_nms_top_n",
        "detection_score_thresh",
        "rpn_pre_nms_top_n_test",
        "rpn_post_nms_top_n_test",
    }
)
SCHEDULE_KEYS = ("max_iters", "warmup_iters", "warmup_factor", "steps", "gamma", "base_lr")


def check_same_model(state: dict[str, Any], config: dict[str, Any], path: str | Path) -> None:
    """Refuse to resume checkpoint ``state`` (read from ``path``) under ``config`` (a run
    config as a dict) when that would change the trained graph or the targets: another model,
    other model options; options that act at inference only (:data:`INFERENCE_OPTIONS`:
    scoring, thresholds, top-k) may differ."""
    saved = state.get("config", {}).get("model", {})
    current = config["model"]
    if saved.get("name") != current["name"]:
        raise OwpInputError(
            f"checkpoint is a {saved.get('name')!r} model, this config asks for "
            f"{current['name']!r}",
            path=path,
        )
    saved_options, options = saved.get("options", {}), current["options"]
    differing = sorted(
        key
        for key in saved_options.keys() | options.keys()
        if key not in INFERENCE_OPTIONS
        and _plain_value(saved_options.get(key)) != _plain_value(options.get(key))
    )
    if differing:
        key = differing[0]
        raise OwpInputError(
            f"cannot resume: model.{key} was {saved_options.get(key)!r} in the checkpoint, "
            f"this config gives {options.get(key)!r} (it changes what is trained)",
            path=path,
        )


def schedule_changes(saved: dict[str, Any], current: Any) -> list[str]:
    """``"key saved -> now"`` for each lr-schedule setting (:data:`SCHEDULE_KEYS`) of
    ``current`` (a :class:`~owp.config.TrainConfig`) that differs from ``saved``, the train
    section of a checkpoint's config; a resume follows ``current``."""
    return [
        f"{k} {saved[k]} -> {getattr(current, k)}"
        for k in SCHEDULE_KEYS
        if k in saved and _plain_value(saved[k]) != _plain_value(getattr(current, k))
    ]


def _plain_value(value: Any) -> Any:
    return list(value) if isinstance(value, list | tuple) else value


def _numbered_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``checkpoint_<step>.pt`` file in ``run_dir``, oldest first."""
    found = []
    for path in run_dir.glob("checkpoint_*.pt"):
        match = _NUMBERED.fullmatch(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint to resume from: ``run_dir/last.pt`` if present, else the highest-step
    ``checkpoint_<step>.pt``, else ``None`` (also when ``run_dir`` does not exist)."""
    run_dir = Path(run_dir)
    last = run_dir / "last.pt"
    if last.is_file():
        return last
    numbered = _numbered_checkpoints(run_dir)
    return numbered[-1][1] if numbered else None


def prune_checkpoints(run_dir: str | Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` highest-step ``checkpoint_<step>.pt`` files in ``run_dir``.

    ``last.pt`` and other files are never touched. Returns the deleted paths, oldest first.
    """
    if keep < 0:
        raise ValueError(f"keep must be >= 0, got {keep}")
    numbered = _numbered_checkpoints(Path(run_dir))
    doomed = [path for _, path in numbered[: max(len(numbered) - keep, 0)]]
    for path in doomed:
        path.unlink()
    return doomed

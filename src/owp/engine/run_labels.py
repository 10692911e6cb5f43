"""The pseudo labels a self-training run trains on, kept in the run.

``data.pseudo_labels`` names a COCO file, or ``run:NAME``: mine them from the run of preset
``NAME`` beside this one (its latest checkpoint). Either way the labels a run trains on live in
the run, as ``<run>/pseudo_labels.json``: mined there, or a copy of the file.

Once the run has saved a checkpoint that file is the run's for good: a resume reads it as it
is and never mines again or copies over it, even when the source run has a newer checkpoint
or the named file was edited since (a warning says so). Before its first checkpoint a run
starts from scratch, so its labels are made anew when their source changed (a ``run:`` source
is mined again only then; the mined file records the checkpoint and its mtime).

Under ``torchrun`` rank 0 decides what to do and every rank takes part in the mining
(:func:`~owp.engine.pseudo.mine_from_run` shards it and gathers the selections).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from owp.config import RUN_PREFIX
from owp.data.coco import read_coco_json
from owp.engine import dist
from owp.engine.checkpoint import latest_checkpoint
from owp.engine.pseudo import PseudoLabelSettings, describe_quality, mine_from_run
from owp.errors import OwpInputError
from owp.files import write_atomic

log = logging.getLogger(__name__)

RUN_LABELS = "pseudo_labels.json"
"""The pseudo labels a run trains on, in its folder."""


def run_pseudo_labels(
    source: str,
    run_dir: str | Path,
    ann_file: Path,
    images: Path,
    split: str | Path,
    *,
    settings: PseudoLabelSettings | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    num_workers: int = 2,
    progress: bool = False,
) -> Path:
    """The file of the pseudo labels the run in ``run_dir`` trains on, made when needed (see
    the module docstring); every rank calls it.

    Args:
        source: ``data.pseudo_labels``: a file, or ``run:NAME``.
        run_dir: this run's folder.
        ann_file, images, split: the training set (mining runs over its images).
        settings: the mining settings of a ``run:`` source (``None``: the defaults).
        device, batch_size, num_workers, progress: of the mining.

    Returns ``<run>/pseudo_labels.json``, or ``source`` itself when that file is missing or
    no COCO file (reading it then gives the usual one-line error).
    """
    run_dir = Path(run_dir)
    stored = run_dir / RUN_LABELS
    plan = _plan(source, run_dir, stored) if dist.is_main_process() else None
    action, argument = dist.broadcast_object(plan)
    if action == "error":
        raise OwpInputError(argument, path=run_dir.parent / source.removeprefix(RUN_PREFIX))
    if action == "mine":
        log.info("mining pseudo labels from %s on %s", argument, ann_file)
        # Mining must not move the generators training draws from (a DataLoader seeds itself
        # from the global one): a run that mines and one that reuses the file train alike.
        device = torch.device(device)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            mined = mine_from_run(
                argument,
                ann_file,
                images,
                split,
                stored,
                settings or PseudoLabelSettings(),
                device=device,
                batch_size=batch_size,
                num_workers=num_workers,
                progress=progress,
            )
        log.info("wrote %d pseudo boxes to %s", len(mined.coco["annotations"]), stored)
        for line in describe_quality(mined.quality) if mined.quality else ():
            log.info("%s", line)
    elif action == "copy" and dist.is_main_process():
        data = Path(argument).read_bytes()
        write_atomic(stored, lambda f: f.write(data))
    dist.barrier()
    return Path(argument) if action == "read" else stored


def _plan(source: str, run_dir: Path, stored: Path) -> tuple[str, str]:
    """What rank 0 decided: ``("keep", "")`` the run's file, ``("mine", checkpoint)``,
    ``("copy", file)``, ``("read", file)`` (a missing or malformed file, read where it is for
    its error) or
    ``("error", message)``."""
    started = latest_checkpoint(run_dir) is not None
    if source.startswith(RUN_PREFIX):
        name = source.removeprefix(RUN_PREFIX)
        checkpoint = latest_checkpoint(run_dir.parent / name)
        if checkpoint is None:
            return "error", (
                f"data.pseudo_labels run:{name}: no run of preset {name!r} to mine pseudo "
                "labels from (train it there first; owp study trains it before this run)"
            )
        if stored.is_file() and (started or _mined_from(stored, checkpoint)):
            if not _mined_from(stored, checkpoint):
                log.warning(
                    "%s has a newer checkpoint than the one %s was mined from; this run keeps "
                    "the labels it started with",
                    run_dir.parent / name,
                    stored,
                )
            return "keep", ""
        return "mine", str(checkpoint)
    path = Path(source)
    try:
        read_coco_json(path)
    except OwpInputError:  # missing or malformed: read where it is, for its one-line error
        return "read", source
    if path.resolve() == stored.resolve():
        return "keep", ""
    if started and stored.is_file():
        if path.read_bytes() != stored.read_bytes():
            log.warning(
                "%s differs from the pseudo labels this run started with; it keeps those (%s)",
                path,
                stored,
            )
        return "keep", ""
    return "copy", source


def _mined_from(stored: Path, checkpoint: Path) -> bool:
    """Whether the pseudo-label file ``stored`` names ``checkpoint`` as it is now."""
    try:
        info = read_coco_json(stored).get("info") or {}
    except OwpInputError:
        return False
    resolved = checkpoint.resolve()
    return (info.get("checkpoint"), info.get("checkpoint_mtime_ns")) == (
        str(resolved),
        resolved.stat().st_mtime_ns,
    )

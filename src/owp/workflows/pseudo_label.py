"""``owp pseudo-label``: mine pseudo labels with a trained run on its own training set (or
another), for ``data.pseudo_labels``; the mining itself is :mod:`owp.engine.pseudo`'s, which
training also calls for a ``run:NAME`` source."""

from __future__ import annotations

from pathlib import Path

from owp.data.locate import locate, locate_split, run_data
from owp.engine.checkpoint import load_checkpoint
from owp.engine.dist import resolve_device
from owp.engine.pseudo import MinedLabels, PseudoLabelSettings, mine_from_run, quality_path
from owp.engine.runs import checkpoint_of
from owp.errors import OwpInputError
from owp.files import check_output_file


def pseudo_label_run(
    run: str | Path,
    out: Path,
    settings: PseudoLabelSettings,
    *,
    data: str | Path | None = None,
    part: str = "train",
    images: Path | None = None,
    split: str | None = None,
    device: str = "auto",
    batch_size: int = 8,
    force: bool = False,
    progress: bool = False,
) -> MinedLabels:
    """Mine pseudo labels with the model of ``run`` on ``data`` (default: the run's
    ``data.train``) into ``out`` and, on the synthetic set, their quality beside it; an
    existing ``out`` or quality file is kept unless ``force``."""
    if batch_size < 1:
        raise OwpInputError(f"--batch-size must be a positive integer, got {batch_size}")
    for path in (out, quality_path(out)):
        if path.exists() and not force:
            raise OwpInputError("already exists; pass --force to overwrite", path=path)
        check_output_file(path)
    checkpoint = checkpoint_of(run)
    own = run_data(run, load_checkpoint(checkpoint).get("config", {}).get("data"))
    if data is None:
        data, images = own.train, images or own.train_images
    ann_file, images = locate(data, part, images)
    return mine_from_run(
        checkpoint,
        ann_file,
        images,
        split or locate_split(own.split, data),
        out,
        settings,
        device=resolve_device(device),
        batch_size=batch_size,
        progress=progress,
    )

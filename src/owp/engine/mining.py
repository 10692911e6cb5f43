"""The pseudo labels a training run trains on (``data.pseudo_labels``), ready for its data.

:class:`~owp.engine.trainer.Trainer` calls :func:`training_pseudo_boxes` when it is built, so
that labels that do not fit the training set stop the run before any training. Every rank
calls it: a ``run:NAME`` source is mined by all of them (sharded), see
:func:`~owp.engine.run_labels.run_pseudo_labels`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from owp.config import RunConfig
from owp.data.coco import read_coco_json
from owp.data.locate import locate, locate_split
from owp.data.pseudo import Boxes, read_pseudo_labels
from owp.engine.run_labels import run_pseudo_labels
from owp.errors import OwpInputError


def training_pseudo_boxes(
    config: RunConfig, run_dir: Path, device: torch.device, *, progress: bool = True
) -> Boxes | None:
    """The boxes of ``config.data.pseudo_labels`` per training image id (``None`` without),
    checked against the training set.

    The run keeps the labels it starts with in ``<run_dir>/pseudo_labels.json``
    (:func:`~owp.engine.run_labels.run_pseudo_labels`): a copy of the file named, or mined on
    ``device`` from the run of preset NAME for ``run:NAME``, with
    :class:`~owp.engine.pseudo.PseudoLabelSettings`' defaults (sharded across ranks;
    ``eval.batch_size`` images a batch, ``data.num_workers`` loader workers).
    """
    data = config.data
    if data.pseudo_labels is None:
        return None
    ann_file, images = locate(data.train, "train", data.train_images)
    path = run_pseudo_labels(
        data.pseudo_labels,
        run_dir,
        ann_file,
        images,
        locate_split(data.split, data.train),
        device=device,
        batch_size=config.eval.batch_size,
        num_workers=data.num_workers,
        progress=progress,
    )
    try:
        return read_pseudo_labels(path, read_coco_json(ann_file), ann_file)
    except OwpInputError as err:
        raise OwpInputError(f"data.pseudo_labels: {err}") from None

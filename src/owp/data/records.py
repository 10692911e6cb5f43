"""The compact training index: per image only what a target needs, in one shared buffer.

A COCO-train-sized instances file (118k images, 860k polygon annotations) read as Python dicts
holds about 2.5 GiB, and every forked DataLoader worker that walks it copies the pages it
touches (reference counts are written on read; a gc pass touches them all). detectron2 avoids
this with ``DatasetFromList(serialize=True)``, which pickles every record into one numpy byte
array. :class:`ImageRecords` keeps even less: per image its id, size and path, and per box its
``[x, y, w, h]`` (float64, as in the file, so that targets are computed exactly as from the
dicts), training label, crowd flag and pseudo flag — all numpy columns living in one contiguous
``uint8`` buffer. Workers read it without writing a byte of it, so they share it with the
parent; pickling (spawned workers) sends the buffer once.

Nothing here imports torch.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from owp.data.coco import BoxColumns

_ALIGN = 8
"""Byte alignment of every column in the buffer (the widest dtype is 8 bytes)."""


class ImageRecords:
    """Images and their boxes as numpy columns in one buffer (see the module docstring).

    Columns, for ``I`` images and ``M`` boxes (box rows of image ``i`` are
    ``box_offsets[i]:box_offsets[i + 1]``, annotated boxes first, then pseudo boxes):

    * ``image_ids`` int64 ``[I]``; ``widths``, ``heights`` int64 ``[I]``;
    * ``name_offsets`` int64 ``[I + 1]`` into ``names`` (uint8, UTF-8), and ``name_is_url``
      bool ``[I]``: the name is the image's ``coco_url`` (LVIS) rather than its ``file_name``;
    * ``box_offsets`` int64 ``[I + 1]``; ``boxes`` float64 ``[M, 4]`` as ``[x, y, w, h]``;
    * ``labels`` int64 ``[M]`` (contiguous training label, ``-1`` for pseudo boxes);
      ``iscrowd`` int64 ``[M]``; ``pseudo`` bool ``[M]``.
    """

    COLUMNS = (
        "image_ids",
        "widths",
        "heights",
        "name_offsets",
        "names",
        "name_is_url",
        "box_offsets",
        "boxes",
        "labels",
        "iscrowd",
        "pseudo",
    )

    def __init__(self, columns: Mapping[str, np.ndarray]) -> None:
        self._buffer, self._layout = _pack([(name, columns[name]) for name in self.COLUMNS])
        self._views()

    def __getstate__(self) -> dict[str, Any]:
        return {"buffer": self._buffer, "layout": self._layout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._buffer, self._layout = state["buffer"], state["layout"]
        self._views()

    def _views(self) -> None:
        for name, (offset, dtype, shape) in self._layout.items():
            view = np.ndarray(shape, dtype=dtype, buffer=self._buffer, offset=offset)
            view.flags.writeable = False
            setattr(self, name, view)

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def nbytes(self) -> int:
        """Size of the buffer holding every column."""
        return self._buffer.nbytes

    def rows(self, index: int) -> slice:
        """The box rows of image ``index``."""
        return slice(int(self.box_offsets[index]), int(self.box_offsets[index + 1]))

    def name(self, index: int) -> str:
        """The ``file_name`` (or for LVIS the ``coco_url``) of image ``index``."""
        start, stop = self.name_offsets[index], self.name_offsets[index + 1]
        return self.names[start:stop].tobytes().decode()

    def info(self, index: int) -> dict[str, Any]:
        """Image ``index`` as a small COCO image entry: ``id``, ``width``, ``height`` and its
        ``file_name`` or ``coco_url`` (what :func:`owp.data.coco.image_path` reads)."""
        key = "coco_url" if self.name_is_url[index] else "file_name"
        return {
            "id": int(self.image_ids[index]),
            "width": int(self.widths[index]),
            "height": int(self.heights[index]),
            key: self.name(index),
        }

    def select(self, indices: Sequence[int]) -> ImageRecords:
        """The records of images ``indices`` (in that order), in a buffer of their own."""
        chosen = np.asarray(indices, np.int64).reshape(-1)
        rows = _ranges(self.box_offsets[chosen], self.box_offsets[chosen + 1])
        name_bytes = _ranges(self.name_offsets[chosen], self.name_offsets[chosen + 1])
        lengths = self.name_offsets[chosen + 1] - self.name_offsets[chosen]
        counts = self.box_offsets[chosen + 1] - self.box_offsets[chosen]
        return ImageRecords(
            {
                "image_ids": self.image_ids[chosen],
                "widths": self.widths[chosen],
                "heights": self.heights[chosen],
                "name_offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                "names": self.names[name_bytes],
                "name_is_url": self.name_is_url[chosen],
                "box_offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                "boxes": self.boxes[rows],
                "labels": self.labels[rows],
                "iscrowd": self.iscrowd[rows],
                "pseudo": self.pseudo[rows],
            }
        )

    @property
    def images(self) -> Sequence[dict[str, Any]]:
        """Every image as :meth:`info` gives it (a lazy sequence: nothing is kept)."""
        return _Infos(self)


class _Infos(Sequence):
    def __init__(self, records: ImageRecords) -> None:
        self._records = records

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self._records.info(i) for i in range(len(self))[index]]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return self._records.info(index % len(self))


def build_records(
    images: Sequence[Mapping[str, Any]],
    annotations: BoxColumns,
    base_ids: Sequence[int],
    *,
    keep_empty: bool,
    pseudo_boxes: Mapping[int, Sequence[Sequence[float]]] | None = None,
) -> ImageRecords:
    """The index of a cleaned COCO file (:func:`owp.data.coco.load_box_columns`) for a split.

    Annotations of categories outside ``base_ids`` are dropped; label ``i`` is
    ``base_ids[i]``. ``pseudo_boxes`` (image id -> ``[x, y, w, h]`` boxes) follow an image's
    annotated boxes. Unless ``keep_empty``, images without a non-crowd box or a pseudo box are
    left out. Images and each image's boxes keep the file's order.
    """
    n = len(images)
    image_ids = np.fromiter((img["id"] for img in images), np.int64, n)
    order = np.argsort(image_ids, kind="stable")
    base = np.isin(annotations.category_ids, np.asarray(base_ids, np.int64))
    sorted_base = np.sort(np.asarray(base_ids, np.int64))
    label_of_sorted = np.argsort(np.asarray(base_ids, np.int64), kind="stable")
    listed = set(image_ids.tolist())
    pseudo_boxes = {k: v for k, v in (pseudo_boxes or {}).items() if v and k in listed}
    pseudo_owner = np.repeat(
        np.fromiter(pseudo_boxes, np.int64, len(pseudo_boxes)),
        np.fromiter(map(len, pseudo_boxes.values()), np.int64, len(pseudo_boxes)),
    )
    pseudo_xywh = np.array(
        [box for boxes in pseudo_boxes.values() for box in boxes], np.float64
    ).reshape(-1, 4)
    owner_ids = np.concatenate([annotations.image_ids[base], pseudo_owner])
    owner = order[np.searchsorted(image_ids[order], owner_ids)]
    boxes = np.concatenate([annotations.boxes[base], pseudo_xywh])
    labels = np.concatenate(
        [
            label_of_sorted[np.searchsorted(sorted_base, annotations.category_ids[base])],
            np.full(len(pseudo_owner), -1, np.int64),
        ]
    )
    iscrowd = np.concatenate([annotations.iscrowd[base], np.zeros(len(pseudo_owner), np.int64)])
    pseudo = np.arange(len(owner)) >= int(base.sum())

    positive = (iscrowd == 0) | pseudo
    keep = np.ones(n, bool) if keep_empty else np.bincount(owner[positive], minlength=n) > 0
    new_index = np.cumsum(keep) - 1
    rows = keep[owner]
    order = np.lexsort((pseudo[rows], owner[rows]))  # stable: the file's order within an image
    owner, boxes, labels, iscrowd, pseudo = (
        column[rows][order] for column in (owner, boxes, labels, iscrowd, pseudo)
    )
    kept = np.flatnonzero(keep)
    counts = np.bincount(new_index[owner], minlength=len(kept))
    names, name_is_url = [], np.zeros(len(kept), bool)
    for i, k in enumerate(kept.tolist()):
        img = images[k]
        name = img.get("file_name")
        if not name:
            name, name_is_url[i] = img["coco_url"], True
        names.append(name.encode())
    lengths = np.fromiter(map(len, names), np.int64, len(names))
    return ImageRecords(
        {
            "image_ids": image_ids[kept],
            "widths": np.fromiter((images[k]["width"] for k in kept), np.int64, len(kept)),
            "heights": np.fromiter((images[k]["height"] for k in kept), np.int64, len(kept)),
            "name_offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            "names": np.frombuffer(b"".join(names), np.uint8),
            "name_is_url": name_is_url,
            "box_offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            "boxes": boxes,
            "labels": labels.astype(np.int64),
            "iscrowd": iscrowd,
            "pseudo": pseudo,
        }
    )


def release_freed_memory() -> None:
    """Hand memory freed by Python back to the operating system (glibc's ``malloc_trim``).

    After the dicts of a large JSON file are freed, glibc keeps much of their memory in its
    heap, where it still counts as the process's (and every forked worker's) resident memory.
    Does nothing where glibc is not the C library.
    """
    if not sys.platform.startswith("linux"):
        return
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def _ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """``concatenate([arange(a, b) for a, b in zip(starts, stops)])``, vectorised."""
    lengths = stops - starts
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.arange(int(lengths.sum()), dtype=np.int64) + offsets


def _pack(
    columns: Sequence[tuple[str, np.ndarray]],
) -> tuple[np.ndarray, dict[str, tuple[int, str, tuple[int, ...]]]]:
    """Copy ``columns`` into one aligned ``uint8`` buffer; return it and where each lies."""
    layout: dict[str, tuple[int, str, tuple[int, ...]]] = {}
    size = 0
    for name, column in columns:
        layout[name] = (size, column.dtype.str, column.shape)
        size += -(-column.nbytes // _ALIGN) * _ALIGN
    buffer = np.zeros(size, np.uint8)
    for name, column in columns:
        offset = layout[name][0]
        raw = np.ascontiguousarray(column).view(np.uint8).ravel()
        buffer[offset : offset + column.nbytes] = raw
    return buffer, layout

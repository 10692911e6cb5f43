"""Infinite, deterministic, resumable sampling for iteration-based training.

:class:`InfiniteSampler` yields dataset indices forever, one seeded permutation per epoch, split
across distributed ranks. :class:`GroupedBatchSampler` batches them so that every batch holds
images of one aspect-ratio group (landscape or portrait), which keeps padding small, and can
skip ahead to resume exactly where a run stopped.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from owp.errors import OwpInputError


class InfiniteSampler(Sampler[int]):
    """Dataset indices forever, the same stream for the same arguments.

    Epoch ``e`` is ``torch.randperm(size)`` drawn from a generator seeded with ``seed + e`` (or
    ``0 .. size-1`` in order without shuffling); the epochs are concatenated and rank ``r`` of
    ``world_size`` takes every ``world_size``-th index from position ``r``, so the ranks
    partition the stream.
    """

    def __init__(
        self, size: int, *, shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        super().__init__()
        if size < 1:
            raise OwpInputError(f"the dataset has no images ({size}); there is nothing to sample")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"need 0 <= rank < world_size, got rank {rank}, world_size {world_size}"
            )
        self.size = size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size

    def _stream(self) -> Iterator[int]:
        """All ranks' indices: the epochs one after the other."""
        for epoch in itertools.count():
            if self.shuffle:
                generator = torch.Generator().manual_seed(self.seed + epoch)
                order = torch.randperm(self.size, generator=generator)
            else:
                order = torch.arange(self.size)
            yield from order.tolist()

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(self._stream(), self.rank, None, self.world_size)


class GroupedBatchSampler(Sampler[list[int]]):
    """Batches of ``batch_size`` indices from ``sampler``, each batch from one group, forever.

    Indices are buffered per ``group_ids[index]``; a batch is emitted as soon as one group's
    buffer is full. ``start_batch`` skips that many batches first, so a sampler built with
    ``start_batch=k`` yields exactly what a fresh one yields from its ``k``-th batch on.
    """

    def __init__(
        self,
        sampler: InfiniteSampler,
        group_ids: Sequence[int],
        batch_size: int,
        *,
        start_batch: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise OwpInputError(f"the batch size must be at least 1, got {batch_size}")
        if start_batch < 0:
            raise ValueError(f"start_batch must be >= 0, got {start_batch}")
        if len(group_ids) != sampler.size:
            raise ValueError(
                f"{len(group_ids)} group ids for a sampler over {sampler.size} dataset indices"
            )
        self.sampler = sampler
        self.group_ids = [int(group) for group in group_ids]
        self.batch_size = batch_size
        self.start_batch = start_batch

    def _batches(self) -> Iterator[list[int]]:
        """Every batch from the start of the sampler's stream."""
        buffers: defaultdict[int, list[int]] = defaultdict(list)
        for index in self.sampler:
            group = self.group_ids[index]
            buffers[group].append(index)
            if len(buffers[group]) == self.batch_size:
                yield buffers.pop(group)

    def __iter__(self) -> Iterator[list[int]]:
        return itertools.islice(self._batches(), self.start_batch, None)


def aspect_ratio_groups(aspect_ratios: Sequence[float]) -> list[int]:
    """Group id of each image from its aspect ratio ``width / height``: 0 when width >= height
    (landscape or square), 1 otherwise (portrait)."""
    groups = []
    for i, ratio in enumerate(aspect_ratios):
        if not math.isfinite(ratio) or ratio <= 0:
            raise OwpInputError(f"image {i} has aspect ratio {ratio}; expected width / height > 0")
        groups.append(0 if ratio >= 1 else 1)
    return groups

"""Tests of the infinite, resumable, aspect-ratio grouped samplers."""

from __future__ import annotations

from collections import Counter
from itertools import islice

import pytest
import torch

from owp.data.samplers import GroupedBatchSampler, InfiniteSampler, aspect_ratio_groups
from owp.errors import OwpInputError


def _take(sampler: InfiniteSampler | GroupedBatchSampler, n: int) -> list:
    """The first n items the sampler yields."""
    return list(islice(sampler, n))


def test_deterministic_for_a_seed_and_different_across_seeds() -> None:
    first = _take(InfiniteSampler(50, seed=3), 200)
    assert first == _take(InfiniteSampler(50, seed=3), 200)
    assert first == _take(InfiniteSampler(50, seed=3), 200)
    assert first != _take(InfiniteSampler(50, seed=4), 200)


def test_epochs_are_seeded_permutations() -> None:
    stream = _take(InfiniteSampler(7, seed=5), 21)
    for epoch in range(3):
        generator = torch.Generator().manual_seed(5 + epoch)
        assert (
            stream[7 * epoch : 7 * (epoch + 1)] == torch.randperm(7, generator=generator).tolist()
        )


@pytest.mark.parametrize("shuffle", [False, True])
def test_every_index_once_per_epoch(shuffle: bool) -> None:
    stream = _take(InfiniteSampler(13, shuffle=shuffle, seed=1), 13 * 4)
    epochs = [stream[13 * e : 13 * (e + 1)] for e in range(4)]
    assert all(sorted(epoch) == list(range(13)) for epoch in epochs)
    if shuffle:
        assert epochs[0] != list(range(13)) and epochs[0] != epochs[1]
    else:
        assert all(epoch == list(range(13)) for epoch in epochs)


def test_ranks_partition_the_stream() -> None:
    whole = _take(InfiniteSampler(11, seed=2), 66)
    ranks = [_take(InfiniteSampler(11, seed=2, rank=r, world_size=3), 22) for r in range(3)]
    assert [whole[r::3] for r in range(3)] == ranks
    assert Counter(i for rank in ranks for i in rank) == Counter({i: 6 for i in range(11)})


def test_sampler_validation() -> None:
    with pytest.raises(OwpInputError, match="no images"):
        InfiniteSampler(0)
    with pytest.raises(ValueError, match="rank"):
        InfiniteSampler(5, rank=2, world_size=2)
    with pytest.raises(ValueError, match="rank"):
        InfiniteSampler(5, world_size=0)


def test_aspect_ratio_groups() -> None:
    assert aspect_ratio_groups([1.5, 1.0, 0.75, 640 / 480, 480 / 640]) == [0, 0, 1, 0, 1]
    assert aspect_ratio_groups([]) == []
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(OwpInputError, match="aspect ratio"):
            aspect_ratio_groups([1.0, bad])


GROUPS = [0, 1, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0]


def _grouped(start_batch: int = 0, *, rank: int = 0, world_size: int = 1) -> GroupedBatchSampler:
    """A grouped batch sampler of batch size 3 over GROUPS."""
    sampler = InfiniteSampler(len(GROUPS), seed=7, rank=rank, world_size=world_size)
    return GroupedBatchSampler(sampler, GROUPS, 3, start_batch=start_batch)


def test_batches_hold_one_group() -> None:
    batches = _take(_grouped(), 40)
    assert all(len(batch) == 3 and len({GROUPS[i] for i in batch}) == 1 for batch in batches)
    assert {GROUPS[batch[0]] for batch in batches} == {0, 1}
    assert _take(_grouped(), 40) == batches


def test_a_batch_is_emitted_when_its_group_fills() -> None:
    sampler = InfiniteSampler(7, shuffle=False)  # stream 0 1 2 3 4 5 6 0 1 2 3 ...
    batches = GroupedBatchSampler(sampler, [0, 1, 1, 0, 0, 1, 0], 2)
    assert _take(batches, 5) == [[1, 2], [0, 3], [4, 6], [5, 1], [0, 3]]


def test_ranks_batch_their_own_indices() -> None:
    for rank in range(2):
        own = _take(InfiniteSampler(len(GROUPS), seed=7, rank=rank, world_size=2), 200)
        batches = _take(_grouped(rank=rank, world_size=2), 20)
        assert Counter(i for batch in batches for i in batch) <= Counter(own)


@pytest.mark.parametrize("k", [0, 1, 5, 23])
def test_start_batch_resumes_exactly(k: int) -> None:
    assert _take(_grouped(start_batch=k), 10) == _take(_grouped(), k + 10)[k:]


def test_grouped_validation() -> None:
    sampler = InfiniteSampler(len(GROUPS))
    with pytest.raises((OwpInputError, ValueError), match="batch size"):
        GroupedBatchSampler(sampler, GROUPS, 0)
    with pytest.raises(ValueError, match="start_batch"):
        GroupedBatchSampler(sampler, GROUPS, 2, start_batch=-1)
    with pytest.raises(ValueError, match="group ids"):
        GroupedBatchSampler(sampler, GROUPS[:-1], 2)


def test_works_as_a_dataloader_batch_sampler() -> None:
    data = torch.arange(len(GROUPS)) * 10
    loader = torch.utils.data.DataLoader(data, batch_sampler=_grouped(start_batch=2))
    assert [batch.tolist() for batch in islice(loader, 3)] == [
        [i * 10 for i in batch] for batch in _take(_grouped(), 5)[2:]
    ]

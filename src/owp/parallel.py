"""Ordered map over worker processes, for CPU work on independent items (rendering the
synthetic scenes, Selective Search).

The standard library's :class:`concurrent.futures.ProcessPoolExecutor` does the work; this
module only fixes the three choices every caller needs the same way: the ``spawn`` start method
(a fork of a process whose torch or OpenMP threads are running can deadlock), results in input
order (so that the output does not depend on the number of workers), and a serial path without
any process when one worker suffices, which is also what small inputs get.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from owp.errors import OwpInputError

Item = TypeVar("Item")
Result = TypeVar("Result")

# Items per worker below which starting processes (about a second each: a fresh interpreter
# imports numpy and owp) costs more than it saves.
MIN_ITEMS_PER_WORKER = 16


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def resolve_workers(workers: int | None, items: int) -> int:
    """The number of processes to use: ``workers`` (``None``: every available CPU), at most
    one per :data:`MIN_ITEMS_PER_WORKER` items, at least 1."""
    if workers is not None and (
        not isinstance(workers, int) or isinstance(workers, bool) or workers < 1
    ):
        raise OwpInputError(f"workers must be a positive integer, got {workers!r}")
    wanted = available_cpus() if workers is None else workers
    return max(1, min(wanted, items // MIN_ITEMS_PER_WORKER))


def ordered_map(
    function: Callable[[Item], Result], items: Sequence[Item], workers: int | None = None
) -> Iterator[Result]:
    """``function(item)`` for every item, yielded in the order of ``items``.

    ``function`` and the items must be picklable when more than one process runs (a
    module-level function or a :func:`functools.partial` of one). Results are yielded as they
    complete in order, so a caller can update a progress bar per item.
    """
    processes = resolve_workers(workers, len(items))
    if processes == 1:
        yield from map(function, items)
        return
    context = multiprocessing.get_context("spawn")
    chunk = max(1, min(8, len(items) // (4 * processes)))
    with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
        results: Iterable[Result] = pool.map(function, items, chunksize=chunk)
        yield from results

"""Ordered map over worker processes, for CPU work on independent items (rendering the
synthetic scenes, Selective Search).

The standard library's :class:`concurrent.futures.ProcessPoolExecutor` does the work; this
module only fixes the choices every caller needs the same way:

* results in input order, so that the output does not depend on the number of workers;
* a serial path without any process when one worker suffices, which small inputs also get;
* on Linux the ``fork`` start method, as torch's ``DataLoader`` uses, with torch limited to one
  thread in each worker as the ``DataLoader`` does (a forked OpenMP pool must not be entered).
  ``spawn`` would re-run the caller's script in every worker (a script without an
  ``if __name__ == "__main__"`` guard, or one read from standard input, then fails); elsewhere
  ``spawn`` is the only safe method and that rule applies.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from owp.errors import OwpInputError

Item = TypeVar("Item")
Result = TypeVar("Result")

# Items per worker below which starting the pool (forking, or with spawn a fresh interpreter
# that imports numpy and owp, about a second) costs more than it saves.
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
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    chunk = max(1, min(8, len(items) // (4 * processes)))
    with ProcessPoolExecutor(
        max_workers=processes, mp_context=context, initializer=_one_torch_thread
    ) as pool:
        yield from pool.map(function, items, chunksize=chunk)


def _one_torch_thread() -> None:
    """Worker start: torch (if the parent had imported it) computes on one thread, as in a
    ``DataLoader`` worker; the processes themselves are the parallelism."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)

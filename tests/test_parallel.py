"""owp.parallel: how many processes run, results in input order, one-line refusals."""

import operator
import subprocess
import sys
from functools import partial

import pytest

from owp import parallel
from owp.errors import OwpInputError
from owp.parallel import MIN_ITEMS_PER_WORKER, ordered_map, resolve_workers


@pytest.mark.parametrize(
    ("workers", "items", "expected"),
    [
        (4, 4 * MIN_ITEMS_PER_WORKER, 4),  # enough items for every worker
        (4, 2 * MIN_ITEMS_PER_WORKER + 1, 2),  # one process per MIN_ITEMS_PER_WORKER items
        (4, MIN_ITEMS_PER_WORKER - 1, 1),  # a small input runs here
        (1, 1000, 1),
        (3, 0, 1),
    ],
)
def test_resolve_workers(workers, items, expected):
    assert resolve_workers(workers, items) == expected


def test_none_means_every_available_cpu(monkeypatch):
    monkeypatch.setattr(parallel, "available_cpus", lambda: 3)
    assert resolve_workers(None, 1000) == 3
    assert resolve_workers(None, 2 * MIN_ITEMS_PER_WORKER) == 2


@pytest.mark.parametrize("workers", [0, -2, True, 1.5])
def test_a_bad_worker_count_is_one_line(workers):
    with pytest.raises(OwpInputError, match=r"^workers must be a positive integer, got ") as err:
        resolve_workers(workers, 100)
    assert "\n" not in str(err.value)


def test_results_keep_the_input_order_across_processes():
    items = list(range(-3 * MIN_ITEMS_PER_WORKER, 0))
    assert list(ordered_map(operator.neg, items, workers=2)) == [-i for i in items]


def test_an_error_in_a_worker_reaches_the_caller():
    items = [1] * (2 * MIN_ITEMS_PER_WORKER) + [0]
    with pytest.raises(ZeroDivisionError):
        list(ordered_map(partial(operator.truediv, 1), items, workers=2))


@pytest.mark.skipif(sys.platform != "linux", reason="fork is the start method on Linux only")
def test_a_script_without_a_main_guard_read_from_stdin_can_use_workers():
    script = (
        "import operator\n"
        "from owp.parallel import ordered_map\n"
        "print(list(ordered_map(operator.neg, range(40), workers=2))[-3:])\n"
    )
    done = subprocess.run(
        [sys.executable, "-"], input=script, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[-37, -38, -39]"

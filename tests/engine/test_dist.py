"""Tests of the distributed helpers: one process, and a real two-process gloo group."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from owp.engine import dist
from owp.errors import OwpInputError


@pytest.fixture
def single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """An environment as without torchrun."""
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


def test_single_process_defaults(single_process: None) -> None:
    assert dist.init_distributed() is False
    assert dist.init_distributed() is False
    assert not dist.is_distributed()
    assert (dist.get_rank(), dist.get_world_size(), dist.get_local_rank()) == (0, 1, 0)
    assert dist.is_main_process()
    dist.barrier()
    dist.cleanup()


def test_world_size_one_is_single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert dist.init_distributed() is False
    assert not dist.is_distributed()


def test_single_process_reduce_and_broadcast(single_process: None) -> None:
    values = {"loss": torch.tensor(2.5), "lr": 0.1, "count": torch.tensor([3])}
    reduced = dist.all_reduce_mean(values)
    assert reduced == {"loss": 2.5, "lr": 0.1, "count": 3.0}
    assert all(type(value) is float for value in reduced.values())
    assert list(reduced) == ["loss", "lr", "count"]
    assert dist.all_reduce_mean({}) == {}
    obj = {"a": [1, 2]}
    assert dist.broadcast_object(obj) is obj


def _worker(rank: int, world_size: int, out_dir: str) -> None:
    """One process of the two-process test: reduce, broadcast, write what it saw."""
    os.environ["RANK"] = str(rank)
    os.environ["LOCAL_RANK"] = str(rank)
    assert dist.init_distributed(backend="gloo")
    assert dist.init_distributed(backend="gloo")
    dist.barrier()
    means = dist.all_reduce_mean({"b": torch.tensor(float(rank)), "a": 10.0 * (rank + 1)})
    obj = dist.broadcast_object({"from": rank, "items": [rank, "x"]}, src=1)
    seen = {
        "rank": dist.get_rank(),
        "world_size": dist.get_world_size(),
        "local_rank": dist.get_local_rank(),
        "main": dist.is_main_process(),
        "means": means,
        "order": list(means),
        "obj": obj,
    }
    dist.cleanup()
    seen["after_cleanup"] = dist.is_distributed()
    Path(out_dir, f"{rank}.json").write_text(json.dumps(seen))


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_process_gloo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        seen = json.loads((tmp_path / f"{rank}.json").read_text())
        assert seen["rank"] == seen["local_rank"] == rank
        assert seen["world_size"] == 2
        assert seen["main"] == (rank == 0)
        assert seen["means"] == {"b": 0.5, "a": 15.0}
        assert seen["order"] == ["b", "a"]
        assert seen["obj"] == {"from": 1, "items": [1, "x"]}
        assert seen["after_cleanup"] is False


def _evaluate_worker(rank: int, out_dir: str) -> None:
    """Trainer.evaluate under a real two-process group: only rank 0 evaluates."""
    from owp.engine.trainer import Trainer

    os.environ["RANK"] = str(rank)
    os.environ["LOCAL_RANK"] = str(rank)
    assert dist.init_distributed(backend="gloo")

    class Stand:  # the state Trainer.evaluate reads
        calls = 0

        def val_metrics(self):
            Stand.calls += 1
            return {"AR@100": 0.5}

    metrics = Trainer.evaluate(Stand())
    dist.barrier()
    dist.cleanup()
    Path(out_dir, f"{rank}.json").write_text(json.dumps({"calls": Stand.calls, "metrics": metrics}))


def test_periodic_evaluation_runs_on_rank_zero_only(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    mp.spawn(_evaluate_worker, args=(str(tmp_path),), nprocs=2, join=True)
    seen = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in range(2)]
    assert seen[0] == {"calls": 1, "metrics": {"AR@100": 0.5}}
    assert seen[1] == {"calls": 0, "metrics": {}}


def test_cuda_means_this_processs_gpu_for_every_caller(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert dist.resolve_device("cuda") == torch.device("cuda", 3)
    assert dist.resolve_device("auto") == torch.device("cuda", 3)
    assert dist.resolve_device("cuda:1") == torch.device("cuda", 1)
    assert dist.resolve_device("cpu") == torch.device("cpu")
    for bad in ("auto:1", "tpu", "cudax"):
        with pytest.raises(OwpInputError, match="unknown device"):
            dist.resolve_device(bad)


def test_without_cuda_auto_is_the_cpu_and_cuda_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert dist.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(OwpInputError, match="no CUDA device"):
        dist.resolve_device("cuda")

"""Tests of training checkpoints: round trip, exact resume, atomic writes and bad files."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import owp
from owp.config import TrainConfig
from owp.engine.checkpoint import (
    CHECKPOINT_FORMAT,
    check_same_model,
    checkpoint_name,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    restore_rng_states,
    save_checkpoint,
    schedule_changes,
)
from owp.errors import OwpInputError

CONFIG = {"model": {"name": "fcos_owp_r50"}, "train": {"lr": 0.01, "steps": [3, 5]}, "seed": 1}


def _setup(seed: int) -> tuple[nn.Module, torch.optim.Optimizer, Any]:
    """A small model with buffers, an AdamW optimizer and a warmup + step-decay scheduler."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=2)
    decay = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[3])
    scheduler = torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, decay], milestones=[2])
    return model, optimizer, scheduler


def _train_step(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
    """One optimizer step on random data (draws from torch's global generator)."""
    model.train()
    loss = model(torch.randn(6, 4)).square().mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()


def _draws() -> tuple[list[float], list[float], list[float]]:
    """A few numbers from each of the torch, NumPy and Python generators."""
    return (
        torch.rand(4).tolist() + torch.randn(2).tolist(),
        np.random.rand(3).tolist() + np.random.randn(2).tolist(),
        [random.random(), random.gauss(0.0, 1.0), random.gauss(0.0, 1.0)],
    )


def test_round_trip_resumes_exactly(tmp_path: Path) -> None:
    model, optimizer, scheduler = _setup(0)
    for _ in range(3):
        _train_step(model, optimizer, scheduler)
    random.gauss(0.0, 1.0)  # leaves a cached Gaussian in Python's state
    np.random.randn(1)  # and in NumPy's
    path = save_checkpoint(
        tmp_path / "run" / checkpoint_name(3),
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        step=3,
        config=CONFIG,
        extra={"best": 0.5},
    )
    assert path == tmp_path / "run" / "checkpoint_0000003.pt"
    expected_draws = _draws()
    _train_step(model, optimizer, scheduler)
    expected_params = [p.detach().clone() for p in model.parameters()]

    checkpoint = load_checkpoint(path)
    assert checkpoint["format"] == CHECKPOINT_FORMAT
    assert checkpoint["owp_version"] == owp.__version__
    assert checkpoint["step"] == 3
    assert checkpoint["config"] == CONFIG
    assert checkpoint["extra"] == {"best": 0.5}
    resumed, resumed_optimizer, resumed_scheduler = _setup(1)
    resumed.load_state_dict(checkpoint["model"])
    resumed_optimizer.load_state_dict(checkpoint["optimizer"])
    resumed_scheduler.load_state_dict(checkpoint["scheduler"])
    restore_rng_states(checkpoint["rng"])
    assert _draws() == expected_draws

    restore_rng_states(checkpoint["rng"])
    _draws()
    _train_step(resumed, resumed_optimizer, resumed_scheduler)
    for got, want in zip(resumed.parameters(), expected_params, strict=True):
        assert torch.equal(got, want)
    assert resumed_scheduler.get_last_lr() == scheduler.get_last_lr()


def test_loaded_model_gives_identical_outputs(tmp_path: Path) -> None:
    model, _, _ = _setup(0)
    model.eval()
    path = save_checkpoint(
        tmp_path / "m.pt", model=model, optimizer=None, scheduler=None, step=0, config=CONFIG
    )
    checkpoint = load_checkpoint(path)
    assert checkpoint["optimizer"] is None and checkpoint["scheduler"] is None
    assert checkpoint["extra"] is None
    other, _, _ = _setup(1)
    other.load_state_dict(checkpoint["model"])
    other.eval()
    x = torch.randn(5, 4)
    assert torch.equal(model(x), other(x))


def test_wrapped_model_is_saved_unwrapped(tmp_path: Path) -> None:
    model, _, _ = _setup(0)
    path = save_checkpoint(
        tmp_path / "m.pt",
        model=nn.DataParallel(model),
        optimizer=None,
        scheduler=None,
        step=1,
        config=CONFIG,
    )
    assert list(load_checkpoint(path)["model"]) == list(model.state_dict())


def test_save_rejects_objects_that_would_not_load_weights_only(tmp_path: Path) -> None:
    model, _, _ = _setup(0)
    kwargs: dict[str, Any] = {"model": model, "optimizer": None, "scheduler": None, "step": 0}
    with pytest.raises(TypeError, match=r"config\['data'\]\['root'\] is a PosixPath"):
        save_checkpoint(tmp_path / "a.pt", config={"data": {"root": Path("x")}}, **kwargs)
    with pytest.raises(TypeError, match=r"extra\['ar'\]\[1\] is a float64"):
        save_checkpoint(
            tmp_path / "a.pt", config=CONFIG, extra={"ar": [1.0, np.float64(2)]}, **kwargs
        )
    assert list(tmp_path.iterdir()) == []


def test_save_to_a_folder_is_an_error(tmp_path: Path) -> None:
    model, _, _ = _setup(0)
    with pytest.raises(OwpInputError, match="is a folder"):
        save_checkpoint(
            tmp_path, model=model, optimizer=None, scheduler=None, step=0, config=CONFIG
        )


def test_interrupted_save_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, optimizer, scheduler = _setup(0)
    path = tmp_path / "last.pt"
    kwargs: dict[str, Any] = {
        "model": model,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "config": CONFIG,
    }
    save_checkpoint(path, step=1, **kwargs)

    def killed(obj: Any, f: Any) -> None:
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, step=2, **kwargs)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    assert load_checkpoint(path)["step"] == 1


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    """Files that are not loadable owp checkpoints, keyed by what is wrong with them."""
    model, _, _ = _setup(0)
    good = save_checkpoint(
        tmp_path / "good.pt", model=model, optimizer=None, scheduler=None, step=0, config=CONFIG
    )
    files = {"missing": tmp_path / "missing.pt", "folder": tmp_path / "folder"}
    files["folder"].mkdir()
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "text.pt").write_text("hello, not a checkpoint\n")
    (tmp_path / "truncated.pt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    torch.save(model.state_dict(), tmp_path / "state_dict.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    torch.save({"format": CHECKPOINT_FORMAT + 1, "model": {}}, tmp_path / "newer.pt")
    torch.save({"format": "1", "model": {}}, tmp_path / "format.pt")
    torch.save({"format": 1, "model": {}, "x": Path("a")}, tmp_path / "object.pt")
    for name in ("empty", "text", "truncated", "state_dict", "tensor", "newer", "format", "object"):
        files[name] = tmp_path / f"{name}.pt"
    return files


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "checkpoint file not found"),
        ("folder", "is a folder"),
        ("empty", "truncated, corrupt or not a PyTorch file"),
        ("text", "truncated, corrupt or not a PyTorch file"),
        ("truncated", "truncated, corrupt or not a PyTorch file"),
        ("object", "truncated, corrupt or not a PyTorch file"),
        ("state_dict", "not an owp checkpoint"),
        ("tensor", "not an owp checkpoint"),
        ("newer", f"format {CHECKPOINT_FORMAT + 1} is newer than this owp reads"),
        ("format", "unknown checkpoint format '1'"),
    ],
)
def test_bad_checkpoint_files(tmp_path: Path, case: str, message: str) -> None:
    path = _bad_files(tmp_path)[case]
    with pytest.raises(OwpInputError) as info:
        load_checkpoint(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and message in text
    assert "\n" not in text
    assert info.value.path == path


def _touch(run_dir: Path, *names: str) -> None:
    """Create empty files in run_dir."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        (run_dir / name).write_bytes(b"")


def test_checkpoint_name() -> None:
    assert checkpoint_name(42) == "checkpoint_0000042.pt"
    assert checkpoint_name(12_345_678) == "checkpoint_12345678.pt"


def test_latest_checkpoint(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path / "absent") is None
    assert latest_checkpoint(tmp_path) is None
    _touch(tmp_path, "checkpoint_999.pt", "checkpoint_abc.pt", ".checkpoint_5.pt.x.tmp", "a.pt")
    _touch(tmp_path, checkpoint_name(10), checkpoint_name(200), checkpoint_name(30))
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint_999.pt"
    _touch(tmp_path, checkpoint_name(10_000_000))
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint_10000000.pt"
    _touch(tmp_path, "last.pt")
    assert latest_checkpoint(str(tmp_path)) == tmp_path / "last.pt"


def test_prune_checkpoints(tmp_path: Path) -> None:
    _touch(tmp_path, "last.pt", "notes.txt", *(checkpoint_name(step) for step in (50, 5, 500, 1)))
    assert prune_checkpoints(tmp_path, keep=5) == []
    deleted = prune_checkpoints(tmp_path, keep=2)
    assert deleted == [tmp_path / checkpoint_name(1), tmp_path / checkpoint_name(5)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        checkpoint_name(50),
        checkpoint_name(500),
        "last.pt",
        "notes.txt",
    ]
    assert prune_checkpoints(str(tmp_path), keep=0) == [
        tmp_path / checkpoint_name(50),
        tmp_path / checkpoint_name(500),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "notes.txt"]
    with pytest.raises(ValueError, match="keep"):
        prune_checkpoints(tmp_path, keep=-1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_model_loaded_to_cuda(tmp_path: Path) -> None:
    model = nn.Linear(4, 2).cuda()
    path = save_checkpoint(
        tmp_path / "m.pt", model=model, optimizer=None, scheduler=None, step=0, config=CONFIG
    )
    expected = torch.rand(3, device="cuda")
    checkpoint = load_checkpoint(path, map_location="cuda")
    assert checkpoint["model"]["weight"].is_cuda and checkpoint["rng"]["torch"].is_cuda
    restore_rng_states(checkpoint["rng"])
    assert torch.equal(torch.rand(3, device="cuda"), expected)


def test_grad_scaler_state_round_trip(tmp_path: Path) -> None:
    """The AMP scaler (scale, growth tracker) is saved and restored: resume under AMP is exact."""
    model = nn.Linear(4, 2)
    scaler = torch.amp.GradScaler("cpu", init_scale=512.0, growth_interval=3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):  # two good steps: the growth tracker counts them
        optimizer.zero_grad()
        scaler.scale(model(torch.rand(2, 4)).sum()).backward()
        scaler.step(optimizer)
        scaler.update()
    path = save_checkpoint(
        tmp_path / "m.pt",
        model=model,
        optimizer=optimizer,
        scheduler=None,
        step=2,
        config=CONFIG,
        scaler=scaler,
    )
    restored = torch.amp.GradScaler("cpu", init_scale=1.0, growth_interval=3)
    restored.load_state_dict(load_checkpoint(path)["scaler"])
    assert restored.state_dict() == scaler.state_dict()
    assert restored.get_scale() == 512.0 and restored.state_dict()["_growth_tracker"] == 2
    disabled = torch.amp.GradScaler("cpu", enabled=False)
    path = save_checkpoint(
        tmp_path / "n.pt",
        model=model,
        optimizer=None,
        scheduler=None,
        step=0,
        config=CONFIG,
        scaler=disabled,
    )
    assert load_checkpoint(path)["scaler"] is None


def test_a_resume_may_change_inference_options_and_the_schedule_only(tmp_path: Path) -> None:
    options = {"objectness": ["iou"], "scoring": "iou"}
    state = {"config": {"model": {"name": "fcos_owp_tiny", "options": options}}}
    rescored = {"objectness": ("iou",), "scoring": "geomean", "post_nms_top_n": 500}
    check_same_model(state, {"model": {"name": "fcos_owp_tiny", "options": rescored}}, tmp_path)
    other = {"objectness": ["centerness"], "scoring": "iou"}
    with pytest.raises(OwpInputError, match=r"cannot resume: model.objectness was \['iou'\]"):
        check_same_model(state, {"model": {"name": "fcos_owp_tiny", "options": other}}, tmp_path)
    with pytest.raises(OwpInputError, match="checkpoint is a 'fcos_owp_tiny' model"):
        check_same_model(state, {"model": {"name": "rpn", "options": {}}}, tmp_path)
    train = TrainConfig(max_iters=20, steps=(0.5, 0.8))
    saved = {"max_iters": 10, "steps": [0.5, 0.8], "base_lr": train.base_lr}
    assert schedule_changes(saved, train) == ["max_iters 10 -> 20"]
    assert schedule_changes({}, train) == []

"""Ctrl-C (SIGINT) or kill -9 in the middle of a step, then --resume: the run ends bit for bit
where the uninterrupted one does (weights, batch-norm buffers, optimiser, scheduler, RNG, logs).

Each run is a subprocess of a small script; the signal is sent by the process to itself from a
forward hook on the backbone, at a step drawn at random, so that it arrives after the backbone's
batch norms have updated their running statistics: the moment a real Ctrl-C most often hits.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from owp.data.synthetic import SynthConfig, generate_synthetic_dataset
from owp.engine.checkpoint import load_checkpoint
from owp.engine.interrupt import ForcedInterrupt, StepGuard

MAX_ITERS = 8
CHECKPOINT_PERIOD = 3

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    from owp.config import apply_overrides, load_preset
    from owp.engine.trainer import Trainer, train

    mode, run_dir, at_step, data = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    torch.set_num_threads(1)
    config = apply_overrides(load_preset("demo"), [
        f"data.train={data}", f"data.val={data}", "data.num_workers=0",
        "model.min_size=96", "model.max_size=96", "train.batch_size=4",
        "train.warmup_iters=2", "train.log_period=1", "eval.max_dets=[10, 100]",
        f"train.max_iters={sys.argv[5]}", f"train.checkpoint_period={sys.argv[6]}",
    ])
    if mode in ("sigint", "sigkill"):
        number = signal.SIGINT if mode == "sigint" else signal.SIGKILL
        original = Trainer.run_step

        def step(self, *args):
            if self.step + 1 != at_step:
                return original(self, *args)
            hook = self.model.backbone.register_forward_hook(
                lambda *_: os.kill(os.getpid(), number)
            )
            try:
                return original(self, *args)
            finally:
                hook.remove()

        Trainer.run_step = step
    train(config, run_dir, resume=mode == "resume", progress=False)
    """
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Any]:
    """The tiny data set, the script, and the uninterrupted run every case compares against."""
    folder = tmp_path_factory.mktemp("resume")
    data = folder / "synth"
    generate_synthetic_dataset(
        data, SynthConfig(num_train=16, num_val=4, image_size=96, seed=3, style="flat")
    )
    script = folder / "train.py"
    script.write_text(SCRIPT)
    straight = folder / "straight"
    _run(script, "straight", straight, 0, data)
    return {"data": data, "script": script, "straight": straight}


def _run(script: Path, mode: str, run_dir: Path, at_step: int, data: Path) -> int:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    args = [sys.executable, str(script), mode, str(run_dir), str(at_step), str(data)]
    args += [str(MAX_ITERS), str(CHECKPOINT_PERIOD)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    if mode in ("straight", "resume"):
        assert done.returncode == 0, done.stderr[-3000:]
    return done.returncode


@pytest.mark.parametrize("mode", ["sigint", "sigkill"])
def test_an_interrupt_inside_a_step_then_resume_equals_the_uninterrupted_run(runs, tmp_path, mode):
    at_step = random.randint(1, MAX_ITERS - 1)  # any step: the result must not depend on it
    run_dir = tmp_path / "run"
    code = _run(runs["script"], mode, run_dir, at_step, runs["data"])
    assert code != 0, f"{mode} at step {at_step} did not stop the run"
    saved = load_checkpoint(run_dir / "last.pt")["step"] if (run_dir / "last.pt").exists() else 0
    # Ctrl-C lets the step it hit complete and saves it; kill -9 inside step `at_step` leaves
    # the last periodic checkpoint of the at_step - 1 steps that completed.
    completed = at_step - 1
    expected = at_step if mode == "sigint" else completed // CHECKPOINT_PERIOD * CHECKPOINT_PERIOD
    assert saved == expected, f"{mode} at step {at_step}"
    # Killed before the first checkpoint, the run starts again (metrics.csv rows dropped).
    _run(runs["script"], "resume" if saved else "straight", run_dir, 0, runs["data"])

    straight = load_checkpoint(runs["straight"] / "last.pt")
    resumed = load_checkpoint(run_dir / "last.pt")
    assert resumed["step"] == straight["step"] == MAX_ITERS
    for key in ("model", "optimizer", "scheduler", "rng", "rng_per_rank", "scaler", "extra"):
        _assert_identical(resumed[key], straight[key], f"{mode} at step {at_step}: {key}")
    for name in ("metrics.csv", "eval/metrics.json"):
        text = (runs["straight"] / name).read_text()
        assert (run_dir / name).read_text() == text, f"{mode} at step {at_step}: {name}"


def _assert_identical(a: Any, b: Any, where: str) -> None:
    """``a`` and ``b`` equal bit for bit: tensors (dtype and values), containers, scalars."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype, where
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys differ"
        for key in a:
            _assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), f"{where} differs"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_the_step_guard_holds_one_ctrl_c_until_the_step_ends_and_not_a_second():
    # The handler before may be Python's default or SIG_IGN (a shell's background job starts
    # with SIGINT ignored); the guard must put back whichever it found.
    before = signal.getsignal(signal.SIGINT)
    guard = StepGuard()
    with guard.installed():
        completed = False
        with pytest.raises(KeyboardInterrupt) as raised, guard.step():
            os.kill(os.getpid(), signal.SIGINT)  # held: the step goes on
            completed = True
        assert completed and type(raised.value) is KeyboardInterrupt
        with pytest.raises(ForcedInterrupt), guard.step():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # the second one stops at once
            pytest.fail("a second Ctrl-C must interrupt the step")
        with pytest.raises(KeyboardInterrupt):  # between steps: at once
            os.kill(os.getpid(), signal.SIGINT)
            pytest.fail("a Ctrl-C between steps must interrupt at once")
    assert signal.getsignal(signal.SIGINT) is before

"""Trainer hooks: a user's hook sees the loop in order, run_step trains, the time budget ends a run
at the right step, the checkpoint and evaluation hooks keep their periods."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from conftest import small_run_config
from owp.engine import hooks
from owp.engine.checkpoint import load_checkpoint
from owp.engine.hooks import CheckpointHook, HookBase, PeriodicEvalHook, TimeBudgetHook
from owp.engine.trainer import Trainer


@pytest.fixture(scope="module")
def mini_set(synthetic_set_factory):
    return synthetic_set_factory(num_train=12, num_val=3, image_size=96, seed=4)


def mini_config(folder, **train):
    config = small_run_config(
        "demo", folder, 96, "train.batch_size=2", "train.warmup_iters=1", "train.log_period=1"
    )
    return replace(config, train=replace(config.train, **train))


class Recorder(HookBase):
    """Each call as ``(method, trainer.step)``, and what the trainer's own hooks had written."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.checkpoints_seen: dict[int, bool] = {}
        self.eval_rows_seen: dict[int, int] = {}

    def before_train(self) -> None:
        self.calls.append(("before_train", self.trainer.step))

    def before_step(self) -> None:
        self.calls.append(("before_step", self.trainer.step))
        eval_csv = self.trainer.run_dir / "eval.csv"
        rows = eval_csv.read_text().splitlines()[1:] if eval_csv.exists() else []
        self.eval_rows_seen[self.trainer.step] = len(rows)

    def after_step(self) -> None:
        step = self.trainer.step
        self.calls.append(("after_step", step))
        name = f"checkpoint_{step:07d}.pt"
        self.checkpoints_seen[step] = (self.trainer.run_dir / name).is_file()

    def after_train(self) -> None:
        self.calls.append(("after_train", self.trainer.step))


def test_a_user_hook_sees_the_loop_in_order_after_the_trainers_own(mini_set, tmp_path):
    config = mini_config(mini_set, max_iters=3, checkpoint_period=2, eval_period=2)
    recorder = Recorder()
    trainer = Trainer(config, tmp_path / "run", progress=False, hooks=[recorder])
    assert trainer.hooks[-1] is recorder and recorder.trainer is trainer
    result = trainer.run()
    assert recorder.calls == [
        ("before_train", 0),
        ("before_step", 0),
        ("after_step", 1),
        ("before_step", 1),
        ("after_step", 2),
        ("before_step", 2),
        ("after_step", 3),
        ("after_train", 3),
    ]
    # The checkpoint hook came first: step 2's checkpoint and the last one are there.
    assert recorder.checkpoints_seen == {1: False, 2: True, 3: True}
    # Step 2 was evaluated before step 3 started; the last step by the run itself.
    assert recorder.eval_rows_seen == {0: 0, 1: 0, 2: 1}
    rows = (tmp_path / "run" / "eval.csv").read_text().splitlines()[1:]
    assert [row.split(",")[0] for row in rows] == ["2", "3"]
    assert result.step == 3 and {"AR@10", "AR@100"} <= set(result.metrics)


def test_register_hooks_adds_after_those_registered(mini_set, tmp_path):
    trainer = Trainer(mini_config(mini_set, max_iters=1), tmp_path / "run", progress=False)
    first, second = Recorder(), Recorder()
    trainer.register_hooks([first, second])
    assert trainer.hooks[-2:] == [first, second]
    assert [type(hook) for hook in trainer.hooks[:3]] == [
        hooks.WriterHook,
        hooks.CheckpointHook,
        hooks.PeriodicEvalHook,
    ]


def test_run_step_returns_the_losses_and_changes_the_parameters(mini_set, tmp_path):
    trainer = Trainer(mini_config(mini_set, max_iters=4), tmp_path / "run", progress=False)
    images, targets, unreadable = next(iter(trainer.train_loader()))
    assert len(images) == 2 and not unreadable
    model = trainer.model.train()
    before = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    losses = trainer.run_step(images, targets)
    assert losses and set(losses) <= set(model.LOSS_PARTS)
    assert all(value.dim() == 0 and torch.isfinite(value) for value in losses.values())
    assert trainer.step == 1
    changed = [
        n for n, p in model.named_parameters() if n in before and not torch.equal(p, before[n])
    ]
    assert changed


def test_the_time_budget_ends_the_run_with_the_step_that_starts_after_it(
    mini_set, tmp_path, monkeypatch
):
    config = mini_config(mini_set, max_iters=8, checkpoint_period=100)
    trainer = Trainer(config, tmp_path / "run", progress=False, hooks=[TimeBudgetHook(35.0)])
    # A clock on which each step takes 10 s: the budget is spent when step 4 is done.
    monkeypatch.setattr(hooks.time, "perf_counter", lambda: 10.0 * trainer.step)
    result = trainer.run()
    assert result.step == trainer.step == trainer.max_iters == 5
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 5  # saved as the last step
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert rows[-1].startswith("5,") and len(rows) == 1 + 5
    assert {"AR@10", "AR@100"} <= set(result.metrics)


def test_a_budget_not_spent_leaves_the_run_alone(monkeypatch):
    trainer = SimpleNamespace(step=0, max_iters=6)
    hook = TimeBudgetHook(100.0)
    hook.trainer = trainer
    monkeypatch.setattr(hooks.time, "perf_counter", lambda: 10.0 * trainer.step)
    hook.before_train()
    for trainer.step in range(6):
        hook.before_step()
    assert trainer.max_iters == 6


def test_the_checkpoint_hook_saves_at_its_period_and_the_last_step():
    saved: list[int] = []
    trainer = SimpleNamespace(step=0, max_iters=10)
    trainer.save = lambda: saved.append(trainer.step)
    hook = CheckpointHook(period=3)
    hook.trainer = trainer
    for trainer.step in range(1, 11):
        hook.after_step()
    assert saved == [3, 6, 9, 10]


def test_the_eval_hook_evaluates_at_its_period_but_not_where_the_session_started():
    evaluated: list[int] = []
    writer = SimpleNamespace(scalars=lambda kind, step, values: evaluated.append((kind, step)))
    model = SimpleNamespace(train=lambda: None)
    trainer = SimpleNamespace(step=0, start_step=4, writer=writer, wrapped_model=model)
    trainer.evaluate = lambda: {"AR@100": 0.5}
    hook = PeriodicEvalHook(period=2)
    hook.trainer = trainer
    for trainer.step in range(4, 10):  # a resumed session: step 4 was done before
        hook.before_step()
    assert evaluated == [("eval", 6), ("eval", 8)]
    never = PeriodicEvalHook(period=0)
    never.trainer = trainer
    never.before_step()
    assert evaluated == [("eval", 6), ("eval", 8)]

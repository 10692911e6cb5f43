"""Training hooks: what the loop does besides optimising (the pattern of detectron2's engine).

:meth:`Trainer.run <owp.engine.trainer.Trainer.run>` calls its hooks, each method on every
hook in their order::

    before_train()
    while trainer.step < trainer.max_iters:
        before_step()                  # between steps: Ctrl-C interrupts at once
        (the next batch is drawn)
        held step: trainer.run_step(...); after_step()
    after_train()                      # also when the loop stops on Ctrl-C or an error
    (the final evaluation: Trainer.run's result)

``after_step`` runs inside the held step (:mod:`owp.engine.interrupt`): a Ctrl-C that arrives
meanwhile is raised after it, so what it writes (a ``metrics.csv`` row, a checkpoint) belongs to
the completed step and a resumed run equals an uninterrupted one. Slow work between steps (an
evaluation) goes in ``before_step``, where Ctrl-C stops it at once.

The trainer's own hooks, in this order: :class:`WriterHook` (training rows of ``metrics.csv``,
TensorBoard, the progress bar), :class:`CheckpointHook`, :class:`PeriodicEvalHook`. Hooks a
user passes (``Trainer(config, run_dir, hooks=[...])`` or :meth:`Trainer.register_hooks
<owp.engine.trainer.Trainer.register_hooks>`) come after them; :class:`TimeBudgetHook` is one
(a wall-clock budget). Every process of a DDP run calls every hook: the writers and checkpoints
act on rank 0 and keep the other ranks at the collectives.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from owp.engine import dist

if TYPE_CHECKING:
    from owp.engine.trainer import Trainer

log = logging.getLogger(__name__)


class HookBase:
    """Base of training hooks: override any of the four methods (each does nothing here).

    ``self.trainer`` is the :class:`~owp.engine.trainer.Trainer` the hook is registered with;
    a hook reads and changes the run through it (``trainer.step``: the steps completed,
    ``trainer.losses``: the loss parts of the latest step, ``trainer.max_iters``: where the loop
    ends, ``trainer.model``, ``trainer.optimizer``, ``trainer.writer``, ...).
    """

    trainer: Trainer

    def before_train(self) -> None:
        """Once, before the first step (of this session: a resumed run starts at its step)."""

    def after_train(self) -> None:
        """Once, when the loop has ended: after the last step, or on Ctrl-C or an error (then
        before the trainer saves or reports)."""

    def before_step(self) -> None:
        """Before each step, ``trainer.step`` steps done; outside the held step."""

    def after_step(self) -> None:
        """After each step, ``trainer.step`` counting it; inside the held step."""


class MetricsWriter:
    """``metrics.csv`` / ``eval.csv`` rows and TensorBoard scalars (``tb/``), written by rank 0
    only (``enabled``); a trainer opens one per :meth:`~owp.engine.trainer.Trainer.run`."""

    def __init__(self, run_dir: Path, *, enabled: bool) -> None:
        self.run_dir, self.enabled = run_dir, enabled
        self.tensorboard = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(run_dir / "tb"))

    def scalars(self, kind: str, step: int, values: dict[str, Any]) -> None:
        """One row of ``step``'s numbers (``kind`` ``"train"``: ``metrics.csv``, else
        ``eval.csv``) and their TensorBoard scalars ``<kind>/<name>``; others are left out."""
        if not self.enabled or not values:
            return
        numbers = {k: v for k, v in values.items() if isinstance(v, int | float) and v is not None}
        path = self.run_dir / ("metrics.csv" if kind == "train" else "eval.csv")
        new = not path.exists()
        with path.open("a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["step", *numbers])
            writer.writerow([step, *(f"{v:.6g}" for v in numbers.values())])
        for key, value in numbers.items():
            if math.isfinite(value):
                self.tensorboard.add_scalar(f"{kind}/{key}", value, step)

    def truncate_after(self, step: int) -> None:
        """Drop the CSV rows of steps after ``step`` (logged after the checkpoint a resumed run
        starts from; they are logged again)."""
        if not self.enabled:
            return
        for name in ("metrics.csv", "eval.csv"):
            path = self.run_dir / name
            if not path.is_file():
                continue
            lines = path.read_text().splitlines(keepends=True)
            kept = lines[:1] + [line for line in lines[1:] if int(line.split(",", 1)[0]) <= step]
            if len(kept) != len(lines):
                path.write_text("".join(kept))

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


class WriterHook(HookBase):
    """Every ``period`` steps and at the last one, a ``metrics.csv`` row (and TensorBoard
    scalars) of the step: its loss parts averaged over the processes, their ``total`` over the
    trained ones, the ``lr`` of the next step and the model's training statistics; and the
    progress bar (rank 0, when ``progress``), which shows that row."""

    def __init__(self, period: int, *, progress: bool = True) -> None:
        self.period, self.progress = period, progress
        self.bar: tqdm | None = None

    def before_train(self) -> None:
        trainer = self.trainer
        self.bar = tqdm(
            total=trainer.max_iters,
            initial=trainer.step,
            desc="training",
            unit="it",
            disable=not (self.progress and dist.is_main_process()),
            dynamic_ncols=True,
        )

    def after_step(self) -> None:
        trainer = self.trainer
        self.bar.total = trainer.max_iters  # a hook may have moved the end
        self.bar.update(1)
        if trainer.step % self.period == 0 or trainer.step == trainer.max_iters:
            values = dist.all_reduce_mean({k: v.detach() for k, v in trainer.losses.items()})
            values["total"] = sum(v for k, v in values.items() if k in trainer.trained_losses)
            values["lr"] = trainer.optimizer.param_groups[0]["lr"]
            stats = trainer.model.training_stats()
            if stats:
                values.update(dist.all_reduce_mean(stats))
            trainer.writer.scalars("train", trainer.step, values)
            self.bar.set_postfix({k: f"{v:.3g}" for k, v in values.items()})

    def after_train(self) -> None:
        if self.bar is not None:
            self.bar.close()


class CheckpointHook(HookBase):
    """Every ``period`` steps and at the last one: :meth:`Trainer.save
    <owp.engine.trainer.Trainer.save>` (``checkpoint_<step>.pt``, ``last.pt``)."""

    def __init__(self, period: int) -> None:
        self.period = period

    def after_step(self) -> None:
        trainer = self.trainer
        if trainer.step % self.period == 0 or trainer.step == trainer.max_iters:
            trainer.save()


class PeriodicEvalHook(HookBase):
    """Every ``period`` steps (0: never) but the last (the run ends with an evaluation of its
    own): :meth:`Trainer.evaluate <owp.engine.trainer.Trainer.evaluate>`, one ``eval.csv`` row.

    It evaluates step ``k * period`` before the next step starts, outside the held step, so that
    Ctrl-C stops an evaluation at once; a resumed run does not evaluate its first step again.
    """

    def __init__(self, period: int) -> None:
        self.period = period

    def before_step(self) -> None:
        trainer = self.trainer
        if self.period and trainer.step > trainer.start_step and trainer.step % self.period == 0:
            trainer.writer.scalars("eval", trainer.step, trainer.evaluate())
            trainer.wrapped_model.train()


class TimeBudgetHook(HookBase):
    """End the run once ``seconds`` of wall-clock time (``time.perf_counter``, from
    ``before_train``) are spent: the step that starts then is the run's last (logged,
    checkpointed and evaluated as the last), so the run overshoots by at most one step (and
    the final evaluation).

    The lr schedule stays the config's; to fit it to a shorter run, give
    :meth:`Trainer.set_max_iters <owp.engine.trainer.Trainer.set_max_iters>` the number of
    steps before running instead. A resume continues towards ``train.max_iters``.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = 0.0

    def before_train(self) -> None:
        self.start = time.perf_counter()

    def before_step(self) -> None:
        trainer = self.trainer
        # Rank 0's clock decides for every process, so that all of them stop at the same step.
        spent = dist.broadcast_object(time.perf_counter() - self.start)
        if spent >= self.seconds and trainer.max_iters > trainer.step + 1:
            trainer.max_iters = trainer.step + 1
            log.info(
                "time budget of %g s spent: step %d is the last", self.seconds, trainer.step + 1
            )

"""Ctrl-C between training steps, never inside one: what makes an interrupted run resume exactly.

A step changes the model in several places: its forward pass updates the batch-norm running
statistics (and ``num_batches_tracked``), its optimiser step the weights and momenta, the
scheduler the learning rate. A ``KeyboardInterrupt`` raised in the middle leaves a state that no
uninterrupted run ever had, and a checkpoint of it resumes into a different run. While a step is
held (:meth:`StepGuard.step`), SIGINT only records the request; the step completes and the guard
raises ``KeyboardInterrupt`` when it ends, so the checkpoint saved then is the state of the last
completed step. A second Ctrl-C during a held step interrupts at once, with
:class:`ForcedInterrupt` (the trainer then keeps its last periodic checkpoint instead of saving).

Outside a step (loading a batch, evaluating) SIGINT raises at once, as usual. Python delivers
signals to the main thread only; elsewhere the guard does nothing.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class ForcedInterrupt(KeyboardInterrupt):
    """A second Ctrl-C during a held step: the step did not complete; do not save its state."""


class StepGuard:
    """Holds SIGINT while a training step runs (use :meth:`installed`, then :meth:`step`)."""

    def __init__(self) -> None:
        self.holding = False
        self.requested = False

    @contextmanager
    def installed(self) -> Iterator[StepGuard]:
        """Route SIGINT through this guard for the duration (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)

    @contextmanager
    def step(self) -> Iterator[None]:
        """Run one step to its end; a Ctrl-C received meanwhile is raised after it."""
        self.holding, self.requested = True, False
        try:
            yield
        finally:
            self.holding = False
        if self.requested:
            self.requested = False
            raise KeyboardInterrupt

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if not self.holding:
            raise KeyboardInterrupt
        if self.requested:
            raise ForcedInterrupt
        self.requested = True
        print("\ninterrupt: finishing this step, then saving (Ctrl-C again to stop at once)")

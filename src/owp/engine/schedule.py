"""The learning-rate schedule: the linear scaling rule, linear warm-up and steps (detectron2's
``WarmupMultiStepLR``), as a ``LambdaLR`` that can be positioned at any step for an exact resume."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

if TYPE_CHECKING:
    from owp.config import TrainConfig


def scaled_lr(base_lr: float, batch_size: int) -> float:
    """The linear scaling rule: ``base_lr`` is the learning rate at batch size 16."""
    return base_lr * batch_size / 16


class WarmupMultiStep:
    """lr factor at iteration i: linear warm-up from ``warmup_factor``, then x``gamma`` at steps.

    A picklable callable for ``LambdaLR``.
    """

    def __init__(self, warmup_iters: int, warmup_factor: float, steps: list[int], gamma: float):
        self.warmup_iters, self.warmup_factor = warmup_iters, warmup_factor
        self.steps, self.gamma = sorted(steps), gamma

    def __call__(self, iteration: int) -> float:
        factor = self.gamma ** sum(iteration >= s for s in self.steps)
        if iteration < self.warmup_iters:
            alpha = iteration / self.warmup_iters
            factor *= self.warmup_factor * (1 - alpha) + alpha
        return factor


def schedule_steps(steps: tuple[float, ...], max_iters: int) -> list[int]:
    """Step iterations from fractions of ``max_iters`` (< 1) or absolute iteration numbers."""
    return [int(round(s * max_iters)) if s < 1 else int(s) for s in steps]


def lr_scheduler(optimizer: Optimizer, train: TrainConfig, last_step: int = 0) -> LambdaLR:
    """``train``'s warm-up + step schedule of ``optimizer``'s groups (their lr the factor
    times their ``initial_lr``), positioned at ``last_step`` (a resume)."""
    schedule = WarmupMultiStep(
        train.warmup_iters,
        train.warmup_factor,
        schedule_steps(train.steps, train.max_iters),
        train.gamma,
    )
    scheduler = LambdaLR(optimizer, schedule)
    if last_step:
        scheduler.last_epoch = last_step
        scheduler._step_count = last_step + 1  # as after last_step calls of step()
        for group, base in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
            group["lr"] = base * schedule(last_step)
        scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
    return scheduler

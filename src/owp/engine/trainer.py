"""The iteration trainer (detectron2-style): one loop of optimisation steps, and hooks around it.

``train(config, run_dir)`` builds the model, data and optimiser from a :class:`RunConfig`, runs
``max_iters`` SGD steps (linear warm-up, lr steps, gradient clipping, mixed precision per
``train.amp``, channels-last per ``train.channels_last``, ``torch.compile`` per
``model.compile``: :mod:`owp.engine.precision`) and writes
into ``run_dir``: ``config.yaml`` (resolved), ``metrics.csv`` (losses, lr, speed),
``eval.csv`` and ``metrics.json`` (val metrics), TensorBoard events (``tb/``), checkpoints
(``checkpoint_*.pt`` and ``last.pt``, atomic). ``resume=True`` continues exactly where
``last.pt`` stopped: the data order, augmentation draws and RNG states are all restored, so a
resumed run equals an uninterrupted one on CPU. Ctrl-C takes effect between steps
(:mod:`owp.engine.interrupt`), so the checkpoint it saves is a completed step's.

:class:`Trainer` is the loop: :meth:`Trainer.run_step` does one optimisation step; the logs,
checkpoints and periodic evaluations are hooks (:mod:`owp.engine.hooks`), and a user may add
their own (``Trainer(config, run_dir, hooks=[...])``). The pseudo labels of a self-training run
are made by :mod:`owp.engine.mining` when the trainer is built.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from owp.config import RUN_PREFIX, RunConfig, fit_schedule, save_config, schedule_beyond_end
from owp.data.coco import CocoDetection
from owp.data.locate import locate, locate_annotations, locate_split
from owp.data.samplers import GroupedBatchSampler, InfiniteSampler, aspect_ratio_groups
from owp.data.transforms import RandomHorizontalFlip
from owp.engine import dist
from owp.engine.checkpoint import (
    capture_rng_states,
    check_same_model,
    checkpoint_name,
    latest_checkpoint,
    load_checkpoint,
    model_classes,
    prune_checkpoints,
    restore_rng_states,
    save_checkpoint,
    schedule_changes,
    seed_rng_states,
)
from owp.engine.hooks import CheckpointHook, HookBase, MetricsWriter, PeriodicEvalHook, WriterHook
from owp.engine.inference import UnreadableAsMessage, evaluate_model
from owp.engine.interrupt import ForcedInterrupt, StepGuard
from owp.engine.mining import training_pseudo_boxes
from owp.engine.precision import (
    autocast,
    compile_parts,
    grad_scaler,
    resolve_amp,
    use_channels_last,
)
from owp.engine.recipes import parameter_groups, trained_losses
from owp.engine.schedule import lr_scheduler, scaled_lr
from owp.errors import OwpInputError, TrainingError
from owp.files import link_atomic, remove_stale_temporaries
from owp.models.registry import create_model, model_config

log = logging.getLogger(__name__)

LAST = "last.pt"
MIN_IMAGES_BEFORE_BAD_FRACTION = 20


@dataclass
class TrainResult:
    """What a finished run leaves: where, how far, final val metrics; ``start_step`` and
    ``seconds`` are this session's (a resumed run started at its checkpoint's step)."""

    run_dir: Path
    step: int
    seconds: float
    metrics: dict[str, Any]
    checkpoint: Path
    start_step: int = 0


def _collate(items: list) -> tuple[list[Tensor], list[dict], list[str]]:
    good = [item for item in items if not isinstance(item, str)]
    bad = [item for item in items if isinstance(item, str)]
    return [image for image, _ in good], [target for _, target in good], bad


class Trainer:
    """One training run; :func:`train` is the usual entry point.

    :meth:`run` loops :meth:`run_step` to ``max_iters``, calling the hooks around each step
    (:mod:`owp.engine.hooks`: the order and what runs inside the held step). Its own hooks
    (:meth:`default_hooks`: logs, checkpoints, periodic evaluation) come first, then ``hooks``,
    then any added with :meth:`register_hooks` before :meth:`run`.

    Args:
        config: the resolved run config.
        run_dir: the run's folder (checkpoints, logs, ``config.yaml``, ``eval/``).
        progress: show progress bars (training, evaluation, mining).
        hooks: more hooks, e.g. ``[TimeBudgetHook(600)]`` or a user's :class:`HookBase`.
    """

    def __init__(
        self,
        config: RunConfig,
        run_dir: str | Path,
        *,
        progress: bool = True,
        hooks: Iterable[HookBase] = (),
    ) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.distributed = dist.init_distributed()
        train_cfg = config.train
        self.device = dist.resolve_device(train_cfg.device)
        seed_rng_states(train_cfg.seed + dist.get_rank())
        self.model = create_model(config.model.name, **config.model.options).to(self.device)
        if train_cfg.init:
            self._initialise_from(train_cfg.init)
        self._set_pseudo_weight()
        self.pseudo_boxes = training_pseudo_boxes(
            config, self.run_dir, self.device, progress=progress
        )
        if train_cfg.channels_last:
            use_channels_last(self.model)
        if config.model.compile:
            compile_parts(self.model)
        world = dist.get_world_size()
        if train_cfg.batch_size % world:
            raise OwpInputError(
                f"train.batch_size {train_cfg.batch_size} is not divisible by {world} processes"
            )
        self.batch_per_rank = train_cfg.batch_size // world
        lr = scaled_lr(train_cfg.base_lr, train_cfg.batch_size)
        groups = parameter_groups(self.model, train_cfg.recipe, lr)
        # Losses of parts the recipe freezes are logged but never backpropagated.
        self.trained_losses = trained_losses(self.model, train_cfg.recipe)
        self._check_eval_scorings()
        self.optimizer = torch.optim.SGD(
            groups, lr=lr, momentum=train_cfg.momentum, weight_decay=train_cfg.weight_decay
        )
        self.scheduler = lr_scheduler(self.optimizer, self.config.train)
        # "none", "fp16" (with the loss scaler, checkpointed) or "bf16".
        self.precision = resolve_amp(train_cfg.amp, self.device)
        self.scaler = grad_scaler(self.device, self.precision)
        self.step = 0
        self.max_iters = train_cfg.max_iters  # where the loop ends; a hook may end it sooner
        self.start_step = 0  # the step this session's run() started at
        # Batches taken from the loader; more than ``step`` when a batch held no readable image.
        self.batches_drawn = 0
        self.bad_images: list[str] = []
        self.saved_rng: dict[str, Any] | None = None  # the generator states a resume restores
        self.images_seen = 0
        self.losses: dict[str, Tensor] = {}  # the loss parts of the latest step
        self.last_checkpoint: Path | None = None  # named by a non-finite loss's error
        self.writer: MetricsWriter | None = None  # open while run() runs
        self.hooks: list[HookBase] = []
        self.register_hooks([*self.default_hooks(), *hooks])

    def default_hooks(self) -> list[HookBase]:
        """The trainer's own hooks, per ``train.log_period``, ``checkpoint_period`` and
        ``eval_period``: metrics rows and progress, checkpoints, periodic evaluation."""
        cfg = self.config.train
        return [
            WriterHook(cfg.log_period, progress=self.progress),
            CheckpointHook(cfg.checkpoint_period),
            PeriodicEvalHook(cfg.eval_period),
        ]

    def register_hooks(self, hooks: Iterable[HookBase]) -> None:
        """Add ``hooks`` after those registered; each is called in that order."""
        for hook in hooks:
            hook.trainer = self
            self.hooks.append(hook)

    def set_max_iters(self, max_iters: int) -> None:
        """Change the schedule length before :meth:`run` (lr steps keep their fractions; a
        warm-up or absolute steps beyond the new end are scaled with it, see
        :func:`~owp.config.fit_schedule`)."""
        written_for = self.config.train.max_iters
        config = replace(self.config, train=replace(self.config.train, max_iters=max_iters))
        self.config, _ = fit_schedule(config, written_for)
        self.max_iters = max_iters
        self.scheduler = lr_scheduler(self.optimizer, self.config.train)

    def resume(self) -> None:
        """Continue from ``run_dir/last.pt`` (or the newest checkpoint there)."""
        path = latest_checkpoint(self.run_dir)
        if path is None:
            raise OwpInputError("no checkpoint to resume from", path=self.run_dir)
        state = load_checkpoint(path)
        check_same_model(state, self.config.to_dict(), path)
        self.model.load_state_dict(state["model"])
        configured = [group["initial_lr"] for group in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state["optimizer"])
        for group, lr in zip(self.optimizer.param_groups, configured, strict=True):
            group["initial_lr"] = lr
        # The schedule is the config's in force (e.g. a longer max_iters moves the lr steps):
        # only the position is taken from the checkpoint.
        self.scheduler = lr_scheduler(self.optimizer, self.config.train, int(state["step"]))
        changed = schedule_changes(state.get("config", {}).get("train", {}), self.config.train)
        if changed:
            log.warning("the schedule differs from the checkpoint's: %s", "; ".join(changed))
        if self.scaler.is_enabled() and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        rank = dist.get_rank()
        per_rank = state.get("rng_per_rank") or []
        if per_rank and len(per_rank) != dist.get_world_size() and dist.is_main_process():
            log.warning(
                "%s was saved by %d processes and resumes with %d: the model, optimiser, "
                "schedule and step carry on, but the data order differs from an uninterrupted run",
                path,
                len(per_rank),
                dist.get_world_size(),
            )
        # Restored by run() once the loader's iterator has drawn its base seed, as it did when
        # the uninterrupted run started.
        self.saved_rng = per_rank[rank] if len(per_rank) == dist.get_world_size() else state["rng"]
        drawn = (state.get("extra") or {}).get("batches_drawn_per_rank") or []
        self.batches_drawn = int(drawn[rank]) if len(drawn) == dist.get_world_size() else self.step
        log.info("resumed %s at step %d", path, self.step)

    def run(self) -> TrainResult:
        """Train from ``step`` to ``max_iters`` (see the class docstring for the hooks), then
        evaluate on the val set; Ctrl-C saves the last completed step and re-raises."""
        cfg = self.config.train
        start_time, self.start_step = time.perf_counter(), self.step
        # The data, split and val set are checked before anything is written into the run.
        loader = self.train_loader(self.batches_drawn)
        locate_annotations(self.config.data.val, "val")
        beyond = schedule_beyond_end(cfg)
        if beyond:
            raise OwpInputError(
                f"train.{' and train.'.join(beyond)} beyond train.max_iters {cfg.max_iters}: "
                "shorten them (--set train.max_iters alone scales them)"
            )
        if dist.is_main_process():
            for notice in self.config.notices:
                log.warning("%s", notice)
            for stale in remove_stale_temporaries(self.run_dir):
                log.warning("removed %s, left by an interrupted write", stale)
            save_config(self.config, self.run_dir / "config.yaml")
        batches = iter(loader)
        if self.saved_rng is not None:
            restore_rng_states(self.saved_rng)
        self.wrapped_model.train()
        self.writer = MetricsWriter(self.run_dir, enabled=dist.is_main_process())
        self.writer.truncate_after(self.step)  # rows logged after the checkpoint we resume from
        for hook in self.hooks:
            hook.before_train()
        self.last_checkpoint = latest_checkpoint(self.run_dir)
        # Ctrl-C takes effect between steps (owp.engine.interrupt): what it saves is the state
        # of the last completed step, so the resumed run equals the uninterrupted one.
        guard = StepGuard()
        try:
            with guard.installed():
                try:
                    while self.step < self.max_iters:
                        for hook in self.hooks:
                            hook.before_step()
                        images, targets, drawn = self._next_batch(batches)
                        with guard.step():
                            self.losses = self.run_step(images, targets)
                            self.batches_drawn += drawn
                            for hook in self.hooks:
                                hook.after_step()
                finally:
                    for hook in self.hooks:
                        hook.after_train()
        except ForcedInterrupt:
            last = self.last_checkpoint
            kept = f"--resume continues from {last}" if last else "no checkpoint yet"
            print(f"interrupted inside a step: nothing saved; {kept}")
            raise
        except KeyboardInterrupt:
            saved = self.save()
            print(f"interrupted after step {self.step}: saved {saved}; --resume continues from it")
            raise
        metrics = self.evaluate()
        self.writer.scalars("eval", self.step, metrics)
        self.writer.close()
        seconds = time.perf_counter() - start_time
        return TrainResult(
            self.run_dir, self.step, seconds, metrics, self.run_dir / LAST, self.start_step
        )

    def save(self) -> Path:
        """Write ``checkpoint_<step>.pt``, point ``last.pt`` at it (rank 0), prune old ones.

        Every rank's generator states and loader position are gathered into the checkpoint,
        so that a resumed DDP run draws what the uninterrupted one would have.
        """
        path = self.run_dir / LAST
        rng_per_rank = dist.all_gather_object(capture_rng_states())
        drawn_per_rank = dist.all_gather_object(self.batches_drawn)
        if dist.is_main_process():
            kwargs = {
                "model": self.model,
                "optimizer": self.optimizer,
                "scheduler": self.scheduler,
                "step": self.step,
                "config": self.config.to_dict(),
                "scaler": self.scaler,
                "rng_per_rank": rng_per_rank,
                "extra": {
                    "batches_drawn_per_rank": drawn_per_rank,
                    **model_classes(self.model),
                },
            }
            # One file per step; last.pt is a second name of the newest (a hard link).
            numbered = save_checkpoint(self.run_dir / checkpoint_name(self.step), **kwargs)
            link_atomic(numbered, path)
            prune_checkpoints(self.run_dir, self.config.train.keep_checkpoints)
        dist.barrier()
        self.last_checkpoint = path
        return path

    def evaluate(self) -> dict[str, Any]:
        """Novel AR@k (and base AP when the model classifies) on the val set.

        Under DDP only rank 0 evaluates (the whole val set, one process) while the other ranks
        wait at a barrier; they return ``{}``.
        """
        metrics = self.val_metrics() if dist.is_main_process() else {}
        dist.barrier()
        return metrics

    def val_metrics(self) -> dict[str, Any]:
        """The metrics of :meth:`evaluate`, computed by this process alone (proposals and
        per-image results into ``<run>/eval``)."""
        data = self.config.data
        ann_file, images = locate(data.val, "val", data.val_images)
        return evaluate_model(
            self.model,
            ann_file,
            images,
            locate_split(data.split, data.val),
            protocol=self.config.eval.protocol,
            oln_pool=self.config.eval.oln_pool,
            max_dets=self.config.eval.max_dets,
            batch_size=self.config.eval.batch_size,
            proposal_scoring=self.config.eval.proposal_scoring,
            detection_scoring=self.config.eval.detection_scoring,
            extra_proposal_scorings=self.config.eval.extra_proposal_scorings,
            out_dir=self.run_dir / "eval",
            progress=self.progress,
        )

    def run_step(self, images: list[Tensor], targets: list[dict]) -> dict[str, Tensor]:
        """One optimisation step on a batch, and ``step`` + 1; returns the loss parts (scalars).

        Forward (under the run's mixed precision), the sum of the losses the recipe trains,
        backward, gradient clipping, the optimiser and the lr schedule's step. ``images`` are
        ``(3, H, W)`` float tensors on the trainer's device, ``targets`` their dicts (``boxes``
        ``(N, 4)`` xyxy, ``labels`` ``(N,)``, ...). A non-finite loss raises
        :class:`~owp.errors.TrainingError` naming the step and the last checkpoint.
        """
        cfg = self.config.train
        self.model.iteration = self.step
        with autocast(self.device, self.precision):
            losses = self.wrapped_model(images, targets)
        unknown = losses.keys() - self.model.LOSS_PARTS.keys()
        if unknown:
            raise RuntimeError(f"{type(self.model).__name__}.LOSS_PARTS lacks {sorted(unknown)}")
        loss = sum(value for name, value in losses.items() if name in self.trained_losses)
        if not torch.isfinite(loss):
            last_good = self.last_checkpoint
            where = f"last good checkpoint: {last_good}" if last_good else "no checkpoint yet"
            values = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
            raise TrainingError(f"non-finite loss at step {self.step + 1} ({values}); {where}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.clip_grad_norm:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        return losses

    def _next_batch(self, batches: Iterator) -> tuple[list[Tensor], list[dict], int]:
        """The next non-empty batch on the device, flipped with a per-step generator, and how
        many loader batches it took (more than one when whole batches were unreadable)."""
        drawn = 0
        while True:
            images, targets, bad = next(batches)
            drawn += 1
            self.images_seen += len(images) + len(bad)
            if bad:
                self._count_bad(bad)
            if images:
                break
        # Augmentation draws depend on (seed, step) only: identical after a resume.
        generator = torch.Generator().manual_seed(self.config.train.seed * 1_000_003 + self.step)
        flip = RandomHorizontalFlip(self.config.data.horizontal_flip, generator=generator)
        flipped = [flip(image, target) for image, target in zip(images, targets, strict=True)]
        return (
            [image.to(self.device, non_blocking=True) for image, _ in flipped],
            [_to_device(target, self.device) for _, target in flipped],
            drawn,
        )

    def _count_bad(self, messages: list[str]) -> None:
        self.bad_images.extend(messages)
        log.warning(
            "skipped %d unreadable image(s) so far; latest: %s", len(self.bad_images), messages[-1]
        )
        fraction = len(self.bad_images) / self.images_seen
        allowed = self.config.data.max_bad_image_fraction
        if self.images_seen >= MIN_IMAGES_BEFORE_BAD_FRACTION and fraction > allowed:
            raise TrainingError(
                f"{len(self.bad_images)} of {self.images_seen} images could not be read "
                f"({fraction:.1%} > data.max_bad_image_fraction {allowed:.1%}); first: "
                f"{self.bad_images[0]}"
            )

    def train_loader(self, start_batch: int = 0) -> DataLoader:
        """The training data of the run, from loader batch ``start_batch`` on (a resume's
        position): ``(images, targets, unreadable)`` batches of ``batch_size / world size``
        images grouped by aspect ratio, endless, in the order of ``train.seed``.

        Building it checks the training set against the model and gives a classifying model
        its class ids and names (label ``i`` is base class ``i``; saved with checkpoints).
        """
        data = self.config.data
        ann_file, images = locate(data.train, "train", data.train_images)
        split = locate_split(data.split, data.train)
        dataset = CocoDetection(
            images,
            ann_file,
            split,
            training=True,
            keep_empty=data.keep_empty,
            pseudo_boxes=self.pseudo_boxes,
        )
        if len(dataset) == 0:
            raise OwpInputError("no training image has a base-class box", path=ann_file)
        num_classes = self.model.config.num_classes if self.model.classifies else None
        num_base = len(dataset.split.base_ids)
        if num_classes is not None and num_classes != num_base:
            raise OwpInputError(
                f"model.num_classes is {num_classes} but split {dataset.split.name!r} has "
                f"{num_base} base classes; set model.num_classes={num_base}",
                path=ann_file,
            )
        if num_classes is not None:  # label i is base_ids[i]: saved with every checkpoint
            self.model.category_ids = list(dataset.split.base_ids)
            self.model.class_names = list(dataset.split.base_names)
        sampler = InfiniteSampler(
            len(dataset),
            seed=self.config.train.seed,
            rank=dist.get_rank(),
            world_size=dist.get_world_size(),
        )
        batch_sampler = GroupedBatchSampler(
            sampler,
            aspect_ratio_groups(dataset.aspect_ratios()),
            self.batch_per_rank,
            start_batch=start_batch,
        )
        return DataLoader(
            UnreadableAsMessage(dataset),
            batch_sampler=batch_sampler,
            num_workers=data.num_workers,
            collate_fn=_collate,
            pin_memory=self.device.type == "cuda",
            persistent_workers=data.num_workers > 0,
        )

    @cached_property
    def wrapped_model(self) -> nn.Module:
        """The module :meth:`run_step` calls: ``model``, in DistributedDataParallel under DDP
        (wrapped on first use)."""
        if not self.distributed:
            return self.model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        # A loss the recipe does not backpropagate may leave trainable parameters without grad.
        dropped = bool(self.model.LOSS_PARTS.keys() - self.trained_losses)
        return nn.parallel.DistributedDataParallel(
            self.model, device_ids=device_ids, find_unused_parameters=dropped
        )

    def _initialise_from(self, init: str) -> None:
        """Load weights from a checkpoint, from ``run:NAME`` = ``<runs folder>/NAME/last.pt``
        (the run of preset NAME next to this one, e.g. the ``owp`` run a ``finetune`` starts
        from), or from a torchvision source ``torchvision:NAME`` (its weights that fit)."""
        path = init
        if init.startswith(RUN_PREFIX):
            path = self.run_dir.parent / init.removeprefix(RUN_PREFIX) / LAST
        if init.startswith("torchvision:"):
            from owp.models.two_stage.torchvision import init_state

            state = init_state(init, self.model)
        else:
            state = load_checkpoint(path)
        source = (state.get("config") or {}).get("model", {}).get("name", "another model")
        expected = self.model.state_dict()
        mismatched = [
            key
            for key, value in state["model"].items()
            if key in expected and expected[key].shape != value.shape
        ]
        if mismatched:
            key = mismatched[0]
            raise OwpInputError(
                f"train.init: a {source!r} checkpoint does not fit {self.config.model.name}: "
                f"{key} has shape {list(state['model'][key].shape)}, the model needs "
                f"{list(expected[key].shape)} ({len(mismatched)} weights differ)",
                path=path,
            )
        result = self.model.load_state_dict(state["model"], strict=False)
        if result.unexpected_keys:
            raise OwpInputError(
                f"train.init: a {source!r} checkpoint does not fit {self.config.model.name}: "
                f"unexpected weights {', '.join(result.unexpected_keys[:3])}",
                path=path,
            )
        if result.missing_keys:
            log.info("initialised from %s; new weights: %s", path, ", ".join(result.missing_keys))

    def _set_pseudo_weight(self) -> None:
        """Hand ``train.pseudo_weight`` to the model; a model without weighted pseudo losses
        (the two-stage ones, whose sampling is torchvision's) takes only 1."""
        weight = self.config.train.pseudo_weight
        if self.model.WEIGHTS_PSEUDO:
            self.model.pseudo_weight = weight
        elif weight != 1.0:
            raise OwpInputError(
                f"train.pseudo_weight={weight:g}: {self.config.model.name} takes pseudo boxes at "
                "weight 1 only (weighted pseudo losses are FCOS-OWP's); remove the setting"
            )

    def _check_eval_scorings(self) -> None:
        """Fail now, not after training, when an eval scoring does not fit the model."""
        cfg, model = self.config.eval, self.config.model
        chosen = [("proposal_scoring", cfg.proposal_scoring)]
        chosen += [("detection_scoring", cfg.detection_scoring)]
        chosen += [("extra_proposal_scorings", s) for s in cfg.extra_proposal_scorings]
        for key, scoring in chosen:
            if scoring is None:
                continue
            try:
                model_config(model.name, **{**model.options, "scoring": scoring})
            except OwpInputError as err:
                raise OwpInputError(
                    f"eval.{key}={scoring!r} does not fit the model: {err}"
                ) from None


def train(
    config: RunConfig, run_dir: str | Path, *, resume: bool = False, progress: bool = True
) -> TrainResult:
    """Train per ``config`` into ``run_dir`` (``resume`` continues its last checkpoint)."""
    trainer = Trainer(config, run_dir, progress=progress)
    if resume:
        trainer.resume()
    elif latest_checkpoint(run_dir) is not None:
        raise OwpInputError(
            "already holds a run; pass --resume to continue it or choose another --out",
            path=run_dir,
        )
    return trainer.run()


def _to_device(target: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v
        for k, v in target.items()
    }

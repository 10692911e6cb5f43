"""The iteration trainer (detectron2-style): one loop, checkpoints, logs, periodic evaluation.

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
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from owp.config import RUN_PREFIX, RunConfig, fit_schedule, save_config, schedule_beyond_end
from owp.data.coco import CocoDetection, read_coco_json
from owp.data.locate import locate, locate_annotations, locate_split
from owp.data.pseudo import Boxes, read_pseudo_labels
from owp.data.samplers import GroupedBatchSampler, InfiniteSampler, aspect_ratio_groups
from owp.data.transforms import RandomHorizontalFlip
from owp.engine import dist
from owp.engine.checkpoint import (
    capture_rng_states,
    checkpoint_name,
    latest_checkpoint,
    load_checkpoint,
    model_classes,
    prune_checkpoints,
    restore_rng_states,
    save_checkpoint,
    seed_rng_states,
)
from owp.engine.inference import UnreadableAsMessage, evaluate_model
from owp.engine.interrupt import ForcedInterrupt, StepGuard
from owp.engine.precision import (
    autocast,
    compile_parts,
    grad_scaler,
    resolve_amp,
    use_channels_last,
)
from owp.engine.recipes import parameter_groups, trained_losses
from owp.errors import OwpInputError, TrainingError
from owp.files import link_atomic, remove_stale_temporaries
from owp.models.registry import create_model, model_config

log = logging.getLogger(__name__)

LAST = "last.pt"
# Model options that act only at inference: a resume may change them.
INFERENCE_OPTIONS = frozenset(
    {
        "scoring",
        "score_thresh",
        "nms_thresh",
        "pre_nms_top_n",
        "post_nms_top_n",
        "detection_score_thresh",
        "rpn_pre_nms_top_n_test",
        "rpn_post_nms_top_n_test",
    }
)
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


def scaled_lr(base_lr: float, batch_size: int) -> float:
    """The linear scaling rule: ``base_lr`` is the learning rate at batch size 16."""
    return base_lr * batch_size / 16


def _collate(items: list) -> tuple[list[Tensor], list[dict], list[str]]:
    good = [item for item in items if not isinstance(item, str)]
    bad = [item for item in items if isinstance(item, str)]
    return [image for image, _ in good], [target for _, target in good], bad


class Trainer:
    """One training run; :func:`train` is the usual entry point."""

    def __init__(self, config: RunConfig, run_dir: str | Path, *, progress: bool = True) -> None:
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
        self.pseudo_boxes = self._pseudo_labels()
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
        self.scheduler = self._scheduler()
        # "none", "fp16" (with the loss scaler, checkpointed) or "bf16".
        self.precision = resolve_amp(train_cfg.amp, self.device)
        self.scaler = grad_scaler(self.device, self.precision)
        self.step = 0
        # Batches taken from the loader; more than ``step`` when a batch held no readable image.
        self.batches_drawn = 0
        self.bad_images: list[str] = []
        self.saved_rng: dict[str, Any] | None = None  # the generator states a resume restores
        self.images_seen = 0

    def set_max_iters(self, max_iters: int) -> None:
        """Change the schedule length before :meth:`run` (lr steps keep their fractions; a
        warm-up or absolute steps beyond the new end are scaled with it, see
        :func:`~owp.config.fit_schedule`)."""
        written_for = self.config.train.max_iters
        config = replace(self.config, train=replace(self.config.train, max_iters=max_iters))
        self.config, _ = fit_schedule(config, written_for)
        self.scheduler = self._scheduler()

    def _scheduler(self, last_step: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
        """The config's warm-up + step schedule, positioned at ``last_step`` (a resume)."""
        cfg = self.config.train
        schedule = WarmupMultiStep(
            cfg.warmup_iters, cfg.warmup_factor, schedule_steps(cfg.steps, cfg.max_iters), cfg.gamma
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        if last_step:
            scheduler.last_epoch = last_step
            scheduler._step_count = last_step + 1  # as after last_step calls of step()
            for group, base in zip(self.optimizer.param_groups, scheduler.base_lrs, strict=True):
                group["lr"] = base * schedule(last_step)
            scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        return scheduler

    def _log_schedule_change(self, saved: dict[str, Any]) -> None:
        current = self.config.train
        keys = ("max_iters", "warmup_iters", "warmup_factor", "steps", "gamma", "base_lr")
        changed = [
            f"{k} {saved[k]} -> {getattr(current, k)}"
            for k in keys
            if k in saved and _plain_value(saved[k]) != _plain_value(getattr(current, k))
        ]
        if changed:
            log.warning("the schedule differs from the checkpoint's: %s", "; ".join(changed))

    def resume(self) -> None:
        """Continue from ``run_dir/last.pt`` (or the newest checkpoint there)."""
        path = latest_checkpoint(self.run_dir)
        if path is None:
            raise OwpInputError("no checkpoint to resume from", path=self.run_dir)
        state = load_checkpoint(path)
        self._check_same_model(state, path)
        self.model.load_state_dict(state["model"])
        configured = [group["initial_lr"] for group in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state["optimizer"])
        for group, lr in zip(self.optimizer.param_groups, configured, strict=True):
            group["initial_lr"] = lr
        # The schedule is the config's in force (e.g. a longer max_iters moves the lr steps):
        # only the position is taken from the checkpoint.
        self.scheduler = self._scheduler(last_step=int(state["step"]))
        self._log_schedule_change(state.get("config", {}).get("train", {}))
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
        cfg = self.config.train
        start_time, start_step = time.perf_counter(), self.step
        # The data, split and val set are checked before anything is written into the run.
        loader = self._loader(self.batches_drawn)
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
        model = self._wrapped_model()
        model.train()
        writer = _Logs(self.run_dir, enabled=dist.is_main_process())
        writer.truncate_after(self.step)  # rows logged after the checkpoint we resume from
        bar = tqdm(
            total=cfg.max_iters,
            initial=self.step,
            desc="training",
            unit="it",
            disable=not (self.progress and dist.is_main_process()),
            dynamic_ncols=True,
        )
        last_good = latest_checkpoint(self.run_dir)
        # Ctrl-C takes effect between steps (owp.engine.interrupt): what it saves is the state
        # of the last completed step, so the resumed run equals the uninterrupted one.
        guard = StepGuard()
        try:
            with guard.installed():
                while self.step < cfg.max_iters:
                    images, targets, drawn = self._next_batch(batches)
                    with guard.step():
                        losses = self._train_step(model, images, targets, last_good)
                        self.step += 1
                        self.batches_drawn += drawn
                        bar.update(1)
                        if self.step % cfg.log_period == 0 or self.step == cfg.max_iters:
                            self._log_step(writer, bar, losses)
                        if self.step % cfg.checkpoint_period == 0 or self.step == cfg.max_iters:
                            last_good = self.save()
                    if (
                        cfg.eval_period
                        and self.step % cfg.eval_period == 0
                        and self.step < cfg.max_iters
                    ):
                        writer.scalars("eval", self.step, self.evaluate())
                        model.train()
        except ForcedInterrupt:
            bar.close()
            kept = f"--resume continues from {last_good}" if last_good else "no checkpoint yet"
            print(f"interrupted inside a step: nothing saved; {kept}")
            raise
        except KeyboardInterrupt:
            bar.close()
            saved = self.save()
            print(f"interrupted after step {self.step}: saved {saved}; --resume continues from it")
            raise
        bar.close()
        metrics = self.evaluate()
        writer.scalars("eval", self.step, metrics)
        writer.close()
        seconds = time.perf_counter() - start_time
        return TrainResult(
            self.run_dir, self.step, seconds, metrics, self.run_dir / LAST, start_step
        )

    def _log_step(self, writer: _Logs, bar: tqdm, losses: dict[str, Tensor]) -> None:
        """One metrics.csv row (and TensorBoard scalars) for the step just completed."""
        values = dist.all_reduce_mean({k: v.detach() for k, v in losses.items()})
        values["total"] = sum(v for k, v in values.items() if k in self.trained_losses)
        values["lr"] = self.optimizer.param_groups[0]["lr"]
        stats = self.model.training_stats()
        if stats:
            values.update(dist.all_reduce_mean(stats))
        writer.scalars("train", self.step, values)
        bar.set_postfix({k: f"{v:.3g}" for k, v in values.items()})

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
        return path

    def evaluate(self) -> dict[str, Any]:
        """Novel AR@k (and base AP when the model classifies) on the val set.

        Under DDP only rank 0 evaluates (the whole val set, one process) while the other ranks
        wait at a barrier; they return ``{}``.
        """
        metrics = self._evaluate_here() if dist.is_main_process() else {}
        dist.barrier()
        return metrics

    def _evaluate_here(self) -> dict[str, Any]:
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

    def _train_step(self, model, images, targets, last_good: Path | None) -> dict[str, Tensor]:
        cfg = self.config.train
        self.model.iteration = self.step
        with autocast(self.device, self.precision):
            losses = model(images, targets)
        unknown = losses.keys() - self.model.LOSS_PARTS.keys()
        if unknown:
            raise RuntimeError(f"{type(self.model).__name__}.LOSS_PARTS lacks {sorted(unknown)}")
        loss = sum(value for name, value in losses.items() if name in self.trained_losses)
        if not torch.isfinite(loss):
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

    def _loader(self, start_step: int) -> DataLoader:
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
            start_batch=start_step,
        )
        return DataLoader(
            UnreadableAsMessage(dataset),
            batch_sampler=batch_sampler,
            num_workers=data.num_workers,
            collate_fn=_collate,
            pin_memory=self.device.type == "cuda",
            persistent_workers=data.num_workers > 0,
        )

    def _wrapped_model(self) -> nn.Module:
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

    def _pseudo_labels(self) -> Boxes | None:
        """The boxes of ``data.pseudo_labels`` per training image id (``None`` without),
        checked against the training set now, before any training.

        The run keeps the labels it starts with in ``<run>/pseudo_labels.json``
        (:func:`~owp.engine.run_labels.run_pseudo_labels`): a copy of the file named, or
        mined from the run of preset NAME for ``run:NAME``, with
        :class:`~owp.engine.pseudo.PseudoLabelSettings`' defaults (sharded across ranks).
        """
        from owp.engine.run_labels import run_pseudo_labels

        data = self.config.data
        if data.pseudo_labels is None:
            return None
        ann_file, images = locate(data.train, "train", data.train_images)
        path = run_pseudo_labels(
            data.pseudo_labels,
            self.run_dir,
            ann_file,
            images,
            locate_split(data.split, data.train),
            device=self.device,
            batch_size=self.config.eval.batch_size,
            num_workers=data.num_workers,
            progress=self.progress,
        )
        try:
            return read_pseudo_labels(path, read_coco_json(ann_file), ann_file)
        except OwpInputError as err:
            raise OwpInputError(f"data.pseudo_labels: {err}") from None

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

    def _check_same_model(self, state: dict, path: Path) -> None:
        """Refuse a resume that would change the trained graph or the targets; options that act
        at inference only (scoring, thresholds, top-k) may differ."""
        saved = state.get("config", {}).get("model", {})
        current = self.config.to_dict()["model"]
        if saved.get("name") != current["name"]:
            raise OwpInputError(
                f"checkpoint is a {saved.get('name')!r} model, this config asks for "
                f"{current['name']!r}",
                path=path,
            )
        saved_options, options = saved.get("options", {}), current["options"]
        differing = sorted(
            key
            for key in saved_options.keys() | options.keys()
            if key not in INFERENCE_OPTIONS
            and _plain_value(saved_options.get(key)) != _plain_value(options.get(key))
        )
        if differing:
            key = differing[0]
            raise OwpInputError(
                f"cannot resume: model.{key} was {saved_options.get(key)!r} in the checkpoint, "
                f"this config gives {options.get(key)!r} (it changes what is trained)",
                path=path,
            )


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


class _Logs:
    """metrics.csv / eval.csv rows and TensorBoard scalars, written by rank 0 only."""

    def __init__(self, run_dir: Path, *, enabled: bool) -> None:
        self.run_dir, self.enabled = run_dir, enabled
        self.tensorboard = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(run_dir / "tb"))

    def scalars(self, kind: str, step: int, values: dict[str, Any]) -> None:
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


def _plain_value(value: Any) -> Any:
    return list(value) if isinstance(value, list | tuple) else value


def _to_device(target: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v
        for k, v in target.items()
    }

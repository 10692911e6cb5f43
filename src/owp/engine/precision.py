"""How a model runs fast: mixed precision (AMP), channels-last memory and ``torch.compile``.

* :func:`resolve_amp` turns ``train.amp`` (``auto``, ``none``, ``fp16``, ``bf16``) into the
  precision used on a device, :func:`autocast` is its context manager and :func:`grad_scaler`
  the loss scaler that fp16 needs (a disabled one otherwise).
* :func:`use_channels_last` stores a model's 4-D weights channels-last and converts the batch
  its backbone receives, so that every convolution runs on NHWC tensors.
* :func:`compile_parts` compiles a model's backbone and dense head in place (the state dict
  keeps its keys); when compiling fails, the part runs eagerly after one warning.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from owp.models.contract import ProposalModel

log = logging.getLogger(__name__)

AMP_CHOICES: tuple[str, ...] = ("auto", "none", "fp16", "bf16")
"""``train.amp`` values: ``auto`` is bf16 on CUDA GPUs that support it, fp16 on other CUDA
GPUs and none (fp32) elsewhere."""
PRECISIONS: tuple[str, ...] = ("none", "fp16", "bf16")
"""What :func:`resolve_amp` returns: the autocast precision in force (``none`` = fp32)."""
DTYPES: dict[str, torch.dtype] = {"fp16": torch.float16, "bf16": torch.bfloat16}
# Backbones that already convert their input batch to channels-last (one hook each).
_CHANNELS_LAST_INPUT: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def resolve_amp(choice: str, device: torch.device) -> str:
    """The precision (one of :data:`PRECISIONS`) that ``choice`` means on ``device``.

    ``auto``: bf16 on a CUDA device that supports it, fp16 on other CUDA devices, ``none``
    on CPU. ``fp16`` and ``bf16`` are taken as asked, also on CPU (CPU autocast). The legacy
    booleans of older configs mean ``auto`` (true) and ``none`` (false).
    """
    if isinstance(choice, bool):
        choice = "auto" if choice else "none"
    if choice not in AMP_CHOICES:
        raise ValueError(f"amp must be one of {', '.join(AMP_CHOICES)}, got {choice!r}")
    if choice != "auto":
        return choice
    if device.type != "cuda":
        return "none"
    with torch.cuda.device(device):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` on ``device`` for ``precision`` (a no-op context for ``none``)."""
    if precision == "none":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """The loss scaler: active for fp16 only (bf16 has fp32's exponent range and needs none)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def use_channels_last(model: ProposalModel) -> ProposalModel:
    """Store ``model``'s 4-D parameters and buffers channels-last, and make its ``backbone``
    (when it has one) convert its input batch ``[B, 3, H, W]`` to channels-last, so that
    every convolution reads and writes NHWC tensors. In place; returns ``model``.

    Values do not change (only the memory layout); the state dict keeps its keys.
    """
    model.to(memory_format=torch.channels_last)
    backbone = model.backbone
    if backbone is not None and backbone not in _CHANNELS_LAST_INPUT:
        backbone.register_forward_pre_hook(_channels_last_input)
        _CHANNELS_LAST_INPUT.add(backbone)
    return model


def _channels_last_input(module: nn.Module, inputs: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(
        x.contiguous(memory_format=torch.channels_last)
        if isinstance(x, Tensor) and x.dim() == 4
        else x
        for x in inputs
    )


def compile_parts(
    model: ProposalModel, *, backend: str = "inductor", parts: tuple[str, ...] | None = None
) -> list[str]:
    """``torch.compile`` the named submodules of ``model`` (default: its ``COMPILED_PARTS``, the
    dense, static-shape work; postprocessing and two-stage RoI heads stay eager), in place.

    Each part's ``forward`` is replaced by a guarded one that runs the compiled forward. When
    compiling or running one fails (no C++ compiler, an unsupported operator), one warning
    names the error and every part of ``model`` runs eagerly from then on. Parameters stay
    where they were, so checkpoints and optimisers are unaffected. Returns the compiled names.
    """
    fallback = _Fallback()
    compiled = []
    for name in model.COMPILED_PARTS if parts is None else parts:
        part = model.get_submodule(name)
        if isinstance(part.forward, _GuardedForward):
            continue
        try:
            fast = torch.compile(part.forward, backend=backend)
        except Exception as err:  # e.g. torch.compile unsupported on this Python
            fallback.fail(err)
            return []
        part.forward = _GuardedForward(part.forward, fast, fallback)
        compiled.append(name)
    return compiled


class _Fallback:
    """Shared by the parts of one compiled model: after the first failure all run eagerly."""

    def __init__(self) -> None:
        self.failed = False

    def fail(self, err: Exception) -> None:
        if not self.failed:
            first = (str(err).strip().splitlines() or [""])[0][:200]
            log.warning(
                "torch.compile failed (%s: %s); running the model eagerly",
                type(err).__name__,
                first,
            )
        self.failed = True


class _GuardedForward:
    """A compiled forward that falls back to the eager one (for good) when it raises."""

    def __init__(self, eager: Callable, fast: Callable, fallback: _Fallback) -> None:
        self.eager, self.fast, self.fallback = eager, fast, fallback

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.fallback.failed:
            return self.eager(*args, **kwargs)
        try:
            return self.fast(*args, **kwargs)
        except Exception as err:
            self.fallback.fail(err)
            return self.eager(*args, **kwargs)


def prepare_for_inference(
    model: ProposalModel,
    device: torch.device,
    *,
    amp: str = "none",
    channels_last: bool = False,
    compile: bool = False,
) -> str:
    """Apply ``owp eval`` / ``owp predict``'s speed options to ``model`` (in place; a model
    that is no torch module, such as an ONNX file, is left as it is) and return the autocast
    precision to run it under (:func:`resolve_amp` of ``amp`` on ``device``)."""
    if not model.TORCH:
        return "none"
    if channels_last:
        use_channels_last(model)
    if compile:
        compile_parts(model)
    return resolve_amp(amp, device)

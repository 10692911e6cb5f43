"""Distributed training helpers for ``torchrun`` / DDP that fall back to a single process.

When the program is not started by ``torchrun`` (no ``WORLD_SIZE`` above 1) every helper behaves
as in a one-process world: rank 0 of 1, barriers do nothing and reductions return their input.
"""

from __future__ import annotations

import os
from typing import TypeVar

import torch
import torch.distributed as dist

from owp.errors import OwpInputError

T = TypeVar("T")


def init_distributed(backend: str | None = None) -> bool:
    """Join the process group described by the ``torchrun`` environment, if there is one.

    With ``WORLD_SIZE`` > 1 this initialises the default group from the environment (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) with ``backend`` (default: ``nccl`` when
    CUDA is available, else ``gloo``) and, on CUDA, selects the GPU ``LOCAL_RANK``. Calling it
    again once initialised does nothing. Returns whether the process is part of a group.
    """
    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    if torch.cuda.is_available():
        torch.cuda.set_device(get_local_rank())
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    return True


def is_distributed() -> bool:
    """Whether a default process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's global rank (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """Number of processes in the group (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def get_local_rank() -> int:
    """This process's rank on its machine, from ``LOCAL_RANK`` (0 when unset)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """Whether this is rank 0, the process that logs and writes files."""
    return get_rank() == 0


def barrier() -> None:
    """Wait until every process gets here; nothing to wait for in a single process."""
    if not is_distributed():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def _reduce_device() -> torch.device:
    """Device the collective backend works on: the current GPU for NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_mean(values: dict[str, float | torch.Tensor]) -> dict[str, float]:
    """Mean over all processes of each scalar (a number or a one-element tensor), as floats.

    Every process must pass the same keys (in any order). One collective call reduces them
    all, in float64; the result keeps the order of ``values``. In a single process the values are
    returned as floats.
    """
    if not is_distributed() or not values:
        return {key: float(value) for key, value in values.items()}
    keys = sorted(values)
    device = _reduce_device()
    stacked = torch.stack(
        [
            torch.as_tensor(values[key]).detach().to(device, torch.float64).reshape(())
            for key in keys
        ]
    )
    dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
    means = dict(zip(keys, (stacked / get_world_size()).tolist(), strict=True))
    return {key: means[key] for key in values}


def broadcast_object(obj: T, src: int = 0) -> T:
    """``obj`` from rank ``src`` on every process (any picklable object); identity when single."""
    if not is_distributed():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def all_gather_object(obj: T) -> list[T]:
    """Every process's ``obj`` (any picklable object), in rank order; ``[obj]`` when single."""
    if not is_distributed():
        return [obj]
    gathered: list = [None] * get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def gather_object(obj: T, dst: int = 0) -> list[T] | None:
    """Every process's ``obj`` in rank order on rank ``dst``, ``None`` on the others;
    ``[obj]`` when single."""
    if not is_distributed():
        return [obj]
    gathered: list | None = [None] * get_world_size() if get_rank() == dst else None
    dist.gather_object(obj, gathered, dst=dst)
    return gathered


def cleanup() -> None:
    """Leave and destroy the default process group, if one is initialised."""
    if is_distributed():
        dist.destroy_process_group()


def resolve_device(name: str) -> torch.device:
    """``auto`` (this process's CUDA device when present, else CPU), ``cpu``, ``cuda`` (this
    process's GPU: ``LOCAL_RANK`` under ``torchrun``, else 0) or ``cuda:i``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    elif name.split(":")[0] not in ("cpu", "cuda"):
        raise OwpInputError(f"unknown device {name!r}; use auto, cpu or cuda")
    elif name.startswith("cuda") and not torch.cuda.is_available():
        raise OwpInputError("--device cuda asked for, but no CUDA device is available")
    if name == "cuda":
        return torch.device("cuda", get_local_rank())
    return torch.device(name)

"""``owp train`` inside a process group that ``torchrun`` started, also one of a single process.

owp joins a group only when ``WORLD_SIZE`` > 1; this wrapper joins it first (NCCL on CUDA, gloo
on CPU) so that a 1-GPU ``torchrun --nproc_per_node=1`` run goes through
``DistributedDataParallel`` and NCCL all the same. Used by ``benchmarks/gpu_check.sh``::

    torchrun --standalone --nproc_per_node=1 benchmarks/ddp_train.py train --preset ... --out ...

The arguments are ``owp``'s. Prints the backend and world size, then exits with owp's status.
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist

from owp.cli import main as owp_main


def main() -> int:
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    print(f"process group: {dist.get_backend()}, world size {dist.get_world_size()}", flush=True)
    try:
        return owp_main(sys.argv[1:])
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())

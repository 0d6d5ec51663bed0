"""Where the one training function runs: one process, or N processes under torchrun (one per GPU, many nodes).

torchrun (and the Kubeflow Training Operator's PyTorchJob, which runs torchrun) sets RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT; `init` reads them, joins the process group (NCCL on GPUs, gloo on CPUs) and puts
each process on cuda:LOCAL_RANK. Without them it is a one-process run and nothing here does anything. The trainer
(training.train) wraps the same model in DistributedDataParallel, splits each global batch by rank and lets rank
0 evaluate, checkpoint and save: `sidrec training run` and `sidrec pipeline train` run unchanged under torchrun.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from components.runtime.backbone import resolve_device


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def context() -> Context:
    """This process's place in the job, from torchrun's environment (a one-process job without it)."""
    return Context(
        int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
    )


def init(device_name: str) -> tuple[Context, torch.device]:
    """Join the process group when launched by torchrun (once per process) and pick this process's device:
    cuda:LOCAL_RANK with NCCL when the config asks for CUDA, the CPU with gloo otherwise."""
    ctx = context()
    device = resolve_device(device_name)
    if device.type == "cuda" and ctx.distributed:
        device = torch.device(f"cuda:{ctx.local_rank}")
        torch.cuda.set_device(device)
    if ctx.distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return ctx, device


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum over all processes (the values themselves in a one-process run)."""
    if not dist.is_initialized():
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def from_main(value):
    """Rank 0's value on every process (e.g. rank 0's validation score), unchanged in a one-process run."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()

"""Where the one training function runs: one process, or N processes under torchrun (one per GPU, many nodes).

torchrun (and the Kubeflow Training Operator's PyTorchJob, which runs torchrun) sets RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT; `init` reads them, joins the process group (NCCL on GPUs, gloo on CPUs) and puts
each process on cuda:LOCAL_RANK. Without them it is a one-process run and nothing here does anything. The trainer
(training.train) wraps the same model in DistributedDataParallel, splits each global batch by rank and lets rank
0 evaluate, checkpoint and save: `sidrec training run` and `sidrec pipeline train` run unchanged under torchrun.

With `train.sharding: fsdp` the model is sharded with FSDP2 (`torch.distributed.fsdp.fully_shard`) instead: each
rank holds 1/world_size of the weights, gradients and optimizer state, for backbones whose replica (weights +
AdamW's two moments + gradients, ~16 bytes a parameter in fp32) does not fit one GPU. The update is the same as
DDP's; what differs is who holds what, so code that reads the weights directly runs on every rank (`gathered`)
and saving gathers them on rank 0 (`full_state_dict`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from components.errors import SidrecError
from components.runtime.backbone import decoder_and_head, resolve_device


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


# -- FSDP (train.sharding: fsdp) --------------------------------------------------------------------------------
class ShardingError(SidrecError, ValueError):
    """Settings the chosen sharding cannot train: an expected error (one line naming what to set); a ValueError
    too, as it was before it became one."""


def check_fsdp(lora: bool, warmup_steps: int, checkpoint_every: int, ema: bool = False) -> None:
    """FSDP covers a full fine-tune without the token warm-up and without periodic checkpoints; refuse the rest
    with what to set, rather than train something else than asked. Why: the warm-up flips requires_grad and
    writes embedding rows in place between steps, which sharded parameters do not allow; LoRA's merge and the
    exact-resume checkpoint (written by rank 0 alone) and the weight average (a whole copy of the model) need the
    whole weights on one rank."""
    wrong = [
        name
        for name, bad in (
            ("train.lora: false", lora),
            ("train.warmup_epochs: 0", warmup_steps > 0),
            ("train.checkpoint_every: 0", checkpoint_every > 0),
            ("train.ema_decay: null", ema),
        )
        if bad
    ]
    if wrong:
        raise ShardingError(f"train.sharding fsdp supports full fine-tuning only: set {', '.join(wrong)}")


def shard(loss_module: torch.nn.Module, model) -> torch.nn.Module:
    """FSDP2 over the trainer's loss module: every decoder layer is its own unit (all-gathered just before it runs,
    freed after), the rest (embeddings, final norm, the output layer, tied or not) is the root unit, which is the
    loss module itself. Why the root is the loss module and not the model: training and decoding call the decoder
    and the output layer separately (the output layer only where it is needed), so only a unit around both keeps
    their weights gathered for a whole forward and backward. Gradients are reduce-scattered and averaged over the
    ranks, as DDP averages them. Parameter names are unchanged; the parameters themselves are new (DTensors), so
    the optimizer must be built from them after this call."""
    from torch.distributed.fsdp import fully_shard

    base, _ = decoder_and_head(model)
    for layer in base.layers:
        fully_shard(layer)
    fully_shard(loss_module)
    return loss_module


def local_parameters(model: torch.nn.Module) -> int:
    """Parameter elements this process holds: the whole model under DDP, its shards under FSDP."""
    return sum(p.to_local().numel() if hasattr(p, "to_local") else p.numel() for p in model.parameters())


@contextlib.contextmanager
def gathered(root: torch.nn.Module) -> Iterator[None]:
    """The root unit's weights whole on every rank, for code that runs the model outside the loss module's
    forward (decoding the select rows to pick epochs). The layers still gather themselves as they run, which is
    a collective: every rank must run the same code on the same inputs, in lockstep."""
    root.unshard()
    try:
        yield
    finally:
        root.reshard()


def full_state_dict(model: torch.nn.Module) -> dict | None:
    """The whole model's weights on rank 0, in CPU memory (None on the other ranks), gathered from the shards;
    every rank must call it. What rank 0 saves: the saved model is the plain backbone, loadable anywhere. A tied
    weight (the output layer sharing the embedding) is kept under its first name only, as save_pretrained writes
    it without FSDP: the gathered dict names it twice."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    aliases = dict(model.named_parameters(remove_duplicate=False)).keys() - dict(model.named_parameters()).keys()
    return {k: v for k, v in state.items() if k not in aliases} if context().is_main else None

"""Data-parallel fine-tuning with torch DistributedDataParallel (NCCL on GPUs, gloo on CPU).

Each optimizer step takes one global batch; rank r trains on rows r, r+W, r+2W, ... of it and DDP averages
the gradients, so W processes follow the same trajectory as one process on the whole batch (tested on CPU
with 2 gloo processes). Launch with `sidrec train ddp --nproc N` (spawns workers here) or under torchrun,
which sets RANK/WORLD_SIZE/MASTER_ADDR for multi-node runs. Large backbones would swap DDP for FSDP; the
loop is the same.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import torch
import torch.distributed as dist

from components.config import Config
from components.model.train import _batch, tokenize_pairs


def _worker(
    rank: int,
    world_size: int,
    cfg_json: str,
    texts: list[tuple[str, str]],
    steps: int,
    global_batch: int,
    out_file: str,
    port: int,
) -> None:
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(port))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    try:
        losses = run_ddp_steps(Config.model_validate_json(cfg_json), texts, steps, global_batch, rank, world_size)
        if rank == 0:
            Path(out_file).write_text(json.dumps(losses))
    finally:
        dist.destroy_process_group()


def run_ddp_steps(
    cfg: Config, texts: list[tuple[str, str]], steps: int, global_batch: int, rank: int = 0, world_size: int = 1
) -> list[float]:
    """Train `steps` steps; returns the global mean loss per step (all-reduced when distributed)."""
    from torch.nn.parallel import DistributedDataParallel

    from components.model.backbone import load_backbone

    torch.manual_seed(cfg.train.seed)
    model, tokenizer = load_backbone(cfg.model)  # same seed -> identical initial weights on every rank
    data = tokenize_pairs(tokenizer, texts, cfg.model.max_length)
    ddp = DistributedDataParallel(model) if dist.is_initialized() else model
    optim = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    order = list(range(len(data)))
    random.Random(cfg.train.seed).shuffle(order)
    losses = []
    for step in range(steps):
        batch = [order[(step * global_batch + j) % len(order)] for j in range(global_batch)]
        mine = batch[rank::world_size]
        input_ids, mask, labels = _batch([data[i] for i in mine], tokenizer.pad_token_id or 0)
        # HF's own loss: mean cross-entropy over the non -100 (completion) labels, through DDP's forward
        loss = ddp(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        value = loss.detach().clone()
        if dist.is_initialized():  # gloo has no AVG
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
            value /= world_size
        losses.append(float(value))
    return losses


def train_ddp(
    cfg: Config, texts: list[tuple[str, str]], world_size: int, steps: int, global_batch: int, out_file: Path
) -> list[float]:
    """Spawn `world_size` local workers (gloo on CPU, NCCL on GPUs) and return rank 0's loss curve."""
    import torch.multiprocessing as mp

    from components.utils.procs import free_port

    mp.spawn(
        _worker,
        args=(world_size, cfg.model_dump_json(), texts, steps, global_batch, str(out_file), free_port()),
        nprocs=world_size,
        join=True,
    )
    return json.loads(Path(out_file).read_text())

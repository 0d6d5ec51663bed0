"""Stand-in for `components.cli` under torchrun in tests/infra/test_infra_pytorchjob.py.

Joins the process group exactly as a DDP trainer does (rank and world size from torchrun's environment),
all-reduces one number and writes what it saw, argv included, to $PROBE_OUT/rank<RANK>.json.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist


def main() -> None:
    dist.init_process_group("gloo")  # RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT come from torchrun
    rank, world = dist.get_rank(), dist.get_world_size()
    value = torch.tensor([float(rank + 1)])
    dist.all_reduce(value)
    report = {
        "rank": rank,
        "world_size": world,
        "local_rank": int(os.environ["LOCAL_RANK"]),
        "group_rank": int(os.environ["GROUP_RANK"]),
        "sum": float(value),
        "argv": sys.argv[1:],
    }
    Path(os.environ["PROBE_OUT"], f"rank{rank}.json").write_text(json.dumps(report))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

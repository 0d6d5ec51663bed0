"""Hold training rows out of supervised training so that preference alignment can mine rows the model never fit.

    python -m experiments.heldout_splits --out runs/heldout/splits --rows 2000 [--config configs/benchmark.yaml]

Writes a split directory: train = the config's train split minus the held-out rows, heldout = those rows, valid
and test linked unchanged. The held-out rows are the last training row (the longest history) of `rows` users
drawn at random, so the model still fits each user's earlier transitions and loses as few as can be; only the
newest transition of those users moves from supervised training to alignment. Why: alignment mined on the
model's own training rows moves little (the early-stopped model sits at its optimum there), while rows it never
fit moved it more (docs/benchmark.md, lever table, "preference alignment"). Then:

    python -m experiments.select_on_valid NAME '{"data": {"splits_dir": "runs/heldout/splits"}, "train": {"seed": 0}}'
    python -m experiments.align_on_valid --model runs/select/NAME --mine-from heldout --config CFG ...

with CFG's data.splits_dir the same directory. Test is never touched.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from components.config import PROJECT_ROOT, load_config
from components.data.splits import load_split_examples
from components.training.examples import newest_rows


def held_out_rows(train: pd.DataFrame, rows: int, seed: int) -> pd.Index:
    """The index of the newest row (training.examples.newest_rows) of `rows` users drawn at random (all users when
    fewer)."""
    newest = newest_rows(train)
    return train.index[np.sort(newest.sample(n=min(rows, len(newest)), random_state=seed).to_numpy())]


def write_heldout_splits(splits_dir: Path, out: Path, rows: int, seed: int) -> dict[str, int]:
    """out/{train,heldout}.jsonl.gz and links to splits_dir's valid and test; returns the row counts."""
    train = load_split_examples(str(splits_dir), "train")
    held = held_out_rows(train, rows, seed)
    out.mkdir(parents=True, exist_ok=True)
    train.drop(index=held).to_json(out / "train.jsonl.gz", orient="records", lines=True, compression="gzip")
    train.loc[held].to_json(out / "heldout.jsonl.gz", orient="records", lines=True, compression="gzip")
    for split in ("valid", "test"):
        source = next(p for p in (splits_dir / f"{split}.jsonl.gz", splits_dir / f"{split}.jsonl") if p.exists())
        link = out / source.name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(source.resolve(), out.resolve()))
    return {"train": len(train) - len(held), "heldout": len(held)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--rows", type=int, default=2000, help="users whose last training row is held out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default=str(PROJECT_ROOT / "configs" / "benchmark.yaml"))
    args = parser.parse_args()
    cfg = load_config(args.config)
    counts = write_heldout_splits(Path(cfg.path(cfg.data.splits_dir)), Path(args.out), args.rows, args.seed)
    print(json.dumps(counts))


if __name__ == "__main__":
    main()

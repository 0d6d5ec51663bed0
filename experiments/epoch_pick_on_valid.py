"""Which epoch-pick rule selects better epochs: an 800-row valid sample (the benchmark's) or more rows?

    python -m experiments.epoch_pick_on_valid run NAME --seed S [--sid-map DIR] [--overrides JSON]
    python -m experiments.epoch_pick_on_valid compare runs/epoch_pick/NAME... [--out DIR]

`run` trains the config's generative model for its whole schedule (patience off, so every epoch is seen) and,
after each epoch, decodes the whole valid split as served and stores each row's rank of its target. Training is
the selection run's (same seed, map and schedule; patience only ever stops it, it never changes a step), so its
first epochs reproduce `select_on_valid`'s curve for that seed.

`compare` splits valid into two halves by user and, in both directions, picks an epoch on one half with each
rule and scores that epoch on the other half: the rule's worth measured on rows it did not see. Rules: HR@10 on
an 800-row sample of the half (the benchmark's rule: eval.max_examples rows), HR@10 and NDCG@10 on the whole
half, each with patience 4 as the benchmark stops; the last epoch of the schedule, and the epoch the scored half
itself likes best (the most any rule could gain) for reference. Test is never touched.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from components.config import PROJECT_ROOT, load_config
from components.data.ingest import read_catalog_for
from components.data.splits import load_splits
from components.errors import SidrecError
from components.sids.sidmap import SidMap
from components.training.train import train_model
from experiments.benchmark import cached_sid_map

OUT = PROJECT_ROOT / "runs" / "epoch_pick"
SAMPLE_ROWS = 800  # configs/benchmark.yaml eval.max_examples: the rule in use
PATIENCE = 4  # configs/benchmark.yaml train.patience


def target_ranks(ranked: list[list[str]], targets: list[str]) -> list[int]:
    """Each row's 1-based rank of its target in its top 10, 0 where it is missing."""
    return [(row[:10].index(t) + 1) if t in row[:10] else 0 for row, t in zip(ranked, targets, strict=True)]


def row_scores(ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row HR@10 and NDCG@10 (one target per row) from target_ranks' ranks; any array shape."""
    hit = (ranks > 0).astype(float)
    ndcg = np.where(ranks > 0, 1.0 / np.log2(np.maximum(ranks, 1) + 1.0), 0.0)
    return hit, ndcg


def halves(users: pd.Series) -> np.ndarray:
    """0/1 per row: the half of valid its user falls in (a stable hash, so a user's rows stay together)."""
    return np.array([zlib.crc32(str(u).encode()) % 2 for u in users])


def pick(curve: list[float], patience: int | None) -> int:
    """The epoch (0-based) a run keeps: the best score seen before `patience` scores in a row fail to beat it."""
    best = 0
    for epoch, score in enumerate(curve):
        if score > curve[best]:
            best = epoch
        if patience is not None and epoch - best >= patience:
            break
    return best


def run(args: argparse.Namespace) -> Path:
    """Train one seed for the whole schedule and store every epoch's per-row ranks on valid (ranks.json)."""
    overrides = json.loads(args.overrides)  # a typo fails before any data is read
    cfg = load_config(args.config)
    splits = load_splits(cfg.path(cfg.data.splits_dir))
    valid = splits["valid"].reset_index(drop=True)
    overrides.setdefault("train", {}).update({"seed": args.seed, "patience": None})
    overrides.setdefault("eval", {})["max_examples"] = len(valid)  # every valid row, every epoch
    cfg = load_config(args.config, overrides)
    root = Path(args.out)
    sidmap = SidMap.load(cached_sid_map(cfg, root, args.sid_map))
    epochs: list[list[int]] = []

    def record(sample: pd.DataFrame, ranked: list[list[str]]) -> None:
        ranks = pd.Series(target_ranks(ranked, sample["target"].astype(str).tolist()), index=sample.index)
        epochs.append([int(r) for r in ranks.reindex(valid.index).tolist()])

    model_dir = train_model(
        cfg, sidmap, read_catalog_for(cfg), splits["train"], valid, root / args.name, on_valid=record
    )
    # the benchmark's own sample (eval.max_examples rows, drawn as train_model draws it): its curve must
    # reproduce select_on_valid's sample_curve for the seed, the check that training is the selection run's
    sample = valid.sample(n=min(len(valid), SAMPLE_ROWS), random_state=args.seed).index.to_numpy()
    hit, _ = row_scores(np.array(epochs))
    result = {
        "name": args.name,
        "seed": args.seed,
        "overrides": overrides,
        "sid_version": sidmap.version,
        "users": valid["user_id"].astype(str).tolist(),
        "ranks": epochs,
        "sample800_curve": [round(float(h[sample].mean()), 5) for h in hit],
        "valid_hr10_curve": [round(float(h.mean()), 5) for h in hit],
    }
    (model_dir / "ranks.json").write_text(json.dumps(result))
    return model_dir


def compare_run(result: dict) -> list[dict]:
    """Each rule's picked epoch and its score on the other half, both directions, for one run's ranks."""
    ranks = np.array(result["ranks"])  # [epochs, rows]
    hit, ndcg = row_scores(ranks)
    half = halves(pd.Series(result["users"]))
    rows = []
    for pick_half in (0, 1):
        chosen = np.flatnonzero(half == pick_half)
        scored = np.flatnonzero(half != pick_half)
        # an 800-row sample of the picking half, drawn the way train_model draws its sample
        sample = pd.Series(chosen).sample(n=min(len(chosen), SAMPLE_ROWS), random_state=result["seed"]).to_numpy()
        curves = {
            "HR@10, 800-row sample (in use)": hit[:, sample].mean(axis=1),
            "HR@10, whole half": hit[:, chosen].mean(axis=1),
            "NDCG@10, whole half": ndcg[:, chosen].mean(axis=1),
        }
        picks = {rule: pick(list(curve), PATIENCE) for rule, curve in curves.items()}
        picks["last epoch of the schedule"] = len(ranks) - 1
        # what any rule could at most gain: the epoch the scored half itself likes best (not a rule: it reads
        # the rows it is scored on)
        picks["best epoch on the scored half (upper bound)"] = int(np.argmax(hit[:, scored].mean(axis=1)))
        for rule, epoch in picks.items():
            rows.append(
                {
                    "run": result["name"],
                    "picked on half": pick_half,
                    "rule": rule,
                    "epoch": epoch + 1,
                    "hr10": hit[epoch, scored],
                    "ndcg10": ndcg[epoch, scored],
                }
            )
    return rows


def compare(args: argparse.Namespace) -> str:
    """Markdown table: each rule's held-out HR@10 / NDCG@10 over runs and directions, paired with the rule in use."""
    rows = [r for d in args.runs for r in compare_run(json.loads((Path(d) / "ranks.json").read_text()))]
    base = {(r["run"], r["picked on half"]): r for r in rows if r["rule"].endswith("(in use)")}
    lines = [
        "| rule | epochs picked (run/half) | held-out HR@10 | held-out NDCG@10 | paired vs in use: HR@10 | NDCG@10 |",
        "|---|---|---|---|---|---|",
    ]
    for rule in dict.fromkeys(r["rule"] for r in rows):
        mine = [r for r in rows if r["rule"] == rule]
        hr = np.concatenate([r["hr10"] for r in mine])
        nd = np.concatenate([r["ndcg10"] for r in mine])
        ref = [base[(r["run"], r["picked on half"])] for r in mine]
        dh = hr - np.concatenate([r["hr10"] for r in ref])
        dn = nd - np.concatenate([r["ndcg10"] for r in ref])
        se = lambda x: x.std(ddof=1) / math.sqrt(len(x))  # noqa: E731 - per-row paired standard error
        epochs = " ".join(f"{r['epoch']}" for r in mine)
        lines.append(
            f"| {rule} | {epochs} | {hr.mean():.4f} | {nd.mean():.4f} | "
            f"{dh.mean():+.4f} ± {se(dh):.4f} | {dn.mean():+.4f} ± {se(dn):.4f} |"
        )
    table = "\n".join(lines)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "compare.md").write_text(table + "\n")
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="train one seed, every epoch scored on all of valid")
    p_run.add_argument("name")
    p_run.add_argument("--seed", type=int, default=0)
    p_run.add_argument("--overrides", default="{}", help="JSON merged into the config")
    p_run.add_argument("--config", default=str(PROJECT_ROOT / "configs" / "benchmark.yaml"))
    p_run.add_argument("--out", default=str(OUT))
    p_run.add_argument("--sid-map", type=Path, default=None, help="a prebuilt SID map directory to train on")
    p_cmp = sub.add_parser("compare", help="held-out worth of each epoch-pick rule over runs")
    p_cmp.add_argument("runs", nargs="+")
    p_cmp.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    try:
        print(run(args) if args.command == "run" else compare(args))
    except json.JSONDecodeError as e:  # the overrides (run) or a run's ranks.json (compare)
        what = f"the overrides {args.overrides!r}" if args.command == "run" else "a run's ranks.json"
        raise SystemExit(f"epoch_pick_on_valid: {what} is not JSON ({e})") from None
    except (SidrecError, FileNotFoundError) as e:
        raise SystemExit(f"epoch_pick_on_valid: {e}") from None


if __name__ == "__main__":
    main()

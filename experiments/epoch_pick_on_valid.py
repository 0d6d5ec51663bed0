"""Which epoch-pick rule selects better epochs: an 800-row valid sample (the benchmark's earlier rule) or more rows?

    python -m experiments.epoch_pick_on_valid run NAME --seed S [--sid-map DIR] [--overrides JSON]
    python -m experiments.epoch_pick_on_valid compare runs/epoch_pick/NAME... [--out DIR]

`run` trains the config's generative model for its whole schedule (patience off, so every epoch is seen) and,
after each epoch, decodes the whole valid split as served and stores each row's HR@10 and NDCG@10
(per_row.json). Training is the selection run's (same seed, map and schedule; patience only ever stops it, it
never changes a step), so its first epochs reproduce `select_on_valid`'s curve for that seed.

`compare` splits valid into two halves by user and, in both directions, picks an epoch on one half with each
rule and scores that epoch on the other half: the rule's worth measured on rows it did not see. Rules: HR@10 on
an 800-row sample of the half (eval.max_examples: 800, as the benchmark picked before), HR@10 and NDCG@10 on
the whole half, each stopped by the config's train.patience as training stops; the last epoch of the schedule,
and the epoch the scored half itself likes best (the most any rule could gain) for reference. Test is never
touched.
"""

from __future__ import annotations

import argparse
import json
import logging
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from components.config import PROJECT_ROOT, load_config
from components.data.ingest import read_catalog_for
from components.data.splits import load_splits
from components.errors import SidrecError
from components.sids.sidmap import SidMap
from components.training.train import past_patience, train_model
from experiments.benchmark import cached_sid_map
from experiments.paired_on_valid import paired, per_row

OUT = PROJECT_ROOT / "runs" / "epoch_pick"
RESULT_FILE = "per_row.json"
SAMPLE_ROWS = 800  # the benchmark's earlier eval.max_examples: the rule the others are compared with
SAMPLE_RULE = "HR@10, 800-row sample (the earlier rule)"


def halves(users: pd.Series) -> np.ndarray:
    """0/1 per row: the half of valid its user falls in (a stable hash, so a user's rows stay together)."""
    return np.array([zlib.crc32(str(u).encode()) % 2 for u in users])


def pick(curve: list[float], patience: int | None) -> int:
    """The epoch (0-based) a run keeps: the first best score before training's own patience rule stops it."""
    history: list[dict] = []
    for score in curve:
        history.append({"valid": score})
        if past_patience(history, patience):
            break
    return max(range(len(history)), key=lambda i: (history[i]["valid"], -i))


def run(args: argparse.Namespace) -> Path:
    """Train one seed for the whole schedule and store every epoch's per-row HR@10 / NDCG@10 on valid."""
    overrides = json.loads(args.overrides)  # a typo fails before any data is read
    overrides.setdefault("train", {})["seed"] = args.seed
    cfg = load_config(args.config, overrides)
    patience = cfg.train.patience  # the rule compare simulates; this run itself sees every epoch
    splits = load_splits(cfg.path(cfg.data.splits_dir))
    valid = splits["valid"].reset_index(drop=True)
    cfg = cfg.model_copy(
        update={
            "train": cfg.train.model_copy(update={"patience": None}),
            "eval": cfg.eval.model_copy(update={"max_examples": len(valid)}),  # every valid row, every epoch
        }
    )
    root = Path(args.out)
    sidmap = SidMap.load(cached_sid_map(cfg, root, args.sid_map))
    hr10: list[list[float]] = []
    ndcg10: list[list[float]] = []

    def record(sample: pd.DataFrame, ranked: list[list[str]]) -> None:
        hr, nd = per_row(ranked, sample["target"].astype(str).tolist())  # the project's metric, row by row
        hr10.append(pd.Series(hr, index=sample.index).reindex(valid.index).tolist())
        ndcg10.append(pd.Series(nd, index=sample.index).reindex(valid.index).tolist())

    model_dir = train_model(
        cfg, sidmap, read_catalog_for(cfg), splits["train"], valid, root / args.name, on_valid=record
    )
    # the benchmark's own sample (eval.max_examples rows, drawn as train_model draws it): its curve must
    # reproduce select_on_valid's sample_curve for the seed, the check that training is the selection run's
    sample = valid.sample(n=min(len(valid), SAMPLE_ROWS), random_state=args.seed).index.to_numpy()
    hit = np.array(hr10)
    result = {
        "name": args.name,
        "seed": args.seed,
        "overrides": overrides,
        "patience": patience,
        "sid_version": sidmap.version,
        "users": valid["user_id"].astype(str).tolist(),
        "hr10": hr10,
        "ndcg10": ndcg10,
        "sample800_curve": [round(float(h[sample].mean()), 5) for h in hit],
        "valid_hr10_curve": [round(float(h.mean()), 5) for h in hit],
    }
    (model_dir / RESULT_FILE).write_text(json.dumps(result))
    return model_dir


def compare_run(result: dict) -> list[dict]:
    """Each rule's picked epoch and its score on the other half, both directions, for one run's per-row scores."""
    hit, ndcg = np.array(result["hr10"]), np.array(result["ndcg10"])  # [epochs, rows]
    half = halves(pd.Series(result["users"]))
    rows = []
    for pick_half in (0, 1):
        chosen = np.flatnonzero(half == pick_half)
        scored = np.flatnonzero(half != pick_half)
        # an 800-row sample of the picking half, drawn the way train_model draws its sample
        sample = pd.Series(chosen).sample(n=min(len(chosen), SAMPLE_ROWS), random_state=result["seed"]).to_numpy()
        curves = {
            SAMPLE_RULE: hit[:, sample].mean(axis=1),
            "HR@10, whole half": hit[:, chosen].mean(axis=1),
            "NDCG@10, whole half": ndcg[:, chosen].mean(axis=1),
        }
        picks = {rule: pick(list(curve), result["patience"]) for rule, curve in curves.items()}
        picks["last epoch of the schedule"] = len(hit) - 1
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
    """Markdown table: each rule's held-out HR@10 / NDCG@10 over runs and directions, paired with the sample rule."""
    rows = [r for d in args.runs for r in compare_run(json.loads((Path(d) / RESULT_FILE).read_text()))]
    base = {(r["run"], r["picked on half"]): r for r in rows if r["rule"] == SAMPLE_RULE}
    lines = [
        "| rule | epochs picked (run/half) | held-out HR@10 | held-out NDCG@10 | paired vs sample: HR@10 | NDCG@10 |",
        "|---|---|---|---|---|---|",
    ]
    for rule in dict.fromkeys(r["rule"] for r in rows):
        mine = [r for r in rows if r["rule"] == rule]
        hr = np.concatenate([r["hr10"] for r in mine])
        nd = np.concatenate([r["ndcg10"] for r in mine])
        ref = [base[(r["run"], r["picked on half"])] for r in mine]
        dh = paired(hr.tolist(), np.concatenate([r["hr10"] for r in ref]).tolist())  # per-row paired SE
        dn = paired(nd.tolist(), np.concatenate([r["ndcg10"] for r in ref]).tolist())
        epochs = " ".join(f"{r['epoch']}" for r in mine)
        lines.append(
            f"| {rule} | {epochs} | {hr.mean():.4f} | {nd.mean():.4f} | "
            f"{dh['diff']:+.4f} ± {dh['se']:.4f} | {dn['diff']:+.4f} ± {dn['se']:.4f} |"
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
    except json.JSONDecodeError as e:  # the overrides (run) or a run's per_row.json (compare)
        what = f"the overrides {args.overrides!r}" if args.command == "run" else f"a run's {RESULT_FILE}"
        raise SystemExit(f"epoch_pick_on_valid: {what} is not JSON ({e})") from None
    except (SidrecError, FileNotFoundError) as e:
        raise SystemExit(f"epoch_pick_on_valid: {e}") from None


if __name__ == "__main__":
    main()

"""The production loop's numbers on a dataset's splits (docs/production-loop.md):

    python -m experiments.loop_measurements warm-start --config configs/benchmark.yaml --seeds 0 1
    python -m experiments.loop_measurements reasoning --config configs/benchmark.yaml --rows 500

warm-start: incremental fine-tuning vs a full retrain. "New events" are each user's last training example; the
production model is trained on the others (epochs picked on a valid sample, as the pipeline does); incremental =
that model warm-started on the new examples plus an equal replay sample of the old ones for
train.warm_start_epochs; full = a model trained on all training examples from the base LLM. Minutes and full-valid
HR@10 / NDCG@10 per seed.

reasoning: the reasoning model in the loop: grounded rationales for reasoning.rationale_examples training rows
(coverage and samples), reasoning fine-tuning from the production model, then the three inference modes on the
first --rows valid rows (reasoning.compare): HR@10, NDCG@10, online ms per request, offline ms per user.
Nothing here reads test.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from components.config import Config, load_config
from components.data.ingest import read_catalog_for
from components.data.splits import load_splits
from components.evaluation.evaluate import score_recommender
from components.reasoning.compare import compare_modes
from components.reasoning.rationales import Evidence, build_rationales, coverage
from components.reasoning.train import train_reasoning
from components.runtime.candidates import sid_codes
from components.runtime.recommender import Recommender
from components.sids.sidmap import SidMap
from components.training.train import train_model
from experiments.benchmark import KS, cached_sid_map, train_or_reuse


def split_new_events(train: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(old, new): each user's last training example is the new event (split files are in time order per user)."""
    last = train.groupby("user_id").tail(1).index
    return train.drop(index=last).reset_index(drop=True), train.loc[last].reset_index(drop=True)


def _score(cfg: Config, model_dir: Path, valid: pd.DataFrame) -> dict:
    recommender = Recommender.from_pretrained(model_dir, beam_size=cfg.serving.beam_size)
    return score_recommender(recommender, valid, KS, cfg.eval.batch_size)


def warm_start(cfg: Config, out: Path, seeds: list[int]) -> dict:
    splits = load_splits(cfg.path(cfg.data.splits_dir))
    catalog = read_catalog_for(cfg)
    sidmap = SidMap.load(cached_sid_map(cfg, out))
    old, new = split_new_events(splits["train"])
    results = {}
    for seed in seeds:
        run = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": seed})})
        t0 = time.perf_counter()
        production = train_or_reuse(run, sidmap, catalog, old, splits["valid"], out / f"production_s{seed}")
        production_s = time.perf_counter() - t0
        replay = old.sample(n=min(len(old), len(new)), random_state=seed)
        incremental_cfg = run.model_copy(
            update={"train": run.train.model_copy(update={"epochs": run.train.warm_start_epochs})}
        )
        t0 = time.perf_counter()
        incremental = train_model(
            incremental_cfg,
            sidmap,
            catalog,
            pd.concat([new, replay], ignore_index=True),
            splits["valid"],
            out / f"incremental_s{seed}",
            init_from=production,
        )
        incremental_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        full = train_or_reuse(run, sidmap, catalog, splits["train"], splits["valid"], out / f"full_s{seed}")
        full_s = time.perf_counter() - t0
        results[seed] = {
            "production (old events)": {**_score(run, production, splits["valid"]), "minutes": production_s / 60},
            "incremental (production + new events)": {
                **_score(run, incremental, splits["valid"]),
                "minutes": incremental_s / 60,
            },
            "full retrain (all events)": {**_score(run, full, splits["valid"]), "minutes": full_s / 60},
        }
        print(
            json.dumps(
                {seed: {k: {m: v[m] for m in ("HR@10", "NDCG@10", "minutes")} for k, v in results[seed].items()}}
            )
        )
    return {"new_examples": len(new), "old_examples": len(old), "by_seed": results}


def reasoning(cfg: Config, out: Path, rows: int, production: Path | None) -> dict:
    splits = load_splits(cfg.path(cfg.data.splits_dir))
    catalog = read_catalog_for(cfg)
    sidmap = SidMap.load(cached_sid_map(cfg, out))
    if production is None:
        production = train_or_reuse(cfg, sidmap, catalog, splits["train"], splits["valid"], out / "production_full")
    served = Recommender.from_pretrained(production, beam_size=cfg.serving.beam_size)
    sample = splits["train"].sample(n=min(len(splits["train"]), cfg.reasoning.rationale_examples), random_state=0)
    frame = build_rationales(sample, Evidence.from_data(catalog, splits["train"], sid_codes(sidmap)))
    report = coverage(frame)
    t0 = time.perf_counter()
    reasoning_cfg = cfg.model_copy(
        update={"train": cfg.train.model_copy(update={"epochs": cfg.reasoning.epochs, "warmup_epochs": 0.0})}
    )
    reasoner_dir = train_reasoning(Recommender.from_pretrained(production), frame, reasoning_cfg, out / "reasoning")
    train_s = time.perf_counter() - t0
    reasoner = Recommender.from_pretrained(reasoner_dir, beam_size=cfg.serving.beam_size)
    table = compare_modes(served, reasoner, splits["valid"].head(rows), cfg.reasoning)
    print(table.to_markdown(index=False, floatfmt=".4f"))
    return {"coverage": report, "reasoning_train_minutes": train_s / 60, "modes": table.to_dict(orient="records")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["warm-start", "reasoning"])
    parser.add_argument("--config", default="configs/benchmark.yaml")
    parser.add_argument("--out", default="runs/loop")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--production", default=None, help="reasoning: a served model dir (default: train one)")
    parser.add_argument("--overrides", default="{}", help="JSON merged into the config")
    args = parser.parse_args()
    cfg = load_config(args.config, json.loads(args.overrides))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.what == "warm-start":
        result = warm_start(cfg, out, args.seeds)
    else:
        result = reasoning(cfg, out, args.rows, Path(args.production) if args.production else None)
    (out / f"{args.what}.json").write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()

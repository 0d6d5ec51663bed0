"""Compare preference-alignment settings on valid (training.align), starting from one supervised model fit on train.

    python -m experiments.align_on_valid --model runs/select/base_s0 --out runs/align \
        --variants '[["beta05", {"beta": 0.5}], ["sft", {"beta": 0.5, "sft_weight": 0.5}]]' [--full-valid]

The supervised model decodes align.rows training rows once (mined preferences cached in OUT/mined_*.pt, reused by
every variant with the same rows, negatives and seed); each variant starts from the supervised weights, picks
its epoch on the selection sample (the eval.max_examples valid rows training picked epochs on) and, with
--full-valid, is scored on the whole valid split. With --held-out, valid is cut in two halves by user (crc32 of
user_id): alignment mines half A, whose targets the model never fit, and every score (epoch pick, supervised
baseline, --full-valid) uses all of half B instead, so a gain from unseen rows can be told from one mined on the
model's own training rows (the count teacher is still fit on train). With --mine-from SPLIT, alignment mines the
rows of SPLIT (a split file in data.splits_dir that the model was not trained on: training rows held out of its
training, see experiments/heldout_splits.py) and the teacher is fit on train + SPLIT, each mined row's own
example left out as always; scores stay on valid. The guard's verdict (aligned vs
supervised on the sample) is recorded but not enforced here, so every variant gets its valid numbers. Test is
never touched. Writes OUT/NAME/ (the aligned model, result.json) and OUT/baseline.json (baseline_heldout.json:
the supervised model on the sample and, with --full-valid, on the whole split or half B).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import zlib
from pathlib import Path

import pandas as pd
import torch

from components.config import PROJECT_ROOT, load_config
from components.data.splits import load_split_examples, load_splits
from components.evaluation.evaluate import score_recommender
from components.runtime.recommender import Recommender
from components.training.align import (
    Preferences,
    mine_preferences,
    sample_rows,
    selection_rows,
    selection_score,
    train_preferences,
    write_aligned,
)
from components.training.teacher import build_teacher
from components.training.train import load_trained
from experiments.benchmark import KS


def valid_halves(valid: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Valid cut by user into halves A and B (crc32 of user_id even / odd): no user has rows on both sides."""
    odd = valid["user_id"].astype(str).map(lambda u: zlib.crc32(u.encode()) % 2 == 1)
    return valid[~odd], valid[odd]


def mined_for(supervised: Recommender, cfg, rows: pd.DataFrame, train: pd.DataFrame, path: Path) -> Preferences:
    """The supervised model's preferences on align.rows of `rows` (align.teacher fit on `train`), cached at
    `path`."""
    acfg = cfg.align
    if path.exists():
        return Preferences(**torch.load(path, weights_only=False))
    t0 = time.perf_counter()
    sample = sample_rows(rows, acfg)
    teacher = build_teacher(acfg.teacher, train, supervised.sidmap, acfg.teacher_rows, acfg.seed, sample.index)
    mined = mine_preferences(supervised, sample, acfg, cfg.eval.batch_size, teacher)
    logging.info("mined %d rows in %.0f s", len(mined.prompts), time.perf_counter() - t0)
    torch.save(vars(mined), path)
    return mined


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the supervised model directory (fit on train)")
    parser.add_argument("--out", default=str(PROJECT_ROOT / "runs" / "align"))
    parser.add_argument("--variants", required=True, help="JSON [[name, {align overrides}], ...]")
    parser.add_argument("--config", default=str(PROJECT_ROOT / "configs" / "benchmark.yaml"))
    parser.add_argument("--full-valid", action="store_true", help="also score each variant on the whole valid split")
    parser.add_argument("--held-out", action="store_true", help="mine valid half A; pick and score on half B")
    parser.add_argument("--mine-from", default=None, help="mine this split's rows (held out of the model's training)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base_cfg = load_config(args.config)
    torch.set_num_threads(base_cfg.train.torch_threads or 1)
    splits = load_splits(base_cfg.path(base_cfg.data.splits_dir))
    supervised = Recommender.from_pretrained(args.model, beam_size=base_cfg.serving.beam_size)
    pool, scored, tag = splits["train"], splits["valid"], ""
    teacher_fit = splits["train"]
    if args.held_out and args.mine_from:
        parser.error("--held-out and --mine-from pick the mined rows two ways: give one")
    if args.mine_from:
        held = load_split_examples(base_cfg.path(base_cfg.data.splits_dir), args.mine_from)
        teacher_fit = pd.concat([splits["train"], held], ignore_index=True)
        pool, tag = teacher_fit.iloc[len(splits["train"]) :], f"_{args.mine_from}"
    if args.held_out:
        pool, scored = valid_halves(splits["valid"])
        base_cfg = base_cfg.model_copy(update={"eval": base_cfg.eval.model_copy(update={"max_examples": len(scored)})})
        tag = "_heldout"
    select = selection_rows(scored, base_cfg)
    baseline_path = out / f"baseline{tag}.json"
    baseline = json.loads(baseline_path.read_text()) if baseline_path.exists() else {"model": args.model}
    if "select" not in baseline:
        baseline["select"] = selection_score(supervised, select, base_cfg.eval.batch_size)
    if args.full_valid and "valid" not in baseline:
        baseline["valid"] = score_recommender(supervised, scored, KS, base_cfg.eval.batch_size)
    baseline_path.write_text(json.dumps(baseline, indent=2))
    logging.info("supervised: %s", json.dumps(baseline))
    for name, overrides in json.loads(args.variants):
        cfg = load_config(args.config, {"align": overrides})
        acfg = cfg.align
        teacher = "" if acfg.teacher == "transitions" else f"_{acfg.teacher}{acfg.teacher_rows}"
        cache = out / f"mined{tag}_r{acfg.rows}_n{acfg.negatives}_s{acfg.seed}{teacher}.pt"
        mined = mined_for(supervised, cfg, pool, teacher_fit, cache)
        t0 = time.perf_counter()
        policy, _ = load_trained(Path(args.model))
        aligned = supervised.with_models([policy])
        result = train_preferences(aligned, mined, cfg.align, select, None, cfg.eval.batch_size)
        seconds = time.perf_counter() - t0
        if result.state is None:
            logging.warning("%s: %s", name, result.status)
            (out / f"{name}.json").write_text(json.dumps({"name": name, "status": result.status, **result.record}))
            continue
        policy.load_state_dict(result.state)
        best = max(result.record["epochs"], key=lambda e: e["select"][cfg.align.metric])
        gain = best["select"][cfg.align.metric] - baseline["select"][cfg.align.metric]
        summary = {
            "name": name,
            "overrides": overrides,
            "held_out": args.held_out,
            "mine_from": args.mine_from,
            "status": result.status,
            "guard": "aligned" if gain > cfg.align.min_gain else "supervised",
            "best_epoch": best["epoch"],
            "select": best["select"],
            "supervised_select": baseline["select"],
            "align_seconds": round(seconds, 1),
            "epochs": result.record["epochs"],
        }
        if args.full_valid:
            summary["valid"] = score_recommender(aligned, scored, KS, cfg.eval.batch_size)
        write_aligned(Path(args.model), out / name, policy, summary)
        (out / f"{name}.json").write_text(json.dumps(summary, indent=2))
        print(
            json.dumps(
                {k: summary[k] for k in ("name", "guard", "select", "align_seconds")} | {"valid": summary.get("valid")}
            )
        )


if __name__ == "__main__":
    main()

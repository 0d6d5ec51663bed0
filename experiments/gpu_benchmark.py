"""The generative model on a GPU under the benchmark protocol, with the training variant itself chosen on valid.

    python -m experiments.gpu_benchmark --config configs/benchmark_smollm2.yaml \
        --variant lr3e-4='{"train": {"lr": 3e-4}}' --variant lr1e-4='{"train": {"lr": 1e-4}}' --out runs/gpu

Phase 1 trains every variant on train at once (one process each: a 135M model leaves most of a big GPU idle),
each picking its epoch on a valid sample and scoring the whole valid split (experiments/select_on_valid.py).
Phase 2 takes the variant with the best full-valid HR@10, retrains it on train + valid for its selected epochs
and scores test once. Test plays no part in any choice. Writes summary.json and table.md under --out.
Phase 2 rebuilds the SIDs from the train- and valid-period events (benchmark.final_test), which needs the
content encoder or its embedding cache (.cache/sidrec/embeddings: carry it to a machine without the encoder).
A variant still running at --phase1-seconds is stopped (by PID) and reported as unfinished.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from components.config import PROJECT_ROOT, load_config
from components.data.ingest import read_catalog_for
from components.data.splits import load_splits
from experiments.benchmark import (
    best_variant,
    cached_sid_map,
    final_test,
    markdown_table,
    run_variants,
    selected_epochs,
)

log = logging.getLogger("gpu_benchmark")


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, overrides = text.partition("=")
    if not name or not overrides:
        raise argparse.ArgumentTypeError(f"--variant takes NAME=JSON, got {text!r}")
    return name, json.loads(overrides)


def run_phase1(args, variants: list[tuple[str, dict]], select_root: Path) -> dict[str, dict]:
    def command(name: str, overrides: dict) -> list[str]:
        cmd = [sys.executable, "-m", "experiments.select_on_valid", name, json.dumps(overrides)]
        cmd += ["--config", args.config, "--out", str(select_root)]
        return cmd + (["--valid-limit", str(args.valid_limit)] if args.valid_limit else [])

    return run_variants(variants, command, select_root, args.phase1_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(PROJECT_ROOT / "configs" / "benchmark_smollm2.yaml"))
    parser.add_argument("--variant", action="append", type=parse_variant, required=True)
    parser.add_argument("--out", default=str(PROJECT_ROOT / "runs" / "gpu_benchmark"))
    parser.add_argument("--sid-map", help="a SID map built with the config's SID settings on train-period events")
    parser.add_argument("--phase1-seconds", type=float, default=3600)
    parser.add_argument("--valid-limit", type=int, help="score variants on the first N valid rows (smoke runs)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    cfg = load_config(args.config)
    out = Path(args.out)
    select_root = out / "select"
    select_root.mkdir(parents=True, exist_ok=True)
    cached_sid_map(cfg, select_root, args.sid_map)  # once here, not in every variant at the same time
    if cfg.model.backbone == "smollm2-135m":  # convert the GGUF once, before the variants race to do it
        from components.pretrained import smollm2_dir

        smollm2_dir()
    t0 = time.perf_counter()
    phase1 = run_phase1(args, args.variant, select_root)
    log.info("phase 1 done in %.0f s: %s", time.perf_counter() - t0, {k: v.get("valid") for k, v in phase1.items()})
    scored = {k: v for k, v in phase1.items() if "valid" in v}
    summary: dict = {"config": args.config, "variants": phase1, "phase1_seconds": round(time.perf_counter() - t0, 1)}
    best = best_variant(phase1)
    if best is not None:
        overrides = dict(args.variant)[best]
        best_cfg = load_config(args.config, overrides)
        splits = load_splits(best_cfg.path(best_cfg.data.splits_dir))
        catalog = read_catalog_for(best_cfg)
        epochs = selected_epochs(select_root / best, best_cfg.train.epochs)
        log.info("phase 2: %s, %s epochs on train + valid", best, epochs)
        final = final_test(best_cfg, catalog, splits, epochs, out / "model_final")
        name = f"sidrec generative ({best_cfg.model.backbone}, {best}, {best_cfg.train.device})"
        summary.update({"selected": best, "overrides": overrides, **final})
        table = markdown_table(
            {
                "test": {name: final["test"]},
                "valid": {
                    f"sidrec generative ({best_cfg.model.backbone}, {k})": {
                        **v["valid"],
                        "train_seconds": v["train_seconds"],
                    }
                    for k, v in scored.items()
                },
            },
            time_label=f"{best_cfg.train.device} train s",
        )
        (out / "table.md").write_text(table)
        print(table)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps({k: summary[k] for k in summary if k != "variants"}, default=str))


if __name__ == "__main__":
    main()

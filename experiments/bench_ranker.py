"""What the ranking stage costs per request on its own: pooling the count candidates, their features and the
LightGBM scores, after the beam search (which this script runs once, untimed).

    python -m experiments.bench_ranker --ranker runs/benchmark_replay/ranker --model runs/benchmark_replay/model_final \
        [--model ..._seed1 ...] [--split test] [--limit 1500] [--batch 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from components.config import PROJECT_ROOT, load_config
from components.data.splits import load_split_examples
from components.runtime.recommender import Recommender, servable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranker", required=True)
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--config", default=str(PROJECT_ROOT / "configs" / "benchmark.yaml"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    cfg = load_config(args.config)
    examples = load_split_examples(cfg.path(cfg.data.splits_dir), args.split).head(args.limit)
    histories = [[str(i) for i in h] for h in examples["history"]]
    recommender = Recommender.from_pretrained(  # one model or the models decoded together, with the ranker
        [Path(m) for m in args.model],
        device=cfg.train.device,
        beam_size=cfg.serving.beam_size,
        ranker=Path(args.ranker),
    )
    beams = recommender.generate(histories, recommender.beam_size, batch_size=args.batch)  # what the stage reads
    ranker, sidmap = recommender.ranker, recommender.sidmap
    ms = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for s in range(0, len(histories), args.batch):
            rows = histories[s : s + args.batch]
            ranker.rank(rows, beams[s : s + args.batch], 10, sidmap, [servable(sidmap)] * len(rows))
        ms.append(1000 * (time.perf_counter() - t0) / len(histories))
    print(json.dumps({"rows": len(histories), "batch": args.batch, "ranker_ms_per_request": [round(m, 3) for m in ms]}))


if __name__ == "__main__":
    main()

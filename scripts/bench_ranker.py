"""What the ranking stage costs per request on its own: pooling the count candidates, their features and the
LightGBM scores, after the beam search (which this script runs once, untimed).

    python scripts/bench_ranker.py --ranker runs/benchmark_replay/ranker --model runs/benchmark_replay/model_final \
        [--model ..._seed1 ...] [--split test] [--limit 1500] [--batch 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from components.config import PROJECT_ROOT, load_config
from components.data.splits import load_split_examples
from components.decoding.recommend import recommend_items, servable
from components.evaluation.evaluate import load_for_decoding
from components.ranking.artifact import RankerArtifact


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
    model, tokenizer, trie, sidmap = load_for_decoding([Path(m) for m in args.model], cfg.train.device)
    beam = cfg.eval.beam_size
    beams = recommend_items(model, tokenizer, trie, sidmap, histories, beam, beam, None, args.batch)
    ranker = RankerArtifact.load(Path(args.ranker))
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

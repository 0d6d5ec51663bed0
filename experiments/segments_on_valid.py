"""Where the generator wins and loses against counting, on valid only (fit on train): the rows split by what the
training transitions know about their target, each segment scored for the served models, last-item Markov and
the history's nearest items in content (runtime.content, the SIDs' content encoder).

    python -m experiments.segments_on_valid runs/select/sv_s0 runs/select/sv_s1 runs/select/sv_s2 \
        [--config configs/benchmark.yaml] [--beam-size 50] [--limit N] [--out runs/segments]

Segments (TransitionTable of the train rows, as the Markov baseline and the blend count them):
- repeat: the target is already in the history;
- last item -> target seen once / twice / 3+ times: the target follows the last item in the train rows;
- earlier item -> target: it follows another history item only;
- no count: no training transition from the history leads to it (only content and the model's generalisation
  can find it).
Why: a lever is worth trying where the generator trails counting, and a segment table says how many rows such a
lever can move at most. Several model directories are decoded together, as served. Test is never read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from components.config import PROJECT_ROOT
from components.data.ingest import read_catalog_for
from components.data.splits import load_split_examples
from components.evaluation.baselines import LastItemMarkov
from components.metrics import hit_rate_ndcg
from components.runtime.content import ContentIndex
from components.runtime.transitions import TransitionTable
from experiments.try_decoding_on_valid import decoding_parser, valid_recommender

K = 10
SEGMENTS = (
    "repeat",
    "last item -> target seen once",
    "last item -> target seen twice",
    "last item -> target seen 3+ times",
    "earlier item -> target",
    "no count",
)


def segment(history: Sequence[str], target: str, table: TransitionTable) -> str:
    """The row's segment (SEGMENTS) by what `table` counted about its target."""
    if target in history:
        return "repeat"
    seen = table.successors.get(history[-1], {}).get(target, 0) if len(history) else 0
    if seen:
        return SEGMENTS[min(seen, 3)]
    if any(target in table.successors.get(item, {}) for item in history[:-1]):
        return "earlier item -> target"
    return "no count"


def segment_table(
    histories: Sequence[Sequence[str]],
    targets: Sequence[str],
    ranked: dict[str, Sequence[Sequence[str]]],
    table: TransitionTable,
) -> dict[str, dict]:
    """segment -> {rows, share, and HR@K / NDCG@K of each ranking in `ranked` on the segment's rows}; the
    segments in SEGMENTS order (empty ones left out), then "all"."""
    labels = [segment(list(h), t, table) for h, t in zip(histories, targets, strict=True)]
    out: dict[str, dict] = {}
    for name in (*SEGMENTS, "all"):
        rows = [r for r, label in enumerate(labels) if name in ("all", label)]
        if not rows:
            continue
        entry: dict = {"rows": len(rows), "share": len(rows) / len(labels)}
        for who, lists in ranked.items():
            metrics = hit_rate_ndcg([list(lists[r])[:K] for r in rows], [targets[r] for r in rows], [K])
            entry[who] = {f"HR@{K}": metrics[f"HR@{K}"], f"NDCG@{K}": metrics[f"NDCG@{K}"]}
        out[name] = entry
    return out


def main(argv: list[str] | None = None) -> None:
    parser = decoding_parser(__doc__, "runs/segments")
    args = parser.parse_args(argv)
    cfg, examples, recommender = valid_recommender(args)
    markov = LastItemMarkov().fit(load_split_examples(cfg.path(cfg.data.splits_dir), "train"))
    histories = [[str(i) for i in h] for h in examples["history"]]
    targets = examples["target"].astype(str).tolist()
    model = [[item for item, _ in row] for row in recommender.recommend(histories, K, batch_size=cfg.eval.batch_size)]
    content = ContentIndex.from_catalog(read_catalog_for(cfg), cfg.sids.content_encoder)
    neighbours = [[item for item, _ in content.neighbours(h, K)] for h in histories]
    ranked = {"model": model, "markov": markov.recommend(histories, K), "content": neighbours}
    result = segment_table(histories, targets, ranked, markov.table)  # the segments read Markov's own counts
    out = PROJECT_ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    record = {"models": args.model_dirs, "beam_size": recommender.beam_size, "rows": len(targets), "segments": result}
    (out / "segments.json").write_text(json.dumps(record, indent=2))
    print(
        f"| segment | rows | share | model HR@{K} / NDCG@{K} | Markov HR@{K} / NDCG@{K} | content HR@{K} / NDCG@{K} |"
    )
    print("|---|---|---|---|---|---|")
    for name, entry in result.items():
        cells = " | ".join(f"{entry[w][f'HR@{K}']:.4f} / {entry[w][f'NDCG@{K}']:.4f}" for w in ranked)
        print(f"| {name} | {entry['rows']} | {entry['share']:.3f} | {cells} |")


if __name__ == "__main__":
    main()

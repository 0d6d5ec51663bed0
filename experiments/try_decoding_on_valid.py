"""Other ways to score a SID level inside the constrained beam, on valid only (fit on train): decoding levers that
need no training, scored on the served lists.

    python -m experiments.try_decoding_on_valid runs/align/ls1_s0_i runs/align/ls1_s1_i \
        [--variants served mean_logprob level_norm] [--beam-size 50] [--limit N] [--out runs/decoding]

The served rule (runtime.beam._members_logprobs) scores a code by the log of the members' mean probability, each
member normalised over the full vocabulary, as the model was trained. The variants:
- "served": that rule (the reference; must reproduce `sidrec evaluation model`);
- "mean_logprob": the mean of the members' log-probabilities (a product of experts): an item needs every seed's
  agreement, where the mean probability lets one confident seed carry it;
- "level_norm": each member's log-probabilities renormalised over the level's codes before the mean: the mass a
  member puts on non-SID tokens after a prefix no longer lowers that prefix against the others.
Each variant is applied by swapping the runtime.beam function it changes (the members' combination, or one
member's level scores) for the run and restoring it afterwards, so the served code stays the one the product
runs. Writes OUT/<variant>.json per variant. Test is never read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import torch

from components.config import PROJECT_ROOT, Config, load_config
from components.data.splits import load_split_examples
from components.errors import SidrecError
from components.evaluation.evaluate import score_recommender
from components.runtime import beam
from components.runtime.recommender import Recommender

Scorer = Callable[..., torch.Tensor]


_SERVED_LEVEL = beam.level_logprobs


def _mean_logprob(members, hiddens, trie, level: int) -> torch.Tensor:
    """In place of runtime.beam._members_logprobs: the members' mean log-probability."""
    logps = [_SERVED_LEVEL(m.head, h, trie, level, m.softmax) for m, h in zip(members, hiddens, strict=True)]
    return torch.stack(logps).mean(dim=0)


def _level_norm(head, hidden: torch.Tensor, trie, level: int, softmax: str = "vocab") -> torch.Tensor:
    """In place of runtime.beam.level_logprobs: one member's log-probabilities renormalised over the level's
    codes (the members are then combined as served)."""
    logp = _SERVED_LEVEL(head, hidden, trie, level, softmax)
    width = trie.level_sizes[level]
    normed = torch.full_like(logp, beam.NEG_INF)
    normed[:, :width] = torch.log_softmax(logp[:, :width], dim=-1)
    return normed


# variant -> the runtime.beam functions it replaces for its run
VARIANTS: dict[str, dict[str, Scorer]] = {
    "served": {},
    "mean_logprob": {"_members_logprobs": _mean_logprob},
    "level_norm": {"level_logprobs": _level_norm},
}


@contextmanager
def level_scorer(replaced: dict[str, Scorer]) -> Iterator[None]:
    """runtime.beam runs with `replaced` functions inside the block (empty: as served), restored after it."""
    served = {name: getattr(beam, name) for name in replaced}
    for name, fn in replaced.items():
        setattr(beam, name, fn)
    try:
        yield
    finally:
        for name, fn in served.items():
            setattr(beam, name, fn)


def score_variant(recommender: Recommender, examples, ks: list[int], batch_size: int, variant: str) -> dict:
    """The served metrics of `recommender` on examples with the variant's level scorer."""
    with level_scorer(VARIANTS[variant]):
        return score_recommender(recommender, examples, ks, batch_size)


def decoding_parser(doc: str, out: str) -> argparse.ArgumentParser:
    """The arguments every decoding experiment on valid takes: the served model directories (several: decoded
    together), the config, the beam width, a row limit and the output path."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("model_dirs", nargs="+")
    parser.add_argument("--config", default="configs/benchmark.yaml")
    parser.add_argument("--beam-size", type=int, default=None)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", default=out)
    return parser


def valid_recommender(args: argparse.Namespace) -> tuple[Config, pd.DataFrame, Recommender]:
    """(config, valid examples, the models served as one recommender at the chosen beam width). A bad config,
    split or model directory exits with its one-line message (SystemExit), not a traceback."""
    try:
        cfg = load_config(args.config)
        examples = load_split_examples(cfg.path(cfg.data.splits_dir), "valid")
        examples = examples.head(args.limit) if args.limit else examples
        dirs = args.model_dirs
        recommender = Recommender.from_pretrained(
            dirs if len(dirs) > 1 else dirs[0],
            device=cfg.train.device,
            dtype="float32",
            beam_size=args.beam_size or cfg.serving.beam_size,
        )
    except SidrecError as e:
        raise SystemExit(f"{Path(sys.argv[0]).stem}: {e}") from None
    return cfg, examples, recommender


def main(argv: list[str] | None = None) -> None:
    parser = decoding_parser(__doc__, "runs/decoding")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args(argv)
    cfg, examples, recommender = valid_recommender(args)
    dirs, beam_size = args.model_dirs, recommender.beam_size
    out = PROJECT_ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    for variant in args.variants:
        metrics = score_variant(recommender, examples, cfg.eval.ks, cfg.eval.batch_size, variant)
        record = {"models": dirs, "variant": variant, "beam_size": beam_size, "rows": len(examples), "valid": metrics}
        (out / f"{variant}.json").write_text(json.dumps(record, indent=2))
        print(variant, f"HR@10 {metrics['HR@10']:.4f} NDCG@10 {metrics['NDCG@10']:.4f}", flush=True)


if __name__ == "__main__":
    main()

"""Benchmark: our KV-cache constrained beam search vs HF generate(prefix_allowed_tokens_fn), beam 20.

Prints a markdown table: backbone, batch, p50/p99 ms per request and requests/s for both, and the speed-up.
Usage: python -m experiments.bench_decoding [--backbones tiny smollm2-135m] [--requests 32] [--titles]

--titles puts a title after each history SID (the PLUM-style prompt, ~8x longer): HF repeats the whole prompt
for every beam, we encode it once, so the speed-up grows with the prompt length.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from components.config import ModelConfig
from components.runtime.backbone import load_backbone
from components.runtime.beam import constrained_beam_search
from components.runtime.language import SidTrie, format_prompt
from components.runtime.recommender import encode_prompts
from components.sids.sidmap import SidMap
from components.training.vocab import add_sid_tokens
from experiments.hf_reference import hf_constrained_generate


def ours(model, tokenizer, trie, prompts, beam, k):
    ids, mask = encode_prompts(tokenizer, prompts)
    return constrained_beam_search(model, ids, mask, trie, beam, k)


def timed(fn, batches):
    per_request = []
    t0 = time.perf_counter()
    for batch in batches:
        s = time.perf_counter()
        fn(batch)
        per_request += [(time.perf_counter() - s) * 1000] * len(batch)  # latency of the batch each request saw
    total = time.perf_counter() - t0
    n = sum(len(b) for b in batches)
    return np.percentile(per_request, 50), np.percentile(per_request, 99), n / total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbones", nargs="+", default=["tiny", "smollm2-135m"])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--beam", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--titles", action="store_true", help="history prompts with item titles")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    codes = np.unique(rng.integers(0, 256, size=(4000, 3)), axis=0)[:3686]
    sidmap = SidMap([f"i{i}" for i in range(len(codes))], codes, [256, 256, 256], "bench")
    words = "digital caliper steel hex key set nitrile gloves safety glasses lab beaker tape measure".split()
    titles = {i: " ".join(rng.choice(words, size=6)) for i in sidmap.item_ids} if args.titles else None
    print(f"prompt: {'SIDs + titles' if args.titles else 'SIDs only'}, beam {args.beam}, {args.threads} thread(s)")
    print("| backbone | batch | HF p50 ms | HF p99 ms | HF req/s | ours p50 ms | ours p99 ms | ours req/s | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|")
    for backbone in args.backbones:
        model, tokenizer = load_backbone(ModelConfig(backbone=backbone, tiny_hidden_size=256, tiny_layers=4))
        add_sid_tokens(model, tokenizer, sidmap)
        model.eval()
        trie = SidTrie.from_sidmap(sidmap, tokenizer)
        prompts = [
            format_prompt(list(rng.choice(sidmap.item_ids, size=10)), sidmap, titles) for _ in range(args.requests)
        ]
        for batch in (1, 16):
            batches = [prompts[i : i + batch] for i in range(0, len(prompts), batch)]
            with torch.inference_mode():
                ours(model, tokenizer, trie, batches[0], args.beam, args.beam)  # warm-up
                hf = timed(
                    lambda b, m=model, t=tokenizer, r=trie: hf_constrained_generate(m, t, r, b, args.beam, args.beam),
                    batches,
                )
                mine = timed(lambda b, m=model, t=tokenizer, r=trie: ours(m, t, r, b, args.beam, args.beam), batches)
            print(
                f"| {backbone} | {batch} | {hf[0]:.0f} | {hf[1]:.0f} | {hf[2]:.2f} | {mine[0]:.0f} | {mine[1]:.0f} "
                f"| {mine[2]:.2f} | {mine[2] / hf[2]:.1f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()

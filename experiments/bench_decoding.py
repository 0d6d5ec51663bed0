"""Benchmark: constrained beam search vs HF generate(prefix_allowed_tokens_fn) and vs the floor, beam 20.

For each backbone and batch size, every batch of prompts is timed in turn (same round, same machine state):
- HF: generate() with prefix_allowed_tokens_fn (experiments.hf_reference), the reference our results must equal;
- ours: runtime.beam.constrained_beam_search with the lean Llama runner (the default), and with the HF runner
  (the model's own forward and cache) to show what the runner buys;
- floor: only the forward passes no search can avoid, each timed on its own: the model's forward on the prompts
  (logits of the last position), then one forward per further SID level on B x beam one-token rows against the
  prompt's cache. Cache expansion, reordering, log-softmax and top-k are outside the floor.

Ratios are per batch in the same round (HF / ours, ours / floor), then the median: on a shared, loaded machine a
ratio holds where absolute times drift. "top-k = HF" is the share of requests whose top-k SIDs (in order) equal
HF's. With --dtype bfloat16 both run in bf16 and "top-k = fp32" compares ours with our own float32 results.
--profile prints where one request's time goes (runtime.beam's record_function labels) and the top operators.

Usage: python -m experiments.bench_decoding [--backbones smollm2-135m tiny] [--batches 1 16] [--requests 8]
       [--rounds 3] [--threads 1] [--dtype float32] [--titles] [--profile] [--no-hf]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np
import torch

from components.config import ModelConfig
from components.runtime.backbone import load_backbone
from components.runtime.beam import constrained_beam_search
from components.runtime.language import SidTrie, format_prompt
from components.runtime.recommender import encode_prompts
from components.sids.sidmap import SidMap
from components.training.vocab import add_sid_tokens
from experiments.hf_reference import hf_constrained_generate, sequences_to_codes


def bench_sidmap(seed: int = 0) -> SidMap:
    """3,686 items on 3 levels of 256 codes (amazon-industrial's size), random codes."""
    rng = np.random.default_rng(seed)
    codes = np.unique(rng.integers(0, 256, size=(4000, 3)), axis=0)[:3686]
    return SidMap([f"i{i}" for i in range(len(codes))], codes, [256, 256, 256], "bench")


def bench_prompts(sidmap: SidMap, n: int, titles: bool, seed: int = 0) -> list[str]:
    """n prompts of 10 random history items (SIDs only, or each SID followed by a title)."""
    rng = np.random.default_rng(seed)
    words = "digital caliper steel hex key set nitrile gloves safety glasses lab beaker tape measure".split()
    names = {i: " ".join(rng.choice(words, size=6)) for i in sidmap.item_ids} if titles else None
    return [format_prompt(list(rng.choice(sidmap.item_ids, size=10)), sidmap, names) for _ in range(n)]


def load_model(backbone: str, sidmap: SidMap, dtype: torch.dtype):
    model, tokenizer = load_backbone(ModelConfig(backbone=backbone, tiny_hidden_size=256, tiny_layers=4))
    add_sid_tokens(model, tokenizer, sidmap)
    return model.eval().to(dtype), tokenizer


def ours(model, tokenizer, trie, prompts, beam, runner="auto") -> list[list[tuple[int, ...]]]:
    ids, mask = encode_prompts(tokenizer, prompts)
    result = constrained_beam_search(model, ids, mask, trie, beam, beam, runner=runner)
    return [[tuple(c) for c in row] for row in result.codes.tolist()]


def hf(model, tokenizer, trie, prompts, beam) -> list[list[tuple[int, ...]]]:
    out = hf_constrained_generate(model, tokenizer, trie, prompts, beam, beam)
    start = encode_prompts(tokenizer, prompts)[0].shape[1]
    codes = sequences_to_codes(trie, out.sequences, start)
    return [codes[i * beam : (i + 1) * beam] for i in range(len(prompts))]


@torch.inference_mode()
def floor_seconds(model, tokenizer, trie, prompts, beam) -> float:
    """The forward passes alone: prompt pass + one B x beam step per further SID level (module docstring)."""
    ids, mask = encode_prompts(tokenizer, prompts)
    pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
    t0 = time.perf_counter()
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
    total = time.perf_counter() - t0
    cache = out.cache
    cache.batch_repeat_interleave(beam)
    mask = mask.repeat_interleave(beam, 0)
    next_pos = pos[:, -1:].repeat_interleave(beam, 0) + 1
    for level in range(trie.n_levels - 1):
        rows = torch.arange(mask.shape[0]) % trie.level_sizes[level]
        tokens = trie.level_token_ids[level][rows].unsqueeze(1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
        t0 = time.perf_counter()
        out = model(input_ids=tokens, attention_mask=mask, position_ids=next_pos, cache=cache, logits_to_keep=1)
        total += time.perf_counter() - t0
        cache, next_pos = out.cache, next_pos + 1
    return total


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def measure(model, tokenizer, trie, batches, beam: int, rounds: int, with_hf: bool, reference=None) -> dict:
    """Per-request latencies and paired per-batch ratios over `rounds` rounds; result equality in round 0."""
    times, ratios = defaultdict(list), defaultdict(list)
    same_hf = same_fp32 = n = 0
    for round_ in range(rounds):
        for chunk in batches:
            t_ours, got = timed(ours, model, tokenizer, trie, chunk, beam)
            t_hfr, _ = timed(ours, model, tokenizer, trie, chunk, beam, "hf")
            t_floor = floor_seconds(model, tokenizer, trie, chunk, beam)
            for name, t in (("ours", t_ours), ("hfrunner", t_hfr), ("floor", t_floor)):
                times[name] += [t * 1000] * len(chunk)  # the latency each request of the batch saw
            ratios["hfrunner"].append(t_hfr / t_ours)
            ratios["floor"].append(t_ours / t_floor)
            if with_hf:
                t_hf, want = timed(hf, model, tokenizer, trie, chunk, beam)
                times["hf"] += [t_hf * 1000] * len(chunk)
                ratios["hf"].append(t_hf / t_ours)
                if round_ == 0:
                    same_hf += sum(g == w for g, w in zip(got, want, strict=True))
            if round_ == 0:
                n += len(chunk)
                if reference is not None:
                    exact = ours(reference, tokenizer, trie, chunk, beam)
                    same_fp32 += sum(g == w for g, w in zip(got, exact, strict=True))
    row = {f"{k}_p50": float(np.median(v)) for k, v in times.items()}
    row.update({f"{k}_ratio": float(np.median(v)) for k, v in ratios.items()})
    row["same_hf"] = f"{same_hf}/{n}" if with_hf else "-"
    row["same_fp32"] = f"{same_fp32}/{n}" if reference is not None else "-"
    return row


def table_row(label: str, batch: int, row: dict) -> str:
    def ms(name: str) -> str:
        return f"{row[name + '_p50']:.0f}" if name + "_p50" in row else "-"

    def ratio(name: str) -> str:
        return f"{row[name + '_ratio']:.2f}x" if name + "_ratio" in row else "-"

    return (
        f"| {label} | {batch} | {ms('hf')} | {ms('ours')} | {ms('hfrunner')} | {ms('floor')} | {ratio('hf')} "
        f"| {ratio('hfrunner')} | {ratio('floor')} | {row['same_hf']} | {row['same_fp32']} |"
    )


def profile_one(model, tokenizer, trie, prompts, beam) -> None:
    """Where one search's time goes: the runtime.beam phases, then the top operators by self time."""
    from torch.profiler import ProfilerActivity, profile

    ours(model, tokenizer, trie, prompts, beam)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        ours(model, tokenizer, trie, prompts, beam)
        wall = (time.perf_counter() - t0) * 1000
    events = {e.key: e for e in prof.key_averages()}
    phases = {k: events[k].cpu_time_total / 1000 for k in ("beam.prefill", "beam.step", "beam.logprobs") if k in events}
    print(f"\nprofile, batch {len(prompts)}: {wall:.0f} ms wall")
    for name, ms in phases.items():
        print(f"  {name:<14} {ms:8.1f} ms  {100 * ms / wall:5.1f}%")
    rest = wall - sum(phases.values())
    print(f"  {'the rest':<14} {rest:8.1f} ms  {100 * rest / wall:5.1f}%  (tokenizing, top-k, trie lookups, gathers)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["smollm2-135m", "tiny"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--requests", type=int, default=8, help="prompts per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--beam", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--titles", action="store_true", help="history prompts with item titles")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--no-hf", action="store_true", help="skip HF generate (ours vs floor only)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    sidmap = bench_sidmap()
    prompts = bench_prompts(sidmap, args.requests, args.titles)
    print(
        f"prompt: {'SIDs + titles' if args.titles else 'SIDs only'}, beam {args.beam}, top {args.beam}, "
        f"{args.threads} thread(s), {args.dtype}, {args.requests} requests x {args.rounds} rounds"
    )
    print(
        "| backbone | batch | HF p50 ms | ours p50 ms | ours, HF runner p50 ms | floor p50 ms | HF / ours "
        "| HF runner / ours | ours / floor | top-k = HF | top-k = fp32 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for backbone in args.backbones:
        model, tokenizer = load_model(backbone, sidmap, dtype)
        reference = load_model(backbone, sidmap, torch.float32)[0] if dtype != torch.float32 else None
        trie = SidTrie.from_sidmap(sidmap, tokenizer)
        prompt_tokens = encode_prompts(tokenizer, prompts[:1])[0].shape[1]
        for batch in args.batches:
            batches = [prompts[i : i + batch] for i in range(0, len(prompts), batch)]
            ours(model, tokenizer, trie, batches[0], args.beam)  # warm-up
            floor_seconds(model, tokenizer, trie, batches[0], args.beam)
            row = measure(model, tokenizer, trie, batches, args.beam, args.rounds, not args.no_hf, reference)
            print(table_row(f"{backbone} ({prompt_tokens} prompt tokens)", batch, row), flush=True)
            if args.profile:
                profile_one(model, tokenizer, trie, batches[0], args.beam)


if __name__ == "__main__":
    main()

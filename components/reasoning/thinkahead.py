"""OneRec-Think: reasoning fine-tuning, offline think-ahead prefixes, and runtime completion.

Reasoning is expensive, so it runs offline: per user, T sampled reasoning paths, each followed by a
constrained beam search over the first two SID levels; the pooled 2-token prefixes are stored per user.
At request time the model only completes the last level inside those prefixes (one decode step), which is
cheap enough to serve; a user without prefixes falls back to full decoding.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from components.decoding.beam import constrained_beam_search
from components.decoding.recommend import encode_prompts
from components.decoding.trie import SidTrie
from components.model.prompts import format_history_prompt
from components.sids.sidmap import SidMap, sid_string

THINK, END_THINK = " <think>", " </think>"
PREFIX_LEVELS = 2


def reasoning_examples(frame: pd.DataFrame, sidmap: SidMap) -> list[tuple[str, str]]:
    """(history prompt, " <think> rationale </think>" + target SID) pairs from build_rationales output."""
    return [
        (format_history_prompt(list(r.history), sidmap), f"{THINK} {r.rationale}{END_THINK}{sidmap.sid_of(r.target)}")
        for r in frame.itertuples(index=False)
        if r.target in sidmap
    ]


def prefix_trie(sidmap: SidMap, tokenizer, levels: int = PREFIX_LEVELS) -> SidTrie:
    """A trie over the distinct `levels`-long SID prefixes (the same tokens as the full SIDs)."""
    prefixes = np.array(sorted({tuple(r[:levels]) for r in sidmap.codes.tolist()}), dtype=np.int64)
    pmap = SidMap([sid_string(p) for p in prefixes], prefixes, sidmap.codebook_sizes[:levels], sidmap.version)
    return SidTrie.from_sidmap(pmap, tokenizer)


@torch.inference_mode()
def sample_rationales(
    model, tokenizer, prompts: list[str], n_paths: int, max_new_tokens: int, temperature: float
) -> list[list[str]]:
    """n_paths sampled continuations of `prompt + <think>` per prompt, cut at </think>."""
    eos = tokenizer.convert_tokens_to_ids("</think>") if "</think>" in tokenizer.get_vocab() else None
    ids, mask = encode_prompts(tokenizer, [p + THINK for p in prompts])
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        do_sample=n_paths > 1 or temperature > 0,
        temperature=max(temperature, 1e-3),
        top_k=None,
        top_p=None,
        max_new_tokens=max_new_tokens,
        num_return_sequences=n_paths,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=eos,
    )
    texts = tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=False)
    cleaned = [t.split("</think>")[0].replace(tokenizer.pad_token or "", "").strip() for t in texts]
    return [cleaned[i * n_paths : (i + 1) * n_paths] for i in range(len(prompts))]


def think_ahead(
    model_dir: Path, users: pd.DataFrame, cfg, out_dir: Path, shard: int = 0, n_shards: int = 1, batch_size: int = 8
) -> Path:
    """Write prefixes-{shard}-of-{n}.parquet: per user the pooled top 2-token SID prefixes with scores."""
    from components.model.backbone import load_trained, model_info

    model, tokenizer, sidmap = load_trained(model_dir)
    info = model_info(model_dir)
    torch.manual_seed(cfg.train.seed + shard)
    users = users.sort_values("user_id").reset_index(drop=True)
    mine = users[users.index % n_shards == shard]
    ptrie = prefix_trie(sidmap, tokenizer)
    rc = cfg.reasoning
    rows = []
    for start in range(0, len(mine), batch_size):
        chunk = mine.iloc[start : start + batch_size]
        prompts = [format_history_prompt(list(h), sidmap) for h in chunk["history"]]
        paths = sample_rationales(model, tokenizer, prompts, rc.paths_per_user, rc.max_rationale_tokens, rc.temperature)
        flat = [p + f"{THINK} {r}{END_THINK}" for p, rs in zip(prompts, paths, strict=True) for r in rs]
        ids, mask = encode_prompts(tokenizer, flat)
        beam = max(rc.prefixes_per_path, 5)
        result = constrained_beam_search(model, ids, mask, ptrie, beam, rc.prefixes_per_path)
        for u, user_id in enumerate(chunk["user_id"]):
            pooled: dict[tuple[int, int], float] = {}
            for p in range(rc.paths_per_user):
                r = u * rc.paths_per_user + p
                for codes, score in zip(result.codes[r].tolist(), result.scores[r].tolist(), strict=True):
                    if math.isfinite(score):  # pool paths: a prefix's probability summed over paths
                        key = tuple(codes)
                        pooled[key] = pooled.get(key, 0.0) + math.exp(score) / rc.paths_per_user
            best = sorted(pooled.items(), key=lambda kv: -kv[1])
            rows.append(
                {
                    "user_id": str(user_id),
                    "prefixes": [f"{a}_{b}" for (a, b), _ in best],
                    "scores": [float(s) for _, s in best],
                    "rationale": paths[u][0][:300],
                }
            )
    frame = pd.DataFrame(rows, columns=["user_id", "prefixes", "scores", "rationale"])
    frame["model_version"] = info.get("artifact_version") or Path(model_dir).name
    frame["sid_version"] = sidmap.version
    frame["created_at"] = pd.Timestamp(datetime.now(UTC))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"prefixes-{shard:03d}-of-{n_shards:03d}.parquet"
    tmp = path.with_suffix(".tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path


def parse_prefixes(values) -> list[tuple[int, int]]:
    """["12_7", ...] -> [(12, 7), ...]"""
    return [tuple(int(c) for c in v.split("_")) for v in ([] if values is None else values)]


def load_prefixes(path_or_dir: Path) -> dict[str, list[tuple[int, int]]]:
    path = Path(path_or_dir)
    files = sorted(path.glob("prefixes-*.parquet")) if path.is_dir() else [path]
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else pd.DataFrame()
    return {u: parse_prefixes(p) for u, p in zip(frame.get("user_id", []), frame.get("prefixes", []), strict=True)}

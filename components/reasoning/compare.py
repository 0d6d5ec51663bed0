"""Quality and cost of the three inference modes: full decoding, reasoning then decoding, think-ahead + completion."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import torch

from components.decoding.beam import constrained_beam_search
from components.decoding.recommend import encode_prompts
from components.decoding.trie import SidTrie
from components.evaluation.metrics import hit_rate_ndcg
from components.model.prompts import format_history_prompt
from components.reasoning.thinkahead import END_THINK, THINK, load_prefixes, sample_rationales, think_ahead


def _decode(model, tokenizer, trie, prompts, k, beam, prefixes=None, batch_size=16):
    out = []
    for s in range(0, len(prompts), batch_size):
        ids, mask = encode_prompts(tokenizer, prompts[s : s + batch_size])
        res = constrained_beam_search(
            model, ids, mask, trie, beam, k, prefixes[s : s + batch_size] if prefixes else None
        )
        out += [[trie.item_ids[i] for i in row if i >= 0] for row in res.items.tolist()]
    return out


@torch.inference_mode()
def compare_modes(model_dir: Path, examples: pd.DataFrame, cfg, work_dir: Path, k: int = 10) -> pd.DataFrame:
    """One row per mode: HR@10, NDCG@10, online ms/request, offline ms/user (think-ahead only)."""
    from components.model.backbone import load_trained

    model, tokenizer, sidmap = load_trained(model_dir)
    trie = SidTrie.from_sidmap(sidmap, tokenizer)
    beam = max(cfg.eval.beam_size, k)
    targets = examples["target"].tolist()
    prompts = [format_history_prompt(list(h), sidmap) for h in examples["history"]]
    rows = []
    t0 = time.perf_counter()
    ranked = _decode(model, tokenizer, trie, prompts, k, beam)
    rows.append(("(a) full decoding", ranked, time.perf_counter() - t0, 0.0))
    t0 = time.perf_counter()
    rationales = sample_rationales(model, tokenizer, prompts, 1, cfg.reasoning.max_rationale_tokens, 0.0)
    thought = [p + f"{THINK} {r[0]}{END_THINK}" for p, r in zip(prompts, rationales, strict=True)]
    ranked = _decode(model, tokenizer, trie, thought, k, beam)
    rows.append(("(b) reasoning then decoding", ranked, time.perf_counter() - t0, 0.0))
    users = examples.assign(user_id=[f"row{i}" for i in range(len(examples))])[["user_id", "history"]]
    t0 = time.perf_counter()
    path = think_ahead(model_dir, users, cfg, Path(work_dir) / "prefixes")
    offline = time.perf_counter() - t0
    by_user = load_prefixes(path)
    prefixes = [by_user.get(u) or None for u in users["user_id"]]
    t0 = time.perf_counter()
    ranked = _decode(model, tokenizer, trie, prompts, k, beam, prefixes)
    rows.append(("(c) think-ahead prefixes + runtime completion", ranked, time.perf_counter() - t0, offline))
    out = []
    for name, ranked, seconds, offline_s in rows:
        m = hit_rate_ndcg(ranked, targets, [k])
        out.append(
            {
                "mode": name,
                f"HR@{k}": m[f"HR@{k}"],
                f"NDCG@{k}": m[f"NDCG@{k}"],
                "online ms/request": 1000 * seconds / len(examples),
                "offline ms/user": 1000 * offline_s / len(examples),
            }
        )
    return pd.DataFrame(out)

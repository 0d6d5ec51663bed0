"""Quality and cost of the three inference modes: full decoding, reasoning then decoding, think-ahead + completion."""

from __future__ import annotations

import time

import pandas as pd
import torch

from components.config import ReasoningConfig
from components.metrics import hit_rate_ndcg
from components.reasoning.thinkahead import prefixes_by_user, sample_rationales, think_ahead
from components.runtime.beam import constrained_beam_search
from components.runtime.language import END_THINK, THINK
from components.runtime.recommender import Recommender, encode_prompts


@torch.inference_mode()
def compare_modes(recommender: Recommender, examples: pd.DataFrame, cfg: ReasoningConfig, k: int = 10) -> pd.DataFrame:
    """One row per mode: HR@k, NDCG@k, online ms/request, offline ms/user (think-ahead only)."""
    targets = examples["target"].astype(str).tolist()
    histories = [list(h) for h in examples["history"]]
    rows = []
    t0 = time.perf_counter()
    ranked = [[i for i, _ in r] for r in recommender.generate(histories, k, batch_size=16)]
    rows.append(("(a) full decoding", ranked, time.perf_counter() - t0, 0.0))
    t0 = time.perf_counter()
    model, tokenizer = recommender.models[0], recommender.tokenizer
    prompts = recommender.prompts(histories)
    rationales = sample_rationales(model, tokenizer, prompts, 1, cfg.max_rationale_tokens, 0.0)
    thought = [p + f"{THINK} {r[0]}{END_THINK}" for p, r in zip(prompts, rationales, strict=True)]
    ranked = []
    for s in range(0, len(thought), 16):
        ids, mask = encode_prompts(tokenizer, thought[s : s + 16])
        res = constrained_beam_search(
            model,
            ids.to(recommender.device),
            mask.to(recommender.device),
            recommender.trie,
            max(recommender.beam_size, k),
            k,
        )
        ranked += [[recommender.trie.item_ids[i] for i in row if i >= 0] for row in res.items.tolist()]
    rows.append(("(b) reasoning then decoding", ranked, time.perf_counter() - t0, 0.0))
    users = pd.DataFrame({"user_id": [f"row{i}" for i in range(len(examples))], "history": histories})
    t0 = time.perf_counter()
    by_user = prefixes_by_user(think_ahead(recommender, users, cfg))
    offline = time.perf_counter() - t0
    prefixes = [by_user.get(u) or None for u in users["user_id"]]
    t0 = time.perf_counter()
    ranked = [[i for i, _ in r] for r in recommender.generate(histories, k, prefixes, batch_size=16)]
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

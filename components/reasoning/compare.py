"""Quality and cost of the three inference modes: full decoding, reasoning then decoding (online), and think-ahead
prefixes + runtime completion (the served mode: reasoning.gate compares it with full decoding)."""

from __future__ import annotations

import time

import pandas as pd
import torch

from components.config import ReasoningConfig
from components.metrics import hit_rate_ndcg
from components.reasoning.gate import reasoning_gate
from components.reasoning.thinkahead import sample_rationales
from components.runtime.beam import constrained_beam_search
from components.runtime.language import END_THINK, THINK
from components.runtime.recommender import Recommender, encode_prompts


@torch.inference_mode()
def reason_then_decode(reasoner: Recommender, histories: list[list[str]], cfg: ReasoningConfig, k: int = 10):
    """(a reasoning path written online before each SID, then the beam): the mode think-ahead moves offline."""
    prompts = reasoner.prompts(histories)
    model, tokenizer = reasoner.models[0], reasoner.tokenizer
    paths = sample_rationales(model, tokenizer, prompts, 1, cfg.max_rationale_tokens, 0.0)
    thought = [p + f"{THINK} {r[0]}{END_THINK}" for p, r in zip(prompts, paths, strict=True)]
    ranked = []
    for start in range(0, len(thought), 16):
        ids, mask = encode_prompts(tokenizer, thought[start : start + 16])
        res = constrained_beam_search(
            model, ids.to(reasoner.device), mask.to(reasoner.device), reasoner.trie, max(reasoner.beam_size, k), k
        )
        ranked += [[reasoner.trie.item_ids[i] for i in row if i >= 0] for row in res.items.tolist()]
    return ranked


def compare_modes(served: Recommender, reasoner: Recommender, examples: pd.DataFrame, cfg: ReasoningConfig):
    """One row per mode: HR@10, NDCG@10, online ms/request, offline ms/user."""
    gate = reasoning_gate(served, reasoner, examples, cfg)
    histories = [list(h) for h in examples["history"]]
    t0 = time.perf_counter()
    ranked = reason_then_decode(reasoner, histories, cfg)
    online = 1000 * (time.perf_counter() - t0) / max(len(examples), 1)
    online_metrics = hit_rate_ndcg(ranked, examples["target"].astype(str).tolist(), [10])
    full, think = gate["full_decoding"], gate["think_ahead"]
    rows = [
        ("(a) full decoding", full["HR@10"], full["NDCG@10"], full["online_ms_per_request"], 0.0),
        ("(b) reasoning then decoding", online_metrics["HR@10"], online_metrics["NDCG@10"], online, 0.0),
        (
            "(c) think-ahead prefixes + runtime completion",
            think["HR@10"],
            think["NDCG@10"],
            think["online_ms_per_request"],
            think["offline_ms_per_user"],
        ),
    ]
    columns = ["mode", "HR@10", "NDCG@10", "online ms/request", "offline ms/user"]
    return pd.DataFrame(rows, columns=columns)

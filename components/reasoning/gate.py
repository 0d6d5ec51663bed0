"""The reasoning gate: are think-ahead prefixes worth serving?

Runtime completion inside the reasoning model's prefixes must not lose more than `reasoning.max_hr10_loss` HR@10
(absolute) against the served model's full decoding, on held-out rows (the pipeline's gate rows). Otherwise no
prefixes are published: serving falls back to full decoding, and the run says why with the numbers. The same
comparison reports the cost of each mode: online ms per request, offline ms per user.
"""

from __future__ import annotations

import logging
import time

import pandas as pd

from components.config import ReasoningConfig
from components.metrics import hit_rate_ndcg
from components.reasoning.thinkahead import prefixes_by_user, think_ahead
from components.runtime.context import contexts_of
from components.runtime.recommender import Recommender

log = logging.getLogger(__name__)


def reasoning_gate(served: Recommender, reasoner: Recommender, holdout: pd.DataFrame, cfg: ReasoningConfig) -> dict:
    """Full decoding vs think-ahead prefixes + runtime completion, both served by `served` on `holdout`."""
    histories = [list(h) for h in holdout["history"]]
    targets = holdout["target"].astype(str).tolist()
    users = pd.DataFrame({"user_id": [f"row{i}" for i in range(len(holdout))], "history": histories})
    contexts = contexts_of(holdout) if served.uses_context else None
    t0 = time.perf_counter()
    full = served.recommend(histories, 10, contexts=contexts)
    full_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    by_user = prefixes_by_user(think_ahead(reasoner, users, cfg))
    offline_s = time.perf_counter() - t0
    prefixes = [by_user.get(u) or None for u in users["user_id"]]
    t0 = time.perf_counter()
    completed = served.recommend(histories, 10, prefixes, contexts=contexts)
    online_s = time.perf_counter() - t0
    rows = max(len(holdout), 1)
    result = {
        "rows": len(holdout),
        "full_decoding": {
            **hit_rate_ndcg([[i for i, _ in r] for r in full], targets, [10]),
            "online_ms_per_request": 1000 * full_s / rows,
        },
        "think_ahead": {
            **hit_rate_ndcg([[i for i, _ in r] for r in completed], targets, [10]),
            "online_ms_per_request": 1000 * online_s / rows,
            "offline_ms_per_user": 1000 * offline_s / rows,
            "users_with_prefixes": sum(p is not None for p in prefixes),
        },
        "max_hr10_loss": cfg.max_hr10_loss,
    }
    loss = result["full_decoding"]["HR@10"] - result["think_ahead"]["HR@10"]
    result["hr10_loss"] = loss
    result["passed"] = loss <= cfg.max_hr10_loss
    think, full = result["think_ahead"]["HR@10"], result["full_decoding"]["HR@10"]
    result["reason"] = (
        f"think-ahead HR@10 {think:.4f} vs full decoding {full:.4f} on {len(holdout)} rows: "
        f"loss {loss:+.4f} {'<=' if result['passed'] else '>'} {cfg.max_hr10_loss}"
    )
    log.info("reasoning gate: %s: %s", "PASS" if result["passed"] else "REFUSE", result["reason"])
    return result

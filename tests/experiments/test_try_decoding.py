"""experiments/try_decoding_on_valid: each decoding variant is swapped in for its run only, and the served one
reproduces the product's lists."""

from __future__ import annotations

import pandas as pd
import torch

from components.evaluation.evaluate import score_recommender
from components.runtime import beam
from components.runtime.recommender import Recommender
from experiments.try_decoding_on_valid import VARIANTS, level_scorer, score_variant


def _examples(sidmap, n: int = 12) -> pd.DataFrame:
    ids = sidmap.item_ids
    return pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "history": [ids[i : i + 2 + i % 3] for i in range(n)],
            "target": [ids[(7 * i + 3) % len(ids)] for i in range(n)],
        }
    )


def _pair(tiny_sid_model, other_seed) -> Recommender:
    model, tokenizer, sidmap = tiny_sid_model
    return Recommender([model, other_seed(model, 3)], tokenizer, sidmap, beam_size=10)


def test_served_variant_is_the_product_and_every_variant_is_restored(tiny_sid_model, other_seed):
    recommender = _pair(tiny_sid_model, other_seed)
    examples = _examples(tiny_sid_model[2])
    served = (beam._members_logprobs, beam.level_logprobs)
    expected = score_recommender(recommender, examples, [1, 5, 10], 4)
    for variant in VARIANTS:
        got = score_variant(recommender, examples, [1, 5, 10], 4, variant)
        assert (beam._members_logprobs, beam.level_logprobs) == served
        if variant == "served":
            assert {k: got[k] for k in ("HR@10", "NDCG@10", "HR@1")} == {
                k: expected[k] for k in ("HR@10", "NDCG@10", "HR@1")
            }


def test_product_of_experts_ranks_by_the_members_mean_log_probability(tiny_sid_model, other_seed):
    """Under mean_logprob an item's score is the members' mean log-probability of its SID, summed over levels."""
    recommender = _pair(tiny_sid_model, other_seed)
    histories = [list(h) for h in _examples(tiny_sid_model[2], 3)["history"]]
    alone = [Recommender([m], recommender.tokenizer, recommender.sidmap, beam_size=60) for m in recommender.models]
    with level_scorer(VARIANTS["mean_logprob"]):
        wide = Recommender(recommender.models, recommender.tokenizer, recommender.sidmap, beam_size=60)
        pooled = wide.generate(histories, 10)
    members = [dict(r) for rec in alone for r in rec.generate(histories, 60)]
    for scored, first, second in zip(pooled, members[:3], members[3:], strict=True):
        assert len(scored) == 10
        for item, score in scored:
            torch.testing.assert_close(score, (first[item] + second[item]) / 2, rtol=1e-4, atol=1e-4)

"""experiments/try_views_on_valid: weight 0 is the served list, weight 1 the short view's own beam."""

from __future__ import annotations

import math

from components.evaluation.evaluate import score_recommender
from components.runtime.recommender import Recommender
from experiments.try_views_on_valid import decode, mixed_lists, score_views
from tests.experiments.test_try_decoding import _examples


def test_weight_zero_is_served_and_weight_one_is_the_short_view(tiny_sid_model, other_seed):
    model, tokenizer, sidmap = tiny_sid_model
    recommender = Recommender([model, other_seed(model, 3)], tokenizer, sidmap, beam_size=10)
    examples = _examples(sidmap)
    histories = [list(h) for h in examples["history"]]
    targets = examples["target"].astype(str).tolist()
    result = score_views(recommender, histories, targets, [1], [0.0, 1.0], [1, 5, 10], 4)
    served = score_recommender(recommender, examples, [1, 5, 10], 4)
    for key in ("HR@1", "HR@10", "NDCG@10"):
        assert result["served"][key] == served[key] == result["grid"]["k=1 w=0.0"][key]
    short = decode(recommender, [h[-1:] for h in histories], 4)
    alone = score_recommender(recommender, examples.assign(history=[h[-1:] for h in histories]), [1, 5, 10], 4)
    assert mixed_lists(short, short, 0.0) == mixed_lists(decode(recommender, histories, 4), short, 1.0)
    assert result["grid"]["k=1 w=1.0"]["HR@10"] == alone["HR@10"]


def test_an_item_in_one_view_only_counts_zero_in_the_other():
    full = [[("a", math.log(0.5)), ("b", math.log(0.3))]]
    view = [[("c", math.log(0.9))]]
    assert mixed_lists(full, view, 0.3, k=3) == [["a", "c", "b"]]  # a 0.7 * 0.5, c 0.3 * 0.9, b 0.7 * 0.3
    assert mixed_lists(full, view, 0.5, k=3) == [["c", "a", "b"]]  # c 0.45 > a 0.25

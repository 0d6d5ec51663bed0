"""Soft SID targets: count and content distillation (TrainConfig.count_distill, content_distill), the teachers'
soft targets and the loss that uses them, sibling smoothing (TrainConfig.sibling_smoothing) and label smoothing
inside a SID level (TrainConfig.label_smoothing)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from components.config import load_config
from components.runtime.backbone import load_backbone
from components.runtime.content import ContentIndex
from components.runtime.language import format_prompt, sid_of, sid_token, sid_token_ids
from components.sids.sidmap import SidMap
from components.training.examples import (
    content_teacher,
    count_teacher,
    distilled_soft_targets,
    merge_soft_targets,
    sibling_soft_targets,
)
from components.training.train import (
    _batch,
    _soft_batch,
    completion_loss,
    distillation_teachers,
    soft_positions,
    tokenize_pairs,
)
from components.training.vocab import add_sid_tokens

# four items; b and c share their first code, d shares nothing with them
SIDMAP = SidMap(
    item_ids=["a", "b", "c", "d"],
    codes=np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [2, 0, 0]]),
    codebook_sizes=[3, 2, 1],
    version="t",
)


def _rows(*pairs: tuple[list[str], str]) -> pd.DataFrame:
    return pd.DataFrame({"history": [h for h, _ in pairs], "target": [t for _, t in pairs]})


def count_soft_targets(rows: pd.DataFrame, sidmap: SidMap, share: float) -> dict:
    """Count distillation alone, as train.count_distill sets it up."""
    return distilled_soft_targets(rows, sidmap, [(count_teacher(rows, sidmap), share)])


def test_teacher_leaves_the_row_out_and_conditions_on_the_target_prefix():
    # after a: b twice, c once, d once
    rows = _rows((["a"], "b"), (["x", "a"], "b"), (["a"], "c"), (["a"], "d"))
    soft = count_soft_targets(rows, SIDMAP, 0.5)
    levels = soft[(format_prompt(["a"], SIDMAP), sid_of(SIDMAP, "b"))]
    # the row a->b is left out: b 1, c 1, d 1 remain
    assert levels[0] == pytest.approx({sid_token(0, 1): 0.5 * 2 / 3, sid_token(0, 2): 0.5 / 3})
    # level 1 given the target's first code 1: b and c, one each
    assert levels[1] == pytest.approx({sid_token(1, 0): 0.25, sid_token(1, 1): 0.25})
    # level 2 given (1, 0): only b
    assert levels[2] == pytest.approx({sid_token(2, 0): 0.5})
    to_d = soft[(format_prompt(["a"], SIDMAP), sid_of(SIDMAP, "d"))]
    assert to_d[0] == pytest.approx({sid_token(0, 1): 0.5})  # b twice + c once, all on code 1
    assert to_d[1] == {} and to_d[2] == {}  # nothing else starts with d's code 2: one-hot there
    for levels in soft.values():
        assert all(sum(level.values()) == pytest.approx(0.5) for level in levels if level)


def test_rows_the_teacher_cannot_inform_are_absent():
    rows = _rows((["a"], "b"), (["b"], "c"), (["c"], "unknown"))
    assert count_soft_targets(rows, SIDMAP, 0.5) == {}  # each last item has only the row's own successor
    assert count_soft_targets(_rows((["a"], "b"), (["a"], "c")), SIDMAP, 0.0) == {}


SIBLINGS = SidMap(  # under prefix (1,): b, c, e; under (1, 0): b and e; a and d alone under their first codes
    item_ids=["a", "b", "c", "d", "e"],
    codes=np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [2, 0, 0], [1, 0, 1]]),
    codebook_sizes=[3, 2, 2],
    version="s",
)


def test_sibling_smoothing_spreads_over_the_items_under_the_target_prefix_only():
    pairs = [("p", sid_of(SIBLINGS, "b")), ("q", sid_of(SIBLINGS, "a")), ("r", "a title")]
    soft = sibling_soft_targets(pairs, SIBLINGS, 0.2)
    to_b = soft[("p", sid_of(SIBLINGS, "b"))]
    assert to_b[0] == {}  # level 0: left to label smoothing
    assert to_b[1] == pytest.approx({sid_token(1, 1): 0.2})  # c, the other code under (1,)
    assert to_b[2] == pytest.approx({sid_token(2, 1): 0.2})  # e, b's one sibling under (1, 0)
    assert list(soft) == [("p", sid_of(SIBLINGS, "b"))]  # a has no sibling (one-hot); a title is no SID
    assert sibling_soft_targets(pairs, SIBLINGS, 0.0) == {}


def test_soft_target_sets_add_up_token_by_token():
    pair = ("p", "c")
    first, second = {pair: [{"x": 0.1}, {}]}, {pair: [{"x": 0.2, "y": 0.1}, {"z": 0.3}]}
    merged = merge_soft_targets(first, second, {("q", "c"): [{}]})
    assert merged[pair] == [pytest.approx({"x": 0.3, "y": 0.1}), {"z": 0.3}] and merged[("q", "c")] == [{}]


def test_count_content_and_sibling_shares_must_leave_the_target_a_share():
    import pydantic

    with pytest.raises(pydantic.ValidationError, match="must stay below 1"):
        load_config(None, overrides={"train": {"count_distill": 0.6, "sibling_smoothing": 0.4}})
    with pytest.raises(pydantic.ValidationError, match="must stay below 1"):
        load_config(None, overrides={"train": {"content_distill": 0.5, "count_distill": 0.5}})


# unit vectors: b and c close to a, d far from a and close to c, x not in the SID map
CONTENT_IDS = ["a", "b", "c", "d", "x"]
CONTENT = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0], [0.9, 0.1]], dtype=np.float32)
CONTENT /= np.linalg.norm(CONTENT, axis=1, keepdims=True)
INDEX = ContentIndex(CONTENT_IDS, CONTENT)


def test_content_teacher_weights_the_nearest_items_by_similarity_leaving_the_history_and_target_out():
    teach = content_teacher(INDEX, neighbours=2)
    assert teach(["a"], "b") == pytest.approx({"x": float(CONTENT[4] @ CONTENT[0]), "c": 0.6})
    # the newest item counts most: after d then a the query leans to a, after a then d to d
    recent_a, recent_d = teach(["d", "a"], "x"), teach(["a", "d"], "x")
    assert set(recent_a) == set(recent_d) == {"b", "c"}
    assert recent_a["b"] > recent_a["c"] and recent_d["c"] > recent_d["b"]
    assert teach(["unknown"], "a") == {} and content_teacher(INDEX, neighbours=1)(["b"], "a") == {
        "c": pytest.approx(float(CONTENT[2] @ CONTENT[1]))
    }


def test_content_and_count_teachers_add_their_shares_level_by_level():
    rows = _rows((["a"], "b"), (["x", "a"], "b"), (["a"], "c"), (["a"], "d"), (["b"], "a"))
    content = content_teacher(INDEX, neighbours=3)
    both = distilled_soft_targets(rows, SIDMAP, [(count_teacher(rows, SIDMAP), 0.2), (content, 0.3)])
    alone = distilled_soft_targets(rows, SIDMAP, [(content, 0.3)])
    levels = both[(format_prompt(["a"], SIDMAP), sid_of(SIDMAP, "b"))]
    assert sum(levels[0].values()) == pytest.approx(0.5)  # both teachers know level 0
    # after a, b the target: c (0.6); x is no SID and d is orthogonal to a: no weight
    to_b = alone[(format_prompt(["a"], SIDMAP), sid_of(SIDMAP, "b"))]
    assert to_b[0] == pytest.approx({sid_token(0, 1): 0.3}) and to_b[1] == pytest.approx({sid_token(1, 1): 0.3})
    # after b, a the target: c (0.96) and d (0.6) share level 0 by similarity; nothing else starts with a's code
    to_a = alone[(format_prompt(["b"], SIDMAP), sid_of(SIDMAP, "a"))]
    assert to_a[0] == pytest.approx({sid_token(0, 1): 0.3 * 0.96 / 1.56, sid_token(0, 2): 0.3 * 0.6 / 1.56})
    assert to_a[1] == {} and to_a[2] == {}
    assert distilled_soft_targets(rows, SIDMAP, [(content, 0.0)]) == {}


def test_distillation_teachers_follow_the_configuration(synthetic_world, tmp_path):
    cfg, catalog, _, sidmap, splits = synthetic_world(
        tmp_path, n_items=40, n_users=30, seed=4, sids={"content_encoder": "hashing"}
    )
    assert distillation_teachers(cfg, splits["train"], sidmap, catalog) == []
    train = cfg.train.model_copy(update={"content_distill": 0.3, "count_distill": 0.2, "content_neighbours": 5})
    cfg = cfg.model_copy(update={"train": train})
    teachers = distillation_teachers(cfg, splits["train"], sidmap, catalog)
    assert [share for _, share in teachers] == [0.2, 0.3]
    history = [str(i) for i in splits["train"]["history"].iloc[0]]
    taught = teachers[1][0](history, str(splits["train"]["target"].iloc[0]))
    assert 0 < len(taught) <= 5 and not set(taught) & set(history)


@pytest.fixture(scope="module")
def model_and_tokenizer():
    cfg = load_config(None, overrides={"model": {"backbone": "tiny", "tiny_hidden_size": 32, "tiny_layers": 1}})
    model, tokenizer = load_backbone(cfg.model)
    new_ids = add_sid_tokens(model, tokenizer, SIDMAP)
    torch.manual_seed(0)
    with torch.no_grad():  # distinct SID rows: the codes' probabilities differ, so soft and one-hot targets do
        model.get_input_embeddings().weight[new_ids] = torch.randn(len(new_ids), 32)
        model.get_output_embeddings().weight[new_ids] = torch.randn(len(new_ids), 32)
    return model.eval(), tokenizer


def _loss_tables(levels: torch.Tensor, softmax: str) -> dict:
    """completion_loss's SID table arguments for a softmax kind."""
    return {"sid_table": None if softmax == "vocab" else levels, "across_levels": softmax == "sid_vocab"}


def _support(levels: torch.Tensor, level: int, softmax: str, vocab_size: int) -> torch.Tensor:
    """The token ids a SID target of `level` is normalised over under each softmax kind."""
    if softmax == "sid_level":
        return levels[level][levels[level] >= 0]
    if softmax == "sid_vocab":
        return levels[levels >= 0]
    return torch.arange(vocab_size)


@pytest.mark.parametrize("softmax", ["vocab", "sid_level", "sid_vocab"])
def test_soft_loss_is_the_cross_entropy_with_the_mixed_target(model_and_tokenizer, softmax):
    model, tokenizer = model_and_tokenizer
    # different prompts: over rows of one prompt, leave-one-out soft targets add up to the one-hot ones
    rows = _rows((["d", "a"], "b"), (["b", "a"], "c"), (["a"], "d"), (["b"], "a"))
    soft = count_soft_targets(rows, SIDMAP, 0.4)
    pairs = [
        (format_prompt(h, SIDMAP), sid_of(SIDMAP, t)) for h, t in zip(rows["history"], rows["target"], strict=True)
    ]
    data = tokenize_pairs(tokenizer, pairs, 64)
    ids, mask, labels = _batch(data, 0)
    placed = soft_positions(tokenizer, pairs, data, soft)
    assert placed[3] is None  # b -> a: the teacher knows no other successor of b
    table = sid_token_ids(tokenizer, SIDMAP)
    tables = _loss_tables(table, softmax)
    with torch.no_grad():
        got = completion_loss(model, ids, mask, labels, soft=_soft_batch(placed, ids.shape[1]), **tables)
        plain = completion_loss(model, ids, mask, labels, **tables)
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
    # by hand: each completion position's target distribution over the tokens it is normalised over
    losses = []
    for r, (_, completion) in enumerate(pairs):
        levels = soft.get(pairs[r], [{}] * 3)
        n = int(mask[r].sum())
        for j, token in enumerate(tokenizer.convert_tokens_to_ids(tokenizer.tokenize(completion))):
            position = n - 3 + j
            support = _support(table, j, softmax, logits.shape[-1])
            logp = torch.log_softmax(logits[r, position - 1, support], -1)
            index = {int(t): k for k, t in enumerate(support)}
            mixed = torch.zeros_like(logp)
            mixed[index[token]] = 1 - sum(levels[j].values())
            for name, weight in levels[j].items():
                mixed[index[tokenizer.convert_tokens_to_ids(name)]] += weight
            losses.append(-(mixed * logp).sum())
    torch.testing.assert_close(got, torch.stack(losses).mean(), rtol=1e-4, atol=1e-5)
    assert abs(float(got) - float(plain)) > 1e-3  # the soft part changes the loss
    none = _soft_batch([None] * len(pairs), ids.shape[1])
    assert none is None


@pytest.mark.parametrize("softmax", ["vocab", "sid_level", "sid_vocab"])
def test_label_smoothing_spreads_eps_over_the_targets_level(model_and_tokenizer, softmax):
    model, tokenizer = model_and_tokenizer
    rows = _rows((["d", "a"], "b"), (["b"], "c"), (["a"], "d"))
    pairs = [
        (format_prompt(h, SIDMAP), sid_of(SIDMAP, t)) for h, t in zip(rows["history"], rows["target"], strict=True)
    ]
    data = tokenize_pairs(tokenizer, pairs, 64)
    ids, mask, labels = _batch(data, 0)
    levels = sid_token_ids(tokenizer, SIDMAP)
    tables = _loss_tables(levels, softmax)
    eps = 0.3
    with torch.no_grad():
        got = completion_loss(model, ids, mask, labels, smoothing=(levels, eps), **tables)
        plain = completion_loss(model, ids, mask, labels, **tables)
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
    losses = []
    for r, (_, completion) in enumerate(pairs):
        n = int(mask[r].sum())
        for j, token in enumerate(tokenizer.convert_tokens_to_ids(tokenizer.tokenize(completion))):
            support = _support(levels, j, softmax, logits.shape[-1])
            logp = torch.log_softmax(logits[r, n - 3 + j - 1, support], -1)
            index = {int(t): k for k, t in enumerate(support)}
            codes = torch.tensor([index[int(t)] for t in levels[j] if t >= 0])  # the level's codes in `support`
            losses.append(-(1 - eps) * logp[index[token]] - eps * logp[codes].mean())
    torch.testing.assert_close(got, torch.stack(losses).mean(), rtol=1e-4, atol=1e-5)
    assert abs(float(got) - float(plain)) > 1e-3  # the smoothing changes the loss

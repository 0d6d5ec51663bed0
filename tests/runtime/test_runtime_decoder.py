"""The lean Llama runner computes what the model's own forward computes: same beams, same scores.

A grouped-query model (fewer key/value heads than query heads, as SmolLM2 has) and left-padded prompts of
different lengths exercise the shared-prompt attention; prefix completion feeds several tokens per beam at once.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from components.runtime.backbone import load_tokenizer
from components.runtime.beam import constrained_beam_search
from components.runtime.decoder import HFRunner, LlamaRunner, lean_supported, runner_for
from components.runtime.language import SidTrie, format_prompt
from components.sids.sidmap import SidMap
from components.training.vocab import add_sid_tokens
from experiments.hf_reference import hf_constrained_generate, sequences_to_codes


def _gqa_model(seed: int):
    rng = np.random.default_rng(1)
    codes = set()
    while len(codes) < 50:
        codes.add(tuple(int(c) for c in rng.integers(0, 5, size=3)))
    sidmap = SidMap([f"i{i}" for i in range(50)], np.array(sorted(codes)), [5, 5, 5], "test")
    tokenizer = load_tokenizer("tiny")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=6,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    add_sid_tokens(model, tokenizer, sidmap)
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(4.0)  # peaky logits: clearly separated beams
    return model.eval(), tokenizer, sidmap


@pytest.fixture(scope="module")
def gqa():
    model, tokenizer, sidmap = _gqa_model(0)
    return model, tokenizer, sidmap, SidTrie.from_sidmap(sidmap, tokenizer)


def _encode(tokenizer, sidmap, lengths):
    prompts = [format_prompt(sidmap.item_ids[i : i + n], sidmap) for i, n in enumerate(lengths)]
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    return prompts, enc.input_ids, enc.attention_mask


def _same(a, b):
    assert torch.equal(a.items, b.items) and torch.equal(a.codes, b.codes)
    finite = torch.isfinite(a.scores)
    assert torch.equal(finite, torch.isfinite(b.scores))
    torch.testing.assert_close(a.scores[finite], b.scores[finite], atol=1e-4, rtol=1e-4)


def test_auto_picks_the_lean_runner_for_llama_and_hf_otherwise(gqa):
    model = gqa[0]
    assert lean_supported(model) and isinstance(runner_for(model), LlamaRunner)
    assert isinstance(runner_for(model, "hf"), HFRunner)
    model.train()
    try:
        assert not lean_supported(model) and isinstance(runner_for(model), HFRunner)
    finally:
        model.eval()
    with pytest.raises(ValueError):
        runner_for(model, "fast")


def test_lean_equals_hf_generate_with_grouped_query_attention(gqa):
    model, tokenizer, sidmap, trie = gqa
    prompts, ids, mask = _encode(tokenizer, sidmap, [3])
    result = constrained_beam_search(model, ids, mask, trie, 8, 8, runner="lean")
    out = hf_constrained_generate(model, tokenizer, trie, prompts, 8, 8)
    assert [tuple(r) for r in result.codes[0].tolist()] == sequences_to_codes(trie, out.sequences, ids.shape[1])
    torch.testing.assert_close(result.scores[0], out.sequences_scores.float(), atol=1e-4, rtol=1e-4)


def test_lean_equals_hf_runner_on_padded_batches(gqa):
    model, tokenizer, sidmap, trie = gqa
    _, ids, mask = _encode(tokenizer, sidmap, [1, 4, 2])
    _same(
        constrained_beam_search(model, ids, mask, trie, 10, 6, runner="lean"),
        constrained_beam_search(model, ids, mask, trie, 10, 6, runner="hf"),
    )


def test_lean_equals_hf_runner_for_prefix_completion_and_ensembles(gqa):
    model, tokenizer, sidmap, trie = gqa
    other = _gqa_model(1)[0]
    _, ids, mask = _encode(tokenizer, sidmap, [2, 3, 1])
    two = sorted({tuple(r[:2]) for r in sidmap.codes.tolist()})
    one = sorted({(int(r[0]),) for r in sidmap.codes.tolist()})
    for prefixes in ([two[:4], None, two[4:6]], [one[:1], one[1:3], None]):
        for models in (model, [model, other]):
            _same(
                constrained_beam_search(models, ids, mask, trie, 10, 5, prefixes, runner="lean"),
                constrained_beam_search(models, ids, mask, trie, 10, 5, prefixes, runner="hf"),
            )

"""Constrained beam search: equal to HF generate(), valid and unique SIDs, prefix completion."""

from __future__ import annotations

import copy

import pytest
import torch

from components.runtime.beam import constrained_beam_search
from components.runtime.language import SidTrie, format_prompt
from experiments.hf_reference import hf_constrained_generate, sequences_to_codes


def _prompts(sidmap, n):
    return [format_prompt(sidmap.item_ids[i : i + 1 + i % 4], sidmap) for i in range(n)]


def _hf_reference(model, tokenizer, trie, prompt, beam):
    """HF generate() with prefix_allowed_tokens_fn over the same trie, sum-of-log-prob scores."""
    out = hf_constrained_generate(model, tokenizer, trie, [prompt], beam, beam)
    start = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids.shape[1]
    return sequences_to_codes(trie, out.sequences, start), out.sequences_scores


@pytest.mark.parametrize("batch,beam", [(1, 5), (4, 8)])
def test_equals_hf_generate(tiny_sid_model, batch, beam):
    model, tokenizer, sidmap = tiny_sid_model
    trie = SidTrie.from_sidmap(sidmap, tokenizer)
    prompts = _prompts(sidmap, batch)
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    result = constrained_beam_search(model, enc.input_ids, enc.attention_mask, trie, beam, beam)
    for b, prompt in enumerate(prompts):
        ref_codes, ref_scores = _hf_reference(model, tokenizer, trie, prompt, beam)
        ours = [tuple(r) for r in result.codes[b].tolist()]
        assert ours == ref_codes
        torch.testing.assert_close(result.scores[b], ref_scores.float(), atol=1e-4, rtol=1e-4)


def test_results_are_valid_unique_items(tiny_sid_model):
    model, tokenizer, sidmap = tiny_sid_model
    trie = SidTrie.from_sidmap(sidmap, tokenizer)
    enc = tokenizer(_prompts(sidmap, 3), return_tensors="pt", padding=True, add_special_tokens=False)
    result = constrained_beam_search(model, enc.input_ids, enc.attention_mask, trie, 20, 10)
    for b in range(3):
        items = result.items[b].tolist()
        assert len(set(items)) == 10 and min(items) >= 0
        for item, codes in zip(items, result.codes[b].tolist(), strict=True):
            assert sidmap.item_of(codes) == sidmap.item_ids[item]
        assert torch.all(result.scores[b][:-1] >= result.scores[b][1:])


def test_prefix_completion_stays_inside_prefixes_and_falls_back(tiny_sid_model):
    model, tokenizer, sidmap = tiny_sid_model
    trie = SidTrie.from_sidmap(sidmap, tokenizer)
    enc = tokenizer(_prompts(sidmap, 2), return_tensors="pt", padding=True, add_special_tokens=False)
    prefixes = sorted({tuple(r[:2]) for r in sidmap.codes.tolist()})[:3]
    result = constrained_beam_search(
        model, enc.input_ids, enc.attention_mask, trie, 5, 3, allowed_prefixes=[prefixes, None]
    )
    n_inside = sum(1 for r in sidmap.codes.tolist() if tuple(r[:2]) in prefixes)
    inside = [tuple(c[:2]) for c, s in zip(result.codes[0].tolist(), result.scores[0], strict=True) if s > -1e30]
    assert inside and all(p in prefixes for p in inside) and len(inside) == min(3, n_inside)
    full = constrained_beam_search(model, enc.input_ids[1:], enc.attention_mask[1:], trie, 5, 3)
    assert result.items[1].tolist() == full.items[0].tolist()  # no prefixes: full decoding
    # completion scores equal full-decoding scores of the same items (same log-probs, fewer steps)
    all_scores = constrained_beam_search(model, enc.input_ids[:1], enc.attention_mask[:1], trie, 60, 60)
    by_item = dict(zip(all_scores.items[0].tolist(), all_scores.scores[0].tolist(), strict=True))
    for item, score in zip(result.items[0].tolist(), result.scores[0].tolist(), strict=True):
        assert abs(by_item[item] - score) < 1e-4


@pytest.mark.parametrize("softmax", ["sid_level", "sid_vocab"])
def test_sid_softmax_scores_are_teacher_forced_log_probs_over_their_support(tiny_sid_model, softmax):
    """A model trained with the SID-level softmax is scored per level over that level's codes only; one trained
    with the SID-vocabulary softmax over all SID tokens of every level."""
    model, tokenizer, sidmap = tiny_sid_model
    model = copy.deepcopy(model)
    setattr(model.config, f"{softmax}_softmax", True)
    trie = SidTrie.from_sidmap(sidmap, tokenizer)
    prompt = _prompts(sidmap, 1)[0]
    enc = tokenizer([prompt], return_tensors="pt", add_special_tokens=False)
    result = constrained_beam_search(model, enc.input_ids, enc.attention_mask, trie, 8, 5)
    head = model.get_output_embeddings().weight
    for codes, score in zip(result.codes[0].tolist(), result.scores[0].tolist(), strict=True):
        sid_ids = [int(trie.level_token_ids[level, c]) for level, c in enumerate(codes)]
        ids = torch.cat([enc.input_ids[0], torch.tensor(sid_ids)]).unsqueeze(0)
        with torch.no_grad():
            hidden = model.model(input_ids=ids).last_hidden_state[0]
        start = enc.input_ids.shape[1] - 1
        every = torch.cat([trie.level_token_ids[lv, : trie.level_sizes[lv]] for lv in range(trie.n_levels)])
        expected = 0.0
        for level, c in enumerate(codes):
            own = trie.level_token_ids[level]
            support = own if softmax == "sid_level" else every
            logp = torch.log_softmax(hidden[start + level] @ head[support].T, -1)
            expected += logp[c if softmax == "sid_level" else int((every == own[c]).nonzero())].item()
        assert abs(expected - score) < 1e-4
    full = constrained_beam_search(tiny_sid_model[0], enc.input_ids, enc.attention_mask, trie, 8, 5)
    assert not torch.allclose(full.scores, result.scores)  # the full-vocabulary scores differ


def test_a_narrow_prefix_keeps_a_full_beam_and_pads_what_it_cannot_fill(tiny_sid_model):
    """One first-level prefix: the search keeps beam_size beams below it (not one), and asking for more items than
    the prefix holds pads the row with invalid entries instead of failing."""
    model, tokenizer, sidmap = tiny_sid_model
    trie = SidTrie.from_sidmap(sidmap, tokenizer)
    prompt = format_prompt(sidmap.item_ids[:3], sidmap)
    enc = tokenizer([prompt], return_tensors="pt", add_special_tokens=False)
    code = int(sidmap.codes[0][0])
    inside = sorted(i for i in range(len(sidmap)) if int(sidmap.codes[i][0]) == code)
    full = constrained_beam_search(model, enc.input_ids, enc.attention_mask, trie, 60, 60)
    expected = [i for i in full.items[0].tolist() if i in inside]  # the exhaustive order restricted to the prefix
    out = constrained_beam_search(model, enc.input_ids, enc.attention_mask, trie, 60, 20, [[(code,)]])
    got = [i for i in out.items[0].tolist() if i >= 0]
    assert got == expected and len(got) == len(inside) < 20
    assert out.items.shape == (1, 20) and out.items[0, len(got) :].eq(-1).all()
    assert torch.isinf(out.scores[0, len(got) :]).all()

"""The reference our beam search must equal: HF generate() with prefix_allowed_tokens_fn over the same trie.

Used by the equality test and the speed benchmark. Scores are sums of log-probs (length_penalty=0), and the
instruct checkpoint's top_k/top_p/temperature are cleared so they cannot cut beams.
"""

from __future__ import annotations

from components.runtime.language import SidTrie


def hf_constrained_generate(model, tokenizer, trie: SidTrie, prompts: list[str], beam: int, k: int):
    """HF beam search restricted to valid SIDs; returns generate()'s output (sequences, sequences_scores)."""
    tokenizer.padding_side = "left"
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    start = enc.input_ids.shape[1]
    code_of = [{int(t): c for c, t in enumerate(trie.level_token_ids[lv].tolist())} for lv in range(trie.n_levels)]

    def allowed(_, ids):
        prefix = tuple(code_of[lv][int(t)] for lv, t in enumerate(ids[start:].tolist()))
        node = trie.node_of(prefix)
        return trie.level_token_ids[len(prefix)][trie.allowed[len(prefix)][node]].tolist()

    return model.generate(
        **enc,
        num_beams=beam,
        num_return_sequences=k,
        max_new_tokens=trie.n_levels,
        min_new_tokens=trie.n_levels,
        prefix_allowed_tokens_fn=allowed,
        do_sample=False,
        length_penalty=0.0,
        early_stopping=True,
        output_scores=True,
        return_dict_in_generate=True,
        top_k=None,
        top_p=None,
        temperature=None,
        pad_token_id=tokenizer.pad_token_id,
    )


def sequences_to_codes(trie: SidTrie, sequences, start: int) -> list[tuple[int, ...]]:
    code_of = [{int(t): c for c, t in enumerate(trie.level_token_ids[lv].tolist())} for lv in range(trie.n_levels)]
    return [tuple(code_of[lv][int(t)] for lv, t in enumerate(s[start:].tolist())) for s in sequences]

"""Histories in, item ids out: prompt building, batched constrained decoding, mapping back to items."""

from __future__ import annotations

import torch

from components.decoding.beam import as_models, constrained_beam_search
from components.decoding.transitions import TransitionTable, blend
from components.decoding.trie import SidTrie
from components.model.prompts import format_history_prompt
from components.sids.sidmap import SidMap


def encode_prompts(tokenizer, prompts: list[str], max_length: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    tokenizer.padding_side = "left"
    enc = tokenizer(
        prompts, return_tensors="pt", padding=True, add_special_tokens=False, truncation=True, max_length=max_length
    )
    return enc.input_ids, enc.attention_mask


def servable(sidmap: SidMap, prefixes: list[tuple[int, ...]] | None = None):
    """Which blended-in successors may be served: items of this SID map (a transition table can name items the
    catalog has since dropped), inside the row's think-ahead prefixes when it has any."""

    def ok(item: str) -> bool:
        if item not in sidmap:
            return False
        if not prefixes:
            return True
        codes = tuple(int(c) for c in sidmap.codes_of(item))
        return any(codes[: len(p)] == tuple(p) for p in prefixes)

    return ok


def recommend_batch(
    model,
    tokenizer,
    trie: SidTrie,
    sidmap: SidMap,
    histories: list[list[str]],
    k: int,
    beam_size: int,
    prefixes: list[list[tuple[int, ...]] | None] | None = None,
    titles: dict[str, str] | None = None,
    transitions: TransitionTable | None = None,
    blend_weight: float = 0.0,
    ranker=None,
) -> list[list[tuple[str, float]]]:
    """Top-k (item_id, score) for one batch of histories: one prompt pass and one decode step per SID level for
    all of them, then the hybrid's blend or the ranking stage when asked for. recommend_items cuts a request
    list into such batches; the Triton backend calls it once per dynamic batch.

    Scores are log-probs. With `transitions` and a `blend_weight` > 0: log blended probabilities of the hybrid
    (the whole beam is the blend's candidate set; successors join only where `servable` allows). With a
    `ranker` (ranking.artifact.RankerArtifact; it takes precedence over the blend): the ranker's scores of the
    whole beam pooled with the count candidates that `servable` allows.

    `model` is one model or a list of models sharing the tokenizer and SID map (an ensemble, decoding.beam)."""
    blending = transitions is not None and blend_weight > 0 and ranker is None
    width = max(beam_size, k)
    device = next(as_models(model)[0].parameters()).device
    ids, mask = encode_prompts(tokenizer, [format_history_prompt(h, sidmap, titles) for h in histories])
    result = constrained_beam_search(
        model, ids.to(device), mask.to(device), trie, width, width if blending or ranker else k, prefixes
    )
    rows = [
        [(trie.item_ids[i], s) for i, s in zip(row_items, row_scores, strict=True) if i >= 0]
        for row_items, row_scores in zip(result.items.tolist(), result.scores.tolist(), strict=True)
    ]
    if not blending and ranker is None:
        return rows
    rules = [servable(sidmap, prefixes[r] if prefixes is not None else None) for r in range(len(rows))]
    if ranker is not None:
        return ranker.rank(histories, rows, k, sidmap, rules)
    return blend(rows, histories, transitions, blend_weight, k, rules)


def recommend_items(
    model,
    tokenizer,
    trie: SidTrie,
    sidmap: SidMap,
    histories: list[list[str]],
    k: int,
    beam_size: int,
    prefixes: list[list[tuple[int, ...]] | None] | None = None,
    batch_size: int = 16,
    titles: dict[str, str] | None = None,
    transitions: TransitionTable | None = None,
    blend_weight: float = 0.0,
    ranker=None,
) -> list[list[tuple[str, float]]]:
    """Top-k (item_id, score) per history, valid SIDs only, unique per row, best first: recommend_batch over
    batches of `batch_size` histories."""
    device = next(as_models(model)[0].parameters()).device
    if trie.leaf_item.device != device:
        trie.to(device)
    out: list[list[tuple[str, float]]] = []
    for start in range(0, len(histories), batch_size):
        out += recommend_batch(
            model,
            tokenizer,
            trie,
            sidmap,
            histories[start : start + batch_size],
            k,
            beam_size,
            prefixes[start : start + batch_size] if prefixes is not None else None,
            titles,
            transitions,
            blend_weight,
            ranker,
        )
    return out

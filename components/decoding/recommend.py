"""Histories in, item ids out: prompt building, batched constrained decoding, mapping back to items."""

from __future__ import annotations

import torch

from components.decoding.beam import as_models, constrained_beam_search
from components.decoding.trie import SidTrie
from components.model.prompts import format_history_prompt
from components.sids.sidmap import SidMap


def encode_prompts(tokenizer, prompts: list[str], max_length: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    tokenizer.padding_side = "left"
    enc = tokenizer(
        prompts, return_tensors="pt", padding=True, add_special_tokens=False, truncation=True, max_length=max_length
    )
    return enc.input_ids, enc.attention_mask


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
) -> list[list[tuple[str, float]]]:
    """Top-k (item_id, score) per history: valid SIDs only, unique per row, best first.

    `model` is one model or a list of models sharing the tokenizer and SID map (an ensemble, decoding.beam)."""
    out: list[list[tuple[str, float]]] = []
    device = next(as_models(model)[0].parameters()).device
    if trie.leaf_item.device != device:
        trie.to(device)
    for start in range(0, len(histories), batch_size):
        chunk = histories[start : start + batch_size]
        prompts = [format_history_prompt(h, sidmap, titles) for h in chunk]
        ids, mask = encode_prompts(tokenizer, prompts)
        ids, mask = ids.to(device), mask.to(device)
        allowed = prefixes[start : start + batch_size] if prefixes is not None else None
        result = constrained_beam_search(model, ids, mask, trie, max(beam_size, k), k, allowed)
        for row_items, row_scores in zip(result.items.tolist(), result.scores.tolist(), strict=True):
            out.append([(trie.item_ids[i], s) for i, s in zip(row_items, row_scores, strict=True) if i >= 0])
    return out

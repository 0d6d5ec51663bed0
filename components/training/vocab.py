"""Extend the LLM vocabulary with SID tokens (and, optionally, input-only item tokens).

SID tokens are added as special tokens so the tokenizer never splits "<a_12>" into pieces, and "<a_1><b_2><c_3>"
encodes to exactly three ids. New embedding rows start at the mean of the existing rows plus noise at the
embedding scale: identical rows (plain mean-resizing) would make every SID indistinguishable at step 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from components.runtime.language import item_token_map, sid_of, sid_token_ids, sid_tokens
from components.sids.sidmap import SidMap


def add_sid_tokens(
    model, tokenizer, sidmap: SidMap, noise_scale: float = 0.5, seed: int = 0, init: str = "mean_noise"
) -> list[int]:
    """Add every SID token to tokenizer + model; returns the new token ids (in language.sid_tokens order).

    init "mean_noise": rows at the mean of the existing rows plus noise. init "codebook": the noise is replaced by
    the code's RQ centroid (principal components of its level's codebook), so codes whose items are alike start
    alike: a prior the output layer (tied to these rows) can use from the first step.
    """
    if init not in ("mean_noise", "codebook"):
        raise ValueError(f"unknown SID token init {init!r} (mean_noise or codebook)")
    if init == "codebook" and sidmap.codebooks is None:  # checked before the tokenizer is changed
        raise ValueError("sid_init 'codebook' needs a SID map loaded from its build directory (codebooks/ missing)")
    tokens = sid_tokens(sidmap.codebook_sizes)
    missing = [t for t in tokens if t not in tokenizer.get_vocab()]
    old_size = len(tokenizer)
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        width = model.get_input_embeddings().weight.shape[1]
        directions = _codebook_directions(sidmap, tokenizer, old_size, width) if init == "codebook" else None
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for matrix in _embedding_matrices(model):
                old = matrix[:old_size].float()
                mean, std = old.mean(0), old.std(0)
                noise = torch.randn(len(tokenizer) - old_size, old.shape[1], generator=generator)
                if directions is not None:
                    noise = directions + 0.1 * noise  # a little noise: equal centroids still give distinct rows
                matrix[old_size:] = (mean + noise_scale * std * noise).to(matrix.dtype)
    ids = tokenizer.convert_tokens_to_ids(tokens)
    check = tokenizer(sid_of(sidmap, sidmap.item_ids[0]), add_special_tokens=False)["input_ids"]
    if len(check) != sidmap.n_levels:
        raise RuntimeError(f"a SID must encode to {sidmap.n_levels} tokens, got {check}")
    return ids


def add_item_tokens(model, tokenizer, sidmap: SidMap, items: Sequence[str], seed: int = 0) -> list[int]:
    """Add the input-only token of each of `items` (language.item_token_map order) to tokenizer + model; returns
    their ids. Call after add_sid_tokens: each row starts at the mean of its item's SID token rows plus a little
    noise, so an item token first reads as its SID does and training only has to learn what is the item's own."""
    tokens = list(item_token_map(items).values())
    missing = [t for t in tokens if t not in tokenizer.get_vocab()]
    if missing:
        old_size = len(tokenizer)
        tokenizer.add_tokens(missing, special_tokens=True)
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        table = sid_token_ids(tokenizer, sidmap)
        new_ids = torch.tensor(tokenizer.convert_tokens_to_ids(missing))
        by_token = dict(zip(tokens, items, strict=True))
        codes = [sidmap.codes_of(by_token[t]) for t in missing]
        parts = torch.tensor([[int(table[lv, c]) for lv, c in enumerate(row)] for row in codes])  # [new, levels]
        generator = torch.Generator().manual_seed(seed + 7)
        with torch.no_grad():
            for matrix in _embedding_matrices(model):
                rows = matrix[parts].float().mean(1)  # [new, levels, width] -> the SID's mean row
                noise = torch.randn(rows.shape, generator=generator) * matrix[:old_size].float().std(0)
                matrix[new_ids] = (rows + 0.1 * noise).to(matrix.dtype)
    ids = tokenizer.convert_tokens_to_ids(tokens)
    if tokens and len(tokenizer(tokens[0], add_special_tokens=False)["input_ids"]) != 1:
        raise RuntimeError(f"an item token must encode to one token: {tokens[0]!r}")
    return ids


def _codebook_directions(sidmap: SidMap, tokenizer, old_size: int, width: int) -> torch.Tensor:
    """[new tokens, width] unit-scale rows from each level's centroids (PCA to `width`); zero for dims beyond the
    centroids' rank and for the rows of tokens that are not SID tokens."""
    rows = torch.zeros(len(tokenizer) - old_size, width)
    for level, (size, level_ids) in enumerate(
        zip(sidmap.codebook_sizes, sid_token_ids(tokenizer, sidmap), strict=True)
    ):
        x = torch.as_tensor(sidmap.codebooks[level][:size], dtype=torch.float32)
        u, s, _ = torch.linalg.svd(x - x.mean(0), full_matrices=False)
        z = (u * s)[:, :width]
        z = z / z.std().clamp_min(1e-8)
        ids = level_ids[:size] - old_size
        keep = ids >= 0  # tokens that already existed keep their trained rows
        rows[ids[keep], : z.shape[1]] = z[keep]
    return rows


def _embedding_matrices(model) -> list[torch.Tensor]:
    matrices = [model.get_input_embeddings().weight]
    output = model.get_output_embeddings()
    if output is not None and output.weight.data_ptr() != matrices[0].data_ptr():
        matrices.append(output.weight)
    return matrices

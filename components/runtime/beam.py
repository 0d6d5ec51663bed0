"""Batched trie-constrained beam search with a KV cache, as TIGER-style SID decoding needs.

One prompt pass for the (left-padded) batch, then exactly one forward step per SID level, run by a decoder
runner (runtime.decoder: the lean Llama runner shares each prompt's keys/values among its beams, the HF runner
expands the model's cache to the beams and reorders it after each step), and the trie's mask tensors select the
codes a beam may take. Scores are sums of full-vocabulary log-probabilities, exactly what HF generate() with
prefix_allowed_tokens_fn computes (tested for equality), but without repeating the prompt per beam. A model
trained with the SID-level softmax (config.sid_level_softmax) is scored as it was trained: each level's codes
are normalised among themselves, and only those rows of the output layer are computed; one trained with the
SID-vocabulary softmax (config.sid_vocab_softmax) is normalised over all SID tokens, only their rows computed.

Runtime completion (OneRec-Think think-ahead): `allowed_prefixes` gives each row the SID prefixes computed
offline; the prefix tokens are scored in a single forward of all prefixes and only the remaining level(s) are
decoded.

Ensembles: pass a list of models that share the tokenizer and SID map (e.g. the same recipe trained from
different seeds). Each keeps its own KV cache; at every SID level the beam is scored by the log of the members'
mean probability of each code, so one beam search ranks the items the members agree on — seeds of the small
model hit different rows (README), and averaging their next-code distributions recovers part of the union.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.profiler import record_function

from components.runtime.backbone import decoder_and_head, token_logits
from components.runtime.decoder import Runner, runner_for
from components.runtime.language import SidTrie

NEG_INF = float("-inf")


@dataclass
class BeamResult:
    codes: torch.Tensor  # [B, top_k, n_levels] (-1 where a row has fewer valid items)
    scores: torch.Tensor  # [B, top_k] sum of log-probs (-inf where invalid)
    items: torch.Tensor  # [B, top_k] item index into trie.item_ids (-1 where invalid)


@dataclass
class _Member:
    """One model of the (possibly one-model) ensemble: its decoder runner, output layer and softmax kind."""

    runner: Runner
    head: torch.nn.Module
    softmax: str


def as_models(model) -> list:
    """One model or a sequence of them (an ensemble) as a non-empty list."""
    models = list(model) if isinstance(model, Sequence) else [model]
    if not models:
        raise ValueError("constrained_beam_search needs at least one model")
    return models


def _members(model, runner: str) -> list[_Member]:
    return [
        _Member(
            runner_for(m, runner),
            decoder_and_head(m)[1],
            softmax=softmax_kind(m),
        )
        for m in as_models(model)
    ]


def softmax_kind(model) -> str:
    """How training normalised the model's SID targets, recorded in its config (training.train): "vocab" (the
    full vocabulary), "sid_level" (the target's level's codes) or "sid_vocab" (all SID tokens)."""
    if getattr(model.config, "sid_vocab_softmax", False):
        return "sid_vocab"
    if getattr(model.config, "sid_level_softmax", False):
        return "sid_level"
    return "vocab"


def level_logprobs(head, hidden: torch.Tensor, trie: SidTrie, level: int, softmax: str = "vocab") -> torch.Tensor:
    """log p(code | beam) for every code of a level ([n, K], differentiable), normalised as the model was trained
    (softmax_kind): over the full vocabulary, over the level's codes, or over all SID tokens.

    The full-vocabulary normaliser needs every logit, but only the level's columns are kept: the log-softmax of
    all 49k columns would write a second [rows, vocab] tensor to read K of them. Padding beyond a level's
    codebook scores -inf under the SID softmaxes (the trie never allows it)."""
    token_ids = trie.level_token_ids[level]
    if softmax == "vocab":
        logits = head(hidden).float()
        return logits[:, token_ids] - torch.logsumexp(logits, dim=-1, keepdim=True)
    if softmax == "sid_level":
        logits = token_logits(head, hidden, token_ids).float()
        logits[:, trie.level_sizes[level] :] = NEG_INF  # padding beyond the level's codebook
        return torch.log_softmax(logits, dim=-1)
    n_levels, width = trie.level_token_ids.shape
    logits = token_logits(head, hidden, trie.level_token_ids.reshape(-1)).float().view(-1, n_levels, width)
    codes = torch.arange(width, device=logits.device)
    padding = codes >= torch.tensor(trie.level_sizes, device=logits.device).unsqueeze(1)  # [L, K]
    logits = logits.masked_fill(padding, NEG_INF)
    return logits[:, level] - torch.logsumexp(logits.flatten(1), dim=-1, keepdim=True)


def _members_logprobs(members, hiddens, trie: SidTrie, level: int) -> torch.Tensor:
    """log of the members' mean p(code | beam); a single model's own log-probs."""
    logps = [level_logprobs(m.head, h, trie, level, m.softmax) for m, h in zip(members, hiddens, strict=True)]
    if len(logps) == 1:
        return logps[0]
    return torch.logsumexp(torch.stack(logps), dim=0) - math.log(len(logps))


@torch.inference_mode()
def constrained_beam_search(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    trie: SidTrie,
    beam_size: int,
    top_k: int,
    allowed_prefixes: list[list[tuple[int, ...]] | None] | None = None,
    runner: str = "auto",
) -> BeamResult:
    """Top-k valid SIDs per row. Rows with allowed_prefixes complete those prefixes only.

    `model` is one causal LM or a list of them (an ensemble; module docstring). `runner` picks how the model runs
    (runtime.decoder): "auto" (the lean Llama runner where it applies), "lean" or "hf"; results are the same."""
    if top_k > beam_size:
        raise ValueError(f"top_k ({top_k}) must not exceed beam_size ({beam_size})")
    if allowed_prefixes is not None and any(allowed_prefixes):
        return _complete(model, input_ids, attention_mask, trie, beam_size, top_k, allowed_prefixes, runner)
    members = _members(model, runner)
    batch = input_ids.shape[0]
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    # [B, H]: level 0 is scored once per row, all beams share the prompt
    with record_function("beam.prefill"):
        hiddens = [m.runner.prefill(input_ids, attention_mask, position_ids) for m in members]
        for m in members:
            m.runner.expand(beam_size)
    next_pos = position_ids[:, -1:].repeat_interleave(beam_size, 0) + 1
    dev = input_ids.device
    scores = torch.full((batch, beam_size), NEG_INF, device=dev)
    scores[:, 0] = 0.0  # all beams start identical: only the first may expand at level 0
    nodes = torch.zeros((batch, beam_size), dtype=torch.long, device=dev)
    codes = torch.zeros((batch, beam_size, 0), dtype=torch.long, device=dev)
    return _decode_levels(members, trie, hiddens, next_pos, scores, nodes, codes, 0, top_k)


def _decode_levels(members, trie, hiddens, next_pos, scores, nodes, codes, start_level, top_k, beam_size=None):
    """Decode levels start_level.. keeping `beam_size` beams (default: as many as `scores` has) between levels
    and `top_k` at the end; a row with fewer valid completions (a narrow think-ahead prefix) is padded with
    invalid entries (-inf, item -1)."""
    batch = scores.shape[0]
    n_levels = trie.n_levels
    for level in range(start_level, n_levels):
        beams = scores.shape[1]
        width = trie.level_token_ids.shape[1]
        # hidden is [B*beams, H], or [B, H] right after the prompt (identical beams): broadcast over the beams
        with record_function("beam.logprobs"):
            logp = _members_logprobs(members, hiddens, trie, level).view(batch, -1, width)
        logp = logp.expand(batch, beams, width)
        allowed = trie.allowed[level][nodes.clamp(min=0)] & (nodes >= 0).unsqueeze(-1)
        cand = torch.where(allowed, scores.unsqueeze(-1) + logp, torch.full_like(logp, NEG_INF))
        keep = top_k if level == n_levels - 1 else (beam_size or beams)
        scores, flat = cand.view(batch, -1).topk(min(keep, beams * width), dim=-1)
        parent, code = flat // width, flat % width
        valid = torch.isfinite(scores)
        nodes = torch.where(valid, trie.child[level][nodes.gather(1, parent).clamp(min=0), code], -1)
        codes = torch.cat(
            [codes.gather(1, parent.unsqueeze(-1).expand(-1, -1, codes.shape[-1])), code.unsqueeze(-1)], dim=-1
        )
        if level < n_levels - 1:  # feed the chosen tokens for the next level
            order = (parent + torch.arange(batch, device=parent.device).unsqueeze(1) * beams).view(-1)
            next_pos = next_pos[order]
            tokens = trie.level_token_ids[level][code].view(-1, 1)
            with record_function("beam.step"):
                for m in members:
                    m.runner.reorder(order)
                hiddens = [m.runner.step(tokens, next_pos)[:, -1] for m in members]
            next_pos = next_pos + 1
    if scores.shape[1] < top_k:  # fewer completions than asked for: pad with invalid entries
        missing = top_k - scores.shape[1]
        scores = torch.cat([scores, scores.new_full((batch, missing), NEG_INF)], dim=1)
        nodes = torch.cat([nodes, nodes.new_full((batch, missing), -1)], dim=1)
        codes = torch.cat([codes, codes.new_full((batch, missing, codes.shape[-1]), -1)], dim=1)
    items = torch.where(nodes >= 0, trie.leaf_item[nodes.clamp(min=0)], -1)
    codes = torch.where(nodes.unsqueeze(-1) >= 0, codes, -1)
    return BeamResult(codes=codes, scores=scores, items=items)


def _complete(model, input_ids, attention_mask, trie, beam_size, top_k, allowed_prefixes, runner) -> BeamResult:
    """Score each row's prefixes in one forward, then decode only the remaining levels.

    Rows without prefixes fall back to full decoding (run separately, then merged in row order).
    """
    batch = input_ids.shape[0]
    with_prefix = [b for b in range(batch) if allowed_prefixes[b]]
    without = [b for b in range(batch) if not allowed_prefixes[b]]
    results: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    if without:
        idx = torch.tensor(without)
        full = constrained_beam_search(
            model, input_ids[idx], attention_mask[idx], trie, beam_size, top_k, runner=runner
        )
        for r, b in enumerate(without):
            results[b] = (full.codes[r], full.scores[r], full.items[r])
    if with_prefix:
        depth = len(allowed_prefixes[with_prefix[0]][0])
        if any(len(p) != depth for b in with_prefix for p in allowed_prefixes[b]):
            raise ValueError("all prefixes must have the same length")
        idx = torch.tensor(with_prefix)
        part = _complete_rows(
            model,
            input_ids[idx],
            attention_mask[idx],
            trie,
            top_k,
            [allowed_prefixes[b] for b in with_prefix],
            depth,
            beam_size,
            runner,
        )
        for r, b in enumerate(with_prefix):
            results[b] = (part.codes[r], part.scores[r], part.items[r])
    return BeamResult(
        codes=torch.stack([results[b][0] for b in range(batch)]),
        scores=torch.stack([results[b][1] for b in range(batch)]),
        items=torch.stack([results[b][2] for b in range(batch)]),
    )


@torch.inference_mode()
def _complete_rows(model, input_ids, attention_mask, trie, top_k, prefixes, depth, beam_size, runner) -> BeamResult:
    members = _members(model, runner)
    batch = input_ids.shape[0]
    # per row: (prefix, trie node) of its distinct prefixes that some item starts with
    distinct = [dict.fromkeys(tuple(int(c) for c in p) for p in ps) for ps in prefixes]
    valid_prefixes = [[(p, node) for p in ps if (node := trie.node_of(p)) is not None] for ps in distinct]
    n_pref = max(1, max(len(ps) for ps in valid_prefixes))
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    with record_function("beam.prefill"):
        hiddens = [m.runner.prefill(input_ids, attention_mask, position_ids) for m in members]
        for m in members:
            m.runner.expand(n_pref)
    with record_function("beam.logprobs"):
        first = _members_logprobs(members, hiddens, trie, 0)  # [B, K]
    dev = input_ids.device
    padding = [((0,) * depth, -1)]  # rows with fewer prefixes: an absent slot (score -inf, node -1)
    slots = [ps + padding * (n_pref - len(ps)) for ps in valid_prefixes]
    prefix_codes = torch.tensor([[p for p, _ in row] for row in slots], dtype=torch.long, device=dev)
    nodes = torch.tensor([[node for _, node in row] for row in slots], dtype=torch.long, device=dev)
    present = nodes >= 0
    tokens = torch.stack([trie.level_token_ids[level][prefix_codes[..., level]] for level in range(depth)], -1)
    pos = position_ids[:, -1:].repeat_interleave(n_pref, 0) + 1 + torch.arange(depth, device=dev).unsqueeze(0)
    with record_function("beam.step"):
        step_hiddens = [m.runner.step(tokens.view(batch * n_pref, depth), pos) for m in members]
    scores = first.gather(1, prefix_codes[..., 0])  # log p(level 0 code)
    for level in range(1, depth):
        level_hiddens = [h[:, level - 1] for h in step_hiddens]
        with record_function("beam.logprobs"):
            logp = _members_logprobs(members, level_hiddens, trie, level).view(batch, n_pref, -1)
        scores = scores + logp.gather(2, prefix_codes[..., level : level + 1]).squeeze(-1)
    scores = torch.where(present, scores, torch.full_like(scores, NEG_INF))
    next_pos = pos[:, -1:] + 1
    return _decode_levels(
        members,
        trie,
        [h[:, -1] for h in step_hiddens],
        next_pos,
        scores,
        nodes,
        prefix_codes.clone(),
        depth,
        top_k,
        beam_size,
    )

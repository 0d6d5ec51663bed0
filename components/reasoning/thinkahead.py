"""OneRec-Think think-ahead: offline reasoning paths -> SID prefixes per user; the runtime completes them.

Reasoning is expensive, so it runs offline: per user, T sampled reasoning paths, each followed by a constrained
beam search over the first prefix_levels SID levels; the pooled prefixes are stored per user (encoded with
runtime.language.encode_prefix). At request time the model only completes the last level inside those prefixes
(one decode step), which is cheap enough to serve; a user without prefixes falls back to full decoding.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import torch

from components.config import ReasoningConfig
from components.errors import SidrecError
from components.reasoning.rationales import NO_REASON, Evidence, grounded_rationale
from components.runtime.beam import constrained_beam_search
from components.runtime.language import END_THINK, THINK, decode_prefix, encode_prefix, prefix_trie
from components.runtime.recommender import Recommender, encode_prompts

PREFIX_LEVELS = 2


def prefix_levels(n_levels: int) -> int:
    """Codes per stored prefix for a SID map of `n_levels`: PREFIX_LEVELS, but always at least one code short of a
    whole SID (serving constrains the rest of the SID under a prefix; a whole SID would leave nothing to choose).
    Why not a fixed 2: a 2-level map (sids.levels: 2) would store whole SIDs, which serving refuses."""
    if n_levels < 2:
        raise SidrecError(
            f"think-ahead needs SIDs of at least 2 levels, the SID map has {n_levels}: set sids.levels to 2 or more "
            "and rebuild the SID map"
        )
    return min(PREFIX_LEVELS, n_levels - 1)


COLUMNS = [
    "user_id",
    "prefixes",
    "scores",
    "rationale",
    "reasoning_path",
    "model_version",
    "sid_version",
    "created_at",
]


@torch.inference_mode()
def sample_rationales(
    model, tokenizer, prompts: list[str], n_paths: int, max_new_tokens: int, temperature: float
) -> list[list[str]]:
    """n_paths sampled continuations of `prompt + <think>` per prompt, cut at </think>."""
    eos = tokenizer.convert_tokens_to_ids("</think>") if "</think>" in tokenizer.get_vocab() else None
    ids, mask = encode_prompts(tokenizer, [p + THINK for p in prompts])
    device = next(model.parameters()).device
    out = model.generate(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        do_sample=n_paths > 1 or temperature > 0,
        temperature=max(temperature, 1e-3),
        top_k=None,
        top_p=None,
        max_new_tokens=max_new_tokens,
        num_return_sequences=n_paths,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=eos,
    )
    texts = tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=False)
    cleaned = [t.split("</think>")[0].replace(tokenizer.pad_token or "", "").strip() for t in texts]
    return [cleaned[i * n_paths : (i + 1) * n_paths] for i in range(len(prompts))]


def think_ahead(
    recommender: Recommender,
    users: pd.DataFrame,
    cfg: ReasoningConfig,
    seed: int = 0,
    batch_size: int = 8,
    evidence: Evidence | None = None,
) -> pd.DataFrame:
    """Per user (user_id, history): the pooled top prefix_levels-code SID prefixes with their probabilities summed
    over reasoning paths, the model's first reasoning path, and the model and SID versions they belong to.

    With `evidence`, `rationale` is an explanation a product can show: the grounded reasons (reasoning.rationales)
    that link the history to the most bought item of the top prefix; without it, the model's reasoning path."""
    model = recommender.models[0]
    tokenizer, sidmap = recommender.tokenizer, recommender.sidmap
    torch.manual_seed(seed)
    levels = prefix_levels(sidmap.n_levels)
    ptrie = prefix_trie(sidmap, tokenizer, levels).to(recommender.device)
    about = _most_bought_under_prefixes(sidmap, evidence, levels) if evidence else {}
    rows = []
    for start in range(0, len(users), batch_size):
        chunk = users.iloc[start : start + batch_size]
        prompts = recommender.prompts([list(h) for h in chunk["history"]])
        paths = sample_rationales(
            model, tokenizer, prompts, cfg.paths_per_user, cfg.max_rationale_tokens, cfg.temperature
        )
        flat = [p + f"{THINK} {r}{END_THINK}" for p, rs in zip(prompts, paths, strict=True) for r in rs]
        ids, mask = encode_prompts(tokenizer, flat)
        beam = max(cfg.prefixes_per_path, 5)
        result = constrained_beam_search(
            model, ids.to(recommender.device), mask.to(recommender.device), ptrie, beam, cfg.prefixes_per_path
        )
        for u, user_id in enumerate(chunk["user_id"]):
            pooled: dict[tuple[int, ...], float] = {}
            for p in range(cfg.paths_per_user):
                r = u * cfg.paths_per_user + p
                for codes, score in zip(result.codes[r].tolist(), result.scores[r].tolist(), strict=True):
                    if math.isfinite(score):  # pool paths: a prefix's probability summed over paths
                        key = tuple(codes)
                        pooled[key] = pooled.get(key, 0.0) + math.exp(score) / cfg.paths_per_user
            best = sorted(pooled.items(), key=lambda kv: -kv[1])
            path = paths[u][0][:300]
            history = [str(i) for i in chunk["history"].iloc[u]]
            rows.append(
                {
                    "user_id": str(user_id),
                    "prefixes": [encode_prefix(codes) for codes, _ in best],
                    "scores": [float(s) for _, s in best],
                    "rationale": _explain(history, about.get(best[0][0]), evidence) if evidence and best else path,
                    "reasoning_path": path,
                }
            )
    frame = pd.DataFrame(rows, columns=COLUMNS[:5])
    frame["model_version"] = recommender.model_version or ""
    frame["sid_version"] = sidmap.version
    frame["created_at"] = pd.Timestamp(datetime.now(UTC))
    return frame[COLUMNS]


def _most_bought_under_prefixes(sidmap, evidence: Evidence, levels: int) -> dict[tuple[int, ...], str]:
    """prefix -> the most bought servable item under it (what an explanation is written about)."""
    best: dict[tuple[int, ...], str] = {}
    for item, codes in zip(sidmap.item_ids, sidmap.codes.tolist(), strict=True):
        if sidmap.servable(item):
            prefix = tuple(codes[:levels])
            if prefix not in best or evidence.stats.popularity.get(item, 0) > evidence.stats.popularity.get(
                best[prefix], 0
            ):
                best[prefix] = item
    return best


def _explain(history: list[str], item: str | None, evidence: Evidence) -> str:
    """The grounded reasons linking the history to `item`, prefixed by its title."""
    if item is None:
        return NO_REASON
    text, _ = grounded_rationale(history, item, evidence)
    return f"{evidence.titles.get(item, item)[:60]}: {text}"


def shard_users(users: pd.DataFrame, shard: int, n_shards: int) -> pd.DataFrame:
    """The users of one shard: every n-th user in user_id order (stable across runs and workers)."""
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard} outside 0..{n_shards - 1}")
    ordered = users.sort_values("user_id").reset_index(drop=True)
    return ordered[ordered.index % n_shards == shard]


def write_prefixes(frame: pd.DataFrame, out_dir: Path, shard: int = 0, n_shards: int = 1) -> Path:
    """prefixes-<shard>-of-<n>.parquet in `out_dir`, written atomically (temp file + rename)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"prefixes-{shard:03d}-of-{n_shards:03d}.parquet"
    tmp = path.with_suffix(".tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path


def prefixes_by_user(frame: pd.DataFrame) -> dict[str, list[tuple[int, ...]]]:
    """user_id -> decoded prefixes (runtime.language.decode_prefix)."""
    return {str(u): [decode_prefix(p) for p in ps] for u, ps in zip(frame["user_id"], frame["prefixes"], strict=True)}

"""Score the generative model with constrained beam search, on the same examples as the baselines."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from components.decoding.recommend import recommend_items
from components.decoding.trie import SidTrie
from components.evaluation.metrics import hit_overlap, hit_rate_ndcg
from components.sids.sidmap import SidMap


def decode_and_score(
    model,
    tokenizer,
    trie: SidTrie,
    sidmap: SidMap,
    examples: pd.DataFrame,
    ks: list[int],
    beam_size: int,
    batch_size: int = 16,
    prefixes=None,
    baseline: list[list[str]] | None = None,
    candidates: int | None = None,
    transitions=None,
    blend_weight: float = 0.0,
    ranker=None,
) -> tuple[dict, list[list[tuple[str, float]]]]:
    """HR/NDCG@ks, the invalid-generation share and the cost per request, and each row's `candidates` best items
    (default: the beam) with their log-probs, for re-ranking such as evaluation.blend. The metrics read only the
    first max(ks) items, the same whatever the candidate count (the beam's final top-k is sorted). With a
    baseline's ranked lists for the same rows, also which rows each of them hits (metrics.hit_overlap at the
    largest k). With `transitions` and `blend_weight` > 0 it scores the hybrid, with a `ranker` the ranking
    stage (decoding.recommend)."""
    k = max(ks)
    width = max(candidates or beam_size, k)
    t0 = time.perf_counter()
    recs = recommend_items(
        model,
        tokenizer,
        trie,
        sidmap,
        [list(h) for h in examples["history"]],
        width,
        max(beam_size, width),
        prefixes,
        batch_size,
        transitions=transitions,
        blend_weight=blend_weight,
        ranker=ranker,
    )
    seconds = time.perf_counter() - t0
    ranked = [[item for item, _ in row][:k] for row in recs]
    returned = sum(len(r) for r in ranked)
    invalid = sum(1 for row in ranked for item in row if item not in sidmap)
    duplicates = sum(len(row) - len(set(row)) for row in ranked)
    metrics = hit_rate_ndcg(ranked, examples["target"].astype(str).tolist(), ks)
    metrics.update(
        {
            "invalid_rate": invalid / max(returned, 1),
            "duplicate_rate": duplicates / max(returned, 1),
            "short_lists": sum(1 for r in ranked if len(r) < k),
            "rows": len(examples),
            "ms_per_request": 1000 * seconds / max(len(examples), 1),
        }
    )
    if baseline is not None:
        first_code = {item: int(sidmap.codes_of(item)[0]) for item in sidmap.item_ids}
        targets = examples["target"].astype(str).tolist()
        metrics[f"overlap@{k}"] = hit_overlap(ranked, baseline, targets, k, first_code)
    return metrics, recs


def evaluate_model_dir(
    model_dir: Path | list[Path],
    examples: pd.DataFrame,
    ks: list[int],
    beam_size: int,
    batch_size: int = 16,
    device: str = "cpu",
    baseline: list[list[str]] | None = None,
    blend_weight: float = 0.0,
    ranker_dir: Path | None = None,
) -> dict:
    """Score one trained model, or an ensemble of them decoded together when given a list of directories; with
    `blend_weight` > 0 the hybrid served by `sidrec export triton --blend-weight` (the first directory's
    transitions.json); with `ranker_dir` the ranking stage served by `sidrec export triton --ranker`."""
    from components.decoding.transitions import FILE_NAME, TransitionTable

    dirs = [Path(d) for d in model_dir] if isinstance(model_dir, list) else [Path(model_dir)]
    model, tokenizer, trie, sidmap = load_for_decoding(dirs, device)
    table = TransitionTable.load(dirs[0] / FILE_NAME) if blend_weight > 0 else None
    ranker = None
    if ranker_dir is not None:
        from components.ranking.artifact import RankerArtifact

        ranker = RankerArtifact.load(Path(ranker_dir))
    return decode_and_score(
        model,
        tokenizer,
        trie,
        sidmap,
        examples,
        ks,
        beam_size,
        batch_size,
        baseline=baseline,
        transitions=table,
        blend_weight=blend_weight,
        ranker=ranker,
    )[0]


def load_for_decoding(model_dirs: list[Path], device: str = "cpu"):
    """([model, ...], tokenizer, trie, sidmap) of one trained model or an ensemble (load_ensemble); the beam search
    decodes a one-model list as that model."""
    from components.model.backbone import load_ensemble

    models, tokenizer, sidmap = load_ensemble(list(model_dirs), device)
    return models, tokenizer, SidTrie.from_sidmap(sidmap, tokenizer), sidmap

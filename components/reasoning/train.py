"""Reasoning fine-tuning: teach the recommender to write "<think> rationale </think>" before the SID."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from components.config import Config, TrainConfig
from components.runtime.language import THINK_TOKENS, item_token_map, reasoning_answer, sid_token_ids
from components.runtime.recommender import MODEL_INFO_FILE, SID_MAP_DIR, Recommender, prompt_settings
from components.runtime.staging import staged_directory
from components.training.examples import next_item_examples, training_hints
from components.training.train import train_causal_lm, with_model_softmax


def base_prompt_pairs(frame: pd.DataFrame, base: Recommender) -> list[tuple[str, str]]:
    """(prompt, target SID) of each row whose target is in `base`'s map, the prompt written as `base` was trained
    on: its titles, context line, hint line and item tokens (training.examples.next_item_examples). Why: the
    reasoner continues `base` and is served through the same Recommender.prompts, so it must learn on those
    prompts. The hint line leaves each row's own transition out of the counts, as for training rows: the rows
    come from the examples `base` was trained on (the pipeline samples them from its train rows)."""
    settings = prompt_settings(base.info.get("train"))
    hints = None
    if settings["hint_successors"] > 0:
        shape = TrainConfig(hint_successors=settings["hint_successors"], hint_window=settings["hint_window"])
        hints = training_hints(shape, base.transitions, counted=True)
    tokens = item_token_map(base.item_tokens) if base.item_tokens else None
    return next_item_examples(frame, base.sidmap, base.titles, base.uses_context, hints, tokens)


def reasoning_examples(frame: pd.DataFrame, base: Recommender) -> list[tuple[str, str]]:
    """(history prompt, " <think> rationale </think>" + target SID) pairs from build_rationales output, the
    prompts as `base` was trained on (base_prompt_pairs)."""
    rows = frame[frame["target"].map(lambda t: t in base.sidmap)]
    pairs = base_prompt_pairs(rows, base)
    return [
        (prompt, reasoning_answer(rationale, completion))
        for (prompt, completion), rationale in zip(pairs, rows["rationale"], strict=True)
    ]


def train_reasoning(
    base: Recommender, rationales: pd.DataFrame, cfg: Config, out_dir: Path, direct_share: float = 0.5
) -> Path:
    """Continue training `base`'s (first) model on reasoning examples (+ a share of direct next-item examples,
    so the same model still answers without thinking); writes a full model directory to `out_dir`."""
    model, tokenizer, sidmap = base.models[0], base.tokenizer, base.sidmap
    added = tokenizer.add_tokens(list(THINK_TOKENS), special_tokens=True)
    if added:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    texts = reasoning_examples(rationales, base)
    direct = base_prompt_pairs(rationales, base)
    texts += direct[: int(len(direct) * direct_share)]
    out_dir = Path(out_dir)
    # the SID table and the model's recorded softmax, so that the answer's SID tokens are trained with the
    # recommender's own softmax (SID-level or SID-vocabulary, label smoothing) and decode as its beam scores them;
    # the rationale's words use the full vocabulary
    stats = train_causal_lm(
        model,
        tokenizer,
        texts,
        with_model_softmax(cfg.train, model),
        out_dir / "work",
        max_length=cfg.model.max_length,
        sid_ids=sid_token_ids(tokenizer, sidmap),
    )
    with staged_directory(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        sidmap.save(tmp / SID_MAP_DIR)
        base.save_prompt_files(tmp)  # its prompts are written from the base's titles, transitions and item tokens
        info = {
            **{k: v for k, v in base.info.items() if k != "members"},
            "base_model_version": base.model_version,
            "reasoning_examples": len(texts),
            "teachers": rationales["teacher"].value_counts().to_dict(),
            **{k: v for k, v in stats.items() if k != "history"},
        }
        (tmp / MODEL_INFO_FILE).write_text(json.dumps(info, indent=2, default=str))
        rationales.to_parquet(tmp / "rationales.parquet", index=False)
    return out_dir

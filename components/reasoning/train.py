"""Reasoning fine-tuning: teach the recommender to write "<think> rationale </think>" before the SID."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from components.config import Config


def train_reasoning(
    model_dir: Path, rationales: pd.DataFrame, cfg: Config, out_dir: Path, direct_share: float = 0.5
) -> Path:
    """Continue training `model_dir` on reasoning examples (+ a share of direct next-item examples, so the
    same model still answers without thinking); writes a full model dir to `out_dir`."""
    from components.model.backbone import load_trained
    from components.model.examples import next_item_examples
    from components.model.train import train_causal_lm
    from components.reasoning.thinkahead import reasoning_examples

    model, tokenizer, sidmap = load_trained(model_dir)
    added = tokenizer.add_tokens(["<think>", "</think>"], special_tokens=True)
    if added:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    texts = reasoning_examples(rationales, sidmap)
    direct = next_item_examples(rationales, sidmap)
    texts += direct[: int(len(direct) * direct_share)]
    out_dir = Path(out_dir)
    stats = train_causal_lm(model, tokenizer, texts, cfg.train, out_dir / "work", max_length=cfg.model.max_length)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    sidmap.save(tmp / "sid_map")
    teachers = rationales["teacher"].value_counts().to_dict()
    info = {
        "base_model": str(model_dir),
        "reasoning_examples": len(texts),
        "teachers": teachers,
        **{k: v for k, v in stats.items() if k != "history"},
    }
    (tmp / "sidrec_model.json").write_text(json.dumps(info, indent=2, default=str))
    rationales.to_parquet(tmp / "rationales.parquet", index=False)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir

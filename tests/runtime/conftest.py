"""A tiny random Llama with SID tokens and a hand-made SID map, shared by the runtime tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from components.config import ModelConfig
from components.runtime.backbone import load_backbone
from components.runtime.recommender import Recommender
from components.sids.sidmap import SidMap
from components.training.vocab import add_sid_tokens


@pytest.fixture(scope="session")
def tiny_sid_model():
    rng = np.random.default_rng(0)
    codes = set()
    while len(codes) < 60:
        codes.add(tuple(int(c) for c in rng.integers(0, 6, size=3)))
    sidmap = SidMap([f"i{i}" for i in range(60)], np.array(sorted(codes)), [6, 6, 6], "test")
    model, tokenizer = load_backbone(ModelConfig(backbone="tiny", tiny_hidden_size=32, tiny_layers=2, tiny_heads=2))
    add_sid_tokens(model, tokenizer, sidmap)
    torch.manual_seed(0)
    with torch.no_grad():  # random but peaky logits so beams differ clearly
        model.get_input_embeddings().weight.mul_(4.0)
    return model.eval(), tokenizer, sidmap


@pytest.fixture
def tiny_recommender(tiny_sid_model):
    """The tiny model as a one-model Recommender with beam 10."""
    model, tokenizer, sidmap = tiny_sid_model
    return Recommender([model], tokenizer, sidmap, beam_size=10)


@pytest.fixture
def tiny_model_dir(tiny_sid_model, tmp_path):
    """The tiny model as a trained model directory (weights, tokenizer, SID map), for CLI tests."""
    model, tokenizer, sidmap = tiny_sid_model
    path = tmp_path / "model"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    sidmap.save(path / "sid_map")
    return path

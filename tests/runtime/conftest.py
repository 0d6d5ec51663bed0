"""The tiny random Llama of tests/conftest.py (tiny_sid_model) as a Recommender and a model directory."""

from __future__ import annotations

import pytest

from components.runtime.recommender import Recommender


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

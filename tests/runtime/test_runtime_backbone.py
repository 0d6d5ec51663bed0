"""Backbones: a pretrained decoder cut to its first layers stays an ordinary checkpoint of its class."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from components.config import ModelConfig
from components.errors import SidrecError
from components.runtime.backbone import load_backbone


@pytest.fixture
def local_backbone(tmp_path):
    """A 3-layer random Llama saved as a local model directory: a stand-in for a pretrained checkpoint."""
    model, tokenizer = load_backbone(ModelConfig(backbone="tiny", tiny_hidden_size=32, tiny_layers=3, tiny_heads=2))
    with torch.no_grad():
        for i, layer in enumerate(model.model.layers):  # tell the layers apart after the cut
            layer.mlp.down_proj.weight.fill_(0.01 * (i + 1))
    model.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    return tmp_path / "base", model


def test_pretrained_layers_keeps_the_first_layers_and_round_trips(local_backbone, tmp_path):
    source, full = local_backbone
    model, tokenizer = load_backbone(ModelConfig(backbone=str(source), pretrained_layers=2))
    assert len(model.model.layers) == 2 and model.config.num_hidden_layers == 2
    for kept, original in zip(model.model.layers, full.model.layers[:2], strict=True):
        assert torch.equal(kept.mlp.down_proj.weight, original.mlp.down_proj.weight)
    model.save_pretrained(tmp_path / "cut")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "cut")
    ids = tokenizer(["User bought: a b c"], return_tensors="pt")
    assert len(reloaded.model.layers) == 2
    assert torch.allclose(model.eval()(**ids).logits, reloaded.eval()(**ids).logits, atol=1e-5)


def test_pretrained_layers_default_keeps_all_and_too_many_is_one_line(local_backbone):
    source, _ = local_backbone
    model, _ = load_backbone(ModelConfig(backbone=str(source)))
    assert len(model.model.layers) == 3
    with pytest.raises(SidrecError, match="has 3 layers"):
        load_backbone(ModelConfig(backbone=str(source), pretrained_layers=4))

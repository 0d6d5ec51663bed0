"""Shared fixtures: project-local HOME/caches, free ports, a tiny deployment config, a tiny SID model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Nothing writes into the real $HOME, even when pytest is run without scripts/env.sh.
for _var, _sub in {
    "HOME": ".home",
    "XDG_CACHE_HOME": ".cache",
    "MPLCONFIGDIR": ".cache/matplotlib",
    "HF_HOME": ".cache/huggingface",
    "AIRFLOW_HOME": ".airflow",
}.items():
    if not os.environ.get(_var, "").startswith(str(ROOT)):
        os.environ[_var] = str(ROOT / _sub)
        Path(os.environ[_var]).mkdir(parents=True, exist_ok=True)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("SIDREC_ROOT", str(ROOT))


@pytest.fixture
def tiny_config(tmp_path):
    """The tiny deployment with its run root and artifact store inside tmp_path."""
    from components.config import load_config

    return load_config(
        ROOT / "configs" / "tiny.yaml",
        overrides={"run_root": str(tmp_path / "runs"), "store": {"root": str(tmp_path / "artifacts")}},
    )


@pytest.fixture
def free_port():
    from components.local.procs import free_port as _free_port

    return _free_port


@pytest.fixture(scope="session")
def tiny_sid_model():
    """A tiny random Llama with SID tokens and a hand-made 60-item SID map (3 levels of 6 codes): the runtime's
    tests and the experiments that decode with it share it."""
    import numpy as np
    import torch

    from components.config import ModelConfig
    from components.runtime.backbone import load_backbone
    from components.sids.sidmap import SidMap
    from components.training.vocab import add_sid_tokens

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


@pytest.fixture(scope="session")
def other_seed():
    """other_seed(model, seed): a copy of `model` with every weight moved by seeded noise, as another seed of the
    same recipe would differ (same tokenizer and SID map): the members of test ensembles."""
    import copy

    import torch

    def perturbed(model, seed: int):
        other = copy.deepcopy(model)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in other.parameters():
                p.add_(0.5 * torch.randn(p.shape, generator=gen))
        return other

    return perturbed


@pytest.fixture(scope="session")
def synthetic_world():
    """synthetic_world(directory, n_items=, n_users=, seed=, **sections): a small synthetic catalog and events,
    their hashing-encoder SID map (codebooks of 8) built into `directory`, a tiny 1-layer deployment config (one
    short epoch; `sections` add to or override its settings, section by section) and the leave-last-out
    splits: what the training, alignment and evaluation tests train their models on."""
    from components.config import SidConfig, load_config
    from components.data.splits import examples_from_events
    from components.data.synthetic import generate_synthetic
    from components.sids.build import build_sids

    def build(directory: Path, *, n_items: int, n_users: int, seed: int, **sections: dict):
        catalog, events = generate_synthetic(n_items=n_items, n_users=n_users, seed=seed)
        sids = SidConfig(codebook_size=8, content_encoder="hashing", collab_dim=8)
        sidmap = build_sids(catalog, events, sids, directory)
        overrides = {
            "model": {"backbone": "tiny", "tiny_hidden_size": 32, "tiny_layers": 1, "tiny_heads": 2},
            "train": {"epochs": 1, "batch_size": 16, "lr": 0.005, "torch_threads": 1},
        }
        for name, settings in sections.items():
            overrides[name] = {**overrides.get(name, {}), **settings}
        cfg = load_config(None, overrides=overrides)
        return cfg, catalog, events, sidmap, examples_from_events(events, 5)

    return build

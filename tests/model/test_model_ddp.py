"""Distributed fine-tuning: 2 gloo processes on CPU follow the same loss curve as 1 process."""

from __future__ import annotations

import numpy as np
import pytest

from components.config import load_config
from components.model.distributed import run_ddp_steps, train_ddp
from components.sids.sidmap import sid_string


@pytest.mark.slow
def test_two_process_gloo_ddp_matches_single_process(tmp_path):
    cfg = load_config(
        None,
        overrides={
            "model": {"backbone": "tiny", "tiny_hidden_size": 32, "tiny_layers": 1, "tiny_heads": 2},
            "train": {"lr": 0.01},
        },
    )
    rng = np.random.default_rng(0)
    # equal completion lengths on every rank, so the mean of rank means is the global mean
    texts = [(f"User bought item {i}\nNext:", f" {sid_string(rng.integers(0, 9, 3))}") for i in range(64)]
    single = run_ddp_steps(cfg, texts, steps=6, global_batch=8)
    double = train_ddp(cfg, texts, world_size=2, steps=6, global_batch=8, out_file=tmp_path / "losses.json")
    assert len(double) == 6 and single[-1] < single[0]
    np.testing.assert_allclose(double, single, rtol=2e-3, atol=2e-3)

"""A small synthetic dataset in the data contract (catalog, events, splits) with a tiny benchmark config, for the
tests that run a whole experiment command (the GPU recipe, the benchmark on prebuilt maps)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from components.config import deep_merge
from components.data.readers import write_table
from components.data.splits import examples_from_events
from components.data.synthetic import generate_synthetic


@pytest.fixture
def tiny_benchmark(tmp_path: Path) -> Callable[..., Path]:
    """tiny_benchmark(n_items, n_users, seed, overrides) writes the dataset and tmp_path/cfg.yaml (a 1-layer,
    32-wide model, hashing encoder, 8-code levels), and returns the config's path."""

    def make(n_items: int = 60, n_users: int = 80, seed: int = 4, overrides: dict | None = None) -> Path:
        catalog, events = generate_synthetic(n_items=n_items, n_users=n_users, seed=seed)
        write_table(catalog, tmp_path / "catalog.jsonl.gz")
        events.to_csv(tmp_path / "events.csv", index=False)
        for name, frame in examples_from_events(events, 5).items():
            frame.drop(columns="event_timestamp").to_json(tmp_path / f"{name}.jsonl", orient="records", lines=True)
        config = {
            "run_root": str(tmp_path / "runs"),
            "data": {
                "catalog_uri": str(tmp_path / "catalog.jsonl.gz"),
                "events_uri": str(tmp_path / "events.csv"),
                "splits_dir": str(tmp_path),
            },
            "sids": {"codebook_size": 8, "content_encoder": "hashing", "collab_dim": 8},
            "model": {"backbone": "tiny", "tiny_hidden_size": 32, "tiny_layers": 1, "tiny_heads": 2},
            "train": {"batch_size": 16, "warmup_epochs": 0.0},
            "serving": {"beam_size": 5},
        }
        path = tmp_path / "cfg.yaml"
        path.write_text(yaml.safe_dump(deep_merge(config, overrides or {})))
        return path

    return make

"""A tiny deployment over synthetic raw files, shared by the pipeline tests."""

from __future__ import annotations

from pathlib import Path

import yaml

from components.data.readers import write_table
from components.data.synthetic import generate_synthetic


def write_tiny_deployment(root: Path, seed: int, max_steps: int, eval_examples: int) -> Path:
    """Raw catalog/events (60 items, 60 users) and a deploy.yaml with the tiny model; returns the YAML path."""
    catalog, events = generate_synthetic(n_items=60, n_users=60, seed=seed)
    write_table(catalog, root / "raw" / "catalog.jsonl.gz")
    write_table(events, root / "raw" / "events.csv.gz")
    config = {
        "run_root": str(root / "runs"),
        "data": {
            "catalog_uri": str(root / "raw" / "catalog.jsonl.gz"),
            "events_uri": str(root / "raw" / "events.csv.gz"),
            "splits_dir": None,
        },
        "store": {"root": str(root / "artifacts")},
        "sids": {"codebook_size": 8, "content_encoder": "hashing", "collab_dim": 8},
        "model": {"backbone": "tiny", "tiny_hidden_size": 32, "tiny_layers": 1, "tiny_heads": 2},
        "train": {"batch_size": 16, "lr": 0.01, "max_steps": max_steps, "torch_threads": 1},
        "eval": {"max_examples": eval_examples},
        "reasoning": {"paths_per_user": 1, "prefixes_per_path": 3, "max_rationale_tokens": 4, "shards": 2},
        "serving": {"beam_size": 10, "model_repository": str(root / "triton_repo"), "ranker": True, "kind": "cpu"},
    }
    (root / "deploy.yaml").write_text(yaml.safe_dump(config))
    return root / "deploy.yaml"

"""A tiny deployment over synthetic raw files, shared by the pipeline tests."""

from __future__ import annotations

from pathlib import Path

import yaml

from components.data.readers import write_table
from components.data.synthetic import generate_synthetic

# every artifact one full run of the pipeline publishes (the DAGs, the scratch-space DAGs and Kubeflow alike)
ARTIFACTS = (
    "curated",
    "sid_map",
    "examples",
    "model_candidate",
    "model",
    "reasoning_model",
    "prefix_shards",
    "prefixes",
)


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
        "reasoning": {
            "paths_per_user": 1,
            "prefixes_per_path": 3,
            "max_rationale_tokens": 4,
            "shards": 2,
            # a 150-step model on 60 users: the gate's numbers are noise, so the tests let prefixes through
            # (the gate's refusal path is tested step-level in tests/pipeline/test_pipeline_loop.py)
            "max_hr10_loss": 1.0,
            "rationale_examples": 200,
            "gate_examples": 30,
        },
        "serving": {
            "beam_size": 10,
            "model_repository": str(root / "triton_repo"),
            "ranker": True,
            "ranker_content": True,  # the content index travels in the exported ranker and Triton serves it
            "kind": "cpu",
        },
        # no timed runs: a test triggers the first DAG itself, the rest follow by their assets
        "schedules": {"features": None, "training": None, "reasoning": None},
    }
    (root / "deploy.yaml").write_text(yaml.safe_dump(config))
    return root / "deploy.yaml"


def change_catalog(root: Path, new_items: int = 0, retire: int = 0, new_line: int = 0, seed: int = 0) -> dict:
    """Change the raw files as a catalog feed would between two runs; returns the ids touched.

    new_items: copies of existing items under new ids (the same product, a new listing), each bought once by
    some user after an item of the same family; retire: the first items leave the catalog (their events stay);
    new_line: a new product line (a brand and vocabulary the catalog never had), bought by many users."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    catalog = pd.read_json(root / "raw" / "catalog.jsonl.gz", lines=True, dtype={"item_id": str})
    events = pd.read_csv(root / "raw" / "events.csv.gz", dtype={"item_id": str, "user_id": str})
    events["event_timestamp"] = pd.to_datetime(events["event_timestamp"], utc=True, format="mixed")
    catalog["updated_at"] = pd.to_datetime(catalog["updated_at"], utc=True, format="mixed")
    later = events["event_timestamp"].max()
    added, new_events = [], []
    sources = catalog.sample(n=new_items, random_state=seed) if new_items else catalog.iloc[:0]
    for n, row in enumerate(sources.itertuples(index=False)):
        item = f"new{seed}_{n}"
        added.append({**row._asdict(), "item_id": item, "title": f"{row.title} (relisted)"})
        buyers = events[events.item_id == str(row.item_id)].user_id.unique()[:3]
        new_events += [(u, item, later + pd.Timedelta(hours=k + 1)) for k, u in enumerate(buyers)]
    line = [f"line{seed}_{n}" for n in range(new_line)]
    users = events.user_id.unique()
    for n, item in enumerate(line):
        added.append(
            {
                "item_id": item,
                "title": f"Zephyr quantum photonic laser module mark {n}",
                "description": f"A quantum photonic laser module, series {n}, for optical benches.",
                "brand": "Zephyr",
                "categories": "Optics|Laser",
                "updated_at": later,
            }
        )
    for u in rng.choice(users, size=min(len(users), 40), replace=False):
        picks = rng.choice(line, size=min(3, len(line)), replace=False) if line else []
        new_events += [(u, item, later + pd.Timedelta(days=1, hours=k)) for k, item in enumerate(picks)]
    retired = catalog.item_id.astype(str).head(retire).tolist()
    catalog = pd.concat([catalog[~catalog.item_id.astype(str).isin(retired)], pd.DataFrame(added)], ignore_index=True)
    extra = pd.DataFrame(new_events, columns=["user_id", "item_id", "event_timestamp"]).assign(event_type="purchase")
    events = pd.concat([events, extra], ignore_index=True)
    write_table(catalog, root / "raw" / "catalog.jsonl.gz")
    write_table(events, root / "raw" / "events.csv.gz")
    return {
        "new": [a["item_id"] for a in added if not a["item_id"].startswith("line")],
        "line": line,
        "retired": retired,
    }

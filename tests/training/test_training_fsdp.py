"""train.sharding: fsdp on the CPU: two gloo processes under torchrun shard the model with FSDP2 and follow the
one-process run; rank 0 gathers and saves the whole model, which loads and recommends like any other."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from components.config import SidConfig
from components.data.readers import write_table
from components.data.splits import examples_from_events
from components.data.synthetic import generate_synthetic
from components.local.procs import free_port
from components.runtime.recommender import Recommender
from components.sids.build import build_sids
from components.training.distributed import ShardingError, check_fsdp


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("fsdp")
    catalog, events = generate_synthetic(n_items=60, n_users=80, seed=4)
    write_table(catalog, root / "catalog.jsonl.gz")
    for name, frame in examples_from_events(events, 5).items():
        frame.drop(columns="event_timestamp").to_json(root / f"{name}.jsonl", orient="records", lines=True)
    build_sids(catalog, events, SidConfig(codebook_size=8, content_encoder="hashing", collab_dim=8), root / "sid")
    config = {
        "run_root": str(root / "runs"),
        "data": {"catalog_uri": str(root / "catalog.jsonl.gz"), "splits_dir": str(root)},
        "model": {"backbone": "tiny", "tiny_hidden_size": 32, "tiny_layers": 2, "tiny_heads": 2},
        "train": {
            "epochs": 1,
            "batch_size": 16,
            "lr": 0.005,
            "max_steps": 12,
            "torch_threads": 1,
            "sid_softmax": True,  # the output layer's weight is read directly (token_logits), not only called
            "warmup_epochs": 0.0,
            "checkpoint_every": 0,
            "sharding": "fsdp",  # inert in one process: the same config is the reference run
        },
        "eval": {"max_examples": 16, "batch_size": 16},
        "serving": {"beam_size": 5},
    }
    (root / "cfg.yaml").write_text(yaml.safe_dump(config))
    return root


def _run(root, out: str, nproc: int) -> dict:
    """`sidrec training run`, under torchrun when nproc > 1 (as tests/training/test_training_distributed.py)."""
    cmd = ["-m", "components.cli", "training", "run", "--config", str(root / "cfg.yaml")]
    cmd += ["--sid-map", str(root / "sid"), "--out", str(root / out)]
    if nproc > 1:
        cmd = ["-m", "torch.distributed.run", f"--nproc-per-node={nproc}", f"--master-port={free_port()}", *cmd]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((root / out / "sidrec_model.json").read_text())


def test_two_gloo_processes_with_fsdp_follow_the_one_process_run(world):
    one, two = _run(world, "one", 1), _run(world, "fsdp", 2)
    assert one["world_size"] == 1 and two["world_size"] == 2 and one["steps"] == two["steps"] == 12
    assert two["parameters_per_rank"] <= 0.55 * one["parameters_per_rank"]  # sharded, not replicated
    curve = {name: json.loads((world / name / "history.json").read_text()) for name in ("one", "fsdp")}
    losses = [[h["loss"] for h in curve[n] if "loss" in h] for n in ("one", "fsdp")]
    assert len(losses[0]) == len(losses[1]) >= 2
    assert losses[1] == pytest.approx(losses[0], abs=1e-4)
    valid = [[h["valid"] for h in curve[n] if "valid" in h] for n in ("one", "fsdp")]
    assert valid[0] and valid[1] == pytest.approx(valid[0], abs=1e-9)  # every rank decoded, rank 0's score kept
    # rank 0 saved the whole model (no shard, no DTensor), with the weights the one process reached
    weights = {name: load_file(world / name / "model.safetensors") for name in ("one", "fsdp")}
    assert weights["fsdp"].keys() == weights["one"].keys()
    for key, value in weights["one"].items():
        assert weights["fsdp"][key].shape == value.shape, key
        torch.testing.assert_close(weights["fsdp"][key], value, rtol=0, atol=1e-4, msg=key)
    recommender = Recommender.from_pretrained(world / "fsdp", beam_size=5)
    history = json.loads((world / "valid.jsonl").read_text().splitlines()[0])["history"]
    assert len(recommender.recommend([[str(i) for i in history]], 5)[0]) == 5


def test_fsdp_refuses_what_it_does_not_shard():
    check_fsdp(lora=False, warmup_steps=0, checkpoint_every=0)
    with pytest.raises(ShardingError, match="train.lora: false, train.warmup_epochs: 0, train.checkpoint_every: 0"):
        check_fsdp(lora=True, warmup_steps=3, checkpoint_every=500)

"""One training function from one process to torchrun; exact resume; LoRA trains only adapters and SID rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from unittest import mock

import pytest
import torch
import yaml

from components.config import SidConfig, load_config
from components.data.readers import write_table
from components.data.splits import examples_from_events
from components.data.synthetic import generate_synthetic
from components.local.procs import free_port
from components.runtime.backbone import load_backbone
from components.sids.build import build_sids
from components.training.examples import build_training_texts
from components.training.train import train_causal_lm, with_lora
from components.training.vocab import add_sid_tokens


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    catalog, events = generate_synthetic(n_items=60, n_users=80, seed=4)
    write_table(catalog, root / "catalog.jsonl.gz")
    splits = examples_from_events(events, 5)
    for name, frame in splits.items():
        frame.drop(columns="event_timestamp").to_json(root / f"{name}.jsonl", orient="records", lines=True)
    sidmap = build_sids(
        catalog, events, SidConfig(codebook_size=8, content_encoder="hashing", collab_dim=8), root / "sid"
    )
    config = {
        "run_root": str(root / "runs"),
        "data": {"catalog_uri": str(root / "catalog.jsonl.gz"), "splits_dir": str(root)},
        "model": {"backbone": "tiny", "tiny_hidden_size": 32, "tiny_layers": 1, "tiny_heads": 2},
        "train": {
            "epochs": 1,
            "batch_size": 16,
            "lr": 0.005,
            "max_steps": 12,
            "torch_threads": 1,
            "sid_softmax": True,
            "warmup_epochs": 0.0,
        },
        "eval": {"max_examples": 16, "batch_size": 16},
        "serving": {"beam_size": 5},
    }
    (root / "cfg.yaml").write_text(yaml.safe_dump(config))
    return root, catalog, splits, sidmap


def _run(world, out: str, nproc: int) -> dict:
    root = world[0]
    train = [
        "-m",
        "components.cli",
        "training",
        "run",
        "--config",
        str(root / "cfg.yaml"),
        "--sid-map",
        str(root / "sid"),
        "--out",
        str(root / out),
    ]
    if nproc > 1:
        train = ["-m", "torch.distributed.run", f"--nproc-per-node={nproc}", f"--master-port={free_port()}", *train]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, *train], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((root / out / "sidrec_model.json").read_text())


def test_two_gloo_processes_follow_the_one_process_loss_curve(world):
    """`sidrec training run` under torchrun: DDP over the same model with the SID vocabulary, each global batch of
    16 split 8 + 8 over two ranks, rank 0 evaluating and saving: the same trajectory as one process on 16."""
    root = world[0]
    one, two = _run(world, "one", 1), _run(world, "two", 2)
    assert one["world_size"] == 1 and two["world_size"] == 2 and one["steps"] == two["steps"] == 12
    curve = {name: json.loads((root / name / "history.json").read_text()) for name in ("one", "two")}
    losses = [[h["loss"] for h in curve[n] if "loss" in h] for n in ("one", "two")]
    assert len(losses[0]) == len(losses[1]) >= 2
    assert losses[1] == pytest.approx(losses[0], abs=1e-4)
    valid = [[h["valid"] for h in curve[n] if "valid" in h] for n in ("one", "two")]
    assert valid[0] and valid[1] == pytest.approx(valid[0], abs=1e-9)
    assert (root / "two" / "model.safetensors").exists() and (root / "two" / "sid_map" / "sid_map.json").exists()


def _setup(world, dropout: float = 0.1):
    _, catalog, splits, sidmap = world
    deployment = load_config(world[0] / "cfg.yaml")
    cfg = deployment.train.model_copy(update={"checkpoint_every": 5, "dropout": dropout, "sid_softmax": False})
    model, tokenizer = load_backbone(deployment.model)
    new_ids = add_sid_tokens(model, tokenizer, sidmap)
    texts = build_training_texts(splits["train"], sidmap, catalog, cfg)
    return model, tokenizer, texts, cfg, new_ids


def test_a_resumed_run_continues_exactly(world, tmp_path):
    """Interrupted after its step-5 checkpoint, a run resumes with the same example order, dropout draws and
    optimizer state: its weights and curve equal an uninterrupted run's."""
    model, tokenizer, texts, cfg, ids = _setup(world)
    whole = train_causal_lm(model, tokenizer, texts, cfg, tmp_path / "whole", new_token_ids=ids)
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    model, tokenizer, texts, cfg, ids = _setup(world)
    real_step, calls = torch.optim.AdamW.step, []

    def crash_at_step_8(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 8:
            raise KeyboardInterrupt("killed")
        return real_step(self, *args, **kwargs)

    with mock.patch.object(torch.optim.AdamW, "step", crash_at_step_8), pytest.raises(KeyboardInterrupt):
        train_causal_lm(model, tokenizer, texts, cfg, tmp_path / "resumed", new_token_ids=ids)
    assert (tmp_path / "resumed" / "checkpoint.pt").exists()
    model, tokenizer, texts, cfg, ids = _setup(world)  # a new process: fresh weights, then the checkpoint
    resumed = train_causal_lm(model, tokenizer, texts, cfg, tmp_path / "resumed", new_token_ids=ids)
    assert resumed["history"] == whole["history"] and resumed["steps"] == whole["steps"] == 12
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0, msg=name)
    assert not (tmp_path / "resumed" / "checkpoint.pt").exists()  # finished: removed


def test_lora_trains_only_adapters_and_the_new_sid_rows(world, tmp_path):
    model, tokenizer, texts, cfg, ids = _setup(world, dropout=0.0)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()}
    peft_model = with_lora(model, 4, ids)
    trainable = {n: p.numel() for n, p in peft_model.named_parameters() if p.requires_grad}
    total = sum(p.numel() for p in peft_model.parameters())
    width = model.config.hidden_size
    tokens = [n for n in trainable if "trainable_tokens" in n]
    assert len(tokens) == 1 and trainable[tokens[0]] == len(ids) * width
    assert all("lora_" in n or "trainable_tokens" in n for n in trainable)
    assert sum(trainable.values()) < 0.1 * total
    cfg = cfg.model_copy(update={"warmup_epochs": 0.25, "checkpoint_every": 0})
    train_causal_lm(peft_model, tokenizer, texts, cfg, tmp_path / "lora", new_token_ids=ids)
    assert {n: p.numel() for n, p in peft_model.named_parameters() if p.requires_grad} == trainable  # still only
    merged = peft_model.merge_and_unload()
    weights = dict(merged.named_parameters())
    embed = weights["model.embed_tokens.weight"]
    old = torch.ones(embed.shape[0], dtype=torch.bool)
    old[torch.tensor(ids)] = False
    torch.testing.assert_close(embed[old], frozen["model.embed_tokens.weight"][old], rtol=0, atol=0)
    assert not torch.equal(embed[~old], frozen["model.embed_tokens.weight"][~old])  # the SID rows learnt
    for name in ("model.layers.0.mlp.down_proj.weight", "model.layers.0.self_attn.q_proj.weight"):
        assert not torch.equal(weights[name], frozen[name])  # the merged adapters moved the projections ...
    for name in ("model.norm.weight", "model.layers.0.input_layernorm.weight"):
        torch.testing.assert_close(weights[name], frozen[name], rtol=0, atol=0)  # ... and nothing else moved

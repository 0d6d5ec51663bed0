"""Preference alignment (training.align) on synthetic data with a tiny model: exact candidate scoring, a loss that
raises the chosen item, and the guard that keeps the supervised model."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest
import torch

from components.runtime.beam import constrained_beam_search
from components.runtime.recommender import Recommender, encode_prompts
from components.training.align import (
    align_model,
    candidate_logprobs,
    mine_preferences,
    preference_loss,
    write_aligned,
)
from components.training.train import load_trained, train_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_world):
    """A tiny model trained briefly on synthetic rows: the supervised model alignment starts from."""
    cfg, catalog, _, sidmap, splits = synthetic_world(
        tmp_path_factory.mktemp("sids"),
        n_items=60,
        n_users=100,
        seed=3,
        train={"max_steps": 15},
        serving={"beam_size": 8},
        eval={"max_examples": 24, "batch_size": 16},
        align={"rows": 48, "negatives": 4, "batch_size": 16, "epochs": 2, "lr": 0.003, "beta": 1.0},
    )
    train, select = splits["train"], splits["valid"]
    model_dir = train_model(cfg, sidmap, catalog, train, None, tmp_path_factory.mktemp("sft") / "model")
    return cfg, sidmap, train, select, model_dir


@pytest.mark.parametrize("softmax", ["vocab", "sid_level", "sid_vocab"])
def test_candidate_logprobs_equal_the_beam_scores(trained, softmax):
    """The alignment scores each SID exactly as the served beam does (same normalisation, same positions), for
    every softmax kind a model may have been trained with."""
    _, _, train, _, model_dir = trained
    rec = Recommender.from_pretrained(model_dir, beam_size=8)
    if softmax != "vocab":
        setattr(rec.models[0].config, f"{softmax}_softmax", True)
    histories = [list(h) for h in train["history"].head(5)]
    ids, mask = encode_prompts(rec.tokenizer, rec.prompts(histories))
    beam = constrained_beam_search(rec.models[0], ids, mask, rec.trie, 8, 6)
    scored = candidate_logprobs(rec.models[0], ids, mask, beam.codes.clamp(min=0), rec.trie)
    assert torch.allclose(scored, beam.scores, atol=1e-4)


def test_preference_loss_is_softmax_dpo():
    """One-hot on the target: -log sigmoid(-log sum_neg exp(beta (h_neg - h_target))) (S-DPO); padding ignored."""
    policy = torch.tensor([[-1.0, -2.0, -3.0, 0.0]])
    reference = torch.tensor([[-1.5, -1.0, -3.5, 0.0]])
    valid = torch.tensor([[True, True, True, False]])
    q = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    h = policy - reference
    expected = -torch.nn.functional.logsigmoid(-torch.logsumexp(0.5 * (h[0, 1:3] - h[0, 0]), 0))
    assert torch.allclose(preference_loss(policy, reference, valid, q, beta=0.5), expected)


def test_alignment_raises_the_chosen_item(trained, tmp_path):
    """On the rows it aligned on, the target moves up among the supervised beam's items."""
    cfg, _, train, _, model_dir = trained
    cfg = cfg.model_copy(update={"align": cfg.align.model_copy(update={"min_gain": -1.0})})  # keep whatever comes
    out = align_model(cfg, model_dir, train, None, tmp_path / "aligned")
    record = json.loads((out / "alignment.json").read_text())
    assert record["kept"] == "aligned"
    rows = train.sample(n=cfg.align.rows, random_state=cfg.align.seed)
    before = mine_preferences(Recommender.from_pretrained(model_dir, beam_size=8), rows, cfg.align, 16)
    policy, tokenizer = load_trained(out)
    ids, mask = encode_prompts(tokenizer, before.prompts)
    with torch.inference_mode():
        after = candidate_logprobs(policy, ids, mask, before.codes, Recommender([policy], tokenizer, trained[1]).trie)

    def target_rank(scores: torch.Tensor) -> float:
        scores = scores.masked_fill(~before.valid, float("-inf"))
        return float((scores[:, 1:] > scores[:, :1]).sum(-1).float().mean())

    assert target_rank(after) < target_rank(before.reference) - 0.3
    assert json.loads((out / "sidrec_model.json").read_text())["alignment"]["kept"] == "aligned"


def test_a_diverging_alignment_keeps_the_supervised_model(trained, tmp_path, caplog):
    """A non-finite loss or gradient stops the run (here beta * log-ratio overflows once the policy has moved): the
    output is the supervised model, bit for bit, and the reason is logged."""
    cfg, _, train, select, model_dir = trained
    cfg = cfg.model_copy(update={"align": cfg.align.model_copy(update={"beta": 1e38})})
    with caplog.at_level(logging.WARNING, logger="components.training.align"):
        out = align_model(cfg, model_dir, train, select, tmp_path / "aligned")
    record = json.loads((out / "alignment.json").read_text())
    assert record["kept"] == "supervised" and record["status"].startswith("diverged")
    assert "diverged" in caplog.text
    assert (out / "model.safetensors").read_bytes() == (model_dir / "model.safetensors").read_bytes()


def test_an_alignment_worse_on_the_selection_rows_keeps_the_supervised_model(trained, tmp_path):
    """An alignment that does not beat the supervised model on the selection rows is refused (here: a huge
    learning rate wrecks the model; finite loss, worse rows)."""
    cfg, _, train, select, model_dir = trained
    cfg = cfg.model_copy(update={"align": cfg.align.model_copy(update={"lr": 5.0, "epochs": 1})})
    out = align_model(cfg, model_dir, train, select, tmp_path / "aligned")
    record = json.loads((out / "alignment.json").read_text())
    assert record["kept"] == "supervised", record["status"]
    assert record["status"].startswith(("no gain", "diverged"))
    assert (out / "model.safetensors").read_bytes() == (model_dir / "model.safetensors").read_bytes()
    assert isinstance(select, pd.DataFrame)


def test_alignment_with_the_ranker_teacher(trained, tmp_path):
    """align.teacher "ranker" runs the whole stage and records its setting."""
    cfg, _, train, _, model_dir = trained
    acfg = cfg.align.model_copy(update={"teacher": "ranker", "teacher_weight": 0.5, "teacher_rows": 200})
    out = align_model(cfg.model_copy(update={"align": acfg}), model_dir, train, None, tmp_path / "aligned")
    record = json.loads((out / "alignment.json").read_text())
    assert record["settings"]["teacher"] == "ranker" and record["rows"] > 0


def test_a_failed_aligned_write_keeps_the_previous_output_and_leaves_nothing_beside_it(trained, tmp_path):
    """The aligned copy is published whole: a policy whose save fails half way leaves the earlier output as it
    was and no staging directory beside it (before: a `.tmp` sibling left behind)."""
    _, _, _, _, model_dir = trained
    out = write_aligned(model_dir, tmp_path / "aligned", None, {"status": "first", "kept": "supervised"})
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    class FailingPolicy:
        def save_pretrained(self, directory):
            (directory / "model.safetensors").write_bytes(b"half")
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_aligned(model_dir, tmp_path / "aligned", FailingPolicy(), {"status": "second", "kept": "aligned"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aligned"]
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before

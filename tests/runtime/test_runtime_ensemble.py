"""Seed ensembles: several models decoded by one constrained beam search, and loading them together."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from components.cli import app
from components.evaluation.evaluate import score_recommender
from components.runtime.beam import constrained_beam_search
from components.runtime.language import SidTrie, format_prompt
from components.runtime.recommender import Recommender, RecommenderError
from components.sids.sidmap import SidMap


def _prompts(sidmap, n):
    return [format_prompt(sidmap.item_ids[i : i + 1 + i % 4], sidmap) for i in range(n)]


def test_ensemble_of_one_model_twice_is_the_model(tiny_sid_model):
    model, tokenizer, sidmap = tiny_sid_model
    trie = SidTrie.from_sidmap(sidmap, tokenizer)
    enc = tokenizer(_prompts(sidmap, 3), return_tensors="pt", padding=True, add_special_tokens=False)
    alone = constrained_beam_search(model, enc.input_ids, enc.attention_mask, trie, 8, 5)
    twice = constrained_beam_search([model, model], enc.input_ids, enc.attention_mask, trie, 8, 5)
    assert twice.items.tolist() == alone.items.tolist()
    torch.testing.assert_close(twice.scores, alone.scores)


def test_ensemble_scores_are_log_mean_member_probabilities_per_level(tiny_sid_model, other_seed):
    """Each SID level is scored by log((p_1 + p_2) / 2) of the members' teacher-forced next-code probabilities."""
    model, tokenizer, sidmap = tiny_sid_model
    other = other_seed(model, 1)
    trie = SidTrie.from_sidmap(sidmap, tokenizer)
    prompt = _prompts(sidmap, 2)[1]
    enc = tokenizer([prompt], return_tensors="pt", add_special_tokens=False)
    result = constrained_beam_search([model, other], enc.input_ids, enc.attention_mask, trie, 60, 60)
    assert sorted(result.items[0].tolist()) == list(range(60))  # beam 60 keeps every item of the trie
    start = enc.input_ids.shape[1] - 1
    for codes, score in list(zip(result.codes[0].tolist(), result.scores[0].tolist(), strict=True))[:10]:
        ids = torch.cat([enc.input_ids[0], trie.level_token_ids[torch.arange(3), torch.tensor(codes)]]).unsqueeze(0)
        with torch.no_grad():
            probs = [torch.softmax(m(input_ids=ids).logits[0].float(), -1) for m in (model, other)]
        expected = sum(
            torch.log((probs[0][start + level, tok] + probs[1][start + level, tok]) / 2).item()
            for level, tok in enumerate(ids[0, start + 1 :].tolist())
        )
        assert abs(expected - score) < 1e-4
    alone = constrained_beam_search(model, enc.input_ids, enc.attention_mask, trie, 60, 60)
    assert result.items[0].tolist() != alone.items[0].tolist()  # the second member changes the ranking


def test_ensemble_completes_prefixes_like_full_decoding(tiny_sid_model, other_seed):
    model, tokenizer, sidmap = tiny_sid_model
    members = [model, other_seed(model, 2)]
    trie = SidTrie.from_sidmap(sidmap, tokenizer)
    enc = tokenizer(_prompts(sidmap, 1), return_tensors="pt", add_special_tokens=False)
    prefixes = sorted({tuple(r[:2]) for r in sidmap.codes.tolist()})[:3]
    part = constrained_beam_search(members, enc.input_ids, enc.attention_mask, trie, 5, 3, allowed_prefixes=[prefixes])
    full = constrained_beam_search(members, enc.input_ids, enc.attention_mask, trie, 60, 60)
    by_item = dict(zip(full.items[0].tolist(), full.scores[0].tolist(), strict=True))
    for item, score in zip(part.items[0].tolist(), part.scores[0].tolist(), strict=True):
        if item >= 0:
            assert abs(by_item[item] - score) < 1e-4


def _save(model, tokenizer, sidmap, out):
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    sidmap.save(out / "sid_map")
    return out


def test_an_ensemble_loads_together_and_refuses_members_of_another_sid_map(tiny_sid_model, tmp_path, other_seed):
    model, tokenizer, sidmap = tiny_sid_model
    a = _save(model, tokenizer, sidmap, tmp_path / "a")
    b = _save(other_seed(model, 3), tokenizer, sidmap, tmp_path / "b")
    loaded = Recommender.from_pretrained([a, b], beam_size=5)
    assert len(loaded.models) == 2 and loaded.sid_version == sidmap.version
    other = SidMap(sidmap.item_ids, np.asarray(sidmap.codes)[::-1].copy(), sidmap.codebook_sizes, "other")
    c = _save(model, tokenizer, other, tmp_path / "c")
    with pytest.raises(RecommenderError, match="cannot decode with"):
        Recommender.from_pretrained([a, c])
    # a member trained on longer prompts would read a prompt cut shorter than it learnt from
    (b / "sidrec_model.json").write_text(json.dumps({"model": {"max_length": 512}}))
    with pytest.raises(RecommenderError, match="model.max_length"):
        Recommender.from_pretrained([a, b])
    examples = pd.DataFrame({"history": [sidmap.item_ids[:2], sidmap.item_ids[3:5]], "target": sidmap.item_ids[2:4]})
    metrics = score_recommender(loaded, examples, [3])
    assert metrics["invalid_rate"] == 0.0 and metrics["rows"] == 2


def test_evaluation_model_cli_scores_several_directories_together(tiny_sid_model, tmp_path, other_seed):
    model, tokenizer, sidmap = tiny_sid_model
    a = _save(model, tokenizer, sidmap, tmp_path / "a")
    b = _save(other_seed(model, 4), tokenizer, sidmap, tmp_path / "b")
    splits = tmp_path / "splits"
    splits.mkdir()
    rows = [
        {"user_id": f"u{i}", "history": sidmap.item_ids[i : i + 3], "target": sidmap.item_ids[i + 3]} for i in range(6)
    ]
    pd.DataFrame(rows).to_json(splits / "valid.jsonl", orient="records", lines=True)
    config = tmp_path / "cfg.yaml"
    config.write_text(f"data:\n  splits_dir: {splits}\nserving:\n  beam_size: 5\n")
    runner = CliRunner()
    out = {}
    for name, dirs in {"a": [a], "ab": [a, b]}.items():
        result = runner.invoke(app, ["evaluation", "model", *map(str, dirs), "--config", str(config)])
        assert result.exit_code == 0, result.output
        out[name] = json.loads(result.output[result.output.index("{") :])
    assert out["ab"]["rows"] == 6 and out["ab"]["invalid_rate"] == 0.0
    assert out["ab"]["ms_per_request"] > 0 and out["a"]["rows"] == 6

"""OneRec-Think on the tiny model: rationales, reasoning training, think-ahead artifact, runtime completion."""

from __future__ import annotations

import pytest

from components.config import SidConfig, load_config
from components.data.splits import examples_from_events
from components.data.synthetic import generate_synthetic
from components.errors import SidrecError
from components.features.repo import read_prefix_files
from components.reasoning.rationales import Evidence, build_rationales
from components.reasoning.thinkahead import (
    prefix_levels,
    prefixes_by_user,
    shard_users,
    think_ahead,
    write_prefixes,
)
from components.reasoning.train import reasoning_examples, train_reasoning
from components.runtime.language import encode_prefix, item_token_map
from components.runtime.recommender import Recommender
from components.sids.build import build_sids
from components.training.examples import next_item_examples, training_hints
from components.training.train import train_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("reason")
    catalog, events = generate_synthetic(n_items=60, n_users=80, seed=5)
    sidmap = build_sids(
        catalog, events, SidConfig(codebook_size=8, content_encoder="hashing", collab_dim=8), root / "sids"
    )
    cfg = load_config(
        None,
        overrides={
            "model": {"backbone": "tiny", "tiny_hidden_size": 32, "tiny_layers": 1, "tiny_heads": 2},
            "train": {"batch_size": 16, "lr": 0.005, "max_steps": 6, "torch_threads": 1},
            "reasoning": {"paths_per_user": 2, "prefixes_per_path": 3, "max_rationale_tokens": 8},
        },
    )
    splits = examples_from_events(events, 5)
    model_dir = train_model(cfg, sidmap, catalog, splits["train"], None, root / "model")
    return cfg, catalog, splits, sidmap, model_dir, root


def test_reasoning_training_and_think_ahead(trained):
    cfg, catalog, splits, sidmap, model_dir, root = trained
    evidence = Evidence.from_data(catalog, splits["train"])
    frame = build_rationales(splits["train"], evidence, limit=40)
    assert set(frame["teacher"]) == {"template"} and frame["rationale"].str.len().min() > 5
    reason_dir = train_reasoning(Recommender.from_pretrained(model_dir), frame, cfg, root / "reason")
    reasoner = Recommender.from_pretrained(reason_dir)
    users = splits["test"][["user_id", "history"]].head(6)
    evidence.leave_one_out = False
    for s in range(2):
        frame = think_ahead(reasoner, shard_users(users, s, 2), cfg.reasoning, evidence=evidence)
        write_prefixes(frame, root / "prefixes", s, 2)
    table = read_prefix_files(root / "prefixes")
    assert sorted(table.user_id) == sorted(users.user_id)  # shards partition the users
    assert {"prefixes", "scores", "model_version", "sid_version", "created_at"} <= set(table.columns)
    assert (table.sid_version == sidmap.version).all()
    valid_prefixes = {encode_prefix(codes[:2]) for codes in sidmap.codes.tolist()}
    for prefixes, scores in zip(table.prefixes, table.scores, strict=True):
        assert 1 <= len(prefixes) <= 6 and set(prefixes) <= valid_prefixes
        assert list(scores) == sorted(scores, reverse=True)
    by_user = prefixes_by_user(table)
    assert set(by_user) == set(users.user_id) and all(len(p[0]) == 2 for p in by_user.values())


@pytest.mark.parametrize("softmax", [{"sid_vocab_softmax": True, "label_smoothing": 0.1}, {"sid_softmax": True}])
def test_a_recommender_trained_with_a_sid_softmax_learns_to_reason_with_it(trained, tmp_path, softmax):
    """The reasoner's SID answer is trained with its recommender's softmax: before, a SID-vocabulary or a label-
    smoothed recommender (the benchmark's settings) failed at reasoning training, for want of the SID table."""
    cfg, catalog, splits, sidmap, _, _ = trained
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update=softmax)})
    base = train_model(cfg, sidmap, catalog, splits["train"], None, tmp_path / "model")
    evidence = Evidence.from_data(catalog, splits["train"])
    frame = build_rationales(splits["train"], evidence, limit=20)
    reasoner = Recommender.from_pretrained(
        train_reasoning(Recommender.from_pretrained(base), frame, cfg, tmp_path / "r")
    )
    users = splits["test"][["user_id", "history"]].head(3)
    evidence.leave_one_out = False
    table = think_ahead(reasoner, users, cfg.reasoning, evidence=evidence)
    valid_prefixes = {encode_prefix(codes[:2]) for codes in sidmap.codes.tolist()}
    assert len(table) == 3 and all(set(prefixes) <= valid_prefixes for prefixes in table.prefixes)


def test_a_failed_reasoner_write_keeps_the_previous_reasoner_and_leaves_nothing_beside_it(trained, tmp_path):
    """The reasoner directory is published whole: a write that fails half way (the base's prompt files) leaves
    the reasoner published before, loadable, and no staging directory beside it."""
    cfg, catalog, splits, _, model_dir, _ = trained
    frame = build_rationales(splits["train"], Evidence.from_data(catalog, splits["train"]), limit=20)
    base = Recommender.from_pretrained(model_dir)
    first = train_reasoning(base, frame, cfg, tmp_path / "r")
    before = (first / "model.safetensors").read_bytes()

    def full_disk(directory):
        raise OSError(28, "No space left on device")

    base.save_prompt_files = full_disk
    with pytest.raises(OSError, match="No space"):
        train_reasoning(base, frame, cfg, tmp_path / "r")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
    assert (first / "model.safetensors").read_bytes() == before
    Recommender.from_pretrained(first)


def test_prefixes_stay_shorter_than_a_whole_sid():
    """2 codes for the usual 3-level map; a 2-level map stores 1-code prefixes (serving refuses whole SIDs)."""
    assert [prefix_levels(n) for n in (2, 3, 4)] == [1, 2, 2]
    with pytest.raises(SidrecError, match="set sids.levels to 2 or more"):
        prefix_levels(1)


def test_the_reasoner_reads_the_prompts_its_recommender_was_trained_on(trained, tmp_path):
    """Titles, a hint line and item tokens in the recommender's prompts: the reasoner trains on those prompts and
    serves them (its directory carries the titles, transitions and item tokens they are written from). Before,
    it trained on plain prompts, and a hinted recommender's reasoner did not even load."""
    cfg, catalog, splits, sidmap, _, _ = trained
    shaped = {"include_titles_in_history": True, "hint_successors": 2, "item_tokens": 1}
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update=shaped)})
    base = Recommender.from_pretrained(train_model(cfg, sidmap, catalog, splits["train"], None, tmp_path / "model"))
    frame = build_rationales(splits["train"], Evidence.from_data(catalog, splits["train"]), limit=20)
    pairs = reasoning_examples(frame, base)
    rows = frame[frame["target"].map(lambda t: t in sidmap)]
    assert [p for p, _ in pairs] == [
        p
        for p, _ in next_item_examples(
            rows,
            sidmap,
            base.titles,
            hints=training_hints(cfg.train, base.transitions, counted=True),
            item_tokens=item_token_map(base.item_tokens),
        )
    ]
    assert all(" <think>" in c for _, c in pairs) and all("<i_" in p and "Often next" in p for p, _ in pairs[:3])
    reasoner = Recommender.from_pretrained(train_reasoning(base, frame, cfg, tmp_path / "r"))
    histories = [list(h) for h in splits["test"]["history"].head(5)]
    assert reasoner.prompts(histories) == base.prompts(histories)

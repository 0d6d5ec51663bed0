"""Backbone + SID vocabulary + completion-only training on synthetic data with the tiny model."""

from __future__ import annotations

import json
import math
import shutil

import pandas as pd
import pytest
import torch

from components.config import SidConfig, load_config
from components.runtime.backbone import DeviceError, load_backbone, resolve_device
from components.runtime.beam import softmax_kind
from components.runtime.language import format_prompt, item_token_map, parse_sid, sid_of, sid_token_ids
from components.runtime.recommender import Recommender, RecommenderError
from components.runtime.transitions import TransitionTable
from components.sids.build import build_sids
from components.sids.sidmap import SidMap
from components.training.examples import build_training_texts, item_token_items, next_item_examples
from components.training.train import (
    _batch,
    _sid_loss,
    past_patience,
    tokenize_pairs,
    train_causal_lm,
    train_model,
    training_dropout,
)
from components.training.vocab import add_item_tokens, add_sid_tokens


@pytest.fixture(scope="module")
def world(tmp_path_factory, synthetic_world):
    return synthetic_world(
        tmp_path_factory.mktemp("sids"),
        n_items=80,
        n_users=120,
        seed=2,
        train={"max_steps": 12, "checkpoint_every": 5},
        serving={"beam_size": 10},
        eval={"max_examples": 30, "batch_size": 16},
    )


def test_sid_vocabulary_rows_are_distinct_and_three_ids(world):
    cfg, _, _, sidmap, _ = world
    model, tokenizer = load_backbone(cfg.model)
    before = len(tokenizer)
    ids = add_sid_tokens(model, tokenizer, sidmap)
    assert len(ids) == sum(sidmap.codebook_sizes) and min(ids) >= before
    rows = model.get_input_embeddings().weight[ids]
    assert torch.cdist(rows, rows).fill_diagonal_(1.0).min() > 1e-3  # no two new rows identical
    assert len(tokenizer(sid_of(sidmap, sidmap.item_ids[3]), add_special_tokens=False)["input_ids"]) == 3


def test_loss_is_on_completion_only(world):
    cfg, _, _, sidmap, _ = world
    _, tokenizer = load_backbone(cfg.model)
    add_sid_tokens(load_backbone(cfg.model)[0], tokenizer, sidmap)
    data = tokenize_pairs(tokenizer, [("User bought: x\nNext:", sid_of(sidmap, "i1"))], 64)
    ids, mask, labels = _batch(data, 0)
    assert (labels != -100).sum() == 3 and labels[0, -3:].tolist() == ids[0, -3:].tolist()


def test_training_reduces_loss_resumes_and_saves(world, tmp_path):
    cfg, catalog, _, sidmap, splits = world
    model, tokenizer = load_backbone(cfg.model)
    new_ids = add_sid_tokens(model, tokenizer, sidmap)
    texts = build_training_texts(splits["train"], sidmap, catalog, cfg.train)
    assert any(c.startswith(" ") for _, c in texts) and any(p == "" for p, _ in texts)  # all three tasks
    old_rows = model.get_input_embeddings().weight[: new_ids[0]].clone()
    warm = cfg.train.model_copy(update={"max_steps": 6, "warmup_epochs": 1.0, "epochs": 1.0})
    stats = train_causal_lm(model, tokenizer, texts, warm, tmp_path / "w", new_token_ids=new_ids)
    assert torch.equal(model.get_input_embeddings().weight[: new_ids[0]], old_rows)  # warm-up: new rows only
    stats = train_causal_lm(model, tokenizer, texts, cfg.train, tmp_path / "t")
    losses = [h["loss"] for h in stats["history"] if "loss" in h]
    assert losses[-1] < losses[0] and stats["steps"] == 12
    assert (tmp_path / "t" / "training_curve.png").exists() and not (tmp_path / "t" / "checkpoint.pt").exists()


def test_label_smoothing_needs_and_uses_the_sid_table(world, tmp_path):
    """train.label_smoothing spreads over the SID token table it is given (train_model always passes it); without
    one it is refused instead of silently training one-hot."""
    cfg, catalog, _, sidmap, splits = world
    model, tokenizer = load_backbone(cfg.model)
    add_sid_tokens(model, tokenizer, sidmap)
    texts = build_training_texts(splits["train"], sidmap, catalog, cfg.train)
    smoothed = cfg.train.model_copy(update={"label_smoothing": 0.1, "max_steps": 2, "warm_start": False})
    with pytest.raises(ValueError, match="label_smoothing needs the SID token table"):
        train_causal_lm(model, tokenizer, texts, smoothed, tmp_path / "none")
    stats = train_causal_lm(model, tokenizer, texts, smoothed, tmp_path / "s", sid_ids=sid_token_ids(tokenizer, sidmap))
    assert stats["steps"] == 2 and all(math.isfinite(h["loss"]) for h in stats["history"] if "loss" in h)


def test_train_model_writes_a_loadable_model(world, tmp_path):
    cfg, catalog, _, sidmap, splits = world
    path = train_model(cfg, sidmap, catalog, splits["train"], splits["valid"], tmp_path / "model")
    loaded = Recommender.from_pretrained(path)
    model, tokenizer = loaded.models[0], loaded.tokenizer
    assert loaded.sid_version == sidmap.version and len(tokenizer) == model.get_input_embeddings().weight.shape[0]
    info = json.loads((path / "sidrec_model.json").read_text())
    assert info["steps"] == 12 and info["best_valid"] >= 0
    assert info["steps_per_epoch"] >= 1  # what the benchmark converts the best step into epochs with
    # the served hybrid's chain, fit on exactly the training examples
    table = TransitionTable.load(path / "transitions.json")
    train = splits["train"]
    assert table == TransitionTable.from_examples(train["history"], train["target"]) and table.examples == len(train)


def test_a_failed_publish_keeps_the_previous_model_and_leaves_nothing_beside_it(world, tmp_path, monkeypatch):
    """The model directory is replaced whole: a write that fails half way (here the prompt files) leaves the
    model the last run published, loadable, and no staging directory beside it. Before, the staging directory
    was a fixed `model.tmp` sibling left behind, and the old directory was removed before the new one moved in."""
    cfg, catalog, _, sidmap, splits = world
    path = train_model(cfg, sidmap, catalog, splits["train"], None, tmp_path / "model")
    before = (path / "model.safetensors").read_bytes()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("components.training.train.write_prompt_files", full_disk)
    with pytest.raises(OSError, match="No space"):
        train_model(
            cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": 7})}),
            sidmap,
            catalog,
            splits["train"],
            None,
            tmp_path / "model",
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert (path / "model.safetensors").read_bytes() == before
    Recommender.from_pretrained(path)


def test_sid_loss_is_cross_entropy_over_the_target_level(world):
    cfg, _, _, sidmap, _ = world
    model, tokenizer = load_backbone(cfg.model)
    add_sid_tokens(model, tokenizer, sidmap)
    table = sid_token_ids(tokenizer, sidmap)
    head = model.get_output_embeddings()
    torch.manual_seed(0)
    hidden = torch.randn(5, head.weight.shape[1])
    text_token = tokenizer(" bolt", add_special_tokens=False)["input_ids"][0]
    target = torch.tensor([int(table[0, 3]), int(table[1, 0]), int(table[2, 7]), text_token, int(table[0, 5])])
    expected = [
        torch.nn.functional.cross_entropy(hidden[0:1] @ head.weight[table[0]].T, torch.tensor([3])),
        torch.nn.functional.cross_entropy(hidden[1:2] @ head.weight[table[1]].T, torch.tensor([0])),
        torch.nn.functional.cross_entropy(hidden[2:3] @ head.weight[table[2]].T, torch.tensor([7])),
        torch.nn.functional.cross_entropy(head(hidden[3:4]), torch.tensor([text_token])),  # text: full vocabulary
        torch.nn.functional.cross_entropy(hidden[4:5] @ head.weight[table[0]].T, torch.tensor([5])),
    ]
    got = _sid_loss(head, hidden, target, table)  # summed: the trainer divides by the token count
    torch.testing.assert_close(got, torch.stack(expected).sum())


@pytest.mark.parametrize("flag, recorded", [("sid_softmax", "sid_level_softmax"), ("sid_vocab_softmax", None)])
def test_sid_softmax_model_records_how_to_decode(world, tmp_path, flag, recorded):
    cfg, catalog, _, sidmap, splits = world
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={flag: True})})
    path = train_model(cfg, sidmap, catalog, splits["train"], None, tmp_path / "model")
    model = Recommender.from_pretrained(path).models[0]
    assert getattr(model.config, recorded or flag) is True
    assert softmax_kind(model) == {"sid_softmax": "sid_level", "sid_vocab_softmax": "sid_vocab"}[flag]
    losses = [h["loss"] for h in json.loads((path / "history.json").read_text()) if "loss" in h]
    assert losses[-1] < losses[0]


def test_training_dropout_acts_only_while_training_and_leaves_nothing(world):
    cfg, _, _, _, _ = world
    model, tokenizer = load_backbone(cfg.model)
    ids = tokenizer(["User bought: a b c\nNext:"], return_tensors="pt")["input_ids"]
    model.eval()
    before = model(input_ids=ids).logits
    with training_dropout(model, 0.5):
        torch.testing.assert_close(model(input_ids=ids).logits, before)  # eval mode: no dropout
        model.train()
        assert not torch.allclose(model(input_ids=ids).logits, before)
        model.eval()
    model.train()
    torch.testing.assert_close(model(input_ids=ids).logits, before)  # hooks removed
    assert model.config.attention_dropout == 0.0 and model.model.layers[0].self_attn.attention_dropout == 0.0


def test_history_loss_labels_the_prompt_sid_tokens_only(world):
    cfg, _, _, sidmap, _ = world
    model, tokenizer = load_backbone(cfg.model)
    new_ids = add_sid_tokens(model, tokenizer, sidmap)
    prompt = format_prompt(["i1", "i2"], sidmap)
    data = tokenize_pairs(tokenizer, [(prompt, sid_of(sidmap, "i3"))], 64)
    ids, _, plain = _batch(data, 0)
    _, _, labels = _batch(data, 0, torch.tensor(new_ids))
    learnt = labels[0][labels[0] != -100].tolist()
    assert (plain[0] != -100).sum() == 3
    assert learnt == [t for t in ids[0, 1:].tolist() if t in set(new_ids)] and len(learnt) == 9


def test_device_names_resolve_and_a_missing_gpu_is_an_error():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            resolve_device("cuda")
    assert load_config(None).train.device == "cpu"  # CPU unless a deployment asks for a GPU


def test_train_model_sets_its_thread_count_before_the_sid_rows_start(world, tmp_path, monkeypatch):
    """The codebook start is a float reduction whose last bits follow the thread count: set after it, the first
    run of a process (every core) and a later one (train.torch_threads) trained other models from one config."""
    import components.training.train as train_module

    cfg, catalog, _, sidmap, splits = world
    seen = []

    def recording(*args, **kwargs):
        seen.append(torch.get_num_threads())
        raise RuntimeError("stop after the SID rows")

    monkeypatch.setattr(train_module, "add_sid_tokens", recording)
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # a fresh process on a 2-core machine
    try:
        with pytest.raises(RuntimeError, match="stop after"):
            train_model(cfg, sidmap, catalog, splits["train"], None, tmp_path / "model")
    finally:
        torch.set_num_threads(before)
    assert seen == [cfg.train.torch_threads] == [1]


def test_codebook_init_makes_similar_codes_start_similar(world, tmp_path):
    cfg, catalog, events, _, _ = world
    built = build_sids(catalog, events, SidConfig(codebook_size=8, content_encoder="hashing", collab_dim=8), tmp_path)
    sidmap = SidMap.load(tmp_path)
    assert all(
        torch.equal(torch.as_tensor(a), torch.as_tensor(b))
        for a, b in zip(built.codebooks, sidmap.codebooks, strict=True)
    )
    model, tokenizer = load_backbone(cfg.model)
    ids = add_sid_tokens(model, tokenizer, sidmap, init="codebook")
    level0 = model.get_input_embeddings().weight[ids[:8]].detach()
    centroids = torch.as_tensor(sidmap.codebooks[0][:8], dtype=torch.float32)

    def similarity(x):
        x = torch.nn.functional.normalize(x - x.mean(0), dim=1)
        return (x @ x.T)[torch.triu_indices(8, 8, 1).unbind()]

    assert torch.corrcoef(torch.stack([similarity(level0), similarity(centroids)]))[0, 1] > 0.9
    assert torch.cdist(level0, level0).fill_diagonal_(1.0).min() > 1e-4

    no_books = SidMap(sidmap.item_ids, sidmap.codes, sidmap.codebook_sizes, sidmap.version)
    model, tokenizer = load_backbone(cfg.model)
    size = len(tokenizer)
    with pytest.raises(ValueError, match="codebooks"):
        add_sid_tokens(model, tokenizer, no_books, init="codebook")
    assert len(tokenizer) == size  # refused before the vocabulary was touched


def test_suffix_crops_cut_the_history_to_its_last_items(world):
    cfg, catalog, _, sidmap, _ = world
    items = sidmap.item_ids[:4]
    rows = pd.DataFrame({"user_id": ["u"], "history": [items[:3]], "target": [items[3]]})
    crops_only = cfg.train.model_copy(
        update={"weight_sid_title": 0.0, "weight_behaviour": 0.0, "weight_suffix_crops": 4.0}
    )
    texts = build_training_texts(rows, sidmap, catalog, crops_only)
    assert len(texts) == 5 and all(c == sid_of(sidmap, items[3]) for _, c in texts)
    full = format_prompt(items[:3], sidmap)
    suffixes = {format_prompt(items[k:3], sidmap) for k in (1, 2)}
    prompts = [p for p, _ in texts]
    assert prompts.count(full) == 1 and set(prompts) - {full} <= suffixes and set(prompts) - {full}


def test_stop_epochs_replays_a_checkpoint_picked_mid_schedule(world, tmp_path):
    """epochs 2 stopped after 1 = the epoch-1 weights of the full 2-epoch run; a 1-epoch schedule differs."""
    cfg, catalog, _, sidmap, splits = world
    texts = build_training_texts(splits["train"], sidmap, catalog, cfg.train)[:96]  # 6 steps an epoch

    def run(name, valid_fn=None, **train):
        torch.manual_seed(0)
        model, tokenizer = load_backbone(cfg.model)
        add_sid_tokens(model, tokenizer, sidmap)
        settings = cfg.train.model_copy(update={"max_steps": None, "checkpoint_every": 0, **train})
        stats = train_causal_lm(model, tokenizer, texts, settings, tmp_path / name, valid_fn)
        return model.state_dict(), stats

    # a constant score keeps the first epoch's weights as the "best": the checkpoint a benchmark would pick
    full, full_stats = run("full", valid_fn=lambda m: 0.0, epochs=2.0)
    replay, replay_stats = run("replay", epochs=2.0, stop_epochs=1.0)
    short, _ = run("short", epochs=1.0)
    assert replay_stats["steps"] == replay_stats["steps_per_epoch"] == full_stats["steps"] // 2
    assert all(torch.equal(full[k], replay[k]) for k in full)
    assert not all(torch.equal(short[k], replay[k]) for k in short)


def test_patience_stops_a_run_past_its_best_epoch_with_the_best_weights(world, tmp_path):
    """Scores 1, 0, 0, 0 with patience 2: the run ends after epoch 3 (not 4) and keeps epoch 1's weights, the
    ones the full run keeps; no patience runs all four epochs."""
    cfg, catalog, _, sidmap, splits = world
    texts = build_training_texts(splits["train"], sidmap, catalog, cfg.train)[:64]  # 4 steps an epoch

    def run(name, **train):
        torch.manual_seed(0)
        model, tokenizer = load_backbone(cfg.model)
        add_sid_tokens(model, tokenizer, sidmap)
        settings = cfg.train.model_copy(update={"max_steps": None, "checkpoint_every": 0, "epochs": 4.0, **train})
        scores = iter([1.0, 0.0, 0.0, 0.0])
        stats = train_causal_lm(model, tokenizer, texts, settings, tmp_path / name, lambda m: next(scores))
        return model.state_dict(), stats

    full, full_stats = run("full")
    early, early_stats = run("early", patience=2)
    assert full_stats["steps"] == 4 * full_stats["steps_per_epoch"]
    assert early_stats["steps"] == 3 * early_stats["steps_per_epoch"]
    assert [h["valid"] for h in early_stats["history"] if "valid" in h] == [1.0, 0.0, 0.0]
    assert all(torch.equal(full[k], early[k]) for k in full)


def test_past_patience_counts_scores_after_the_first_best():
    history = [{"step": 1, "valid": 0.2}, {"step": 2, "loss": 3.0}, {"step": 3, "valid": 0.2}]
    history.append({"step": 4, "valid": 0.1})
    assert past_patience(history, 2)  # the tie at step 3 is not an improvement
    assert not past_patience(history, 3)
    assert not past_patience(history, None) and not past_patience([], 1)


def test_ema_keeps_the_moving_average_of_the_live_weights_and_resumes_exactly(world, tmp_path):
    """train.ema_decay: the run ends on decay * average + (1 - decay) * weights, folded over every step's live
    weights (the first step's weights start it); valid_fn scores that average, not the live model; a run
    interrupted after a checkpoint resumes to the same average."""
    cfg, catalog, _, sidmap, splits = world
    texts = build_training_texts(splits["train"], sidmap, catalog, cfg.train)[:96]  # 6 steps an epoch
    decay = 0.7

    def run(name, valid_fn=None, **train):
        torch.manual_seed(0)
        model, tokenizer = load_backbone(cfg.model)
        add_sid_tokens(model, tokenizer, sidmap)
        settings = cfg.train.model_copy(update={"max_steps": None, "checkpoint_every": 0, "epochs": 1.0, **train})
        stats = train_causal_lm(model, tokenizer, texts, settings, tmp_path / name, valid_fn)
        return model, stats

    live = [run(f"live{k}", stop_epochs=k / 6)[0].state_dict() for k in range(1, 7)]  # weights after k steps
    expected = {name: value.clone() for name, value in live[0].items()}
    for weights in live[1:]:
        for name, value in expected.items():
            if value.is_floating_point():
                value.mul_(decay).add_(weights[name], alpha=1 - decay)
    averaged, _ = run("ema", ema_decay=decay)
    got = averaged.state_dict()
    assert all(torch.allclose(got[k], expected[k], atol=1e-6) for k in expected)
    assert not torch.allclose(got["model.norm.weight"], live[-1]["model.norm.weight"], atol=1e-6)

    scored = []
    model, _ = run("scored", valid_fn=lambda m: scored.append(m) or 0.0, ema_decay=decay)
    assert scored and all(m is not model for m in scored)

    def failing(m):
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):  # the epoch-1 score fails after the step-3 checkpoint
        run("resumed", valid_fn=failing, ema_decay=decay, epochs=2.0, checkpoint_every=3)
    assert (tmp_path / "resumed" / "checkpoint.pt").exists()
    rising = iter(range(100))
    resumed, _ = run("resumed", valid_fn=lambda m: next(rising), ema_decay=decay, epochs=2.0, checkpoint_every=3)
    rising = iter(range(100))
    whole, _ = run("whole", valid_fn=lambda m: next(rising), ema_decay=decay, epochs=2.0)
    assert all(torch.allclose(resumed.state_dict()[k], v, atol=1e-6) for k, v in whole.state_dict().items())


def test_recent_copies_repeat_each_users_newest_row_only():
    from components.training.examples import with_recent_copies

    rows = pd.DataFrame(
        {
            "user_id": ["a", "a", "b", "a", "b", "c"],
            "history": [["1"], ["1", "2"], ["5"], ["1", "2", "3"], ["5", "6"], ["9"]],
            "target": ["2", "3", "6", "4", "7", "8"],
        }
    )
    assert with_recent_copies(rows, 0).equals(rows)
    out = with_recent_copies(rows, 2)
    assert out.iloc[: len(rows)].equals(rows)  # the rows themselves, unchanged and first
    extra = out.iloc[len(rows) :]
    assert (
        sorted(zip(extra["user_id"], extra["target"], strict=True))
        == [("a", "4")] * 2 + [("b", "7")] * 2 + [("c", "8")] * 2
    )


def test_future_targets_pair_a_prompt_with_later_items_of_its_own_sequence_only(world):
    from components.training.examples import future_target_examples

    _, _, _, sidmap, _ = world
    i = list(sidmap.item_ids)
    # user a: i0 -> i1 -> i2 -> i3 (rows shuffled); user b: i4 -> i5, then a gap (its next row does not continue it)
    rows = pd.DataFrame(
        {
            "user_id": ["a", "b", "a", "b", "a"],
            "history": [[i[0], i[1]], [i[4]], [i[0]], [i[6]], [i[0], i[1], i[2]]],
            "target": [i[2], i[5], i[1], i[7], i[3]],
        }
    )
    prompt = {tuple(h): format_prompt(list(h), sidmap, None) for h in rows["history"]}
    expected = {
        (prompt[(i[0],)], sid_of(sidmap, i[2])),  # two steps on
        (prompt[(i[0], i[1])], sid_of(sidmap, i[3])),
    }
    out = future_target_examples(rows, sidmap, 2, horizon=2, seed=0)
    assert set(out) == expected and len(out) == 2
    three = future_target_examples(rows, sidmap, 3, horizon=3, seed=0)
    assert set(three) == expected | {(prompt[(i[0],)], sid_of(sidmap, i[3]))}  # and three steps on
    cycled = future_target_examples(rows, sidmap, 5, horizon=2, seed=0)  # more than there are: each pair 2-3 times
    assert len(cycled) == 5 and set(cycled) == expected and min(cycled.count(p) for p in expected) == 2
    assert future_target_examples(rows, sidmap, 0, horizon=2, seed=0) == []
    cfg = world[0].train.model_copy(
        update={"weight_future_targets": 0.4, "weight_sid_title": 0.0, "weight_behaviour": 0.0}
    )
    texts = build_training_texts(rows, sidmap, world[1], cfg)
    assert len(texts) == 5 + 2  # the 5 next-item rows and round(5 * 0.4) future ones
    assert expected & set(texts)


@pytest.mark.parametrize("recorded", ["vocab", "sid_level", "sid_vocab"])
def test_continuing_a_model_trains_with_the_softmax_it_records(recorded):
    """A warm start and the reasoning fine-tune follow the model's softmax, not the deployment file's."""
    from types import SimpleNamespace

    from components.config import TrainConfig
    from components.runtime.beam import softmax_kind
    from components.training.train import with_model_softmax

    model = SimpleNamespace(
        config=SimpleNamespace(sid_level_softmax=recorded == "sid_level", sid_vocab_softmax=recorded == "sid_vocab")
    )
    for file_says in ({}, {"sid_softmax": True}, {"sid_vocab_softmax": True}):
        train = with_model_softmax(TrainConfig(**file_says, label_smoothing=0.1), model)
        assert (train.sid_softmax, train.sid_vocab_softmax) == (recorded == "sid_level", recorded == "sid_vocab")
        assert train.label_smoothing == 0.1 and softmax_kind(model) == recorded


def test_item_tokens_follow_their_sid_in_prompts_and_only_items_users_read_get_one(world):
    _, _, _, sidmap, _ = world
    items = list(sidmap.item_ids[:3])
    tokens = item_token_map([items[1]])
    assert tokens == {items[1]: "<i_0>"}
    plain = format_prompt(items, sidmap)
    marked = format_prompt(items, sidmap, item_tokens=tokens)
    assert marked == plain.replace(sid_of(sidmap, items[1]), sid_of(sidmap, items[1]) + "<i_0>")
    assert format_prompt(items, sidmap, item_tokens={}) == plain
    with pytest.raises(ValueError):
        parse_sid(sid_of(sidmap, items[1]) + "<i_0>")  # never read back as a SID
    a, b, c = items
    rows = pd.DataFrame(
        {"user_id": ["u1", "u1", "u2", "u3"], "history": [[a], [a, b], [a, c], ["gone"]], "target": [b, c, b, a]}
    )
    # a: read by 3 users (u1's two rows count once); b, c: one user each; "gone" is outside the map
    assert item_token_items(rows, sidmap, 2) == [a]
    assert item_token_items(rows, sidmap, 1) == sorted([a, b, c])
    assert item_token_items(rows, sidmap, 0) == []


def test_a_model_with_item_tokens_serves_the_prompts_it_was_trained_on(world, tmp_path):
    cfg, catalog, _, sidmap, splits = world
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"item_tokens": 2})})
    path = train_model(cfg, sidmap, catalog, splits["train"], splits["valid"], tmp_path / "model")
    items = json.loads((path / "item_tokens.json").read_text())
    assert items == item_token_items(splits["train"], sidmap, 2) and len(items) > 10
    served = Recommender.from_pretrained(path)
    tokenizer = served.tokenizer
    assert all(len(tokenizer(t, add_special_tokens=False)["input_ids"]) == 1 for t in item_token_map(items).values())
    # the prompt Triton, the gate and think-ahead build (Recommender.prompts) is the one training built
    rows = splits["valid"].head(20)
    trained = [p for p, _ in next_item_examples(rows, sidmap, item_tokens=item_token_map(items))]
    assert served.prompts([list(h) for h in rows["history"]]) == trained
    assert any("<i_" in p for p in trained)
    recs = served.recommend([list(h) for h in rows["history"]], 5)
    assert all(item in sidmap for row in recs for item, _ in row)  # only SIDs are decoded
    # a copy saved whole keeps them; a member with another item list cannot decode with it
    again = Recommender.from_pretrained(served.save_pretrained(tmp_path / "served"))
    assert again.item_tokens == items
    other = tmp_path / "other"
    shutil.copytree(path, other)
    (other / "item_tokens.json").write_text(json.dumps(items[::-1]))
    with pytest.raises(RecommenderError, match="item tokens"):
        Recommender.from_pretrained([path, other])
    (other / "item_tokens.json").unlink()
    with pytest.raises(RecommenderError, match="item_tokens"):
        Recommender.from_pretrained(other)
    # a warm start keeps the model's own list, whatever the new rows would pick
    off = cfg.model_copy(update={"train": cfg.train.model_copy(update={"item_tokens": 0})})
    warm = train_model(off, sidmap, catalog, splits["train"].head(30), None, tmp_path / "warm", init_from=path)
    assert json.loads((warm / "item_tokens.json").read_text()) == items
    histories = [list(h) for h in rows["history"]]
    assert Recommender.from_pretrained(warm).prompts(histories) == served.prompts(histories)
    # and a model trained without them stays without them (its record says so, so it loads)
    plain = train_model(off, sidmap, catalog, splits["train"], None, tmp_path / "plain")
    warm = train_model(cfg, sidmap, catalog, splits["train"].head(30), None, tmp_path / "warm2", init_from=plain)
    assert not (warm / "item_tokens.json").exists() and Recommender.from_pretrained(warm).item_tokens is None


def test_item_token_rows_start_at_their_sid_rows_mean(world):
    cfg, _, _, sidmap, _ = world
    model, tokenizer = load_backbone(cfg.model)
    add_sid_tokens(model, tokenizer, sidmap, seed=0)
    items = list(sidmap.item_ids[:5])
    ids = add_item_tokens(model, tokenizer, sidmap, items, seed=0)
    rows = model.get_input_embeddings().weight.detach()
    table = sid_token_ids(tokenizer, sidmap)
    for item, token_id in zip(items, ids, strict=True):
        mean = torch.stack([rows[table[lv, c]] for lv, c in enumerate(sidmap.codes_of(item))]).mean(0)
        assert torch.nn.functional.cosine_similarity(rows[token_id], mean, dim=0) > 0.9
    assert len(set(ids)) == len(items) and min(ids) >= int(table.max()) + 1

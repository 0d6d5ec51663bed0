"""A real Triton server on an exported model repository, the thin client, and its fallbacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.config import ModelConfig, SidConfig, load_config
from components.data.readers import read_catalog, read_events
from components.features.online import UnknownUserError
from components.features.repo import apply, materialize, write_sources
from components.model.backbone import load_backbone
from components.model.vocab import add_sid_tokens
from components.serving.client import RecommenderClient
from components.serving.export import export_triton_repository
from components.serving.triton_launcher import s3_repository_url, start_triton
from components.sids.build import build_sids
from components.store.s3server import start_seaweedfs
from components.utils.redis_server import start_redis


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """amazon-industrial features in Redis, an exported (small, untrained) model, a running Triton."""
    root = tmp_path_factory.mktemp("serving")
    base = load_config(None)
    catalog = read_catalog(base.path(base.data.catalog_uri))
    events = read_events(base.path(base.data.events_uri))
    sidmap = build_sids(catalog, events, SidConfig(content_encoder="hashing", collab_dim=16), root / "sids")
    model, tokenizer = load_backbone(ModelConfig(backbone="tiny", tiny_hidden_size=32, tiny_layers=1, tiny_heads=2))
    add_sid_tokens(model, tokenizer, sidmap)
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    sidmap.save(root / "model" / "sid_map")
    export = export_triton_repository(root / "model", str(root / "repo"), beam_size=20)
    redis = start_redis(root / "redis")
    cfg = load_config(
        None,
        overrides={
            "run_root": str(root / "runs"),
            "features": {"online_store": "redis", "redis_connection": redis.connection},
            "serving": {"retries": 1, "timeout_s": 30},
        },
    )
    write_sources(cfg, catalog, events, sidmap)
    apply(cfg)
    materialize(cfg)
    server = start_triton(root / "repo", root / "triton")
    yield cfg, server, redis, sidmap, events, export
    server.stop()
    redis.stop()


@pytest.mark.integration
def test_recommend_returns_valid_unique_items_through_triton(deployment):
    cfg, server, _, sidmap, events, export = deployment
    assert export["version"] == 1 and export["instance_kind"] in ("KIND_CPU", "KIND_GPU")
    for protocol, url in (("grpc", server.grpc_url), ("http", server.http_url)):
        client = RecommenderClient(cfg, url=url, protocol=protocol)
        for user in events.user_id.drop_duplicates().head(3):
            recs = client.recommend(user, k=10)
            ids = [r.item_id for r in recs]
            assert len(ids) == 10 and len(set(ids)) == 10
            assert all(i in sidmap and sidmap.sid_of(i) == r.sid for i, r in zip(ids, recs, strict=True))
            assert all(r.source == "triton" and r.title for r in recs)
    with pytest.raises(UnknownUserError):
        client.recommend("no-such-user")


@pytest.mark.integration
def test_triton_serves_a_model_repository_on_s3(deployment, tmp_path, monkeypatch):
    """Export to a real S3 server (SeaweedFS) and let Triton load the repository from there."""
    cfg, _, _, sidmap, events, export = deployment
    with start_seaweedfs(tmp_path / "seaweed") as s3:
        s3.client().create_bucket(Bucket="models")
        creds = {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}
        for key, value in {**creds, "AWS_ENDPOINT_URL": s3.endpoint_url}.items():
            monkeypatch.setenv(key, value)
        exported = export_triton_repository(Path(export["source"]), "s3://models/triton", beam_size=20)
        assert exported["version"] == 1
        keys = {o["Key"] for o in s3.client().list_objects_v2(Bucket="models")["Contents"]}
        assert {"triton/sidrec/config.pbtxt", "triton/sidrec/1/model.py"} <= keys
        url = s3_repository_url(s3.endpoint_url, "s3://models/triton")
        with start_triton(url, tmp_path / "triton", extra_env={**creds, "AWS_DEFAULT_REGION": "us-east-1"}) as server:
            client = RecommenderClient(cfg, url=server.grpc_url, protocol="grpc")
            recs = client.recommend(events.user_id.iloc[5], k=10)
            assert len({r.item_id for r in recs}) == 10 and all(r.source == "triton" for r in recs)
            assert all(sidmap.sid_of(r.item_id) == r.sid for r in recs)


@pytest.mark.integration
def test_fallbacks_when_triton_and_online_store_are_down(deployment):
    cfg, server, redis, _, events, _ = deployment
    client = RecommenderClient(cfg, url=server.grpc_url, protocol="grpc")
    user = events.user_id.iloc[0]
    history = set(client.features.user_history(user))
    server.stop()  # stop the real server by PID
    assert server.process.poll() is not None
    recs = client.recommend(user, k=5)
    assert [r.source for r in recs] == ["popularity"] * 5 and not {r.item_id for r in recs} & history
    redis.stop()
    recs = client.recommend(user, k=5)
    assert len(recs) == 5 and recs[0].source == "popularity"


def _perturbed_copy(source: Path, target: Path) -> Path:
    """The fixture's model with other weights (another 'seed'), same tokenizer and SID map."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    shutil.copytree(source, target)
    model = AutoModelForCausalLM.from_pretrained(target)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=gen))
    model.save_pretrained(target)
    return target


@pytest.mark.integration
def test_triton_decodes_an_exported_seed_ensemble_like_the_library(deployment, tmp_path):
    from components.decoding.recommend import recommend_items
    from components.decoding.trie import SidTrie
    from components.model.backbone import load_ensemble

    cfg, _, _, sidmap, events, export = deployment
    first = Path(export["source"])
    second = _perturbed_copy(first, tmp_path / "seed1")
    exported = export_triton_repository([first, second], str(tmp_path / "repo"), beam_size=20)
    assert exported["members"] == [str(first), str(second)]
    assert (tmp_path / "repo" / "sidrec" / "1" / "model_1" / "sid_map").is_dir()
    models, tokenizer, loaded = load_ensemble([first, second])
    history = [str(i) for i in events.item_id.head(4)]
    expected = recommend_items(models, tokenizer, SidTrie.from_sidmap(loaded, tokenizer), loaded, [history], 10, 20)
    alone = recommend_items(models[0], tokenizer, SidTrie.from_sidmap(loaded, tokenizer), loaded, [history], 10, 20)
    assert [i for i, _ in expected[0]] != [i for i, _ in alone[0]]  # the second member matters
    with start_triton(tmp_path / "repo", tmp_path / "triton") as server:
        ids, sids, scores = RecommenderClient(cfg, url=server.grpc_url, protocol="grpc")._infer(history, 10, None)
    assert ids == [i for i, _ in expected[0]]
    assert scores == pytest.approx([s for _, s in expected[0]], abs=1e-4)
    assert all(sidmap.sid_of(i) == s for i, s in zip(ids, sids, strict=True))


def test_export_refuses_an_ensemble_over_two_sid_maps(deployment, tmp_path):
    import shutil

    import numpy as np

    from components.sids.sidmap import SidMap

    _, _, _, sidmap, _, export = deployment
    other = tmp_path / "other"
    shutil.copytree(export["source"], other)
    shutil.rmtree(other / "sid_map")
    codes = np.asarray(sidmap.codes)[::-1].copy()
    SidMap(sidmap.item_ids, codes, sidmap.codebook_sizes, "another-version").save(other / "sid_map")
    with pytest.raises(ValueError, match="share one SID map"):
        export_triton_repository([Path(export["source"]), other], str(tmp_path / "repo"))
    assert not (tmp_path / "repo" / "sidrec").exists()  # nothing written


@pytest.mark.integration
def test_triton_serves_the_hybrid_like_the_library(deployment, tmp_path):
    """Export with a blend weight: Triton mixes its beam with the model's transitions.json exactly as
    recommend_items does, with and without think-ahead prefixes, and never serves an item the SID map lacks."""
    import shutil

    from components.decoding.recommend import recommend_items
    from components.decoding.transitions import TransitionTable
    from components.decoding.trie import SidTrie
    from components.model.backbone import load_trained

    cfg, _, _, sidmap, events, export = deployment
    model_dir = tmp_path / "model"
    shutil.copytree(export["source"], model_dir)
    model, tokenizer, loaded = load_trained(model_dir)
    trie = SidTrie.from_sidmap(loaded, tokenizer)
    history = [str(i) for i in events.item_id.head(4)]
    beam = {i for i, _ in recommend_items(model, tokenizer, trie, loaded, [history], 20, 20)[0]}
    outside = [i for i in loaded.item_ids if i not in beam][:3]
    table = TransitionTable({history[-1]: {outside[0]: 5, outside[1]: 2, outside[2]: 1, "not-in-catalog": 9}})
    table.save(model_dir / "transitions.json")
    exported = export_triton_repository(model_dir, str(tmp_path / "repo"), beam_size=20, blend_weight=0.5)
    assert exported["blend_weight"] == 0.5
    assert 'key: "blend_weight" value: { string_value: "0.5" }' in (tmp_path / "repo/sidrec/config.pbtxt").read_text()
    prefix = [loaded.codes_of(outside[1])[:2]]  # the client sends two-level think-ahead prefixes
    expected = recommend_items(model, tokenizer, trie, loaded, [history], 10, 20, transitions=table, blend_weight=0.5)
    narrowed = recommend_items(
        model, tokenizer, trie, loaded, [history], 10, 20, [prefix], transitions=table, blend_weight=0.5
    )
    assert {outside[0], outside[1]} <= {i for i, _ in expected[0]}  # the successors made it in
    with start_triton(tmp_path / "repo", tmp_path / "triton") as server:
        client = RecommenderClient(cfg, url=server.grpc_url, protocol="grpc")
        ids, sids, scores = client._infer(history, 10, None)
        pref_ids, _, pref_scores = client._infer(history, 10, prefix)
    assert ids == [i for i, _ in expected[0]] and "not-in-catalog" not in ids
    assert scores == pytest.approx([s for _, s in expected[0]], abs=1e-4)
    assert all(sidmap.sid_of(i) == s for i, s in zip(ids, sids, strict=True))
    assert pref_ids == [i for i, _ in narrowed[0]] and outside[1] in pref_ids
    assert pref_scores == pytest.approx([s for _, s in narrowed[0]], abs=1e-4)


def test_export_of_a_hybrid_needs_the_models_transitions(deployment, tmp_path):
    _, _, _, _, _, export = deployment
    with pytest.raises(FileNotFoundError, match="sidrec train transitions"):
        export_triton_repository(Path(export["source"]), str(tmp_path / "repo"), blend_weight=0.2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        export_triton_repository(Path(export["source"]), str(tmp_path / "repo"), blend_weight=1.5)
    assert not (tmp_path / "repo").exists()  # nothing written


@pytest.mark.integration
def test_triton_serves_the_ranker_like_the_library(deployment, tmp_path):
    """Export with --ranker: Triton pools its beam with the ranker's count candidates and reorders them exactly as
    recommend_items does, with and without think-ahead prefixes."""
    from components.data.splits import examples_from_events
    from components.decoding.recommend import recommend_items
    from components.decoding.trie import SidTrie
    from components.model.backbone import load_trained
    from components.ranking.artifact import RankerArtifact
    from components.ranking.candidates import ItemStats, candidate_rows, sid_codes
    from components.ranking.ranker import train_ranker

    cfg, _, _, sidmap, events, export = deployment
    model, tokenizer, loaded = load_trained(Path(export["source"]))
    trie = SidTrie.from_sidmap(loaded, tokenizer)
    train = examples_from_events(events, 10)["train"].head(80)
    stats = ItemStats.from_examples(train["history"], train["target"])
    histories = [[str(i) for i in h] for h in train["history"]]
    beams = recommend_items(model, tokenizer, trie, loaded, histories, 20, 20)
    rows = candidate_rows(histories, stats, beams, sid_codes(loaded))
    booster = train_ranker(rows, train["target"].astype(str).tolist(), rounds=20)
    RankerArtifact(booster, stats, with_model=True, with_sids=True).save(tmp_path / "ranker")
    ranker = RankerArtifact.load(tmp_path / "ranker")
    exported = export_triton_repository(
        Path(export["source"]), str(tmp_path / "repo"), beam_size=20, ranker_dir=tmp_path / "ranker"
    )
    assert exported["ranker"] == str(tmp_path / "ranker")
    history = histories[5]
    expected = recommend_items(model, tokenizer, trie, loaded, [history], 10, 20, ranker=ranker)[0]
    prefix = [loaded.codes_of(expected[3][0])[:2]]
    narrowed = recommend_items(model, tokenizer, trie, loaded, [history], 10, 20, [prefix], ranker=ranker)[0]
    with start_triton(tmp_path / "repo", tmp_path / "triton") as server:
        client = RecommenderClient(cfg, url=server.grpc_url, protocol="grpc")
        ids, sids, scores = client._infer(history, 10, None)
        pref_ids, _, pref_scores = client._infer(history, 10, prefix)
    assert ids == [i for i, _ in expected] and len(ids) == 10
    assert scores == pytest.approx([s for _, s in expected], abs=1e-4)
    assert all(sidmap.sid_of(i) == s for i, s in zip(ids, sids, strict=True))
    assert pref_ids == [i for i, _ in narrowed] and expected[3][0] in pref_ids
    assert all(loaded.codes_of(i)[:2] == prefix[0] for i in pref_ids)
    assert pref_scores == pytest.approx([s for _, s in narrowed], abs=1e-4)


def test_export_of_a_ranker_needs_a_whole_ranker_directory(deployment, tmp_path):
    _, _, _, _, _, export = deployment
    (tmp_path / "ranker").mkdir()
    with pytest.raises(FileNotFoundError, match="sidrec train ranker"):
        export_triton_repository(Path(export["source"]), str(tmp_path / "repo"), ranker_dir=tmp_path / "ranker")
    assert not (tmp_path / "repo").exists()  # nothing written

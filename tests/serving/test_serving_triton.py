"""A real Triton server on an exported repository, the thin client, and what export refuses."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoModelForCausalLM

from components.config import ModelConfig, ServingConfig, SidConfig, load_config
from components.data.readers import read_catalog, read_events
from components.data.splits import examples_from_events
from components.features.online import UserFeatures
from components.features.repo import apply, materialize, write_sources
from components.local.redis import start_redis
from components.local.s3 import start_seaweedfs
from components.local.triton import s3_repository_url, start_triton
from components.runtime.backbone import load_backbone
from components.runtime.candidates import ItemStats, candidate_rows, sid_codes
from components.runtime.language import encode_prefix, sid_of
from components.runtime.ranker import RankerArtifact
from components.runtime.recommender import Recommender, RecommenderError
from components.runtime.transitions import TransitionTable
from components.serving.client import BadRequest, RecommenderClient
from components.serving.export import ExportError, export_triton_repository, served_version
from components.sids.build import build_sids
from components.sids.sidmap import SidMap
from components.training.ranker import train_ranker
from components.training.vocab import add_sid_tokens

SERVING = ServingConfig(beam_size=20, kind="cpu")


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
    export_triton_repository(Recommender.from_pretrained(root / "model"), str(root / "repo"), SERVING)
    redis = start_redis(root / "redis")
    cfg = load_config(
        None,
        overrides={
            "run_root": str(root / "runs"),
            "features": {"online_store": "redis", "redis_connection": redis.connection},
            "serving": {"budget_s": 30},  # functional checks here; the fault benchmark measures the budget
        },
    )
    write_sources(cfg, catalog, events, sidmap)
    apply(cfg)
    materialize(cfg)
    server = start_triton(root / "repo", root / "triton")
    yield cfg, server, redis, sidmap, events, root / "model"
    server.stop()
    redis.stop()


def _user(history, prefixes=None, version=None) -> UserFeatures:
    return UserFeatures("u", list(history), [encode_prefix(p) for p in prefixes or []], version)


@pytest.mark.integration
def test_recommend_returns_valid_unique_items_through_triton(deployment):
    cfg, server, _, sidmap, events, _ = deployment
    for protocol, url in (("grpc", server.grpc_url), ("http", server.http_url)):
        client = RecommenderClient(cfg, url=url, protocol=protocol)
        for user in events.user_id.drop_duplicates().head(3):
            recs = client.recommend(user, k=10)
            ids = [r.item_id for r in recs]
            assert len(ids) == 10 and len(set(ids)) == 10
            assert all(i in sidmap and sid_of(sidmap, i) == r.sid for i, r in zip(ids, recs, strict=True))
            assert all(r.source == "triton" and r.title for r in recs)
        cold = client.recommend("no-such-user", k=5)  # an unknown user gets a cold-start answer, not an error
        assert len(cold) == 5 and {r.source for r in cold} == {"cold-start"}
        for bad in (0, -1, 100000):
            with pytest.raises(BadRequest, match=r"k must be an integer in \[1, 50\]"):
                client.recommend(events.user_id.iloc[0], k=bad)
        client.close()


@pytest.mark.integration
def test_one_malformed_request_fails_alone_and_stale_prefixes_are_ignored(deployment):
    """Requests of one dynamic batch are validated one by one; prefixes of another SID version are not applied."""
    from concurrent.futures import ThreadPoolExecutor

    import tritonclient.grpc as tc

    cfg, server, _, sidmap, events, _ = deployment
    client = RecommenderClient(cfg, url=server.grpc_url, protocol="grpc")
    history = [str(i) for i in events.item_id.head(4)]
    good = client._infer(_user(history), 10, 30)
    prefix = [sidmap.codes_of(good[0][3])[:2]]
    used = client._infer(_user(history, prefix, sidmap.version), 10, 30)
    assert used[3] and all(sidmap.codes_of(i)[:2] == prefix[0] for i in used[0])
    stale = client._infer(_user(history, prefix, "another-sid-version"), 10, 30)
    assert not stale[3] and stale[0] == good[0]  # ignored: fully decoded

    def raw(k, prefixes):
        grpc = tc.InferenceServerClient(server.grpc_url)
        inputs = [tc.InferInput("HISTORY", [1, len(history)], "BYTES"), tc.InferInput("K", [1, 1], "INT32")]
        inputs[0].set_data_from_numpy(np.array([[h.encode() for h in history]], dtype=np.object_))
        inputs[1].set_data_from_numpy(np.array([[k]], dtype=np.int32))
        if prefixes:
            inputs.append(tc.InferInput("PREFIXES", [1, len(prefixes)], "BYTES"))
            inputs[2].set_data_from_numpy(np.array([[p.encode() for p in prefixes]], dtype=np.object_))
        try:
            out = grpc.infer(cfg.serving.model_name, inputs)
            return [v.decode() for v in out.as_numpy("ITEM_IDS").reshape(-1)]
        except tc.InferenceServerException as exc:
            return str(exc)

    jobs = [(10, None)] * 30 + [(0, None), (999, None), (10, ["x_y"]), (10, ["1_2", "3"])] * 3
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda job: raw(*job), jobs))
    assert all(a == good[0] for a in answers[:30])  # every well-formed request of the batches was answered
    errors = answers[30:]
    assert all(isinstance(e, str) for e in errors)
    assert sum("K must lie in" in e for e in errors) == 6 and sum("not a SID prefix" in e for e in errors) == 3
    assert sum("same length" in e for e in errors) == 3
    client.close()


@pytest.mark.integration
def test_fallbacks_when_triton_and_online_store_are_down(deployment, tmp_path):
    cfg, _, _, _, events, model_dir = deployment
    with start_triton(Path(model_dir).parent / "repo", tmp_path / "triton") as own:
        fast = cfg.model_copy(update={"serving": cfg.serving.model_copy(update={"budget_s": 0.3})})
        client = RecommenderClient(fast, url=own.grpc_url, protocol="grpc")
        user = events.user_id.iloc[0]
        client.recommend(user, k=5)  # warm
        history = set(client._user(user).history)
        own.stop()  # stop the real server by PID
        assert own.process.poll() is not None
        recs = client.recommend(user, k=5)
        assert [r.source for r in recs] == ["popularity"] * 5 and not {r.item_id for r in recs} & history
        client.close()


@pytest.mark.integration
def test_triton_serves_a_model_repository_on_s3(deployment, tmp_path, monkeypatch):
    """Export to a real S3 server (SeaweedFS) and let Triton load the repository from there; an interrupted later
    export leaves the served version pinned and the next export removes it."""
    cfg, _, _, sidmap, events, model_dir = deployment
    with start_seaweedfs(tmp_path / "seaweed") as s3:
        s3.client().create_bucket(Bucket="models")
        creds = {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}
        for key, value in {**creds, "AWS_ENDPOINT_URL": s3.endpoint_url}.items():
            monkeypatch.setenv(key, value)
        recommender = Recommender.from_pretrained(model_dir)
        assert export_triton_repository(recommender, "s3://models/triton", SERVING)["version"] == 1
        keys = {o["Key"] for o in s3.client().list_objects_v2(Bucket="models")["Contents"]}
        assert {"triton/sidrec/config.pbtxt", "triton/sidrec/1/model.py", "triton/sidrec/1/recommender.json"} <= keys
        # an export killed after a few objects of version 2: config.pbtxt still pins version 1
        s3.client().put_object(Bucket="models", Key="triton/sidrec/2/model.py", Body=b"partial")
        url = s3_repository_url(s3.endpoint_url, "s3://models/triton")
        with start_triton(url, tmp_path / "triton", extra_env={**creds, "AWS_DEFAULT_REGION": "us-east-1"}) as server:
            client = RecommenderClient(cfg, url=server.grpc_url, protocol="grpc")
            recs = client.recommend(events.user_id.iloc[5], k=10)
            assert len({r.item_id for r in recs}) == 10 and all(r.source == "triton" for r in recs)
            assert all(sid_of(sidmap, r.item_id) == r.sid for r in recs)
            client.close()
        again = export_triton_repository(recommender, "s3://models/triton", SERVING)
        assert again["version"] == 3 and again["pruned_partial_versions"] == [2]
        config = s3.client().get_object(Bucket="models", Key="triton/sidrec/config.pbtxt")["Body"].read().decode()
        assert served_version(config) == 3


def _perturbed_copy(source: Path, target: Path, other_seed) -> Path:
    """The fixture's model with other weights (another 'seed'), same tokenizer and SID map."""
    shutil.copytree(source, target)
    other_seed(AutoModelForCausalLM.from_pretrained(target), 7).save_pretrained(target)
    return target


@pytest.mark.integration
def test_triton_decodes_an_exported_seed_ensemble_like_the_library(deployment, tmp_path, other_seed):
    cfg, _, _, sidmap, events, model_dir = deployment
    second = _perturbed_copy(model_dir, tmp_path / "seed1", other_seed)
    ensemble = Recommender.from_pretrained([model_dir, second])
    exported = export_triton_repository(ensemble, str(tmp_path / "repo"), SERVING)
    assert exported["members"] == [str(model_dir), str(second)]
    assert (tmp_path / "repo" / "sidrec" / "1" / "model_1" / "sid_map").is_dir()
    history = [str(i) for i in events.item_id.head(4)]
    expected = ensemble.recommend([history], 10)
    alone = Recommender.from_pretrained(model_dir).recommend([history], 10)
    assert [i for i, _ in expected[0]] != [i for i, _ in alone[0]]  # the second member matters
    with start_triton(tmp_path / "repo", tmp_path / "triton") as server:
        ids, sids, scores, _ = RecommenderClient(cfg, url=server.grpc_url)._infer(_user(history), 10, 30)
    assert ids == [i for i, _ in expected[0]]
    assert scores == pytest.approx([s for _, s in expected[0]], abs=1e-4)
    assert all(sid_of(sidmap, i) == s for i, s in zip(ids, sids, strict=True))


def test_an_ensemble_over_two_sid_maps_is_refused_before_export(deployment, tmp_path):
    _, _, _, sidmap, _, model_dir = deployment
    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    shutil.rmtree(other / "sid_map")
    codes = np.asarray(sidmap.codes)[::-1].copy()
    SidMap(sidmap.item_ids, codes, sidmap.codebook_sizes, "another-version").save(other / "sid_map")
    with pytest.raises(RecommenderError, match="cannot decode with"):
        Recommender.from_pretrained([model_dir, other])


def test_export_refuses_what_would_not_load_or_serve(deployment, tmp_path):
    """Export loads the version back as Triton would: truncated weights, a missing config.json or a SID map of
    another version are refused, naming the file, and nothing is published."""
    _, _, _, sidmap, _, model_dir = deployment
    recommender = Recommender.from_pretrained(model_dir)
    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    weights = next(bad.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(RecommenderError, match="do not load"):
        Recommender.from_pretrained(bad)
    (bad / "config.json").unlink()
    with pytest.raises(RecommenderError, match="missing config.json"):
        Recommender.from_pretrained(bad)
    foreign = tmp_path / "foreign"
    shutil.copytree(model_dir, foreign)
    (foreign / "sidrec_model.json").write_text('{"sid_version": "another-version"}')
    with pytest.raises(RecommenderError, match="only decodes with maps of the lineage it was trained on"):
        Recommender.from_pretrained(foreign)
    # a version that loads but cannot serve (its trie gone) is refused by export's own check
    broken = Recommender.from_pretrained(model_dir)
    broken.sidmap = SidMap([], np.zeros((0, sidmap.n_levels), dtype=np.int64), sidmap.codebook_sizes, "empty")
    with pytest.raises(ExportError, match="refused to export"):
        export_triton_repository(broken, str(tmp_path / "repo"), SERVING)
    assert not (tmp_path / "repo" / "sidrec").exists()  # nothing published
    assert export_triton_repository(recommender, str(tmp_path / "repo"), SERVING)["version"] == 1


@pytest.mark.integration
def test_triton_serves_the_hybrid_and_the_ranker_like_the_library(deployment, tmp_path):
    """Triton mixes its beam with the model's transitions.json, or reorders it with the ranker, exactly as the
    library's Recommender does, with and without think-ahead prefixes, and never serves an item the map lacks."""
    cfg, _, _, sidmap, events, source = deployment
    model_dir = tmp_path / "model"
    shutil.copytree(source, model_dir)
    plain = Recommender.from_pretrained(model_dir)
    history = [str(i) for i in events.item_id.head(4)]
    beam = {i for i, _ in plain.recommend([history], 20)[0]}
    outside = [i for i in sidmap.item_ids if i not in beam][:3]
    table = TransitionTable({history[-1]: {outside[0]: 5, outside[1]: 2, outside[2]: 1, "not-in-catalog": 9}})
    table.save(model_dir / "transitions.json")
    hybrid = Recommender.from_pretrained(model_dir, blend_weight=0.5)
    train = examples_from_events(events, 10)["train"].head(80)
    stats = ItemStats.from_examples(train["history"], train["target"])
    histories = [[str(i) for i in h] for h in train["history"]]
    rows = candidate_rows(histories, stats, plain.recommend(histories, 20), sid_codes(sidmap))
    booster = train_ranker(rows, train["target"].astype(str).tolist(), rounds=20)
    RankerArtifact(booster, stats, True, True, {"beam_size": 20}).save(tmp_path / "ranker")
    ranked = Recommender.from_pretrained(model_dir, ranker=tmp_path / "ranker")
    for name, recommender, probe in (("hybrid", hybrid, history), ("ranker", ranked, histories[5])):
        repo = tmp_path / f"repo_{name}"
        export_triton_repository(recommender, str(repo), SERVING)
        expected = recommender.recommend([probe], 10)[0]
        prefix = [sidmap.codes_of(expected[3][0])[:2]]
        narrowed = recommender.recommend([probe], 10, [prefix])[0]
        with start_triton(repo, tmp_path / f"triton_{name}") as server:
            client = RecommenderClient(cfg, url=server.grpc_url, protocol="grpc")
            ids, sids, scores, _ = client._infer(_user(probe), 10, 30)
            pref_ids, _, pref_scores, used = client._infer(_user(probe, prefix, sidmap.version), 10, 30)
            client.close()
        assert ids == [i for i, _ in expected] and "not-in-catalog" not in ids, name
        assert scores == pytest.approx([s for _, s in expected], abs=1e-4)
        assert all(sid_of(sidmap, i) == s for i, s in zip(ids, sids, strict=True))
        assert used and pref_ids == [i for i, _ in narrowed] and expected[3][0] in pref_ids
        assert all(sidmap.codes_of(i)[:2] == prefix[0] for i in pref_ids)
        assert pref_scores == pytest.approx([s for _, s in narrowed], abs=1e-4)
    assert {outside[0], outside[1]} <= {i for i, _ in hybrid.recommend([history], 10)[0]}  # successors made it in

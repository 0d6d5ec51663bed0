"""Pipeline steps as plain functions: what Airflow tasks, the KFP components and `sidrec demo` call.

Each step takes the deployment config path (plus overrides for tests) and returns a dict of plain types —
URIs, versions, metrics — so it can travel through XCom unchanged. Steps read their inputs from the
artifact store (latest versions) and publish their outputs there, which makes them idempotent: re-running a
step on the same inputs republishes identical content, and the store returns the existing version.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from components.config import Config, load_config

log = logging.getLogger(__name__)


def _cfg(config_path: str | None, overrides: dict | None) -> Config:
    return load_config(config_path, overrides)


def _store(cfg: Config):
    from components.store.artifacts import ArtifactStore

    return ArtifactStore.from_config(cfg.store)


def _curated(cfg: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    curated = _store(cfg).fetch("curated")
    return pd.read_parquet(curated / "catalog.parquet"), pd.read_parquet(curated / "events.parquet")


def _run_dir(cfg: Config, name: str) -> Path:
    return Path(cfg.path(cfg.run_root)) / name


def ingest(config_path: str | None = None, overrides: dict | None = None) -> dict:
    """Validate raw catalog + events (Great Expectations) and publish the curated snapshot."""
    from components.data.ingest import ingest as run

    cfg = _cfg(config_path, overrides)
    return run(cfg, _run_dir(cfg, "curated"))


def sid_refresh(config_path: str | None = None, overrides: dict | None = None) -> dict:
    """Refresh the latest SID map for the curated catalog; build a new version when drift says so (or none)."""
    from components.sids.build import build_sids, publish_sid_map
    from components.sids.refresh import refresh_sids

    cfg = _cfg(config_path, overrides)
    store = _store(cfg)
    catalog, events = _curated(cfg)
    if store.latest_version("sid_map") is None:
        build_sids(catalog, events, cfg.sids, _run_dir(cfg, "sid_build"))
        metrics = json.loads((_run_dir(cfg, "sid_build") / "metrics.json").read_text())
        version = publish_sid_map(store, _run_dir(cfg, "sid_build"), metadata=metrics)
        return {"action": "build", "sid_version": version, "new_sid_version": True, "metrics": metrics}
    previous = store.latest_version("sid_map")
    result = refresh_sids(store.fetch("sid_map"), catalog, events, cfg.sids, _run_dir(cfg, "sid_refresh"))
    summary = result.summary()
    if result.rebuild:
        build_sids(catalog, events, cfg.sids, _run_dir(cfg, "sid_build"))
        metrics = json.loads((_run_dir(cfg, "sid_build") / "metrics.json").read_text())
        version = publish_sid_map(store, _run_dir(cfg, "sid_build"), metadata={**metrics, "drift": summary})
        return {"action": "rebuild", "sid_version": version, "new_sid_version": True, "drift": summary}
    version = publish_sid_map(store, _run_dir(cfg, "sid_refresh"), metadata=summary)
    return {"action": "refresh", "sid_version": version, "new_sid_version": version != previous, "drift": summary}


def features_materialize(config_path: str | None = None, overrides: dict | None = None) -> dict:
    """Write Feast sources from the curated data, SID map and prefixes; apply; materialize online."""
    from components.features.repo import apply, materialize, write_sources
    from components.sids.sidmap import SidMap

    cfg = _cfg(config_path, overrides)
    store = _store(cfg)
    if store.latest_version("sid_map") is None:
        return {"skipped": "no SID map yet: sidrec_sid_refresh builds the first one"}
    catalog, events = _curated(cfg)
    sidmap = SidMap.load(store.fetch("sid_map"))
    prefixes = None
    if store.latest_version("prefixes"):
        folder = store.fetch("prefixes")
        files = sorted(folder.glob("prefixes-*.parquet"))
        prefixes = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else None
    write_sources(cfg, catalog, events, sidmap, prefixes)
    names = apply(cfg)
    return {
        **materialize(cfg),
        "objects": names,
        "sid_version": sidmap.version,
        "users_with_prefixes": 0 if prefixes is None else int(len(prefixes)),
    }


def build_examples(config_path: str | None = None, overrides: dict | None = None) -> dict:
    """Point-in-time next-item examples from Feast for every event that has an earlier one."""
    from components.features.historical import build_training_examples

    cfg = _cfg(config_path, overrides)
    _, events = _curated(cfg)
    entity = events.rename(columns={"item_id": "target"})[["user_id", "target", "event_timestamp"]]
    examples = build_training_examples(cfg, entity)
    path = _run_dir(cfg, "examples")
    path.mkdir(parents=True, exist_ok=True)
    examples.to_parquet(path / "examples.parquet", index=False)
    return {"examples_uri": str(path / "examples.parquet"), "examples": int(len(examples))}


def _split_by_time(examples: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each user's last example is validation; the rest train (no future leaks into training)."""
    ordered = examples.sort_values(["user_id", "event_timestamp"])
    last = ordered.groupby("user_id").tail(1)
    return ordered.drop(index=last.index), last


def train(config_path: str | None = None, overrides: dict | None = None, examples_uri: str | None = None) -> dict:
    """Fine-tune on the Feast examples (or the published split files when there are none) and stage the model."""
    from components.model.train import train_model
    from components.sids.sidmap import SidMap

    cfg = _cfg(config_path, overrides)
    store = _store(cfg)
    catalog, _ = _curated(cfg)
    sidmap = SidMap.load(store.fetch("sid_map"))
    if examples_uri:
        train_ex, valid_ex = _split_by_time(pd.read_parquet(examples_uri))
    else:
        from components.data.splits import load_split_examples

        train_ex = load_split_examples(cfg.path(cfg.data.splits_dir), "train")
        valid_ex = load_split_examples(cfg.path(cfg.data.splits_dir), "valid")
    model_dir = train_model(cfg, sidmap, catalog, train_ex, valid_ex, _run_dir(cfg, "model_candidate"))
    ranker = train_ranker(cfg, model_dir, train_ex, valid_ex) if cfg.serving.ranker else None
    info = json.loads((model_dir / "sidrec_model.json").read_text())
    version = store.publish("model_candidate", model_dir, metadata=info)
    return {
        "ranker_cross_validated": ranker,
        "model_uri": str(model_dir),
        "candidate_version": version,
        "sid_version": sidmap.version,
        "best_valid_hr10": info.get("best_valid"),
        "train_seconds": info.get("train_seconds"),
    }


def train_ranker(cfg: Config, model_dir: Path, train_ex: pd.DataFrame, valid_ex: pd.DataFrame) -> dict:
    """The ranking stage for a freshly trained model, written into its ranker/ so that promotion and export carry
    it: it learns from the validation rows (counts fit on the training rows, the model's beams), serves counts
    refit on both. Returns its cross-validated metrics on those rows (the gate scores the model alone)."""
    from components.ranking.artifact import DIR_NAME
    from components.ranking.train import fit_ranker

    artifact = fit_ranker(
        train_ex,
        valid_ex,
        model_dirs=[model_dir],
        beam_size=cfg.eval.beam_size,
        batch_size=cfg.eval.batch_size,
        device=cfg.train.device,
        ks=tuple(cfg.eval.ks),
    )
    artifact.save(model_dir / DIR_NAME)
    return artifact.meta["cross_validated"]


def evaluate_and_gate(
    config_path: str | None = None,
    overrides: dict | None = None,
    model_uri: str | None = None,
    examples_uri: str | None = None,
) -> dict:
    """Score the candidate, the production model and the baselines on the same holdout; promote if better.

    Promotion = publishing the candidate as the 'model' artifact. The gate needs the candidate to beat the
    production model (when one exists with the same SID version) and the most-popular baseline on NDCG@10.
    """
    from components.evaluation.baselines import LastItemMarkov, MostPopular
    from components.evaluation.evaluate import evaluate_model_dir
    from components.evaluation.metrics import hit_rate_ndcg
    from components.model.backbone import model_info

    cfg = _cfg(config_path, overrides)
    store = _store(cfg)
    candidate = Path(model_uri) if model_uri else store.fetch("model_candidate")
    if examples_uri:
        train_ex, holdout = _split_by_time(pd.read_parquet(examples_uri))
    else:
        from components.data.splits import load_split_examples

        train_ex = load_split_examples(cfg.path(cfg.data.splits_dir), "train")
        holdout = load_split_examples(cfg.path(cfg.data.splits_dir), "valid")
    if cfg.eval.max_examples:
        holdout = holdout.sample(n=min(len(holdout), cfg.eval.max_examples), random_state=0)
    ks = cfg.eval.ks
    device = cfg.train.device  # the gate scores where the candidate was trained

    def score(model_dir):
        return evaluate_model_dir(model_dir, holdout, ks, cfg.eval.beam_size, cfg.eval.batch_size, device)

    scores = {"candidate": score(candidate)}
    histories = [list(h) for h in holdout["history"]]
    for baseline in (MostPopular(), LastItemMarkov()):
        baseline.fit(train_ex)
        scores[baseline.name] = hit_rate_ndcg(baseline.recommend(histories, max(ks)), holdout["target"].tolist(), ks)
    production_version = store.latest_version("model")
    if production_version:
        production = store.fetch("model")
        if model_info(production).get("sid_version") == model_info(candidate).get("sid_version"):
            scores["production"] = score(production)
    metric = "NDCG@10"
    bar = max(scores["most-popular"][metric], scores.get("production", {}).get(metric, 0.0))
    promote = scores["candidate"][metric] > bar and scores["candidate"]["invalid_rate"] == 0.0
    result = {
        "promoted": promote,
        "metric": metric,
        "candidate": scores["candidate"][metric],
        "bar": bar,
        "scores": scores,
        "production_version": production_version,
    }
    log.info("gate: %s", json.dumps({k: v for k, v in result.items() if k != "scores"}))
    if promote:
        result["model_version"] = store.publish("model", candidate, metadata={"gate": result["scores"]["candidate"]})
    return result


def promote(
    config_path: str | None = None,
    overrides: dict | None = None,
    candidate_version: str = "latest",
    reason: str = "manual",
) -> dict:
    """Ops action: promote a staged candidate without the gate (e.g. a first model, or a rollback target)."""
    cfg = _cfg(config_path, overrides)
    store = _store(cfg)
    candidate = store.fetch("model_candidate", candidate_version)
    version = store.publish("model", candidate, metadata={"promoted_by": reason})
    return {"model_version": version, "candidate": candidate_version, "reason": reason}


def export(config_path: str | None = None, overrides: dict | None = None) -> dict:
    """Export the production model to the Triton model repository (a new numeric model version); with
    serving.ranker, with the ranker its training step wrote (the export fails, naming it, if there is none)."""
    from components.ranking.artifact import DIR_NAME
    from components.serving.export import export_triton_repository

    cfg = _cfg(config_path, overrides)
    store = _store(cfg)
    if store.latest_version("model") is None:
        return {"exported": False, "reason": "no promoted model"}
    model_dir = store.fetch("model")
    return export_triton_repository(
        model_dir,
        cfg.path(cfg.serving.model_repository),
        cfg.serving.model_name,
        model_version_label=store.latest_version("model"),
        blend_weight=cfg.serving.blend_weight,
        ranker_dir=model_dir / DIR_NAME if cfg.serving.ranker else None,
    )


def active_users(config_path: str | None = None, overrides: dict | None = None) -> dict:
    """Users with events (the think-ahead population) and their current histories, for sharding."""
    cfg = _cfg(config_path, overrides)
    _, events = _curated(cfg)
    return {"users": int(events["user_id"].nunique())}


def think_ahead(
    config_path: str | None = None, overrides: dict | None = None, shard: int = 0, n_shards: int = 1
) -> dict:
    """Offline reasoning for one shard of the active users; writes prefixes-<shard>-of-<n>.parquet."""
    from components.reasoning.thinkahead import think_ahead as run

    cfg = _cfg(config_path, overrides)
    store = _store(cfg)
    if store.latest_version("model") is None:
        return {"shard": shard, "users": 0, "reason": "no promoted model"}
    _, events = _curated(cfg)
    ordered = events.sort_values(["user_id", "event_timestamp"])
    users = ordered.groupby("user_id")["item_id"].apply(lambda s: [str(i) for i in s][-cfg.data.max_history :])
    frame = users.reset_index().rename(columns={"item_id": "history"})
    if cfg.reasoning.max_users:
        recent = ordered.groupby("user_id")["event_timestamp"].max().nlargest(cfg.reasoning.max_users).index
        frame = frame[frame["user_id"].isin(set(recent))]
    path = run(store.fetch("model"), frame, cfg, _run_dir(cfg, "prefixes"), shard, n_shards)
    return {"shard": shard, "n_shards": n_shards, "prefixes_uri": str(path), "users": int(len(pd.read_parquet(path)))}


def publish_prefixes(config_path: str | None = None, overrides: dict | None = None, n_shards: int = 1) -> dict:
    """Publish all shards as one 'prefixes' version, then load them into the online store."""
    cfg = _cfg(config_path, overrides)
    folder = _run_dir(cfg, "prefixes")
    files = sorted(folder.glob(f"prefixes-*-of-{n_shards:03d}.parquet"))
    if len(files) != n_shards:
        raise RuntimeError(f"expected {n_shards} prefix shards in {folder}, found {len(files)}")
    staging = _run_dir(cfg, "prefixes_publish")
    staging.mkdir(parents=True, exist_ok=True)
    for old in staging.glob("*.parquet"):
        old.unlink()
    for f in files:
        (staging / f.name).write_bytes(f.read_bytes())
    version = _store(cfg).publish("prefixes", staging, metadata={"shards": n_shards})
    online = features_materialize(config_path, overrides)
    return {"prefixes_version": version, "users_with_prefixes": online["users_with_prefixes"]}

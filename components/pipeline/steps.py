"""The pipeline's steps as plain functions: what the Airflow DAGs, the KFP pipeline, `sidrec pipeline` and
`sidrec demo` call.

Each step takes the deployment config (a path, plus overrides for tests) and the artifact versions it works on,
and returns a dict of plain types (versions, metrics) that travels through XCom unchanged. Steps never read a
"latest" pointer to find their inputs: the upstream step's result names the version, so a task can run in its
own pod with nothing but the artifact store in common (local scratch directories are re-derived from versions).
Only `resolve` reads a LATEST pointer, once, at the entry of a DAG run that was started by the schedule rather
than by its upstream's asset event, and `evaluate_and_gate` reads what production serves now ("model"), which is
what it must compare with.

Re-running a step on the same inputs republishes identical content, and the store returns the existing version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from components.config import Config, load_config
from components.data.ingest import ingest as ingest_batch
from components.evaluation.gate import gate
from components.features.historical import build_training_examples
from components.features.repo import apply, materialize, read_prefix_files, write_sources
from components.reasoning.gate import reasoning_gate
from components.reasoning.rationales import Evidence, build_rationales, coverage
from components.reasoning.thinkahead import shard_users, write_prefixes
from components.reasoning.thinkahead import think_ahead as think_ahead_users
from components.reasoning.train import train_reasoning
from components.runtime.candidates import sid_codes
from components.runtime.content import ContentIndex
from components.runtime.ranker import DIR_NAME as RANKER_DIR
from components.runtime.recommender import MODEL_INFO_FILE, SID_MAP_DIR, Recommender
from components.serving.export import export_triton_repository
from components.sids.build import build_sids, publish_sid_map
from components.sids.refresh import refresh_sids
from components.sids.sidmap import SidMap, lineage
from components.store.artifacts import ArtifactStore
from components.training import distributed
from components.training.align import align_model
from components.training.ranker import fit_ranker
from components.training.train import train_model

log = logging.getLogger(__name__)
EXAMPLES_FILE = "examples.parquet"
SPLIT_COLUMN = "split"  # train | select (picks epochs, teaches the ranker) | gate (the promotion gate's holdout)


SCRATCH_ENV = "SIDREC_SCRATCH_ROOT"


def _cfg(config_path: str | None, overrides: dict | None) -> Config:
    """The deployment; with SIDREC_SCRATCH_ROOT set, every step call gets a fresh run directory under it (what a
    pod's scratch space is: nothing a step writes locally survives for the next one, so hand-offs must go through
    the artifact store)."""
    cfg = load_config(config_path, overrides)
    if os.environ.get(SCRATCH_ENV):
        Path(os.environ[SCRATCH_ENV]).mkdir(parents=True, exist_ok=True)
        cfg = cfg.model_copy(update={"run_root": tempfile.mkdtemp(prefix="task-", dir=os.environ[SCRATCH_ENV])})
    return cfg


def _store(cfg: Config) -> ArtifactStore:
    return ArtifactStore.from_config(cfg.store)


def _run_dir(cfg: Config, name: str) -> Path:
    return Path(cfg.path(cfg.run_root)) / name


def _curated(store: ArtifactStore, curated_version: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    folder = store.fetch("curated", curated_version)
    return pd.read_parquet(folder / "catalog.parquet"), pd.read_parquet(folder / "events.parquet")


def _fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def resolve(config_path: str | None = None, overrides: dict | None = None, name: str = "curated") -> str | None:
    """The version LATEST names for `name` (None before the first publish): read once at a DAG run's entry."""
    return _store(_cfg(config_path, overrides)).latest_version(name)


# -- data -----------------------------------------------------------------------------------------------------
def ingest(config_path: str | None = None, overrides: dict | None = None) -> dict:
    """Validate the raw catalog + events (Great Expectations, bad rows quarantined) and publish them curated."""
    cfg = _cfg(config_path, overrides)
    store = _store(cfg)
    production_map = store.latest_version("sid_map")
    known = set(SidMap.load(store.fetch("sid_map", production_map)).item_ids) if production_map else None
    result = ingest_batch(cfg, _fresh(_run_dir(cfg, "curated")), known_items=known)
    result["curated_version"] = store.publish("curated", Path(result["curated_dir"]), metadata=result)
    return result


def sid_refresh(config_path: str | None = None, overrides: dict | None = None, curated_version: str = "") -> dict:
    """Refresh the production SID map for the curated catalog (new and edited items coded with the existing
    codebooks, deleted ones retired), or rebuild it when drift says so, keeping SIDs stable where it can.

    action: "build" (first map), "refresh" (same lineage: the served model decodes it as is), "rebuild" (new
    codebooks: retrain), or "refused" (a rebuild that would reassign more than sids.max_reassigned_share of the
    items: nothing is published, production keeps its map, the numbers say why)."""
    cfg = _cfg(config_path, overrides)
    store = _store(cfg)
    catalog, events = _curated(store, curated_version)
    previous = store.latest_version("sid_map")
    if previous is None:
        build_dir = _fresh(_run_dir(cfg, "sid_build"))
        build_sids(catalog, events, cfg.sids, build_dir)
        metrics = json.loads((build_dir / "metrics.json").read_text())
        version = publish_sid_map(store, build_dir, metadata=metrics)
        return {"action": "build", "sid_version": version, "new_sid_version": True, "metrics": metrics}
    previous_dir = store.fetch("sid_map", previous)
    result = refresh_sids(previous_dir, catalog, events, cfg.sids, _run_dir(cfg, "sid_refresh"))
    summary = result.summary()
    if not result.rebuild:
        version = publish_sid_map(store, _run_dir(cfg, "sid_refresh"), metadata=summary)
        return {"action": "refresh", "sid_version": version, "new_sid_version": version != previous, "drift": summary}
    build_dir = _fresh(_run_dir(cfg, "sid_build"))
    build_sids(catalog, events, cfg.sids, build_dir, previous_dir=previous_dir)
    metrics = json.loads((build_dir / "metrics.json").read_text())
    if metrics["reassigned_share"] > cfg.sids.max_reassigned_share:
        reason = (
            f"the rebuild would give {metrics['reassigned_items']} of {metrics['shared_items']} items another SID "
            f"({metrics['reassigned_share']:.1%} > sids.max_reassigned_share {cfg.sids.max_reassigned_share:.0%})"
        )
        log.warning("SID rebuild refused, production keeps %s: %s", previous, reason)
        return {
            "action": "refused",
            "sid_version": previous,
            "new_sid_version": False,
            "reason": reason,
            "drift": summary,
            "rebuild": metrics,
        }
    version = publish_sid_map(store, build_dir, metadata={**metrics, "drift": summary})
    return {
        "action": "rebuild",
        "sid_version": version,
        "new_sid_version": True,
        "drift": summary,
        "reassigned_share": metrics["reassigned_share"],
    }


def serve_refresh(config_path: str | None = None, overrides: dict | None = None, sid_version: str = "") -> dict:
    """A refreshed SID map (same lineage) served at once, without retraining: the production model with the new
    map is published as a new 'model' version and exported, so new items are recommendable right away (the
    model knows every code; only the trie changes). Skipped when there is no production model or the map is of
    another lineage (that needs training)."""
    cfg = _cfg(config_path, overrides)
    store = _store(cfg)
    production = store.latest_version("model")
    if production is None:
        return {"served": False, "reason": "no production model yet"}
    source = store.fetch("model", production)
    info = json.loads((source / MODEL_INFO_FILE).read_text())
    if lineage(info["sid_version"]) != lineage(sid_version):
        return {"served": False, "reason": f"{sid_version} is another lineage than the model's {info['sid_version']}"}
    if info["sid_version"] == sid_version:
        return {"served": False, "reason": f"production already serves {sid_version}"}
    folder = _fresh(_run_dir(cfg, "model_refreshed"))
    shutil.copytree(source, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("manifest.json"))
    shutil.rmtree(folder / SID_MAP_DIR)
    shutil.copytree(
        store.fetch("sid_map", sid_version), folder / SID_MAP_DIR, ignore=shutil.ignore_patterns("manifest.json")
    )
    info.update({"sid_version": sid_version, "refreshed_from_model_version": production})
    (folder / MODEL_INFO_FILE).write_text(json.dumps(info, indent=2, default=str))
    version = store.publish("model", folder, metadata={"refreshed_from": production, "sid_version": sid_version})
    exported = export(config_path, overrides, version)
    return {"served": True, "model_version": version, "sid_version": sid_version, "export": exported}


def _feature_sources(
    cfg: Config, store: ArtifactStore, curated_version: str, sid_version: str, prefixes_version: str | None = None
) -> dict:
    """Write the Feast sources and register the repository from these versions (in this task's run directory)."""
    catalog, events = _curated(store, curated_version)
    sidmap = SidMap.load(store.fetch("sid_map", sid_version))
    prefixes = read_prefix_files(store.fetch("prefixes", prefixes_version)) if prefixes_version else None
    write_sources(cfg, catalog, events, sidmap, prefixes)
    return {"objects": apply(cfg), "users_with_prefixes": 0 if prefixes is None else int(len(prefixes))}


def features_materialize(
    config_path: str | None = None,
    overrides: dict | None = None,
    curated_version: str = "",
    sid_version: str = "",
    prefixes_version: str | None = None,
) -> dict:
    """Feast sources from the curated data, the SID map and the prefixes of these versions; apply; materialize."""
    cfg = _cfg(config_path, overrides)
    sources = _feature_sources(cfg, _store(cfg), curated_version, sid_version, prefixes_version)
    return {**materialize(cfg), **sources, "sid_version": sid_version, "prefixes_version": prefixes_version}


def holdout_split(examples: pd.DataFrame) -> pd.Series:
    """train / select / gate per example: each user's last example is held out, and the held-out users are split
    in two by a stable hash of the user id: the `select` rows pick epochs (and teach the ranker), the `gate` rows
    compare models. No row is used for both."""
    order = examples.sort_values(["user_id", "event_timestamp"], kind="stable")
    last = order.groupby("user_id").tail(1).index
    half = examples.loc[last, "user_id"].map(lambda u: int(hashlib.sha1(str(u).encode()).hexdigest(), 16) % 2)
    split = pd.Series("train", index=examples.index)
    split.loc[last] = half.map({0: "select", 1: "gate"})
    return split


def build_examples(
    config_path: str | None = None, overrides: dict | None = None, curated_version: str = "", sid_version: str = ""
) -> dict:
    """Point-in-time next-item examples from Feast for every event that has an earlier one, split into train /
    select / gate (holdout_split), published as the 'examples' artifact."""
    cfg = _cfg(config_path, overrides)
    store = _store(cfg)
    _feature_sources(cfg, store, curated_version, sid_version)
    _, events = _curated(store, curated_version)
    entity = events.rename(columns={"item_id": "target"})[["user_id", "target", "event_timestamp"]]
    examples = build_training_examples(cfg, entity)
    examples[SPLIT_COLUMN] = holdout_split(examples)
    folder = _fresh(_run_dir(cfg, "examples"))
    examples.to_parquet(folder / EXAMPLES_FILE, index=False)
    counts = {k: int(v) for k, v in examples[SPLIT_COLUMN].value_counts().items()}
    version = store.publish("examples", folder, metadata={"curated_version": curated_version, "rows": counts})
    return {"examples_version": version, "examples": int(len(examples)), "rows": counts}


def _examples(store: ArtifactStore, examples_version: str) -> dict[str, pd.DataFrame]:
    frame = pd.read_parquet(store.fetch("examples", examples_version) / EXAMPLES_FILE)
    frame["history"] = frame["history"].map(list)
    return {name: frame[frame[SPLIT_COLUMN] == name].reset_index(drop=True) for name in ("train", "select", "gate")}


# -- model ----------------------------------------------------------------------------------------------------
def train(
    config_path: str | None = None,
    overrides: dict | None = None,
    examples_version: str = "",
    sid_version: str = "",
    curated_version: str = "",
) -> dict:
    """Fine-tune on the examples' train rows (epochs picked on the select rows) and stage the model as a
    'model_candidate' version; with align.enabled first align it (training.align, guarded on the select rows);
    with serving.ranker also learn its ranking stage (on the select rows)."""
    cfg = _cfg(config_path, overrides)
    store = _store(cfg)
    catalog, _ = _curated(store, curated_version)
    sidmap = SidMap.load(store.fetch("sid_map", sid_version))
    rows = _examples(store, examples_version)
    warm = _warm_start(cfg, store, sidmap)
    if warm is not None:
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": cfg.train.warm_start_epochs})})
    model_dir = train_model(
        cfg, sidmap, catalog, rows["train"], rows["select"], _run_dir(cfg, "model_candidate"), init_from=warm
    )
    if not distributed.context().is_main:  # under torchrun, rank 0 publishes
        return {"rank": distributed.context().rank}
    if cfg.align.enabled:  # preference alignment; its guard (the select rows) keeps the supervised model if worse
        model_dir = align_model(cfg, model_dir, rows["train"], rows["select"], _run_dir(cfg, "model_aligned"))
    ranker = None
    if cfg.serving.ranker:
        serve = pd.concat(list(rows.values()), ignore_index=True)
        ranker = learn_served_ranker(cfg, model_dir, rows["train"], rows["select"], serve, catalog)
    info = json.loads((model_dir / "sidrec_model.json").read_text())
    metadata = {**info, "examples_version": examples_version, "curated_version": curated_version}
    version = store.publish("model_candidate", model_dir, metadata=metadata)
    return {
        "candidate_version": version,
        "sid_version": sidmap.version,
        "examples_version": examples_version,
        "best_select_hr10": info.get("best_valid"),
        "train_seconds": info.get("train_seconds"),
        "warm_start": warm is not None,
        "alignment": info.get("alignment", {}).get("status"),
        "ranker_cross_validated": ranker,
    }


def _warm_start(cfg: Config, store: ArtifactStore, sidmap: SidMap) -> Path | None:
    """The production model's directory when training may continue from it: train.warm_start, and its SID map of
    the same lineage as the new one (a refresh keeps every code it learnt). Else None: train from the base LLM."""
    production = store.latest_version("model")
    if not cfg.train.warm_start or production is None:
        return None
    folder = store.fetch("model", production)
    trained_on = json.loads((folder / MODEL_INFO_FILE).read_text()).get("sid_version", "")
    return folder if lineage(trained_on) == sidmap.lineage else None


def learn_served_ranker(
    cfg: Config, model_dir: Path, fit: pd.DataFrame, rank: pd.DataFrame, serve: pd.DataFrame, catalog: pd.DataFrame
) -> dict:
    """The ranking stage of a freshly trained model, written into its ranker/ so that promotion and export carry
    it: learnt on `rank` rows with counts from `fit` rows and the model's beams of serving.beam_size, serving
    counts from `serve`; with serving.ranker_content also the catalog's content neighbours. Returns its
    cross-validated metrics on the rank rows."""
    recommender = Recommender.from_pretrained(model_dir, device=cfg.train.device, beam_size=cfg.serving.beam_size)
    content = ContentIndex.from_catalog(catalog, cfg.sids.content_encoder) if cfg.serving.ranker_content else None
    artifact = fit_ranker(
        fit, rank, serve, recommender, cfg.serving.beam_size, cfg.eval.batch_size, tuple(cfg.eval.ks), content
    )
    artifact.save(model_dir / RANKER_DIR)
    return artifact.meta["cross_validated"]


def _load(cfg: Config, folder: Path, model_version: str | None, **kwargs) -> Recommender:
    recommender = Recommender.from_pretrained(
        folder,
        device=cfg.train.device,
        beam_size=cfg.serving.beam_size,
        max_k=max(cfg.serving.max_k, *cfg.eval.ks),
        **kwargs,
    )
    recommender.info["model_version"] = model_version
    return recommender


def evaluate_and_gate(
    config_path: str | None = None,
    overrides: dict | None = None,
    candidate_version: str = "",
    examples_version: str = "",
) -> dict:
    """Score the candidate, the production model and the baselines on the examples' gate rows (evaluation.gate);
    promote (publish the candidate as 'model') when it passes."""
    cfg = _cfg(config_path, overrides)
    store = _store(cfg)
    rows = _examples(store, examples_version)
    holdout = rows["gate"]
    if cfg.eval.max_examples and len(holdout) > cfg.eval.max_examples:
        holdout = holdout.sample(n=cfg.eval.max_examples, random_state=0)
    candidate = _load(cfg, store.fetch("model_candidate", candidate_version), candidate_version)
    production_version = store.latest_version("model")
    production = (
        _load(cfg, store.fetch("model", production_version), production_version) if production_version else None
    )
    train_rows = pd.concat([rows["train"], rows["select"]], ignore_index=True)
    result = gate(
        candidate,
        production,
        train_rows,
        holdout,
        cfg.eval.ks,
        cfg.eval.gate_metric,
        cfg.eval.gate_tolerance,
        cfg.eval.batch_size,
    )
    result.update({"candidate_version": candidate_version, "production_version": production_version})
    if result["promoted"]:
        result["model_version"] = _promote(store, candidate_version, {"gate": _summary(result)})
    return result


def _summary(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "scores"}


def _promote(store: ArtifactStore, candidate_version: str, metadata: dict) -> str:
    folder = store.fetch("model_candidate", candidate_version)
    return store.publish("model", folder, metadata={"candidate_version": candidate_version, **metadata})


def promote(
    config_path: str | None = None,
    overrides: dict | None = None,
    candidate_version: str = "",
    reason: str = "manual",
) -> dict:
    """Ops action: promote a staged candidate without the gate (a first model, or a rollback); logged as such."""
    cfg = _cfg(config_path, overrides)
    version = _promote(_store(cfg), candidate_version, {"promoted_by": reason})
    log.warning("model_candidate %s promoted WITHOUT the gate (%s) as model %s", candidate_version, reason, version)
    return {"model_version": version, "candidate_version": candidate_version, "reason": reason}


def export(config_path: str | None = None, overrides: dict | None = None, model_version: str = "") -> dict:
    """Export this promoted model version, with the deployment's serving settings (and its ranker when
    serving.ranker), as a new checked version of the Triton model repository."""
    cfg = _cfg(config_path, overrides)
    store = _store(cfg)
    recommender = Recommender.from_pretrained(
        store.fetch("model", model_version),
        dtype="float32",
        beam_size=cfg.serving.beam_size,
        max_k=cfg.serving.max_k,
        blend_weight=cfg.serving.blend_weight,
        ranker=cfg.serving.ranker,
    )
    recommender.info["model_version"] = model_version
    repository = cfg.path(cfg.serving.model_repository)
    return export_triton_repository(recommender, repository, cfg.serving, endpoint_url=cfg.store.s3_endpoint_url)


# -- reasoning ------------------------------------------------------------------------------------------------
def _users(cfg: Config, events: pd.DataFrame) -> pd.DataFrame:
    """Active users and their current histories (the last data.max_history items); reasoning.max_users most
    recently active ones when set."""
    ordered = events.sort_values(["user_id", "event_timestamp"], kind="stable")
    users = ordered.groupby("user_id")["item_id"].apply(lambda s: [str(i) for i in s][-cfg.data.max_history :])
    frame = users.reset_index().rename(columns={"item_id": "history"})
    if cfg.reasoning.max_users:
        recent = ordered.groupby("user_id")["event_timestamp"].max().nlargest(cfg.reasoning.max_users).index
        frame = frame[frame["user_id"].isin(set(recent))]
    return frame


def active_users(config_path: str | None = None, overrides: dict | None = None, curated_version: str = "") -> dict:
    """How many users think-ahead will cover."""
    cfg = _cfg(config_path, overrides)
    _, events = _curated(_store(cfg), curated_version)
    return {"users": int(len(_users(cfg, events)))}


def _evidence(store: ArtifactStore, curated_version: str, rows: pd.DataFrame, sidmap: SidMap) -> Evidence:
    catalog, _ = _curated(store, curated_version)
    return Evidence.from_data(catalog, rows, sid_codes(sidmap))


def train_reasoner(
    config_path: str | None = None,
    overrides: dict | None = None,
    model_version: str = "",
    examples_version: str = "",
    curated_version: str = "",
) -> dict:
    """The reasoning model of a promoted model: grounded rationales for a sample of the examples' train rows
    (their coverage and samples in the log), then reasoning fine-tuning from the promoted model, published as a
    'reasoning_model' version. A reasoning model already trained from this model version is reused."""
    cfg = _cfg(config_path, overrides)
    store = _store(cfg)
    for version in reversed(store.list_versions("reasoning_model")):
        meta = store.read_manifest("reasoning_model", version)["metadata"]
        if meta.get("base_model_version") == model_version:
            return {"reasoning_version": version, "reused": True, "coverage": meta.get("coverage")}
    production = _load(cfg, store.fetch("model", model_version), model_version)
    train_rows = _examples(store, examples_version)["train"]
    sample = train_rows.sample(n=min(len(train_rows), cfg.reasoning.rationale_examples), random_state=cfg.train.seed)
    frame = build_rationales(sample, _evidence(store, curated_version, train_rows, production.sidmap))
    cov = coverage(frame)
    log.info("rationales: coverage %.1f%% of %d; by kind %s", 100 * cov["coverage"], cov["rationales"], cov["by_kind"])
    for text in cov["samples"]:
        log.info("rationale sample: %s", text)
    reasoning_cfg = cfg.model_copy(
        update={"train": cfg.train.model_copy(update={"epochs": cfg.reasoning.epochs, "warmup_epochs": 0.0})}
    )
    folder = train_reasoning(production, frame, reasoning_cfg, _fresh(_run_dir(cfg, "reasoning_model")))
    version = store.publish("reasoning_model", folder, metadata={"base_model_version": model_version, "coverage": cov})
    return {"reasoning_version": version, "reused": False, "coverage": cov}


def gate_reasoner(
    config_path: str | None = None,
    overrides: dict | None = None,
    reasoning_version: str = "",
    model_version: str = "",
    examples_version: str = "",
) -> dict:
    """Think-ahead prefixes of the reasoning model + completion by the served model vs the served model's full
    decoding, on the examples' gate rows (reasoning.gate: the HR@10 loss must stay within reasoning.max_hr10_loss)."""
    cfg = _cfg(config_path, overrides)
    store = _store(cfg)
    holdout = _examples(store, examples_version)["gate"]
    if len(holdout) > cfg.reasoning.gate_examples:
        holdout = holdout.sample(n=cfg.reasoning.gate_examples, random_state=0)
    # the generative stage alone: the served ranker counts every example's target (gate rows included), so with
    # it full decoding would be scored on counts that know the answer (HR@10 0.51 vs 0.10 without, in the demo)
    served = _load(cfg, store.fetch("model", model_version), model_version, ranker=False)
    reasoner = _load(cfg, store.fetch("reasoning_model", reasoning_version), reasoning_version)
    return {"reasoning_version": reasoning_version, **reasoning_gate(served, reasoner, holdout, cfg.reasoning)}


def think_ahead(
    config_path: str | None = None,
    overrides: dict | None = None,
    reasoning_version: str = "",
    curated_version: str = "",
    shard: int = 0,
    n_shards: int = 1,
    examples_version: str | None = None,
) -> dict:
    """Offline reasoning with this reasoning model for one shard of the active users (with grounded explanations
    when the examples are given); the shard's prefixes are published as a 'prefix_shards' version."""
    cfg = _cfg(config_path, overrides)
    store = _store(cfg)
    # one shard of one reasoning model on one curated version: a rerun (a retried task, a daily run without a new
    # model or new data) returns what was published; new data under the same reasoning model is a new version
    version = f"{reasoning_version}.{curated_version}.{shard:03d}-of-{n_shards:03d}"
    if store.exists("prefix_shards", version):
        users = store.read_manifest("prefix_shards", version)["metadata"].get("users", 0)
        return {"shard": shard, "n_shards": n_shards, "shard_version": version, "users": users, "reused": True}
    _, events = _curated(store, curated_version)
    users = shard_users(_users(cfg, events), shard, n_shards)
    reasoner = _load(cfg, store.fetch("reasoning_model", reasoning_version), reasoning_version)
    evidence = None
    if examples_version:
        rows = _examples(store, examples_version)
        evidence = _evidence(store, curated_version, pd.concat(list(rows.values()), ignore_index=True), reasoner.sidmap)
        evidence.leave_one_out = False  # explanations of live histories: every counted purchase is someone else's
    frame = think_ahead_users(reasoner, users, cfg.reasoning, seed=cfg.train.seed + shard, evidence=evidence)
    folder = _fresh(_run_dir(cfg, f"prefix_shard_{shard:03d}"))
    write_prefixes(frame, folder, shard, n_shards)
    metadata = {"reasoning_version": reasoning_version, "curated_version": curated_version, "users": int(len(frame))}
    version = store.publish("prefix_shards", folder, version=version, metadata=metadata)
    return {"shard": shard, "n_shards": n_shards, "shard_version": version, "users": int(len(frame)), "reused": False}


def publish_prefixes(
    config_path: str | None = None,
    overrides: dict | None = None,
    shard_versions: list[str] | None = None,
    reasoning_version: str = "",
    curated_version: str = "",
    sid_version: str = "",
) -> dict:
    """Publish the shards as one 'prefixes' version, then load them (with the features of these versions) into the
    online store."""
    cfg = _cfg(config_path, overrides)
    store = _store(cfg)
    staging = _fresh(_run_dir(cfg, "prefixes_publish"))
    for version in shard_versions or []:
        for path in store.fetch("prefix_shards", version).glob("prefixes-*.parquet"):
            shutil.copyfile(path, staging / path.name)
    if not any(staging.iterdir()):
        raise ValueError("no prefix shard to publish")
    metadata = {"reasoning_version": reasoning_version, "shards": shard_versions}
    version = store.publish("prefixes", staging, metadata=metadata)
    online = features_materialize(config_path, overrides, curated_version, sid_version, version)
    return {"prefixes_version": version, "users_with_prefixes": online["users_with_prefixes"]}


def clear_prefixes(
    config_path: str | None = None,
    overrides: dict | None = None,
    curated_version: str = "",
    sid_version: str = "",
    reason: str = "",
) -> dict:
    """No prefixes online (the reasoning gate refused them): serving decodes fully; the reason is logged."""
    log.warning("think-ahead prefixes withdrawn, serving decodes fully: %s", reason)
    online = features_materialize(config_path, overrides, curated_version, sid_version, None)
    return {"prefixes_version": None, "users_with_prefixes": online["users_with_prefixes"], "reason": reason}

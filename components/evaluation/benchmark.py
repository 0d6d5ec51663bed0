"""`sidrec benchmark`: the generative model and every baseline on amazon-industrial, side by side.

Protocol (the dataset's): select on valid with models fit on train; report test with models fit on
train + valid. The SID map is part of the fit: the model scored on valid uses SIDs built from the catalog and
the train-period events, the one scored on test SIDs rebuilt from the train- and valid-period events (as
Markov and SASRec see valid's transitions), so the scored split's interactions never reach the item codes.
The generative model's epoch count is chosen on valid, then it is retrained on train + valid for that many
epochs and scored on test. With eval.ensemble_size N > 1, N - 1 more seeds are trained for the selected epoch
count at both stages and the N models are also scored decoded together. eval.blend_transitions adds the
hybrid (the candidates blended with last-item transitions, weight chosen on valid), eval.rerank the ranking
stage (the candidates pooled with co-occurrence ones and reordered by a ranker learnt on valid rows) and, as a
baseline, the same ranker without the generative model. A finished model directory with the same settings is
reused, so a rerun of the same command resumes instead of retraining.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from components.config import Config, load_config
from components.evaluation.baselines import LastItemMarkov, MostPopular, SASRec
from components.evaluation.metrics import hit_rate_ndcg

log = logging.getLogger(__name__)
KS = [3, 5, 10]
RANKER_BASELINE = "co-occurrence candidates + LightGBM ranker (no generative model)"


def _splits(cfg: Config) -> dict[str, pd.DataFrame]:
    from components.data.splits import load_split_examples

    return {s: load_split_examples(cfg.path(cfg.data.splits_dir), s) for s in ("train", "valid", "test")}


def fit_periods(scored_split: str) -> list[str]:
    """The periods a model scored on `scored_split` is fit on: train for valid, train + valid for test."""
    periods = {"valid": ["train"], "test": ["train", "valid"]}
    if scored_split not in periods:
        raise ValueError(f"only valid and test are scored, not {scored_split!r}")
    return periods[scored_split]


def fit_split(splits: dict[str, pd.DataFrame], scored_split: str) -> pd.DataFrame:
    """The examples a model scored on `scored_split` is fit on (fit_periods)."""
    return pd.concat([splits[p] for p in fit_periods(scored_split)], ignore_index=True)


def fit_period_events(events: pd.DataFrame, scored_split: str) -> pd.DataFrame:
    """The events a model scored on `scored_split` may be fit on (fit_periods; all of them without a split).

    Why rebuild SIDs for test: an item first bought in the valid period has no collaborative signal in a
    train-only map (its code comes from its text alone), although the test model trains on its purchases.
    """
    periods = fit_periods(scored_split)
    return events[events["split"].isin(periods)] if "split" in events else events


def cached_sid_map(cfg: Config, root: Path, prebuilt: Path | None = None) -> Path:
    """root/sid_map_<embedding config hash>: one SID map per SID setting, built from the catalog and the
    train-period events on first use and shared by every run with those settings (the build is deterministic).

    `prebuilt`: a map built elsewhere with the same settings, copied in instead of building (no encoder needed).
    """
    import shutil

    from components.data.readers import read_catalog, read_events
    from components.sids.build import build_sids, embedding_config_hash

    sid_dir = Path(root) / f"sid_map_{embedding_config_hash(cfg.sids)}"
    if prebuilt and not sid_dir.exists():
        shutil.copytree(prebuilt, sid_dir)
    if not (sid_dir / "metrics.json").exists():
        events = fit_period_events(read_events(cfg.path(cfg.data.events_uri)), "valid")
        build_sids(read_catalog(cfg.path(cfg.data.catalog_uri)), events, cfg.sids, sid_dir)
    return sid_dir


def score_baselines(
    cfg: Config,
    split: str,
    splits: dict[str, pd.DataFrame] | None = None,
    catalog_ids: list[str] | None = None,
    sasrec_epochs: int | None = None,
) -> dict[str, dict]:
    """Fit each baseline (train for valid; train + valid for test) and score it on `split`.

    SASRec's epoch count is selected on valid; pass the selected count (`sasrec_epochs`) when scoring test so
    it is not selected twice.
    """
    splits = splits or _splits(cfg)
    fit = fit_split(splits, split)
    target = splits[split]
    histories = [list(h) for h in target["history"]]
    out = {}
    for model in (MostPopular(), LastItemMarkov(), SASRec()):
        t0 = time.perf_counter()
        if isinstance(model, SASRec):
            # epochs selected on valid: fit with valid monitoring, then reuse the best epoch count for test
            if split == "test" and sasrec_epochs:
                model = SASRec(epochs=sasrec_epochs).fit(fit, None, catalog_ids)
            else:
                model.fit(splits["train"], splits["valid"], catalog_ids)
                if split == "test":
                    model = SASRec(epochs=model.best_epoch).fit(fit, None, catalog_ids)
            metrics_epochs = getattr(model, "best_epoch", model.epochs)
        else:
            model.fit(fit)
        seconds = time.perf_counter() - t0
        metrics = hit_rate_ndcg(model.recommend(histories, max(KS)), target["target"].tolist(), KS)
        metrics.update({"invalid_rate": 0.0, "train_seconds": round(seconds, 1)})
        if isinstance(model, SASRec):
            metrics["epochs"] = metrics_epochs
        out[model.name] = metrics
    return out


def run_benchmark(config_path: str | None, out: str) -> dict:
    """Build SIDs, score baselines and the generative model on valid and test; write table.md + metrics.json."""
    from components.data.readers import read_catalog, read_events
    from components.sids.build import build_sids

    cfg = load_config(config_path or Path(__file__).resolve().parents[2] / "configs" / "benchmark.yaml")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    splits = _splits(cfg)
    catalog = read_catalog(cfg.path(cfg.data.catalog_uri))
    events = read_events(cfg.path(cfg.data.events_uri))
    sidmap = build_sids(catalog, fit_period_events(events, "valid"), cfg.sids, out_dir / "sid_map")
    ids = catalog["item_id"].astype(str).tolist()
    results: dict[str, dict] = {
        "valid": score_baselines(cfg, "valid", splits, ids),
        "test": score_baselines(cfg, "test", splits, ids),
    }
    if cfg.eval.rerank:
        from components.evaluation.rerank import score_ranker

        ranker = score_ranker({s: fit_split(splits, s) for s in ("valid", "test")}, splits, KS)
        results["valid"][RANKER_BASELINE], results["test"][RANKER_BASELINE] = ranker["valid"], ranker["test"]
    name = f"sidrec generative ({cfg.model.backbone})"
    generative = benchmark_generative(cfg, sidmap, catalog, splits, out_dir)
    results["valid"][name], results["test"][name] = generative["valid"], generative["test"]
    if "test_ensemble" in generative:
        ens_name = f"sidrec generative ({cfg.model.backbone}, {cfg.eval.ensemble_size} seeds decoded together)"
        results["valid"][ens_name] = generative["valid_ensemble"]
        results["test"][ens_name] = generative["test_ensemble"]
        name = ens_name
    if "test_blend" in generative:
        blend_name = f"{name} + last-item transitions (weight {generative['blend_weight']} chosen on valid)"
        results["valid"][blend_name] = generative["valid_blend"]
        results["test"][blend_name] = generative["test_blend"]
    if "test_rerank" in generative:
        rerank_name = f"{name} + co-occurrence candidates, LightGBM ranker (trained on valid)"
        results["valid"][rerank_name] = generative["valid_rerank"]
        results["test"][rerank_name] = generative["test_rerank"]
    results["meta"] = {
        "sid_map": json.loads((out_dir / "sid_map" / "metrics.json").read_text()),
        "sid_map_test": json.loads((out_dir / "model_final_sid_map" / "metrics.json").read_text()),
        "selected_epochs": generative["selected_epochs"],
        "blend_weights_on_valid": generative.get("blend_weights_on_valid"),
        "config": cfg.model_dump(),
    }
    (out_dir / "metrics.json").write_text(json.dumps(results, indent=2, default=str))
    table = markdown_table(results)
    (out_dir / "table.md").write_text(table)
    print(table)
    return results


def is_finished(cfg: Config, sidmap, out_dir: Path) -> bool:
    """out_dir already holds a finished model of the same backbone, model and train settings on the same SID map
    version (train_model publishes a directory only once training is done).

    A setting missing from an older record had its default then (settings are added with defaults that keep the
    earlier behaviour), so records are compared with the defaults filled in; a record without the model settings
    is matched on the other fields.
    """
    from components.config import TrainConfig
    from components.model.backbone import model_info

    def plain(settings: dict) -> dict:
        return json.loads(json.dumps(settings, default=str))

    info = model_info(out_dir)
    if "train" not in info:
        return False
    return (
        info.get("backbone") == cfg.model.backbone
        and info.get("sid_version") == sidmap.version
        and info.get("model", cfg.model.model_dump()) == cfg.model.model_dump()
        and {**plain(TrainConfig().model_dump()), **info["train"]} == plain(cfg.train.model_dump())
    )


def train_or_reuse(
    cfg: Config,
    sidmap,
    catalog: pd.DataFrame,
    train_examples: pd.DataFrame,
    valid_examples: pd.DataFrame | None,
    out_dir: Path,
) -> Path:
    """train_model, unless out_dir already holds the same finished model (is_finished).

    Why: an ensemble benchmark trains many models for an hour or more; rerunning the command after a crash or
    after raising ensemble_size keeps the finished ones.
    """
    from components.model.train import train_model

    if is_finished(cfg, sidmap, out_dir):
        log.info("reusing the finished model in %s", out_dir)
        return Path(out_dir)
    return train_model(cfg, sidmap, catalog, train_examples, valid_examples, out_dir)


def _train_job(job: tuple) -> Path:
    from components.model.train import train_model

    return train_model(*job)


def train_all(jobs: list[tuple], parallel: int = 1) -> list[Path]:
    """train_model for each (cfg, sidmap, catalog, train, valid, out_dir) job not finished yet (is_finished),
    `parallel` processes at a time.

    Why processes: a small model trains on one thread (train.torch_threads) and leaves the other cores idle, and
    ensemble members are independent. Finished models are skipped before anything is started.
    """
    pending = [job for job in jobs if not is_finished(job[0], job[1], job[5])]
    if parallel > 1 and len(pending) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")  # no forked torch thread pools
        with ProcessPoolExecutor(max_workers=min(parallel, len(pending)), mp_context=context) as pool:
            list(pool.map(_train_job, pending))
    else:
        for job in pending:
            _train_job(job)
    return [Path(job[5]) for job in jobs]


def selected_run(cfg: Config, epochs: float, seed: int | None = None) -> Config:
    """The settings that retrain the run selected at `epochs`: a schedule of that many epochs, or with
    eval.replay_schedule the planned schedule (train.epochs) stopped there (train.stop_epochs), as the selected
    checkpoint was reached."""
    update: dict = (
        {"epochs": cfg.train.epochs, "stop_epochs": epochs} if cfg.eval.replay_schedule else {"epochs": epochs}
    )
    if seed is not None:
        update["seed"] = seed
    return cfg.model_copy(update={"train": cfg.train.model_copy(update=update)})


def ensemble_members(cfg: Config, epochs: float, first_dir: Path) -> list[tuple[Config, Path]]:
    """(config, directory) of each ensemble model after the first: seeds seed+1 .. seed+N-1 of the selected run
    (selected_run), in <first_dir>_seed<seed>."""
    first_dir = Path(first_dir)
    return [
        (selected_run(cfg, epochs, seed), first_dir.with_name(f"{first_dir.name}_seed{seed}"))
        for seed in range(cfg.train.seed + 1, cfg.train.seed + cfg.eval.ensemble_size)
    ]


def _train_seconds(model_dirs: list[Path]) -> float:
    from components.model.backbone import model_info

    return round(sum(float(model_info(d).get("train_seconds", 0.0)) for d in model_dirs), 1)


def _score(cfg: Config, model_dirs: list[Path], examples: pd.DataFrame) -> tuple[dict, list]:
    """One model, or the models decoded together, on examples: metrics (CPU train s = their training loops'
    seconds) and each row's beam candidates with log-probs (for the transition blend)."""
    from components.evaluation.evaluate import decode_and_score, load_for_decoding

    model, tokenizer, trie, sidmap = load_for_decoding(model_dirs, cfg.train.device)
    metrics, candidates = decode_and_score(
        model,
        tokenizer,
        trie,
        sidmap,
        examples,
        KS,
        cfg.eval.beam_size,
        cfg.eval.batch_size,
        candidates=cfg.eval.beam_size,
    )
    return {**metrics, "train_seconds": _train_seconds(model_dirs), "models": len(model_dirs)}, candidates


def benchmark_generative(
    cfg: Config, sidmap, catalog: pd.DataFrame, splits: dict[str, pd.DataFrame], out_dir: Path
) -> dict:
    """The generative model under the benchmark protocol: epochs picked on valid, retrained on train + valid, test.

    Returns {"valid": metrics of the train-only model, "test": metrics of the retrained one, "selected_epochs"},
    plus "valid_ensemble" / "test_ensemble" for eval.ensemble_size > 1 and "valid_blend" / "test_blend" /
    "blend_weight" for eval.blend_transitions (the blend starts from the ensemble when there is one).
    """
    model_dir = train_or_reuse(cfg, sidmap, catalog, splits["train"], splits["valid"], out_dir / "model_train")
    out: dict = {}
    out["valid"], candidates = _score(cfg, [model_dir], splits["valid"])
    epochs = selected_epochs(model_dir, cfg.train.epochs)
    members = train_all(
        [(c, sidmap, catalog, splits["train"], None, d) for c, d in ensemble_members(cfg, epochs, model_dir)],
        cfg.eval.ensemble_jobs,
    )
    if members:
        out["valid_ensemble"], candidates = _score(cfg, [model_dir, *members], splits["valid"])
    out.update(final_test(cfg, catalog, splits, epochs, out_dir / "model_final", keep_candidates=True))
    test_candidates = out.pop("test_candidates")
    if cfg.eval.blend_transitions:
        out.update(blend_rows(splits, candidates, test_candidates))
        for split in ("valid", "test"):  # the blended models' training time
            out[f"{split}_blend"]["train_seconds"] = out.get(f"{split}_ensemble", out[split])["train_seconds"]
    if cfg.eval.rerank:
        out.update(rerank_rows(splits, candidates, test_candidates, model_dir, out_dir / "model_final"))
        for split in ("valid", "test"):  # the generative models' training time + the ranker's
            out[f"{split}_rerank"]["train_seconds"] += out.get(f"{split}_ensemble", out[split])["train_seconds"]
    return out


def rerank_rows(
    splits: dict[str, pd.DataFrame], valid_candidates: list, test_candidates: list, valid_dir: Path, test_dir: Path
) -> dict:
    """The generative candidates pooled with co-occurrence candidates and reordered by a LightGBM ranker trained
    on valid (evaluation.rerank); each split's SID features come from its model's own map."""
    from components.evaluation.rerank import score_ranker
    from components.ranking.candidates import sid_codes
    from components.sids.sidmap import SidMap

    dirs = {"valid": valid_dir, "test": test_dir}
    codes = {split: sid_codes(SidMap.load(Path(d) / "sid_map")) for split, d in dirs.items()}
    ranked = score_ranker(
        {s: fit_split(splits, s) for s in ("valid", "test")},
        splits,
        KS,
        beams={"valid": valid_candidates, "test": test_candidates},
        codes=codes,
    )
    return {"valid_rerank": ranked["valid"], "test_rerank": ranked["test"]}


def blend_rows(splits: dict[str, pd.DataFrame], valid_candidates: list, test_candidates: list) -> dict:
    """The generative candidates blended with last-item transitions (evaluation.blend): the weight is chosen on
    valid with the chain fit on train, then test is blended with the chain refit on train + valid, as the Markov
    row is. Returns {"valid_blend", "test_blend", "blend_weight"}."""
    from components.decoding.transitions import TransitionTable
    from components.evaluation.blend import blended_items, select_blend_weight

    k = max(KS)
    out: dict = {}
    alpha = None
    for split, candidates in (("valid", valid_candidates), ("test", test_candidates)):
        fit = fit_split(splits, split)
        table = TransitionTable.from_examples(fit["history"], fit["target"])
        histories = [list(h) for h in splits[split]["history"]]
        targets = splits[split]["target"].astype(str).tolist()
        if alpha is None:
            alpha, by_weight = select_blend_weight(candidates, histories, targets, table, k)
            out["blend_weights_on_valid"] = {str(a): m for a, m in by_weight.items()}
        ranked = blended_items(candidates, histories, table, alpha, k)
        out[f"{split}_blend"] = {**hit_rate_ndcg(ranked, targets, KS), "invalid_rate": 0.0, "blend_weight": alpha}
    out["blend_weight"] = alpha
    return out


def selected_epochs(model_dir: Path, planned_epochs: float) -> float:
    """The epoch count of the best valid score a train_model run recorded (its planned count without any)."""
    info = json.loads((Path(model_dir) / "sidrec_model.json").read_text())
    history = json.loads((Path(model_dir) / "history.json").read_text())
    best_step = max((h for h in history if "valid" in h), key=lambda h: h["valid"], default={"step": info["steps"]})
    steps_per_epoch = info.get("steps_per_epoch") or max(1, info["steps"] / max(planned_epochs, 1e-9))
    return max(1.0, round(best_step["step"] / steps_per_epoch, 2))


def run_variants(
    variants: list[tuple[str, dict]],
    command: Callable[[str, dict], list[str]],
    out_dir: Path,
    deadline_s: float,
) -> dict[str, dict]:
    """Run one process per (name, overrides) at once; each writes out_dir/NAME/result.json (with a "valid" entry).

    Why processes: a small model leaves most of a GPU (or a many-core CPU) idle, so variants share it. A variant
    still running at the deadline is stopped by PID and reported {"unfinished": True}; one that exits without a
    result {"failed": returncode}. Logs go to out_dir/NAME.log.
    """
    from components.utils.procs import start_process, stop_process

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    procs = {}
    for name, overrides in variants:
        (out_dir / f"{name}.log").unlink(missing_ok=True)
        procs[name] = start_process(command(name, overrides), out_dir / f"{name}.log")  # own group: stoppable
    deadline = time.monotonic() + deadline_s
    while any(p.poll() is None for p in procs.values()) and time.monotonic() < deadline:
        time.sleep(0.5)
    results: dict[str, dict] = {}
    for name, proc in procs.items():
        if proc.poll() is None:
            stop_process(proc)
            results[name] = {"unfinished": True}
            continue
        result = out_dir / name / "result.json"
        results[name] = json.loads(result.read_text()) if result.exists() else {"failed": proc.returncode}
    return results


def best_variant(results: dict[str, dict]) -> str | None:
    """The variant with the best full-valid HR@10 (NDCG@10 breaks ties); unfinished or failed ones never win."""
    scored = {name: r["valid"] for name, r in results.items() if "valid" in r}
    return max(scored, key=lambda n: (scored[n]["HR@10"], scored[n]["NDCG@10"])) if scored else None


def final_test(
    cfg: Config,
    catalog: pd.DataFrame,
    splits: dict[str, pd.DataFrame],
    epochs: float,
    out_dir: Path,
    keep_candidates: bool = False,
) -> dict:
    """Rebuild the SIDs on train + valid events, retrain on train + valid for the selected epochs (nothing is
    picked on test) and score test once; the same for the ensemble with eval.ensemble_size > 1
    ("test_ensemble"). The map goes to out_dir/../<out_dir name>_sid_map. With keep_candidates, "test_candidates"
    holds the beam candidates of the last scored model (the ensemble when there is one).
    """
    from components.data.readers import read_events
    from components.sids.build import build_sids

    final_cfg = selected_run(cfg, epochs)
    events = fit_period_events(read_events(cfg.path(cfg.data.events_uri)), "test")
    sidmap = build_sids(catalog, events, cfg.sids, Path(out_dir).with_name(Path(out_dir).name + "_sid_map"))
    fit = fit_split(splits, "test")
    final_dir, *members = train_all(
        [
            (c, sidmap, catalog, fit, None, d)
            for c, d in [(final_cfg, out_dir), *ensemble_members(cfg, epochs, out_dir)]
        ],
        cfg.eval.ensemble_jobs,
    )
    out: dict = {"selected_epochs": epochs, "sid_version": sidmap.version}
    out["test"], candidates = _score(cfg, [final_dir], splits["test"])
    if members:
        out["test_ensemble"], candidates = _score(cfg, [final_dir, *members], splits["test"])
    if keep_candidates:
        out["test_candidates"] = candidates
    return out


def markdown_table(results: dict, time_label: str = "CPU train s") -> str:
    lines = []
    for split in ("test", "valid"):
        lines += [
            f"**{split}** ({'fit on train + valid' if split == 'test' else 'fit on train'})",
            "",
            "| model | HR@3 | NDCG@3 | HR@5 | NDCG@5 | HR@10 | NDCG@10 | invalid SIDs | " + time_label + " |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name, m in results[split].items():
            lines.append(
                f"| {name} | "
                + " | ".join(f"{m[f'{k}@{n}']:.4f}" for n in KS for k in ("HR", "NDCG"))
                + f" | {m.get('invalid_rate', 0):.3f} | {m.get('train_seconds', 0):.0f} |"
            )
        lines.append("")
    return "\n".join(lines)

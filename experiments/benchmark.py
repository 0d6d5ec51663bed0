"""`sidrec benchmark`: the generative model and every baseline on a dataset's splits, side by side.

Any dataset in the data contract works (catalog, events, train/valid/test split files): the config names it.

Protocol (the dataset's): select on valid with models fit on train; report test with models fit on
train + valid. The SID map is part of the fit: the model scored on valid uses SIDs built from the catalog and
the train-period events, the one scored on test SIDs rebuilt from the train- and valid-period events (as
Markov and SASRec see valid's transitions), so the scored split's interactions never reach the item codes.
The generative model's epoch count is chosen on valid, then it is retrained on train + valid for that many
epochs and scored on test. With benchmark.ensemble_size N > 1, N seeds are trained side by side, each choosing its
own epoch count on valid (train.patience ends a run past its peak), retrained on train + valid for it, and the N
models are also scored decoded together. benchmark.blend_transitions adds the
hybrid (the candidates blended with last-item transitions, weight chosen on valid), benchmark.rerank the ranking
stage (the candidates pooled with co-occurrence ones and reordered by a ranker learnt on valid rows) and, as a
baseline, the same ranker without the generative model. A finished model directory with the same settings is
reused, so a rerun of the same command resumes instead of retraining. `--valid-only` stops after the valid half
(selection, no retrain, no test reading).
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from components.config import Config, TrainConfig, load_config
from components.data.ingest import read_catalog_for, read_events_for
from components.data.splits import fit_period_events, fit_split, load_splits
from components.evaluation.baselines import score_baselines
from components.evaluation.evaluate import list_metrics
from components.local.procs import start_process, stop_process
from components.metrics import hit_rate_ndcg
from components.runtime.candidates import sid_codes
from components.runtime.content import ContentIndex
from components.runtime.recommender import Recommender, model_info
from components.runtime.transitions import TransitionTable
from components.sids.build import build_sids, embedding_config_hash
from components.sids.sidmap import SidMap, SidMapError
from components.training.align import RECORD_FILE as ALIGN_RECORD_FILE
from components.training.align import align_model
from components.training.train import train_model
from experiments.blend import blended_items, select_blend_weight
from experiments.rerank import score_ranker

log = logging.getLogger(__name__)
KS = [3, 5, 10]
RANKER_BASELINE = "co-occurrence candidates + LightGBM ranker (no generative model)"
CONTENT_RANKER_BASELINE = "co-occurrence + content candidates + LightGBM ranker (no generative model)"
GEN, BLEND, RANKER = "generative only", "generative + transitions, no learnt ranker", "generative + learnt ranker"
RANKER_ONLY, BASELINE = "learnt ranker, no generative model", "baseline"


class BenchmarkConfig(BaseModel):
    """The `benchmark:` section of a benchmark YAML (the product ignores it)."""

    model_config = ConfigDict(extra="forbid")
    # train seeds seed .. seed+N-1 (each selects its own epoch count on valid) and score the N models decoded
    # together (runtime.beam ensembles), beside the single model (their mean)
    ensemble_size: int = Field(default=1, ge=1)
    # how many of those models (and the retrained ones for test) train at once, one process each
    ensemble_jobs: int = Field(default=1, ge=1)
    # retrain the selected run as the planned schedule stopped at the selected epoch (as the checkpoint was
    # reached) instead of a shorter schedule that decays fully (selected_run)
    replay_schedule: bool = False
    # also report the generative model (the ensemble, if any) blended with last-item transition probabilities, the
    # weight chosen on valid (experiments.blend); a hybrid row beside the generative ones
    blend_transitions: bool = False
    # also report a LightGBM ranker over co-occurrence candidates (a baseline row) and over the generative
    # candidates pooled with them (runtime.ranker), trained on valid
    rerank: bool = False


def settings(cfg: Config) -> BenchmarkConfig:
    return BenchmarkConfig.model_validate(cfg.benchmark)


def cached_sid_map(cfg: Config, root: Path, prebuilt: Path | None = None) -> Path:
    """root/sid_map_<embedding config hash>: one SID map per SID setting, built from the catalog and the
    train-period events on first use and shared by every run with those settings (the build is deterministic).

    `prebuilt`: a map built elsewhere with the same settings, copied in instead of building (no encoder needed).
    """
    sid_dir = Path(root) / f"sid_map_{embedding_config_hash(cfg.sids)}"
    if prebuilt:
        copy_prebuilt_sid_map(cfg, prebuilt, sid_dir)
    if not (sid_dir / "metrics.json").exists():
        build_sids(read_catalog_for(cfg), fit_period_events(read_events_for(cfg), "valid"), cfg.sids, sid_dir)
    return sid_dir


def check_prebuilt_sid_map(cfg: Config, prebuilt: Path) -> str:
    """The version of the SID map in `prebuilt`, once its record shows it was built with cfg.sids' settings; a
    missing or foreign map is a SidMapError naming the folder."""
    record = Path(prebuilt) / "metrics.json"
    if not record.exists() or not (Path(prebuilt) / "sid_map.json").exists():
        raise SidMapError(
            f"{prebuilt}: not a SID map (no metrics.json or sid_map.json); pass a map directory built by "
            "`sidrec sids build` or a benchmark run (its sid_map / model_final_sid_map)"
        )
    built_with = json.loads(record.read_text()).get("embedding_config_hash")
    if built_with != embedding_config_hash(cfg.sids):
        raise SidMapError(
            f"{prebuilt}: built with SID settings {built_with}, the config's are {embedding_config_hash(cfg.sids)}: "
            f"pass a map built with this config's sids section"
        )
    return SidMap.load(prebuilt).version


def copy_prebuilt_sid_map(cfg: Config, prebuilt: Path, target: Path) -> SidMap:
    """A SID map built elsewhere, copied to `target` once its record shows it was built with cfg.sids' settings
    (a copy of the same map already there is kept; one of another map is replaced). Why: the text encoder's and
    the quantizer's floating point differ across CPUs, so two machines build different maps from the same data and
    settings, and a lever's score moves with the map; with the headline's committed maps
    (docs/results/benchmark/sid_maps) a run on another machine (or a lent GPU) decodes on the very maps of the
    headline and needs neither the encoder nor the quantizer. A map of other settings would silently score another
    model, so it is refused."""
    import shutil

    version = check_prebuilt_sid_map(cfg, prebuilt)
    here = Path(target) / "sid_map.json"
    if not here.exists() or json.loads(here.read_text()).get("version") != version:
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(prebuilt, target)
    return SidMap.load(target)


def run_benchmark(
    config_path: str | None,
    out: str,
    valid_only: bool = False,
    overrides: dict | None = None,
    sid_maps: Path | None = None,
) -> dict:
    """Build SIDs, score baselines and the generative model on valid (and test); write table.md + metrics.json.

    `sid_maps`: a folder with the two maps of an earlier run, train/ (built on the train-period events) and
    final/ (train + valid), used instead of building them (copy_prebuilt_sid_map), e.g. the committed headline's
    docs/results/benchmark/sid_maps: numbers from another machine then compare with the headline's.
    """
    started = time.perf_counter()
    cfg = load_config(config_path or Path(__file__).resolve().parents[1] / "configs" / "benchmark.yaml", overrides)
    bench = settings(cfg)
    if sid_maps is not None:  # both maps checked now: the final one is read only after the whole valid stage
        for stage in ("train", *(() if valid_only else ("final",))):
            check_prebuilt_sid_map(cfg, Path(sid_maps) / stage)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    splits = load_splits(cfg.path(cfg.data.splits_dir))
    catalog = read_catalog_for(cfg)
    events = read_events_for(cfg)
    if sid_maps is not None:
        sidmap = copy_prebuilt_sid_map(cfg, Path(sid_maps) / "train", out_dir / "sid_map")
    else:
        sidmap = build_sids(catalog, fit_period_events(events, "valid"), cfg.sids, out_dir / "sid_map")
    ids = catalog["item_id"].astype(str).tolist()
    ks = cfg.eval.ks
    scored = ("valid",) if valid_only else ("valid", "test")
    results: dict[str, dict] = {split: score_baselines(splits, split, ks, ids) for split in scored}
    # the ranking stage's content source (serving.ranker_content): the SIDs' content encoder, cached per text
    content = ContentIndex.from_catalog(catalog, cfg.sids.content_encoder) if cfg.serving.ranker_content else None
    ranker_baseline = CONTENT_RANKER_BASELINE if content is not None else RANKER_BASELINE
    if bench.rerank:
        ranker = score_ranker({s: fit_split(splits, s) for s in scored}, splits, ks, content=content)
        for split in scored:
            results[split][ranker_baseline] = ranker[split]
    final_map = Path(sid_maps) / "final" if sid_maps is not None else None
    generative = benchmark_generative(cfg, sidmap, catalog, splits, out_dir, valid_only, final_map, content)
    backbone = cfg.model.backbone + (" + preference alignment" if cfg.align.enabled else "")
    rows: dict[str, tuple[str, str]] = {}  # row name -> (key suffix in `generative`, kind)
    if "valid_one_model" in generative:
        rows[f"generative only: {backbone}, one model (mean of {bench.ensemble_size} seeds)"] = ("_one_model", GEN)
    else:
        rows[f"generative only: {backbone}, one model (seed {cfg.train.seed})"] = ("", GEN)
    if "valid_ensemble" in generative:
        rows[f"generative only: {backbone}, {bench.ensemble_size} seeds decoded together"] = ("_ensemble", GEN)
    source = f"{bench.ensemble_size} seeds" if "valid_ensemble" in generative else "one model"
    if "valid_blend" in generative:
        name = f"generative {source} + last-item transitions, weight {generative['blend_weight']} chosen on valid"
        rows[name] = ("_blend", BLEND)
    if "valid_rerank" in generative:
        pooled = "co-occurrence + content candidates" if content is not None else "co-occurrence candidates"
        name = f"generative {source} + {pooled}, LightGBM ranker trained on valid"
        rows[name] = ("_rerank", RANKER)
    for row, (suffix, _) in rows.items():
        for split in scored:
            results[split][row] = generative[f"{split}{suffix}"]
    for split in scored:
        for metrics in results[split].values():
            add_standard_errors(metrics, len(splits[split]), ks)
    results["meta"] = {
        "sid_map": json.loads((out_dir / "sid_map" / "metrics.json").read_text()),
        "selected_epochs": generative["selected_epochs"],
        "aligned_epochs": generative.get("aligned_epochs"),  # per seed, kept on valid (None: stayed supervised)
        "blend_weights_on_valid": generative.get("blend_weights_on_valid"),
        # which rows are the generative model alone (its list is the final list), which blend it with counts, and
        # which put a learnt ranker after it; everything else is a baseline
        "row_kinds": {row: BASELINE for row in results["valid"]}
        | ({ranker_baseline: RANKER_ONLY} if bench.rerank else {})
        | {row: kind for row, (_, kind) in rows.items()},
        "config": cfg.model_dump(),
        "valid_only": valid_only,
        "wall_seconds": round(time.perf_counter() - started, 1),  # the whole command, models reused or not
    }
    if not valid_only:
        results["meta"]["sid_map_test"] = json.loads((out_dir / "model_final_sid_map" / "metrics.json").read_text())
    (out_dir / "metrics.json").write_text(json.dumps(results, indent=2, default=str))
    table = markdown_table(results, ks, scored)
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

    def plain(values: dict) -> dict:
        return json.loads(json.dumps(values, default=str))

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
    work = train_work(cfg, sidmap, catalog, train_examples, valid_examples, out_dir)
    return Path(out_dir) if work is None else work[0](work[1])


def _train_job(job: tuple) -> Path:
    return train_model(*job)


def _align_job(job: tuple) -> Path:
    return align_model(*job)


Work = tuple[Callable[[tuple], Path], tuple]


@dataclass(frozen=True)
class Task:
    """One run in the benchmark's task graph. `work` is called in this process once every task named in `after`
    is done and returns (fn, job) to run in a worker process, or None when there is nothing to run (a finished
    model kept for a rerun, a seed whose alignment guard kept the supervised model)."""

    name: str
    work: Callable[[], Work | None]
    after: tuple[str, ...] = ()


def run_tasks(tasks: list[Task], parallel: int = 1) -> None:
    """Run each task once the tasks it comes after are done, `parallel` spawned processes at a time (1: in this
    process); among the ready tasks, list order goes first. A failing run raises its error here.

    Why a graph, not stage by stage: with 3 seeds on 2 cores each stage's third run trained alone while the other
    core idled (16 of the selection stage's 33 minutes); a seed's alignment and its retrain on train + valid need
    only its own selection run, so they fill that core. Why processes: a small model trains on one thread
    (train.torch_threads), and the runs are independent."""
    names = [t.name for t in tasks]
    unknown = sorted({d for t in tasks for d in t.after} - set(names))
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"task graph: duplicate names or unknown dependencies {unknown} in {names}")
    pending, done = list(tasks), set()

    def next_ready() -> Task | None:
        return next((t for t in pending if set(t.after) <= done), None)

    if parallel <= 1:
        while (task := next_ready()) is not None:
            pending.remove(task)
            if (work := task.work()) is not None:
                work[0](work[1])
            done.add(task.name)
    else:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

        context = multiprocessing.get_context("spawn")  # no forked torch thread pools
        running: dict[Future, str] = {}
        with ProcessPoolExecutor(max_workers=parallel, mp_context=context) as pool:
            while True:
                while len(running) < parallel and (task := next_ready()) is not None:
                    pending.remove(task)
                    if (work := task.work()) is None:
                        done.add(task.name)
                    else:
                        running[pool.submit(*work)] = task.name
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    name = running.pop(future)
                    future.result()
                    done.add(name)
    if pending:
        raise ValueError(f"task graph: {[t.name for t in pending]} wait on each other (a cycle)")


def train_work(cfg: Config, sidmap, catalog: pd.DataFrame, train, valid, out_dir: Path) -> Work | None:
    """train_model's job, None when out_dir already holds that finished model (is_finished)."""
    if is_finished(cfg, sidmap, out_dir):
        log.info("reusing the finished model in %s", out_dir)
        return None
    return _train_job, (cfg, sidmap, catalog, train, valid, out_dir)


def alignment_record(out_dir: Path) -> dict | None:
    """What align_model recorded in out_dir (alignment.json), None when it holds no finished alignment."""
    path = Path(out_dir) / ALIGN_RECORD_FILE
    return json.loads(path.read_text()) if path.exists() else None


def is_aligned(cfg: Config, model_dir: Path, out_dir: Path) -> bool:
    """out_dir already holds an alignment, with cfg.align's settings, of the model now in model_dir: its record
    (less the alignment) is model_dir's, so a supervised model retrained in place is aligned again."""
    record, info = alignment_record(out_dir), model_info(out_dir)
    base = {k: v for k, v in info.items() if k != "alignment"}
    return (
        record is not None
        and record.get("settings") == cfg.align.model_dump()
        and info.get("alignment", {}).get("aligned_from") == str(model_dir)
        and base == model_info(model_dir)
    )


def align_work(cfg: Config, model_dir: Path, train, select, out_dir: Path) -> Work | None:
    """align_model's job, None when out_dir already holds that alignment (is_aligned): a rerun after a crash
    aligns only what is missing."""
    if is_aligned(cfg, model_dir, out_dir):
        return None
    return _align_job, (cfg, model_dir, train, select, out_dir)


def aligned_dir(model_dir: Path) -> Path:
    """Where a model's alignment is published: <model_dir>_aligned."""
    return Path(model_dir).with_name(Path(model_dir).name + "_aligned")


def kept_epochs(aligned: Path) -> int | None:
    """The alignment epoch a valid-stage model's guard kept on valid (None: it kept the supervised model): how
    long the seed's final model is aligned."""
    record = alignment_record(aligned) or {}
    return record.get("best_epoch") if record.get("kept") == "aligned" else None


def aligned_epochs(model_dirs: list[Path]) -> list[int | None]:
    """kept_epochs of each valid-stage model."""
    return [kept_epochs(d) for d in model_dirs]


def selected_run(cfg: Config, epochs: float, seed: int | None = None) -> Config:
    """The settings that retrain the run selected at `epochs`: a schedule of that many epochs, or with
    benchmark.replay_schedule the planned schedule (train.epochs) stopped there (train.stop_epochs), as the
    selected checkpoint was reached."""
    update: dict = (
        {"epochs": cfg.train.epochs, "stop_epochs": epochs} if settings(cfg).replay_schedule else {"epochs": epochs}
    )
    if seed is not None:
        update["seed"] = seed
    return cfg.model_copy(update={"train": cfg.train.model_copy(update=update)})


def seed_dirs(cfg: Config, first_dir: Path) -> list[tuple[int, Path]]:
    """(seed, directory) of each of the benchmark.ensemble_size models: train.seed in first_dir, the next seeds in
    <first_dir>_seed<seed>."""
    first_dir = Path(first_dir)
    seeds = range(cfg.train.seed, cfg.train.seed + settings(cfg).ensemble_size)
    return [(s, first_dir if s == cfg.train.seed else first_dir.with_name(f"{first_dir.name}_seed{s}")) for s in seeds]


def selection_runs(cfg: Config, first_dir: Path) -> list[tuple[Config, Path]]:
    """(config, directory) of each seed's selection run: the planned schedule, scored on valid after every epoch.

    Why one per seed rather than one selection and the other seeds replaying its epoch: the runs train side by
    side (benchmark.ensemble_jobs), so the valid stage costs one run's time instead of two in a row, and each seed
    keeps the epoch its own valid curve picked."""
    return [
        (cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": s})}), d)
        for s, d in seed_dirs(cfg, first_dir)
    ]


def final_runs(cfg: Config, epochs: float | list[float], first_dir: Path) -> list[tuple[Config, Path]]:
    """(config, directory) of each seed's retrain at its selected epoch count (selected_run); a single count
    serves every seed."""
    pairs = seed_dirs(cfg, first_dir)
    counts = epochs if isinstance(epochs, list) else [epochs] * len(pairs)
    if len(counts) != len(pairs):
        raise ValueError(f"{len(counts)} selected epoch counts for {len(pairs)} seeds (benchmark.ensemble_size)")
    return [(selected_run(cfg, e, s), d) for (s, d), e in zip(pairs, counts, strict=True)]


STAGES = ("select", "align", "retrain", "final_align")


def final_seed_tasks(
    i: int,
    run: Callable[[], Config],
    final_dir: Path,
    sidmap: SidMap,
    catalog: pd.DataFrame,
    fit: pd.DataFrame,
    align_epochs: Callable[[], int | None] | None = None,
    retrain_after: tuple[str, ...] = (),
    align_after: tuple[str, ...] = (),
) -> list[Task]:
    """Seed i's final runs: retrain{i}, `run()`'s settings (selected_run) trained on `fit` (train + valid), then,
    with `align_epochs`, final_align{i}: that model aligned on `fit` for `align_epochs()` epochs with no guard
    (nothing is left to select on; None keeps it supervised). Both are read when the task starts, so they can
    come from runs earlier in the graph (`retrain_after`, `align_after`)."""

    def retrain() -> Work | None:
        return train_work(run(), sidmap, catalog, fit, None, final_dir)

    tasks = [Task(f"retrain{i}", retrain, retrain_after)]
    if align_epochs is not None:

        def final_align() -> Work | None:
            n = align_epochs()
            return None if n is None else align_work(_align_for(run(), n), final_dir, fit, None, aligned_dir(final_dir))

        tasks.append(Task(f"final_align{i}", final_align, (f"retrain{i}", *align_after)))
    return tasks


def final_models(final_dirs: list[Path], align_epochs: list[int | None] | None) -> list[Path]:
    """The served final models: each seed's aligned model where its valid stage kept an alignment."""
    counts = align_epochs if align_epochs is not None else [None] * len(final_dirs)
    return [aligned_dir(d) if n is not None else d for d, n in zip(final_dirs, counts, strict=True)]


def in_stage_order(tasks: list[Task]) -> list[Task]:
    """Tasks listed stage by stage (STAGES), seeds in order within a stage: a free worker takes the earliest
    stage's ready run, so the next selection run starts before any alignment or retrain."""
    return sorted(tasks, key=lambda t: STAGES.index(t.name.rstrip("0123456789")))


def _train_seconds(model_dirs: list[Path]) -> float:
    return round(sum(float(model_info(d).get("train_seconds", 0.0)) for d in model_dirs), 1)


def score_models(cfg: Config, model_dirs: list[Path], examples: pd.DataFrame) -> tuple[dict, list]:
    """One model, or the models decoded together, on examples: metrics (CPU train s = their training loops'
    seconds) and each row's beam candidates with log-probs (for the transition blend and the ranker)."""
    recommender = Recommender.from_pretrained(
        model_dirs if len(model_dirs) > 1 else model_dirs[0], device=cfg.train.device, beam_size=cfg.serving.beam_size
    )
    t0 = time.perf_counter()
    candidates = recommender.generate(
        [list(h) for h in examples["history"]], cfg.serving.beam_size, batch_size=cfg.eval.batch_size
    )
    seconds = time.perf_counter() - t0
    ranked = [[item for item, _ in row] for row in candidates]
    metrics = list_metrics(ranked, examples["target"].astype(str).tolist(), cfg.eval.ks, recommender.sidmap)
    metrics["ms_per_request"] = 1000 * seconds / max(len(examples), 1)
    return {**metrics, "train_seconds": _train_seconds(model_dirs), "models": len(model_dirs)}, candidates


def seed_mean(per_seed: list[dict]) -> dict:
    """One model's metrics averaged over seeds, with the seeds' standard deviation ("seed SD(HR@10)", ...) and
    each seed's numbers ("seeds"): the single-model row, reported over more than one seed."""
    keys = [k for k, v in per_seed[0].items() if isinstance(v, int | float)]
    out: dict = {k: statistics.fmean(float(m[k]) for m in per_seed) for k in keys}
    for k in [k for k in keys if k.startswith(("HR@", "NDCG@"))]:
        out[f"seed SD({k})"] = statistics.stdev(float(m[k]) for m in per_seed) if len(per_seed) > 1 else 0.0
    out["models"] = 1
    out["seeds"] = [{k: m[k] for k in keys if k.startswith(("HR@", "NDCG@"))} for m in per_seed]
    return out


def add_standard_errors(metrics: dict, n_rows: int, ks: list[int]) -> None:
    """SE(HR@k) = sqrt(p (1 - p) / n), the standard error of a hit rate over n independent rows (in place)."""
    for k in ks:
        p = float(metrics[f"HR@{k}"])
        metrics[f"SE(HR@{k})"] = math.sqrt(p * (1 - p) / max(n_rows, 1))


def benchmark_generative(
    cfg: Config,
    sidmap,
    catalog: pd.DataFrame,
    splits: dict[str, pd.DataFrame],
    out_dir: Path,
    valid_only: bool = False,
    final_sid_map: Path | None = None,
    content: ContentIndex | None = None,
) -> dict:
    """The generative model under the benchmark protocol: epochs picked on valid, retrained on train + valid, test.

    Returns {"valid": metrics of the first seed's train-only model, "test": metrics of its retrained one,
    "selected_epochs": one count per seed}, plus "valid_one_model" / "test_one_model" (the seeds' mean) and
    "valid_ensemble" / "test_ensemble" for benchmark.ensemble_size > 1, "valid_blend" / "test_blend" /
    "blend_weight" for benchmark.blend_transitions and "valid_rerank" / "test_rerank" for benchmark.rerank (both
    start from the ensemble when there is one). valid_only: the valid entries only (no retrain, no test).
    final_sid_map: a prebuilt train + valid map for the retrain (prepare_final_sid_map's `prebuilt`). content: the
    ranking stage's content source and features (serving.ranker_content).

    Every training and alignment run is one task graph (run_tasks, benchmark.ensemble_jobs processes): per seed
    select -> align (on train, kept on valid) and select -> retrain (train + valid, at the selected epoch) ->
    final_align (as long as align kept). A seed's later runs need only its own earlier ones, so they fill a
    core another seed's selection run leaves free; each run is the same as when the stages ran one after another.
    """
    bench = settings(cfg)
    runs = selection_runs(cfg, out_dir / "model_train")
    train, valid = splits["train"], splits["valid"]
    final_map = None if valid_only else prepare_final_sid_map(cfg, catalog, out_dir / "model_final", final_sid_map)
    final_dirs = [d for _, d in seed_dirs(cfg, out_dir / "model_final")]
    fit = fit_split(splits, "test")
    tasks: list[Task] = []
    for i, ((c, d), f) in enumerate(zip(runs, final_dirs, strict=True)):
        tasks.append(Task(f"select{i}", partial(train_work, c, sidmap, catalog, train, valid, d)))
        if cfg.align.enabled:  # aligned on train rows, its alignment epoch kept by the guard on valid
            tasks.append(Task(f"align{i}", partial(align_work, c, d, train, valid, aligned_dir(d)), (f"select{i}",)))
        if final_map is not None:
            tasks += final_seed_tasks(
                i,
                partial(_selected_retrain, cfg, d, c.train.seed),
                f,
                final_map,
                catalog,
                fit,
                partial(kept_epochs, aligned_dir(d)) if cfg.align.enabled else None,
                retrain_after=(f"select{i}",),
                align_after=(f"align{i}",),
            )
    run_tasks(in_stage_order(tasks), bench.ensemble_jobs)
    supervised = [d for _, d in runs]
    epochs = [selected_epochs(d, cfg.train.epochs) for d in supervised]
    align_epochs = None
    if cfg.align.enabled:
        supervised = [aligned_dir(d) for d in supervised]
        align_epochs = aligned_epochs(supervised)
    model_dir, *members = supervised
    out: dict = {}
    out["valid"], candidates = score_models(cfg, [model_dir], valid)
    out["selected_epochs"] = epochs
    if align_epochs is not None:
        out["aligned_epochs"] = align_epochs
    if members:
        each = [out["valid"], *(score_models(cfg, [m], valid)[0] for m in members)]
        out["valid_one_model"] = seed_mean(each)
        out["valid_ensemble"], candidates = score_models(cfg, [model_dir, *members], valid)
    test_candidates = None
    if not valid_only:
        out.update(score_final(cfg, splits, final_models(final_dirs, align_epochs), keep_candidates=True))
        out["sid_version"] = final_map.version
        test_candidates = out.pop("test_candidates")
    scored = ("valid",) if valid_only else ("valid", "test")
    if bench.blend_transitions:
        out.update(blend_rows(splits, candidates, test_candidates, cfg.eval.ks))
        for split in scored:  # the blended models' training time
            out[f"{split}_blend"]["train_seconds"] = out.get(f"{split}_ensemble", out[split])["train_seconds"]
    if bench.rerank:
        test_dir = None if valid_only else out_dir / "model_final"
        out.update(rerank_rows(splits, candidates, test_candidates, model_dir, test_dir, cfg.eval.ks, content))
        for split in scored:  # the generative models' training time + the ranker's
            out[f"{split}_rerank"]["train_seconds"] += out.get(f"{split}_ensemble", out[split])["train_seconds"]
    return out


def rerank_rows(
    splits: dict[str, pd.DataFrame],
    valid_candidates: list,
    test_candidates: list | None,
    valid_dir: Path,
    test_dir: Path | None,
    ks: list[int],
    content: ContentIndex | None = None,
) -> dict:
    """The generative candidates pooled with co-occurrence candidates and reordered by a LightGBM ranker trained
    on valid (experiments.rerank); each split's SID features come from its model's own map."""
    dirs = {"valid": valid_dir, **({"test": test_dir} if test_dir is not None else {})}
    codes = {split: sid_codes(SidMap.load(Path(d) / "sid_map")) for split, d in dirs.items()}
    beams = {"valid": valid_candidates, **({"test": test_candidates} if test_dir is not None else {})}
    fits = {s: fit_split(splits, s) for s in dirs}
    ranked = score_ranker(fits, splits, ks, beams=beams, codes=codes, content=content)
    return {f"{split}_rerank": ranked[split] for split in dirs}


def blend_rows(
    splits: dict[str, pd.DataFrame], valid_candidates: list, test_candidates: list | None, ks: list[int]
) -> dict:
    """The generative candidates blended with last-item transitions (experiments.blend): the weight is chosen on
    valid with the chain fit on train, then test (when given) is blended with the chain refit on train + valid, as
    the Markov row is. Returns {"valid_blend", "test_blend", "blend_weight", "blend_weights_on_valid"}."""
    k = max(ks)
    out: dict = {}
    alpha = None
    pairs = [("valid", valid_candidates)] + ([("test", test_candidates)] if test_candidates is not None else [])
    for split, candidates in pairs:
        fit = fit_split(splits, split)
        table = TransitionTable.from_examples(fit["history"], fit["target"])
        histories = [list(h) for h in splits[split]["history"]]
        targets = splits[split]["target"].astype(str).tolist()
        if alpha is None:
            alpha, by_weight = select_blend_weight(candidates, histories, targets, table, k)
            out["blend_weights_on_valid"] = {str(a): m for a, m in by_weight.items()}
        ranked = blended_items(candidates, histories, table, alpha, k)
        out[f"{split}_blend"] = {**hit_rate_ndcg(ranked, targets, ks), "invalid_rate": 0.0, "blend_weight": alpha}
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


def prepare_final_sid_map(cfg: Config, catalog: pd.DataFrame, out_dir: Path, prebuilt: Path | None = None) -> SidMap:
    """The final models' map in out_dir/../<out_dir name>_sid_map: rebuilt on the train + valid events, or
    `prebuilt` (built on them with the same settings, e.g. by the CPU headline) copied."""
    sid_dir = Path(out_dir).with_name(Path(out_dir).name + "_sid_map")
    if prebuilt is not None:
        return copy_prebuilt_sid_map(cfg, prebuilt, sid_dir)
    return build_sids(catalog, fit_period_events(read_events_for(cfg), "test"), cfg.sids, sid_dir)


def score_final(
    cfg: Config, splits: dict[str, pd.DataFrame], finals: list[Path], keep_candidates: bool = False
) -> dict:
    """Test scored once: the first final model ("test"), with more seeds their mean ("test_one_model") and the
    models decoded together ("test_ensemble"). With keep_candidates, "test_candidates" holds the beam candidates
    of the last scored model (the ensemble when there is one)."""
    final_dir, *members = finals
    out: dict = {}
    out["test"], candidates = score_models(cfg, [final_dir], splits["test"])
    if members:
        out["test_one_model"] = seed_mean([out["test"], *(score_models(cfg, [m], splits["test"])[0] for m in members)])
        out["test_ensemble"], candidates = score_models(cfg, [final_dir, *members], splits["test"])
    if keep_candidates:
        out["test_candidates"] = candidates
    return out


def final_test(
    cfg: Config,
    catalog: pd.DataFrame,
    splits: dict[str, pd.DataFrame],
    epochs: float | list[float],
    out_dir: Path,
    keep_candidates: bool = False,
    prebuilt_sid_map: Path | None = None,
    align_epochs: list[int | None] | None = None,
) -> dict:
    """Rebuild the SIDs on train + valid events (prepare_final_sid_map), retrain on train + valid for the selected
    epochs (nothing is picked on test) and score test once (score_final); the same for the ensemble with
    benchmark.ensemble_size > 1, each seed for its own count when `epochs` is a list (final_runs).
    `align_epochs`: per seed, the alignment epochs its valid-stage model kept (aligned_epochs): each final model is
    aligned that long on the train + valid rows with no guard, None keeps it supervised. The whole benchmark runs
    these same tasks inside its own graph (benchmark_generative); this is the final stage alone (the GPU recipe).
    """
    sidmap = prepare_final_sid_map(cfg, catalog, out_dir, prebuilt_sid_map)
    fit = fit_split(splits, "test")
    runs = final_runs(cfg, epochs, out_dir)
    counts = align_epochs if align_epochs is not None else [None] * len(runs)
    tasks: list[Task] = []
    for i, ((c, d), n) in enumerate(zip(runs, counts, strict=True)):
        kept = partial(_given, n) if align_epochs is not None else None
        tasks += final_seed_tasks(i, partial(_given, c), d, sidmap, catalog, fit, kept)
    run_tasks(in_stage_order(tasks), settings(cfg).ensemble_jobs)
    out = score_final(cfg, splits, final_models([d for _, d in runs], align_epochs), keep_candidates)
    return {"selected_epochs": epochs, "sid_version": sidmap.version, **out}


def _given(value):
    """`value` itself: a count or a config known before the graph runs, where final_seed_tasks takes a callable."""
    return value


def _selected_retrain(cfg: Config, select_dir: Path, seed: int) -> Config:
    """The retrain of the selection run in select_dir: selected_run at the epoch its valid curve picked."""
    return selected_run(cfg, selected_epochs(select_dir, cfg.train.epochs), seed)


def _align_for(cfg: Config, epochs: int) -> Config:
    """cfg with its alignment run for `epochs` epochs (the count the valid stage kept)."""
    return cfg.model_copy(update={"align": cfg.align.model_copy(update={"epochs": int(epochs)})})


def markdown_table(
    results: dict, ks: list[int] = KS, splits: tuple[str, ...] = ("valid", "test"), time_label: str = "CPU train s"
) -> str:
    """The results as markdown, test first (the headline), then valid."""
    lines = []
    for split in [s for s in ("test", "valid") if s in splits]:
        header = " | ".join(f"{k}@{n}" for n in ks for k in ("HR", "NDCG"))
        lines += [
            f"**{split}** ({'fit on train + valid' if split == 'test' else 'fit on train'})",
            "",
            f"| model | {header} | SE(HR@{max(ks)}) | invalid SIDs | {time_label} |",
            "|---|" + "---|" * (2 * len(ks) + 3),
        ]
        for name, m in results[split].items():
            lines.append(
                f"| {name} | "
                + " | ".join(f"{m[f'{k}@{n}']:.4f}" for n in ks for k in ("HR", "NDCG"))
                + f" | {m.get(f'SE(HR@{max(ks)})', float('nan')):.4f}"
                + f" | {m.get('invalid_rate', 0):.3f} | {m.get('train_seconds', 0):.0f} |"
            )
        lines.append("")
    return "\n".join(lines)

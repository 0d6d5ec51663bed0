"""The benchmark's generative rows on synthetic data: single model, ensemble, blend, ranker; a rerun resumes."""

from __future__ import annotations

import json

from components.config import load_config
from components.data.readers import write_table
from components.data.splits import examples_from_events
from components.data.synthetic import generate_synthetic
from components.runtime.content import ContentIndex
from components.sids.build import build_sids
from experiments import benchmark


def _world(tmp_path, **sections):
    """A synthetic catalog and events in the data contract, a small benchmark config (`sections` merged in), the
    first 30 rows of each split and their SID map."""
    catalog, events = generate_synthetic(n_items=60, n_users=80, seed=3)
    events.to_csv(tmp_path / "events.csv", index=False)
    write_table(catalog, tmp_path / "catalog.jsonl.gz")  # the final test re-reads both under the data contract
    overrides = {
        "data": {"events_uri": str(tmp_path / "events.csv"), "catalog_uri": str(tmp_path / "catalog.jsonl.gz")},
        "sids": {"codebook_size": 8, "content_encoder": "hashing", "collab_dim": 8},
        "model": {"backbone": "tiny", "tiny_hidden_size": 32, "tiny_layers": 1, "tiny_heads": 2},
        "train": {"epochs": 1, "batch_size": 16, "lr": 0.005, "max_steps": 4, "torch_threads": 1},
        "eval": {"max_examples": 20, "batch_size": 16},
        "serving": {"beam_size": 10},
    }
    cfg = load_config(None, overrides={**overrides, **sections})
    splits = {name: frame.head(30) for name, frame in examples_from_events(events, 5).items()}
    return cfg, build_sids(catalog, events, cfg.sids, tmp_path / "sid_map"), catalog, splits


def test_benchmark_generative_scores_the_model_the_ensemble_the_blend_and_the_ranker_then_resumes(
    tmp_path, monkeypatch
):
    cfg, sidmap, catalog, splits = _world(
        tmp_path, benchmark={"ensemble_size": 2, "ensemble_jobs": 2, "blend_transitions": True, "rerank": True}
    )
    content = ContentIndex.from_catalog(catalog, "hashing")  # the ranker's content source (serving.ranker_content)
    out = benchmark.benchmark_generative(cfg, sidmap, catalog, splits, tmp_path / "run", content=content)
    for split in ("valid", "test"):
        for row in (split, f"{split}_ensemble", f"{split}_blend", f"{split}_rerank"):
            assert 0.0 <= out[row]["HR@10"] <= 1.0 and out[row]["invalid_rate"] == 0.0
        assert out[f"{split}_ensemble"]["models"] == 2 and out[split]["models"] == 1
        one = out[f"{split}_one_model"]  # the single-model row over both seeds: their mean and spread
        assert len(one["seeds"]) == 2 and one["seeds"][0]["HR@10"] == out[split]["HR@10"]
        assert one["HR@10"] == sum(seed["HR@10"] for seed in one["seeds"]) / 2 and one["seed SD(HR@10)"] >= 0.0
        assert out[f"{split}_rerank"]["train_seconds"] >= out[f"{split}_ensemble"]["train_seconds"]
    assert out["blend_weight"] in [float(w) for w in out["blend_weights_on_valid"]]
    assert "test_candidates" not in out
    assert len(out["selected_epochs"]) == 2  # each seed's own count, picked on its valid curve
    for name in ("model_train", "model_train_seed1", "model_final", "model_final_seed1"):
        assert (tmp_path / "run" / name / "sidrec_model.json").exists()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished model was trained again")

    monkeypatch.setattr(benchmark, "train_model", no_training)
    again = benchmark.benchmark_generative(cfg, sidmap, catalog, splits, tmp_path / "run", content=content)
    assert again["test_ensemble"]["HR@10"] == out["test_ensemble"]["HR@10"]
    assert again["valid_blend"] == out["valid_blend"]


def _aligned_benchmark(tmp_path, name: str, align: dict) -> dict:
    cfg, sidmap, catalog, splits = _world(
        tmp_path,
        align={"enabled": True, "rows": 16, "negatives": 3, "epochs": 2, "batch_size": 8, **align},
        benchmark={"ensemble_size": 2},
    )
    return benchmark.benchmark_generative(cfg, sidmap, catalog, splits, tmp_path / name)


def test_with_alignment_each_seed_is_aligned_on_train_kept_on_valid_and_its_final_model_aligned_as_long(tmp_path):
    out = _aligned_benchmark(tmp_path, "run", {"lr": 0.01})
    run = tmp_path / "run"
    kept = out["aligned_epochs"]
    assert len(kept) == 2 and all(n in (None, 1, 2) for n in kept)
    for seed, suffix in enumerate(("", "_seed1")):
        record = json.loads((run / f"model_train{suffix}_aligned" / "alignment.json").read_text())
        assert record["settings"]["epochs"] == 2 and record["rows"] == 16
        assert kept[seed] == (record.get("best_epoch") if record["kept"] == "aligned" else None)
        final = run / f"model_final{suffix}_aligned"
        if kept[seed] is None:
            assert not final.exists()  # the guard kept the supervised model: so does the final one
        else:  # aligned on train + valid rows for the epochs valid kept, with no guard
            final_record = json.loads((final / "alignment.json").read_text())
            assert final_record["settings"]["epochs"] == kept[seed] and final_record["kept"] == "aligned"
    assert out["test_ensemble"]["models"] == 2 and out["test"]["invalid_rate"] == 0.0


def test_with_alignment_refused_on_valid_the_final_models_stay_supervised(tmp_path):
    out = _aligned_benchmark(tmp_path, "run", {"min_gain": 1.0})  # no alignment can gain a whole NDCG@10
    assert out["aligned_epochs"] == [None, None]
    assert (tmp_path / "run" / "model_train_aligned" / "alignment.json").exists()
    assert not (tmp_path / "run" / "model_final_aligned").exists()
    assert out["test_ensemble"]["models"] == 2

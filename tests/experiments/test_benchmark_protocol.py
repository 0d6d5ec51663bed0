"""The benchmark protocol's choices: which epoch count is retrained, which variant goes to test."""

from __future__ import annotations

import json
import sys
import time

import pandas as pd
import pytest

from components.config import Config
from components.data.splits import fit_period_events, fit_split
from experiments import benchmark
from experiments.benchmark import (
    best_variant,
    final_runs,
    is_finished,
    markdown_table,
    run_variants,
    selected_epochs,
    selection_runs,
    train_or_reuse,
)


def _model_dir(tmp_path, history, **info):
    (tmp_path / "history.json").write_text(json.dumps(history))
    (tmp_path / "sidrec_model.json").write_text(json.dumps(info))
    return tmp_path


def test_selected_epochs_uses_the_recorded_epoch_length(tmp_path):
    history = [{"step": 325, "valid": 0.10}, {"step": 650, "valid": 0.12}, {"step": 975, "valid": 0.11}]
    assert selected_epochs(_model_dir(tmp_path, history, steps=975, steps_per_epoch=325), 3) == 2.0


def test_selected_epochs_is_not_fooled_by_a_step_cap(tmp_path):
    # max_steps stopped a 16-epoch plan after 20 steps: that is 20/325 of an epoch, not 16 epochs
    history = [{"step": 20, "valid": 0.01}]
    assert selected_epochs(_model_dir(tmp_path, history, steps=20, steps_per_epoch=325), 16) == 1.0


def test_selected_epochs_without_recorded_epoch_length_derives_it(tmp_path):
    history = [{"step": 100, "valid": 0.2}, {"step": 200, "valid": 0.1}]
    assert selected_epochs(_model_dir(tmp_path, history, steps=200), 4) == 2.0


def _valid(hr, ndcg):
    return {"valid": {"HR@10": hr, "NDCG@10": ndcg}}


def test_best_variant_picks_valid_hr_then_ndcg_and_skips_unfinished():
    results = {
        "a": _valid(0.11, 0.08),
        "b": _valid(0.12, 0.07),
        "c": _valid(0.12, 0.09),
        "slow": {"unfinished": True},
        "broken": {"failed": 1},
    }
    assert best_variant(results) == "c"
    assert best_variant({"slow": {"unfinished": True}}) is None


@pytest.mark.parametrize("label", ["CPU train s", "cuda train s"])
def test_markdown_table_names_where_training_ran(label):
    row = {f"{m}@{k}": 0.1 for m in ("HR", "NDCG") for k in (3, 5, 10)}
    table = markdown_table({"test": {"m": row}, "valid": {"m": row}}, time_label=label)
    assert f"| invalid SIDs | {label} |" in table
    assert "| m | 0.1000 |" in table


def test_run_variants_collects_results_and_stops_a_straggler_by_pid(tmp_path):
    script = (
        "import json, pathlib, sys, time\n"
        "name, cfg = sys.argv[1], json.loads(sys.argv[2])\n"
        "time.sleep(cfg['sleep'])\n"
        "if cfg['ok']:\n"
        "    out = pathlib.Path(sys.argv[3]) / name\n"
        "    out.mkdir()\n"
        "    (out / 'result.json').write_text(json.dumps({'valid': {'HR@10': cfg['hr'], 'NDCG@10': 0.0}}))\n"
        "sys.exit(0 if cfg['ok'] else 3)\n"
    )

    def command(name, overrides):
        return [sys.executable, "-c", script, name, json.dumps(overrides), str(tmp_path)]

    variants = [
        ("good", {"sleep": 0, "ok": True, "hr": 0.2}),
        ("broken", {"sleep": 0, "ok": False, "hr": 0}),
        ("slow", {"sleep": 600, "ok": True, "hr": 0.9}),
    ]
    t0 = time.monotonic()
    results = run_variants(variants, command, tmp_path, deadline_s=3)
    assert time.monotonic() - t0 < 60  # the straggler did not hold the run
    assert results["good"]["valid"]["HR@10"] == 0.2
    assert results["broken"] == {"failed": 3}
    assert results["slow"] == {"unfinished": True}
    assert best_variant(results) == "good" and (tmp_path / "slow.log").exists()


def test_fit_period_events_hold_out_the_scored_split_and_after():
    events = pd.DataFrame({"item_id": ["a", "b", "c"], "split": ["train", "valid", "test"]})
    assert fit_period_events(events, "valid")["item_id"].tolist() == ["a"]
    assert fit_period_events(events, "test")["item_id"].tolist() == ["a", "b"]
    assert fit_period_events(events.drop(columns="split"), "test").shape[0] == 3  # no split: all are history


def test_fit_split_matches_the_fit_periods():
    splits = {s: pd.DataFrame({"target": [s]}) for s in ("train", "valid", "test")}
    assert fit_split(splits, "valid")["target"].tolist() == ["train"]
    assert fit_split(splits, "test")["target"].tolist() == ["train", "valid"]
    with pytest.raises(ValueError, match="only valid and test"):
        fit_split(splits, "train")


def _cfg(**bench_overrides):
    return Config(benchmark=bench_overrides)


def test_every_seed_selects_on_valid_then_retrains_at_its_own_epoch_count(tmp_path):
    cfg = _cfg(ensemble_size=3)
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": 5, "epochs": 16})})
    runs = selection_runs(cfg, tmp_path / "model_train")
    assert [(c.train.seed, c.train.epochs, c.train.stop_epochs, d.name) for c, d in runs] == [
        (5, 16, None, "model_train"),
        (6, 16, None, "model_train_seed6"),
        (7, 16, None, "model_train_seed7"),
    ]
    assert runs[1][0].train.lr == cfg.train.lr and cfg.train.seed == 5  # nothing else changes
    finals = final_runs(cfg, [11.0, 7.0, 9.5], tmp_path / "model_final")
    assert [(c.train.seed, c.train.epochs, d.name) for c, d in finals] == [
        (5, 11.0, "model_final"),
        (6, 7.0, "model_final_seed6"),
        (7, 9.5, "model_final_seed7"),
    ]
    assert [c.train.epochs for c, _ in final_runs(cfg, 4.0, tmp_path)] == [4.0] * 3  # one count serves every seed
    with pytest.raises(ValueError, match="2 selected epoch counts for 3 seeds"):
        final_runs(cfg, [1.0, 2.0], tmp_path)
    assert [d.name for _, d in selection_runs(_cfg(), tmp_path / "m")] == ["m"]  # ensemble_size 1: one model
    replay = cfg.model_copy(update={"benchmark": {**cfg.benchmark, "replay_schedule": True}})
    assert [
        (c.train.seed, c.train.epochs, c.train.stop_epochs) for c, _ in final_runs(replay, [11.0, 7.0, 9.5], tmp_path)
    ] == [
        (5, 16, 11.0),
        (6, 16, 7.0),
        (7, 16, 9.5),
    ]


class _SidMap:
    version = "sid-a"


def test_train_or_reuse_keeps_a_finished_model_of_the_same_settings_only(tmp_path, monkeypatch):
    calls = []

    def fake_train(cfg, sidmap, catalog, train, valid, out_dir):
        calls.append(cfg.train.seed)
        out_dir.mkdir(exist_ok=True)
        info = {
            "backbone": cfg.model.backbone,
            "model": cfg.model.model_dump(),
            "sid_version": sidmap.version,
            "train": json.loads(json.dumps(cfg.train.model_dump(), default=str)),
        }
        (out_dir / "sidrec_model.json").write_text(json.dumps(info))
        return out_dir

    monkeypatch.setattr(benchmark, "train_model", fake_train)
    cfg, out = _cfg(), tmp_path / "model"
    assert train_or_reuse(cfg, _SidMap(), None, None, None, out) == out and calls == [0]
    train_or_reuse(cfg, _SidMap(), None, None, None, out)
    assert calls == [0]  # same settings, same SID map: reused
    seed1 = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": 1})})
    train_or_reuse(seed1, _SidMap(), None, None, None, out)
    assert calls == [0, 1]  # other train settings: retrained
    other_map = type("M", (), {"version": "sid-b"})()
    train_or_reuse(seed1, other_map, None, None, None, out)
    assert calls == [0, 1, 1]  # other SID map: retrained
    wider = seed1.model_copy(update={"model": seed1.model.model_copy(update={"tiny_hidden_size": 64})})
    train_or_reuse(wider, other_map, None, None, None, out)
    assert calls == [0, 1, 1, 1]  # other architecture: retrained


def test_a_setting_added_after_a_model_was_written_counts_as_its_default(tmp_path):
    cfg = Config()
    train = json.loads(json.dumps(cfg.train.model_dump(), default=str))
    del train["stop_epochs"]  # a record written before the setting existed
    info = {"backbone": cfg.model.backbone, "sid_version": "sid-a", "train": train}
    (tmp_path / "sidrec_model.json").write_text(json.dumps(info))
    assert is_finished(cfg, _SidMap(), tmp_path)
    stopped = cfg.model_copy(update={"train": cfg.train.model_copy(update={"stop_epochs": 3.0})})
    assert not is_finished(stopped, _SidMap(), tmp_path)
    assert not is_finished(cfg, _SidMap(), tmp_path / "missing")


def test_a_prebuilt_sid_map_is_used_only_when_built_with_the_configs_settings(tmp_path):
    from components.config import load_config
    from components.data.synthetic import generate_synthetic
    from components.sids.build import build_sids
    from components.sids.sidmap import SidMapError
    from experiments.benchmark import copy_prebuilt_sid_map

    catalog, events = generate_synthetic(n_items=40, n_users=30, seed=1)
    sids = {"codebook_size": 8, "content_encoder": "hashing", "collab_dim": 8}
    built = build_sids(catalog, events, load_config(None, {"sids": sids}).sids, tmp_path / "elsewhere")
    copied = copy_prebuilt_sid_map(load_config(None, {"sids": sids}), tmp_path / "elsewhere", tmp_path / "here")
    assert copied.version == built.version and (tmp_path / "here" / "metrics.json").exists()
    other = load_config(None, {"sids": {**sids, "codebook_size": 16}})
    with pytest.raises(SidMapError, match="built with SID settings"):
        copy_prebuilt_sid_map(other, tmp_path / "elsewhere", tmp_path / "there")
    with pytest.raises(SidMapError, match="not a SID map"):
        copy_prebuilt_sid_map(other, tmp_path, tmp_path / "there")
    # a copy of another map at the target (an earlier run's, another machine's) is replaced, the same one kept
    rebuilt = build_sids(catalog, events.head(len(events) // 2), load_config(None, {"sids": sids}).sids, tmp_path / "o")
    assert rebuilt.version != built.version
    assert copy_prebuilt_sid_map(load_config(None, {"sids": sids}), tmp_path / "o", tmp_path / "here").version == (
        rebuilt.version
    )
    stamp = (tmp_path / "here" / "sid_map.json").stat().st_mtime_ns
    copy_prebuilt_sid_map(load_config(None, {"sids": sids}), tmp_path / "o", tmp_path / "here")
    assert (tmp_path / "here" / "sid_map.json").stat().st_mtime_ns == stamp


def test_an_alignment_is_reused_only_for_the_same_settings_and_the_same_supervised_model(tmp_path):
    from components.config import load_config
    from experiments.benchmark import is_aligned

    cfg = load_config(None, {"align": {"enabled": True, "epochs": 2}})
    supervised, aligned = tmp_path / "model", tmp_path / "model_aligned"
    supervised.mkdir(), aligned.mkdir()
    _model_dir(supervised, [], steps=10, train_seconds=5.0)
    _model_dir(aligned, [], steps=10, train_seconds=5.0)
    assert not is_aligned(cfg, supervised, aligned)  # nothing aligned there yet
    record = {"settings": cfg.align.model_dump(), "kept": "aligned", "best_epoch": 2}
    (aligned / "alignment.json").write_text(json.dumps(record))
    info = {"steps": 10, "train_seconds": 5.0, "alignment": {"aligned_from": str(supervised)}}
    (aligned / "sidrec_model.json").write_text(json.dumps(info))
    assert is_aligned(cfg, supervised, aligned)
    assert not is_aligned(load_config(None, {"align": {"epochs": 3}}), supervised, aligned)  # other settings
    _model_dir(supervised, [], steps=12, train_seconds=6.0)  # the supervised model was trained again in place
    assert not is_aligned(cfg, supervised, aligned)


def test_a_run_on_prebuilt_maps_trains_and_scores_on_them_not_on_rebuilt_ones(tmp_path, tiny_benchmark):
    """`sidrec benchmark --sid-maps DIR`: both stages use DIR's maps (maps differ across machines, so this is how
    another machine reproduces the headline's); here they are built from other events, so a rebuild would differ."""
    from components.config import load_config
    from components.data.synthetic import generate_synthetic
    from components.sids.build import build_sids
    from components.sids.sidmap import SidMapError
    from experiments.benchmark import run_benchmark

    train_settings = {"epochs": 1, "max_steps": 2, "sid_vocab_softmax": True}
    bench = {"ensemble_size": 1, "blend_transitions": False, "rerank": False}
    config = tiny_benchmark(50, 60, 2, {"train": train_settings, "eval": {"max_examples": 8}, "benchmark": bench})
    catalog, events = generate_synthetic(n_items=50, n_users=60, seed=2)  # what tiny_benchmark wrote
    sids = load_config(config).sids
    maps = tmp_path / "maps"
    train = build_sids(catalog, events.iloc[::2], sids, maps / "train")
    final = build_sids(catalog, events.iloc[1::2], sids, maps / "final")
    assert train.version != final.version

    other = tmp_path / "other_maps"  # a foreign final map is refused before any training, not after the valid stage
    build_sids(catalog, events, sids.model_copy(update={"codebook_size": 4}), other / "final")
    (other / "train").symlink_to(maps / "train", target_is_directory=True)
    with pytest.raises(SidMapError, match="built with SID settings"):
        run_benchmark(str(config), str(tmp_path / "refused"), sid_maps=other)
    assert not (tmp_path / "refused").exists()

    results = run_benchmark(str(config), str(tmp_path / "out"), sid_maps=maps)
    assert results["meta"]["sid_map"]["version"] == train.version
    assert results["meta"]["sid_map_test"]["version"] == final.version
    record = json.loads((tmp_path / "out" / "model_final" / "sidrec_model.json").read_text())
    assert record["sid_version"] == final.version

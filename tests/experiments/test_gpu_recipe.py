"""The prepared GPU recipe runs every step on the CPU: its variants side by side, the selection on valid, the
retrain on train + valid and one test score (what `python -m experiments.gpu_benchmark --smoke` checks on the
real data before a GPU run)."""

from __future__ import annotations

import json

from experiments.gpu_benchmark import RECIPE, SMOKE, run_recipe


def test_the_recipe_selects_a_variant_on_valid_and_scores_it_once_on_test(tmp_path, tiny_benchmark):
    tiny_benchmark(overrides={"train": {"sid_softmax": True}})
    summary = run_recipe(
        str(tmp_path / "cfg.yaml"), RECIPE, tmp_path / "out", overrides=SMOKE, valid_limit=16, test_limit=16
    )

    assert set(summary["variants"]) == {name for name, _ in RECIPE}
    assert all(v["valid"]["rows"] == 16 and v["valid"]["invalid_rate"] == 0.0 for v in summary["variants"].values())
    assert summary["selected"] in summary["variants"] and summary["test"]["rows"] == 16
    assert summary["test"]["invalid_rate"] == 0.0 and summary["selected_epochs"] == 1.0
    final = json.loads((tmp_path / "out" / "model_final" / "sidrec_model.json").read_text())
    assert all(final["train"][key] == value for key, value in SMOKE["train"].items())  # the smoke settings held
    # each variant trained with its own levers, the smoke settings on top
    titled = json.loads((tmp_path / "out" / "select" / "titles_in_prompt" / "sidrec_model.json").read_text())
    assert titled["model"]["max_length"] == 512 and titled["train"]["include_titles_in_history"]
    assert titled["train"]["label_smoothing"] == 0.1 and titled["train"]["max_steps"] == 4
    assert (tmp_path / "out" / "select" / "titles_in_prompt" / "titles.json").exists()
    assert not (tmp_path / "out" / "select" / "lr1e-3" / "titles.json").exists()
    vocab = json.loads((tmp_path / "out" / "select" / "titles_in_prompt_sv" / "sidrec_model.json").read_text())
    assert vocab["train"]["sid_vocab_softmax"] and not vocab["train"]["sid_softmax"]
    assert "**test**" in (tmp_path / "out" / "table.md").read_text()

"""The ranking stage served by the Recommender: the whole beam pooled with count candidates, the map's rules kept."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from components.cli import app
from components.runtime.candidates import ItemStats, candidate_rows, sid_codes
from components.runtime.content import ContentIndex
from components.runtime.ranker import RankerArtifact, RankerError
from components.runtime.recommender import Recommender, RecommenderError, servable
from components.training.ranker import train_ranker


def _artifact(model, tokenizer, sidmap, stats: ItemStats, histories: list[list[str]]) -> RankerArtifact:
    """A ranker taught that the last item's most frequent successor comes next (targets chosen that way)."""
    beams = Recommender([model], tokenizer, sidmap, beam_size=10).recommend(histories, 10)
    rows = candidate_rows(histories, stats, beams, sid_codes(sidmap))
    targets = [stats.successors[h[-1]].most_common(1)[0][0] for h in histories]
    return RankerArtifact(
        train_ranker(rows, targets, rounds=20), stats, with_model=True, with_sids=True, meta={"beam_size": 10}
    )


@pytest.fixture(scope="module")
def ranked_setup(tiny_sid_model):
    model, tokenizer, sidmap = tiny_sid_model
    ids = sidmap.item_ids
    rng = np.random.default_rng(0)
    histories = [[ids[int(a)], ids[int(b)]] for a, b in rng.integers(0, 50, size=(40, 2))]
    successors = {h[-1]: ids[(ids.index(h[-1]) + 7) % 60] for h in histories}
    examples = [(h, successors[h[-1]]) for h in histories] * 3 + [(["i1"], "gone-from-catalog")] * 9
    stats = ItemStats.from_examples([h for h, _ in examples], [t for _, t in examples])
    return model, tokenizer, sidmap, stats, histories, successors, _artifact(model, tokenizer, sidmap, stats, histories)


def test_the_recommender_serves_the_ranking_stage(ranked_setup):
    model, tokenizer, sidmap, stats, histories, successors, ranker = ranked_setup
    ranked = Recommender([model], tokenizer, sidmap, beam_size=10, ranker=ranker)
    got = ranked.recommend(histories[:8], 5)
    beams = Recommender([model], tokenizer, sidmap, beam_size=10).recommend(histories[:8], 10)
    rules = [servable(sidmap)] * 8
    assert got == ranker.rank(histories[:8], beams, 5, sidmap, rules)  # the whole beam is pooled, not the top 5
    assert all(len(row) == 5 and len({i for i, _ in row}) == 5 for row in got)
    assert all(item in sidmap for row in got for item, _ in row)
    # the learnt rule: the last item's successor first, beam or not
    assert np.mean([row[0][0] == successors[h[-1]] for row, h in zip(got, histories[:8], strict=True)]) >= 0.75
    # an item the catalog dropped is never a candidate, even as the only successor
    dropped = ranked.recommend([["i3", "i1"]], 5)[0]
    assert "gone-from-catalog" not in {i for i, _ in dropped}
    # a ranker learnt on beams of another width is refused: its beam features would mean something else
    with pytest.raises(RecommenderError, match="beams of 10"):
        Recommender([model], tokenizer, sidmap, beam_size=20, ranker=ranker)


def test_the_ranking_stage_keeps_think_ahead_prefixes(ranked_setup):
    model, tokenizer, sidmap, _, histories, successors, ranker = ranked_setup
    history = histories[0]
    prefix = [tuple(sidmap.codes_of(successors[history[-1]])[:1])]
    row = Recommender([model], tokenizer, sidmap, beam_size=10, ranker=ranker).recommend([history], 5, [prefix])[0]
    assert row and all(tuple(sidmap.codes_of(i)[:1]) == prefix[0] for i, _ in row)
    assert successors[history[-1]] in {i for i, _ in row}


def test_ranker_directory_round_trips_and_bad_ones_are_named(ranked_setup, tmp_path):
    _, _, sidmap, stats, histories, _, ranker = ranked_setup
    ranker.meta["note"] = "first"
    path = ranker.save(tmp_path / "ranker")
    assert path.stat().st_mode & 0o777 == 0o755  # readable by a server running as another user
    loaded = RankerArtifact.load(path)
    assert loaded.stats.successors == stats.successors and loaded.stats.popularity == stats.popularity
    assert loaded.features == ranker.features and loaded.meta["note"] == "first"
    x = np.random.default_rng(1).normal(size=(5, len(ranker.features))).astype(np.float32)
    assert np.allclose(loaded.booster.predict(x), ranker.booster.predict(x))
    ranker.meta["note"] = "second"
    ranker.save(path)  # replaced whole
    assert RankerArtifact.load(path).meta["note"] == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ranker"]  # no staging left behind
    (path / "ranker.txt").unlink()
    with pytest.raises(RankerError, match="sidrec training ranker"):
        RankerArtifact.load(path)
    ranker.save(path)
    meta = json.loads((path / "ranker.json").read_text())
    (path / "ranker.json").write_text(json.dumps({**meta, "features": meta["features"][:-1]}))
    with pytest.raises(RankerError, match="learn it again"):
        RankerArtifact.load(path)
    (path / "ranker.json").write_text(json.dumps({**meta, "format": "other"}))
    with pytest.raises(RankerError, match="not a sidrec ranker"):
        RankerArtifact.load(path)
    ranker.save(path)  # a truncated model file is named, never handed to LightGBM (which can crash on it)
    text = (path / "ranker.txt").read_text()
    (path / "ranker.txt").write_text(text[: len(text) // 2])
    with pytest.raises(RankerError, match="truncated or altered"):
        RankerArtifact.load(path)
    with pytest.raises(ValueError, match="beam"):
        ranker.rank(histories[:1], None, 5, sidmap)
    with pytest.raises(ValueError, match="SID map"):
        ranker.rank(histories[:1], [[]], 5, None)


def test_cli_trains_a_ranker_and_scores_it(tiny_sid_model, tiny_model_dir, tmp_path):
    """`sidrec training ranker` learns from valid rows (counts fit on train); `sidrec evaluation model --ranker`
    scores it. Valid repeats train's transitions, so a ranker that learnt 'the last item's successor' hits every
    row."""
    sidmap = tiny_sid_model[2]
    model_dir = tiny_model_dir
    splits = tmp_path / "splits"
    splits.mkdir()
    ids = sidmap.item_ids
    rows = [{"user_id": f"u{i}", "history": ids[i : i + 3], "target": ids[i + 3]} for i in range(40)]
    pd.DataFrame(rows).to_json(splits / "train.jsonl", orient="records", lines=True)
    valid = [{**row, "user_id": f"v{i}"} for i, row in enumerate(rows)]
    pd.DataFrame(valid).to_json(splits / "valid.jsonl", orient="records", lines=True)
    config = tmp_path / "cfg.yaml"
    config.write_text(f"data:\n  splits_dir: {splits}\nserving:\n  beam_size: 5\n")
    runner = CliRunner()
    out = tmp_path / "ranker"
    args = ["training", "ranker", "--model-dir", str(model_dir), "--out", str(out), "--config", str(config)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    info = json.loads(result.output[result.output.index("{") :])
    assert info["rank_rows"] == 40 and info["recall"] == 1.0 and info["cross_validated"]["HR@3"] > 0.5
    bad = runner.invoke(app, [*args, "--fit-split", "valid"])
    assert bad.exit_code != 0 and "must not be among" in bad.output
    scores = {}
    for extra in ([], ["--ranker", str(out)]):
        result = runner.invoke(app, ["evaluation", "model", str(model_dir), "--config", str(config), *extra])
        assert result.exit_code == 0, result.output
        scores[bool(extra)] = json.loads(result.output[result.output.index("{") :])
    assert scores[True]["HR@3"] == 1.0 and scores[True]["invalid_rate"] == 0.0
    assert scores[False]["HR@3"] < 0.5


def test_a_ranker_with_content_serves_it_from_its_directory(ranked_setup, tmp_path):
    """The content embeddings travel in the ranker's directory (export copies it whole); a directory that lost
    them is named, not served with zero similarities."""
    model, tokenizer, sidmap, stats, histories, successors, _ = ranked_setup
    rng = np.random.default_rng(3)
    content = ContentIndex(sidmap.item_ids, rng.normal(size=(len(sidmap.item_ids), 16)))
    beams = Recommender([model], tokenizer, sidmap, beam_size=10).recommend(histories, 10)
    rows = candidate_rows(histories, stats, beams, sid_codes(sidmap), content=content)
    targets = [successors[h[-1]] for h in histories]
    ranker = RankerArtifact(
        train_ranker(rows, targets, rounds=20), stats, True, True, meta={"beam_size": 10}, content=content
    )
    assert ranker.features[-2:] == ["content_history", "content_last"]
    path = ranker.save(tmp_path / "ranker")
    loaded = RankerArtifact.load(path)
    assert loaded.content is not None and loaded.content.item_ids == content.item_ids
    served = Recommender([model], tokenizer, sidmap, beam_size=10, ranker=loaded).recommend(histories[:4], 5)
    assert served == Recommender([model], tokenizer, sidmap, beam_size=10, ranker=ranker).recommend(histories[:4], 5)
    data = (path / "content.npz").read_bytes()
    (path / "content.npz").write_bytes(data[: len(data) // 2])  # truncated: named too, not a zipfile traceback
    with pytest.raises(RankerError, match="content.npz"):
        RankerArtifact.load(path)
    (path / "content.npz").unlink()
    with pytest.raises(RankerError, match="content.npz"):
        RankerArtifact.load(path)

"""Data contracts: readers, Great Expectations validation with quarantine, splits, synthetic data."""

from __future__ import annotations

import pandas as pd
import pytest

from components.config import DataConfig, load_config
from components.data.contracts import ContractViolation
from components.data.readers import read_catalog, read_events, write_table
from components.data.splits import examples_from_events, load_split_examples
from components.data.synthetic import corrupt_catalog, generate_synthetic
from components.data.validate import validate_catalog, validate_events


@pytest.fixture(scope="module")
def synthetic():
    return generate_synthetic(n_items=120, n_users=60, seed=3)


def test_vendored_amazon_data_is_clean():
    cfg = load_config(None)
    catalog = read_catalog(cfg.path(cfg.data.catalog_uri))
    events = read_events(cfg.path(cfg.data.events_uri))
    cat = validate_catalog(catalog, cfg.data, "catalog")
    ev = validate_events(events, set(cat.good["item_id"]), cfg.data, "events")
    assert len(cat.good) == 3686 and len(cat.quarantine) == 0
    assert len(ev.good) == 22743 and len(ev.quarantine) == 0
    test = load_split_examples(cfg.path(cfg.data.splits_dir), "test")
    assert len(test) == 4533 and isinstance(test.history[0], list) and isinstance(test.target[0], str)


def test_corrupted_catalog_keeps_good_rows_and_quarantines_exactly_the_bad(synthetic):
    catalog, _ = synthetic
    bad, faults = corrupt_catalog(catalog, seed=1)
    typed = read_catalog_frame(bad)
    report = validate_catalog(typed, DataConfig(max_title_chars=200), "corrupt.jsonl")
    bad_positions = {p for ps in faults.values() for p in ps}
    assert len(report.good) == len(bad) - len(bad_positions)
    broken = {catalog.item_id[p] for k, ps in faults.items() if k != "duplicate item_id" for p in ps}
    assert set(report.good["item_id"]) == set(catalog["item_id"]) - broken  # item 0 survives in its newest copy
    reasons = dict(zip(report.quarantine["item_id"], report.quarantine["reason"], strict=True))
    for p in faults["missing title"]:
        assert "missing title" in reasons[catalog.item_id[p]]
    for p in faults["title too long"]:
        assert "title longer than 200 chars" in reasons[catalog.item_id[p]]
    for p in faults["unparseable updated_at"]:
        assert "missing or unparseable updated_at" in reasons[catalog.item_id[p]]
    assert "duplicate item_id (older version)" in reasons[catalog.item_id[0]]
    assert report.summary["rows_by_reason"]["missing title"] == 2
    assert (report.quarantine["source_file"] == "corrupt.jsonl").all()


def test_heavily_corrupted_catalog_fails_with_readable_error(synthetic):
    catalog, _ = synthetic
    bad = catalog.copy()
    bad.loc[: len(bad) // 2, "title"] = None
    with pytest.raises(ContractViolation) as err:
        validate_catalog(read_catalog_frame(bad), DataConfig(), "feeds/catalog_2026-11-24.jsonl")
    message = str(err.value)
    assert "\n" not in message  # the CLI prints str(exc) as the one line
    assert "feeds/catalog_2026-11-24.jsonl" in message and "missing title" in message and "rows 1, 2, 3" in message
    assert "example rows" in err.value.details and catalog.item_id[0] in err.value.details


def test_missing_column_names_file_and_column(tmp_path, synthetic):
    catalog, _ = synthetic
    path = write_table(catalog.drop(columns=["brand"]), tmp_path / "c.parquet")
    with pytest.raises(ContractViolation, match=r"c\.parquet.*brand"):
        read_catalog(str(path))


def test_unknown_items_and_duplicates_in_events_are_quarantined(synthetic):
    catalog, events = synthetic
    extra = events.iloc[[0, 1]].copy()
    extra.loc[extra.index[0], "item_id"] = "no-such-item"
    batch = pd.concat([events, extra], ignore_index=True)  # row 1 repeated exactly: duplicate
    report = validate_events(batch, set(catalog["item_id"]), DataConfig(), "events.csv")
    assert len(report.quarantine) == 2 and len(report.good) == len(events)
    assert set(report.quarantine["reason"]) == {"unknown item_id (not in catalog)", "duplicate row"}


@pytest.mark.parametrize("suffix", ["parquet", "csv", "jsonl", "jsonl.gz", "csv.gz"])
def test_readers_round_trip(tmp_path, synthetic, suffix):
    catalog, events = synthetic
    back = read_catalog(str(write_table(catalog, tmp_path / f"c.{suffix}")))
    assert back["item_id"].tolist() == catalog["item_id"].tolist()
    assert (back["updated_at"] == catalog["updated_at"]).all()
    ev = read_events(str(write_table(events, tmp_path / f"e.{suffix}")))
    assert (ev["event_timestamp"] == events["event_timestamp"]).all() and ev["user_id"].dtype == "string"


def test_examples_from_events_is_chronological(synthetic):
    _, events = synthetic
    splits = examples_from_events(events, max_history=5)
    assert len(splits["test"]) == events.user_id.nunique() == len(splits["valid"])
    times = events.groupby(["user_id", "item_id"])["event_timestamp"].min()
    for row in splits["train"].head(50).itertuples():
        assert 1 <= len(row.history) <= 5
        assert all(times[(row.user_id, i)] <= row.event_timestamp for i in row.history)
    assert splits["train"].event_timestamp.max() <= splits["test"].event_timestamp.max()


def test_synthetic_is_deterministic():
    a, b = generate_synthetic(50, 20, seed=7), generate_synthetic(50, 20, seed=7)
    pd.testing.assert_frame_equal(a[1], b[1])
    assert not a[1].equals(generate_synthetic(50, 20, seed=8)[1])


def read_catalog_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Type an in-memory frame exactly like read_catalog does for a file."""
    from components.data.readers import coerce

    return coerce(frame, "catalog", "<memory>")

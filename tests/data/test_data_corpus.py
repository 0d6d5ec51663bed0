"""The malformed-input corpus (tests/data/corpus): every file is refused with one line or has exactly its bad rows
quarantined by source line, read and validated the way `sidrec data ingest` does; the CLI prints one line."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from components.config import DataConfig, load_config
from components.data.cli import app
from components.data.contracts import ContractViolation
from components.data.ingest import load_validated
from components.data.synthetic import generate_synthetic
from components.data.validate import validate_catalog_file, validate_events_file
from components.errors import SidrecError

CORPUS = Path(__file__).parent / "corpus"
EXPECTED: dict[str, dict] = yaml.safe_load((CORPUS / "expected.yaml").read_text())
GOOD_CATALOG = str(CORPUS / "good_catalog.jsonl")


@pytest.fixture(scope="module")
def catalog_ids() -> set[str]:
    return set(validate_catalog_file(GOOD_CATALOG, DataConfig()).good["item_id"])


def test_manifest_covers_the_corpus_and_the_corpus_is_its_generator_output(tmp_path):
    sys.path.insert(0, str(CORPUS))
    try:
        import make_corpus
    finally:
        sys.path.remove(str(CORPUS))
    fixtures = ("expected.yaml", "make_corpus.py", "__pycache__", ".gitattributes")
    on_disk = {p.name for p in CORPUS.iterdir() if p.name not in fixtures}
    assert on_disk == set(EXPECTED)
    assert len([n for n in EXPECTED if not n.startswith("good_")]) >= 40
    for path in make_corpus.write(tmp_path):
        assert path.read_bytes() == (CORPUS / path.name).read_bytes(), path.name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file(name, catalog_ids):
    expected, path, cfg = EXPECTED[name], str(CORPUS / name), DataConfig()
    if name.startswith(("events__", "good_events")):

        def run():
            return validate_events_file(path, catalog_ids, cfg)
    else:

        def run():
            return validate_catalog_file(path, cfg)

    if "rejected" in expected:
        with pytest.raises(ContractViolation) as err:
            run()
        message = str(err.value)
        assert isinstance(err.value, SidrecError) and isinstance(err.value, ValueError)
        assert "\n" not in message and message.startswith(f"{path}: ")
        for part in expected["rejected"]:
            assert part in message
        return
    report = run()
    got = {
        int(row): sorted(reason.split("; "))
        for row, reason in zip(report.quarantine["source_row"], report.quarantine["reason"], strict=True)
    }
    assert got == {int(row): sorted(reasons) for row, reasons in expected["quarantined"].items()}
    assert len(report.good) == expected["good"]
    assert report.summary["rows"] == expected["good"] + len(expected["quarantined"])
    assert (report.quarantine["source_file"] == path).all()
    assert not set(report.good.columns) & {"source_row", "read_error", "raw_line"}


def _iso(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_mixed_files_keep_every_good_row(tmp_path):
    """Faults scattered through a JSONL catalog and a gzipped CSV event log: every other row survives unchanged."""
    catalog, events = generate_synthetic(n_items=120, n_users=60, seed=5)
    lines = [json.dumps({**r, "updated_at": _iso(r["updated_at"])}) for r in catalog.to_dict("records")]
    broken = {  # 0-based record -> replacement line; the source_row is record + 1
        3: lines[3][:-1],  # invalid JSON
        17: json.dumps({**json.loads(lines[17]), "title": ["Hex", "bolt"]}),
        40: json.dumps({**json.loads(lines[40]), "item_id": 40.0}),
        41: json.dumps({**json.loads(lines[41]), "item_id": "  "}),
        77: json.dumps({**json.loads(lines[77]), "updated_at": "2099-01-01T00:00:00Z"}),
        119: json.dumps({**json.loads(lines[119]), "item_id": "<NA>"}),
    }
    for k, line in broken.items():
        lines[k] = line
    (tmp_path / "catalog.jsonl").write_text("\n".join(lines) + "\n")

    header = "user_id,item_id,event_timestamp,event_type"
    rows = [f"{r.user_id},{r.item_id},{_iso(r.event_timestamp)},{r.event_type}" for r in events.itertuples()]
    bad_events = {  # 0-based row -> replacement; the source_row is row + 2 (the header is line 1)
        0: rows[0] + ",extra",
        10: f"   ,{events.item_id[10]},{_iso(events.event_timestamp[10])},purchase",
        50: f"{events.user_id[50]},{events.item_id[50]},not a time,purchase",
        51: f"{events.user_id[51]},{events.item_id[51]},{_iso(events.event_timestamp[51])},refund",
        52: f"{events.user_id[52]},no-such-item,{_iso(events.event_timestamp[52])},purchase",
    }
    for k, row in bad_events.items():
        rows[k] = row
    (tmp_path / "events.csv.gz").write_bytes(gzip.compress(("\n".join([header, *rows]) + "\n").encode()))

    cfg = load_config(None, overrides={"data": {"catalog_uri": str(tmp_path / "catalog.jsonl")}})
    good_catalog, good_events, summary = load_validated(cfg, events_uri=str(tmp_path / "events.csv.gz"))

    kept_items = catalog.drop(index=list(broken)).reset_index(drop=True)
    pd.testing.assert_frame_equal(good_catalog, kept_items, check_dtype=False)
    assert summary["catalog"]["quarantined_rows"] == len(broken)
    # an event of a quarantined item is quarantined too (unknown item), every other event is kept as it was
    lost_items = set(catalog.item_id[list(broken)])
    orphans = set(events.index[events.item_id.isin(lost_items)])
    lost = orphans | set(bad_events)
    assert len(orphans) > 5
    kept_events = events.drop(index=sorted(lost)).reset_index(drop=True)
    pd.testing.assert_frame_equal(good_events, kept_events, check_dtype=False)
    assert summary["events"]["quarantined_rows"] == len(lost)


def test_quarantine_keeps_the_unparsed_line_and_source_rows(tmp_path):
    from components.data.ingest import validate_inputs

    cfg = load_config(
        None,
        overrides={
            "data": {
                "catalog_uri": str(CORPUS / "catalog__bad_json_line.jsonl"),
                "events_uri": str(CORPUS / "events__ragged_row.csv"),
            }
        },
    )
    catalog_report, events_report = validate_inputs(cfg)
    lost = catalog_report.quarantine.iloc[0]
    assert lost["source_row"] == 4
    assert lost["raw_line"] == (CORPUS / "catalog__bad_json_line.jsonl").read_text().split("\n")[3]
    rows = dict(zip(events_report.quarantine["source_row"], events_report.quarantine["raw_line"], strict=True))
    # i3's line is quarantined in the catalog, so its purchase (line 5) is an unknown item, parsed and kept as values
    assert rows.keys() == {5, 10} and pd.isna(rows[5]) and rows[10] == "u4,i8,2024-02-09T12:00:00Z\n"
    assert events_report.quarantine.set_index("source_row").loc[5, "item_id"] == "i3"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["catalog__truncated_gzip.jsonl.gz"], "truncated gzip"),
        (["catalog__corrupt_gzip.jsonl.gz"], "not a gzip file"),
        (["catalog__header_only.csv"], "no data rows"),
        (["catalog__float_ids.parquet"], "wrong type: item_id is a number"),
        (["events__missing_column.csv", "--kind", "events", "--catalog", "good_catalog.jsonl"], "misses columns"),
        (["good_events.csv", "--kind", "events", "--catalog", "catalog__crc_gzip.csv.gz"], "CRC check failed"),
        (["no_such_file.csv"], "data file not found"),
    ],
)
def test_cli_prints_one_line_and_exits_2(args, expected):
    args = [str(CORPUS / a) if a.endswith((".csv", ".jsonl", ".gz", ".parquet")) else a for a in args]
    result = CliRunner().invoke(app, ["validate", *args])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
    assert "Traceback" not in result.output and result.stdout == ""


def test_cli_quarantine_is_reported_with_source_rows():
    result = CliRunner().invoke(app, ["validate", str(CORPUS / "catalog__multiline_then_bad.csv")])
    assert result.exit_code == 0, result.output
    assert '"quarantined_rows": 1' in result.stdout and "7 blank item_id" in " ".join(result.stdout.split())


def test_ingest_command_refuses_a_bad_catalog_in_one_line(tmp_path):
    """The real console command, in its own process: one line on stderr, exit 2, no traceback, nothing published."""
    config = tmp_path / "cfg.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "run_root": str(tmp_path / "runs"),
                "store": {"root": str(tmp_path / "artifacts")},
                "data": {
                    "catalog_uri": str(CORPUS / "catalog__truncated_gzip.jsonl.gz"),
                    "events_uri": str(CORPUS / "good_events.csv"),
                },
            }
        )
    )
    proc = subprocess.run(
        [sys.executable, "-m", "components.cli", "data", "ingest", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {CORPUS / 'catalog__truncated_gzip.jsonl.gz'}: truncated gzip: the stream ends before its "
        "end-of-stream marker (an interrupted copy?) (rule 'readable gzip'); re-copy or re-export the file"
    ]
    assert "Traceback" not in proc.stdout + proc.stderr and not (tmp_path / "artifacts").exists()


def test_s3_objects_go_through_the_same_reader_and_a_missing_one_is_file_not_found(monkeypatch):
    from moto import mock_aws

    credentials = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        import boto3

        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="feeds")
        s3.put_object(Bucket="feeds", Key="c.jsonl.gz", Body=(CORPUS / "catalog__truncated_gzip.jsonl.gz").read_bytes())
        with pytest.raises(ContractViolation, match=r"^s3://feeds/c\.jsonl\.gz: truncated gzip"):
            validate_catalog_file("s3://feeds/c.jsonl.gz", DataConfig())
        with pytest.raises(FileNotFoundError, match="s3://feeds/missing.csv"):
            validate_catalog_file("s3://feeds/missing.csv", DataConfig())

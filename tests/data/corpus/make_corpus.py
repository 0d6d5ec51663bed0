"""Write the malformed-input corpus: small catalog and events files, each broken in one way.

Run `python tests/data/corpus/make_corpus.py` to regenerate; the output is deterministic (gzip mtime 0) and the
test checks that it matches the committed files. What each file must do is written by hand in expected.yaml,
from how the file is built here: the line numbers below are the `source_row` the quarantine must report (CSV:
the header is line 1, so base row k is line k + 2; JSONL: base row k is line k + 1; parquet: row k + 1).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
CATALOG_FIELDS = ["item_id", "title", "description", "brand", "categories", "updated_at"]
EVENTS_FIELDS = ["user_id", "item_id", "event_timestamp", "event_type"]


def base_catalog() -> list[dict]:
    """Ten good items i0..i9."""
    return [
        {
            "item_id": f"i{k}",
            "title": f"Hex bolt M{k + 3}",
            "description": "Zinc plated steel",
            "brand": "Acme",
            "categories": "Industrial|Fasteners",
            "updated_at": f"2024-01-{k + 1:02d}T00:00:00Z",
        }
        for k in range(10)
    ]


def base_events() -> list[dict]:
    """Ten good purchases of i0..i9 by five users."""
    return [
        {
            "user_id": f"u{k // 2}",
            "item_id": f"i{k}",
            "event_timestamp": f"2024-02-{k + 1:02d}T12:00:00Z",
            "event_type": "purchase",
        }
        for k in range(10)
    ]


def to_csv(rows: list[dict], fields: list[str] | None = None, delimiter: str = ",", newline: str = "\n") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=newline)
    fields = fields or list(rows[0])
    writer.writerow(fields)
    for row in rows:
        writer.writerow([row.get(f, "") for f in fields])
    return out.getvalue().encode()


def to_jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def to_parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def changed(rows: list[dict], k: int, **values) -> list[dict]:
    """A copy of rows with base row k changed."""
    out = [dict(r) for r in rows]
    out[k].update(values)
    return out


def garbage(n: int = 300) -> bytes:
    """Deterministic binary noise with bytes that are never valid UTF-8."""
    return bytes((i * 151 + 17) % 256 for i in range(n)) + b"\xff\xfe\x00\x01"


def broken_crc(data: bytes) -> bytes:
    blob = bytearray(gz(data))
    blob[-8] ^= 0xFF  # the CRC32 field of the trailer
    return bytes(blob)


def catalog_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame["updated_at"] = pd.to_datetime(frame["updated_at"], utc=True)
    return frame


def events_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    return frame


def _lines_with(data: bytes, line: int, text: str) -> bytes:
    """Replace 1-based line `line` of a text file."""
    lines = data.decode().split("\n")
    lines[line - 1] = text
    return "\n".join(lines).encode()


def corpus() -> dict[str, Callable[[], bytes]]:
    cat, ev = base_catalog(), base_events()
    long_title = "Hex bolt " + "x" * 992  # 1001 chars: one over the default max_title_chars
    multiline = changed(cat, 1, title="Hex bolt\nwith a two-line title")
    multiline = changed(multiline, 4, item_id="  ")
    null_frame = catalog_frame(cat)
    null_frame.loc[2, "title"] = None
    null_frame.loc[4, "updated_at"] = pd.NaT
    float_ids = catalog_frame(cat).assign(item_id=[float(k) for k in range(10)])
    list_titles = catalog_frame(cat).assign(title=[["Hex", "bolt", str(k)] for k in range(10)])
    null_user = events_frame(ev)
    null_user.loc[1, "user_id"] = None
    return {
        # good references (the events below are checked against good_catalog.jsonl)
        "good_catalog.jsonl": lambda: to_jsonl(cat),
        "good_events.csv": lambda: to_csv(ev),
        # whole-file failures: refused with one line
        "catalog__corrupt_gzip.jsonl.gz": lambda: b"this is not gzip data\n",
        "catalog__truncated_gzip.jsonl.gz": lambda: gz(to_jsonl(cat))[:120],
        "catalog__crc_gzip.csv.gz": lambda: broken_crc(to_csv(cat)),
        "catalog__empty.csv": lambda: b"",
        "catalog__empty_gzip.jsonl.gz": lambda: gz(b""),
        "catalog__header_only.csv": lambda: to_csv([], CATALOG_FIELDS),
        "catalog__blank_lines_only.jsonl": lambda: b"\n  \n\n",
        "catalog__zero_rows.parquet": lambda: to_parquet(catalog_frame(cat).iloc[:0]),
        "catalog__missing_column.csv": lambda: to_csv(cat, [f for f in CATALOG_FIELDS if f != "brand"]),
        "catalog__semicolons.csv": lambda: to_csv(cat, delimiter=";"),
        "catalog__duplicate_header.csv": lambda: to_csv(cat, [*CATALOG_FIELDS, "title"]),
        "catalog__float_ids.parquet": lambda: to_parquet(float_ids),
        "catalog__list_titles.parquet": lambda: to_parquet(list_titles),
        "catalog__binary_garbage.csv": garbage,
        "catalog__binary_garbage.parquet": garbage,
        "catalog__gzip_named_csv.csv": lambda: gz(to_csv(cat)),
        "catalog__latin1.csv": lambda: to_csv(cat).replace(b"Hex bolt M6", "Schraube für Holz".encode("latin-1")),
        "catalog__unterminated_quote.csv": lambda: _lines_with(
            to_csv(cat), 6, 'i4,"Hex bolt M7,Zinc plated steel,Acme,Industrial|Fasteners,2024-01-05T00:00:00Z'
        ),
        "catalog__not_json.jsonl": lambda: to_csv(cat),
        "catalog__too_many_bad.jsonl": lambda: _lines_with(
            _lines_with(_lines_with(to_jsonl(cat), 2, '{"item_id": "i1",'), 5, "{oops"), 8, '"i7"'
        ),
        "catalog__unsupported.txt": lambda: to_csv(cat),
        "catalog__reserved_column.csv": lambda: to_csv([{**r, "source_row": "7"} for r in cat]),
        # row failures: the rows are quarantined with their source line, the rest is kept
        "catalog__bad_json_line.jsonl": lambda: _lines_with(
            to_jsonl(cat), 4, '{"item_id": "i3", "title": "Hex bolt M6" "description": "x"}'
        ),
        "catalog__json_array_line.jsonl": lambda: _lines_with(to_jsonl(cat), 6, '["i5", "Hex bolt M8"]'),
        "catalog__empty_string_id.jsonl": lambda: to_jsonl(changed(cat, 1, item_id="")),
        "catalog__empty_id.csv": lambda: to_csv(changed(cat, 1, item_id="")),
        "catalog__whitespace_id.csv": lambda: to_csv(changed(cat, 2, item_id="   ")),
        "catalog__padded_id.jsonl": lambda: to_jsonl(changed(cat, 4, item_id=" i4")),
        "catalog__na_id.csv": lambda: to_csv(changed(cat, 4, item_id="<NA>")),
        "catalog__nan_id.jsonl": lambda: to_jsonl(changed(cat, 6, item_id="nan")),
        "catalog__null_id.jsonl": lambda: to_jsonl(changed(cat, 7, item_id=None)),
        "catalog__float_id.jsonl": lambda: to_jsonl(changed(cat, 7, item_id=7.0)),
        "catalog__int_id.jsonl": lambda: to_jsonl(changed(cat, 2, item_id=2)),
        "catalog__list_title.jsonl": lambda: to_jsonl(changed(cat, 1, title=["a", "b"])),
        "catalog__dict_title.jsonl": lambda: to_jsonl(changed(cat, 8, title={"en": "Hex bolt"})),
        "catalog__number_brand.jsonl": lambda: to_jsonl(changed(cat, 9, brand=3)),
        "catalog__bool_title.jsonl": lambda: to_jsonl(changed(cat, 0, title=True)),
        "catalog__future_timestamp.csv": lambda: to_csv(changed(cat, 3, updated_at="2099-01-01T00:00:00Z")),
        "catalog__1970_timestamp.jsonl": lambda: to_jsonl(changed(cat, 2, updated_at="1970-01-01T00:00:00Z")),
        "catalog__unparseable_timestamp.csv": lambda: to_csv(changed(cat, 5, updated_at="last tuesday")),
        "catalog__epoch_timestamp.jsonl": lambda: to_jsonl(changed(cat, 1, updated_at=1704067200)),
        "catalog__duplicate_row.csv": lambda: to_csv([*cat, cat[2]]),
        "catalog__duplicate_id.jsonl": lambda: to_jsonl([*cat, {**cat[2], "updated_at": "2023-01-01T00:00:00Z"}]),
        "catalog__nul_byte.csv": lambda: to_csv(changed(cat, 1, title="Hex\x00bolt")),
        "catalog__nulls.parquet": lambda: to_parquet(null_frame),
        "catalog__long_title.jsonl": lambda: to_jsonl(changed(cat, 5, title=long_title)),
        "catalog__blank_title.jsonl": lambda: to_jsonl(changed(cat, 3, title="   ")),
        "catalog__ragged_row.csv": lambda: _lines_with(to_csv(cat), 9, to_csv([cat[7]]).decode().split("\n")[1] + ",x"),
        "catalog__multiline_then_bad.csv": lambda: to_csv(multiline),
        # accepted as they are
        "catalog__bom.csv": lambda: b"\xef\xbb\xbf" + to_csv(cat),
        "catalog__bom.jsonl": lambda: b"\xef\xbb\xbf" + to_jsonl(cat),
        "catalog__crlf.csv": lambda: to_csv(cat, newline="\r\n"),
        "catalog__extra_column.csv": lambda: to_csv([{**r, "color": "grey"} for r in cat]),
        # events: whole-file failures
        "events__corrupt_gzip.csv.gz": lambda: garbage(40),
        "events__truncated_gzip.csv.gz": lambda: gz(to_csv(ev))[:-12],
        "events__header_only.csv": lambda: to_csv([], EVENTS_FIELDS),
        "events__empty.jsonl": lambda: b"",
        "events__missing_column.csv": lambda: to_csv(ev, EVENTS_FIELDS[:3]),
        "events__tabs.csv": lambda: to_csv(ev, delimiter="\t"),
        "events__binary_garbage.csv.gz": lambda: gz(garbage()),
        "events__int_users.parquet": lambda: to_parquet(events_frame(ev).assign(user_id=list(range(10)))),
        # events: row failures
        "events__bad_json_line.jsonl": lambda: _lines_with(to_jsonl(ev), 5, '{"user_id": "u2", "item_id": "i4"'),
        "events__blank_user.csv": lambda: to_csv(changed(ev, 1, user_id="  ")),
        "events__na_user.csv": lambda: to_csv(changed(ev, 2, user_id="<NA>")),
        "events__float_item.jsonl": lambda: to_jsonl(changed(ev, 3, item_id=3.0)),
        "events__dict_event_type.jsonl": lambda: to_jsonl(changed(ev, 2, event_type={"type": "purchase"})),
        "events__future_timestamp.csv": lambda: to_csv(changed(ev, 9, event_timestamp="2099-06-01T00:00:00Z")),
        "events__1970_timestamp.csv": lambda: to_csv(changed(ev, 0, event_timestamp="1970-01-01T00:00:00Z")),
        "events__unparseable_timestamp.jsonl": lambda: to_jsonl(changed(ev, 5, event_timestamp="soon")),
        "events__duplicate_row.csv": lambda: to_csv([*ev, ev[3]]),
        "events__unknown_event_type.csv": lambda: to_csv(changed(ev, 5, event_type="refund")),
        "events__unknown_item.csv": lambda: to_csv(changed(ev, 6, item_id="i999")),
        "events__null_user.parquet": lambda: to_parquet(null_user),
        "events__ragged_row.csv": lambda: _lines_with(to_csv(ev), 10, "u4,i8,2024-02-09T12:00:00Z"),
        "events__nul_byte.csv": lambda: to_csv(changed(ev, 2, user_id="u\x001")),
        # events: accepted
        "events__bom.csv.gz": lambda: gz(b"\xef\xbb\xbf" + to_csv(ev)),
    }


def write(out: Path = HERE) -> list[Path]:
    paths = []
    for name, make in corpus().items():
        path = out / name
        path.write_bytes(make())
        paths.append(path)
    return paths


if __name__ == "__main__":
    written = write(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
    print(f"wrote {len(written)} files")

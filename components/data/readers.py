"""Readers for catalog and event files: parquet, CSV, JSONL (optionally gzip), local or s3://.

A file that cannot be read as a whole (corrupt or truncated gzip, not UTF-8, not parquet, no data rows, missing
columns) is refused with a one-line ContractViolation naming the file and what is wrong with it. Inside a
readable file the readers never drop a row and never change a value's type silently: a CSV row with the wrong
number of fields or a JSONL line that is not a JSON object becomes a row with no values, its text in `raw_line`
and the reason in `read_error`; a value of the wrong type (a number where an id is expected, a list title) is
kept as text for the quarantine and flagged in `read_error`. Validation then quarantines those rows by their
`source_row` (contracts.py says how rows are numbered), so nothing good or bad disappears silently and one bad
line never costs the rest of the file.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import numbers
import os
import zlib
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from components.data.contracts import (
    BOOKKEEPING,
    CATALOG_COLUMNS,
    EVENTS_COLUMNS,
    ContractViolation,
    missing_columns,
)
from components.errors import MissingFileError

_FORMATS = (".parquet", ".csv", ".jsonl", ".json", ".ndjson")
_GZIP_MAGIC = b"\x1f\x8b"


def _open_bytes(uri: str, endpoint_url: str | None = None) -> bytes:
    if uri.startswith("s3://"):
        import boto3
        from botocore.exceptions import ClientError

        bucket, _, key = uri[5:].partition("/")
        endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
        client = boto3.session.Session().client("s3", endpoint_url=endpoint)  # current credentials, not cached
        try:
            return client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "NoSuchBucket", "404"):
                raise MissingFileError(f"data file not found: {uri} (check the bucket and key)") from exc
            raise
    path = Path(uri)
    if not path.is_file():
        raise MissingFileError(f"data file not found: {uri} (check the path or data.catalog_uri/events_uri)")
    return path.read_bytes()


def _gunzip(raw: bytes, uri: str) -> bytes:
    """Decompress, turning every way a gzip file can be broken into a message that says which."""
    fix = "re-copy or re-export the file"
    try:
        return gzip.decompress(raw)
    except EOFError as exc:
        what = "truncated gzip: the stream ends before its end-of-stream marker (an interrupted copy?)"
        raise ContractViolation(f"{uri}: {what} (rule 'readable gzip'); {fix}") from exc
    except gzip.BadGzipFile as exc:
        text = str(exc)
        if text.startswith("CRC check failed") or text.startswith("Incorrect length"):
            what = f"corrupt gzip: {text} (the data was damaged after compression)"
        elif raw[:2] == _GZIP_MAGIC:
            what = f"corrupt gzip: bytes after the gzip stream are not gzip ({text})"
        else:
            what = f"not a gzip file: bad header {raw[:2]!r} (the name ends in .gz but the content is not gzip)"
        raise ContractViolation(f"{uri}: {what} (rule 'readable gzip'); {fix}") from exc
    except zlib.error as exc:
        raise ContractViolation(f"{uri}: corrupt gzip: {exc} (rule 'readable gzip'); {fix}") from exc


def _decode(data: bytes, uri: str) -> str:
    """UTF-8 text; a UTF-8 byte-order mark is dropped (Excel writes one), any other encoding is refused."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        hint = "re-export it as UTF-8"
        if data[:2] == _GZIP_MAGIC:
            hint = "it looks gzip-compressed: name it .gz"
        elif data[:4] == b"PAR1":
            hint = "it looks like parquet: name it .parquet"
        raise ContractViolation(
            f"{uri}: not UTF-8 text: byte {data[exc.start]:#04x} at line {line} (rule 'UTF-8 text'); {hint}"
        ) from exc


def _refuse_reserved(columns: set[str], uri: str) -> None:
    """A source column named like a bookkeeping column would be overwritten and misnumber the quarantine."""
    clash = sorted(columns & set(BOOKKEEPING))
    if clash:
        raise ContractViolation(
            f"{uri}: column names {clash} are reserved for the quarantine's bookkeeping (rule 'required columns'); "
            "rename those columns"
        )


def _bookkept(
    records: list[dict], source_rows: list[int], errors: list[str | None], raw: list[str | None], uri: str
) -> pd.DataFrame:
    # dtype=object keeps each value as written: pandas would turn the ints of a column with a null into floats.
    frame = pd.DataFrame(records, dtype=object) if records else pd.DataFrame()
    _refuse_reserved(set(frame.columns), uri)
    frame = frame.reset_index(drop=True)
    frame["source_row"] = pd.array(source_rows, dtype="Int64")
    frame["read_error"] = pd.array(errors, dtype="string")
    frame["raw_line"] = pd.array(raw, dtype="string")
    return frame


def _parse_csv(text: str, uri: str) -> pd.DataFrame:
    """Comma-separated with a header; empty fields are null; a row with the wrong field count is kept as raw text."""
    lines = io.StringIO(text, newline="").readlines()  # the same line splitting the csv module counts with
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        raise ContractViolation(f"{uri}: empty file: no header and no rows (rule 'non-empty batch'); write a header")
    _refuse_reserved(set(header), uri)
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise ContractViolation(
            f"{uri}: duplicated column names {duplicated} in the header, line 1 (rule 'required columns'); "
            "give every column one name"
        )
    records, source_rows, errors, raw = [], [], [], []
    end = reader.line_num
    while True:
        start = end + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. a field over the csv module's size limit: keep the line, say why
            end = reader.line_num
            records.append({})
            errors.append(f"unparseable CSV row ({exc})")
            raw.append("".join(lines[start - 1 : end]))
            source_rows.append(start)
            continue
        end = reader.line_num
        if not fields:  # a blank line carries no data
            continue
        source_rows.append(start)
        if len(fields) != len(header) and end > start:  # an unclosed quote swallows the rows after it: refuse
            raise ContractViolation(
                f"{uri}: the CSV row at line {start} runs over lines {start}-{end} with {len(fields)} fields instead "
                f"of {len(header)}: an unclosed quote? (rule 'CSV quoting'); close or escape the quote on line {start}"
            )
        if len(fields) != len(header):
            records.append({})
            errors.append("wrong number of CSV fields")
            raw.append("".join(lines[start - 1 : end]))
            continue
        records.append({c: (v if v != "" else None) for c, v in zip(header, fields, strict=True)})
        errors.append(None)
        raw.append(None)
    frame = _bookkept(records, source_rows, errors, raw, uri)
    for column in header:
        if column not in frame.columns:
            frame[column] = pd.Series([None] * len(frame), dtype="object")
    return frame[header + list(BOOKKEEPING)]


def _parse_jsonl(text: str, uri: str) -> pd.DataFrame:
    """One JSON object per line, parsed line by line so that one bad line costs only itself."""
    records, source_rows, errors, raw = [], [], [], []
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines(): U+2028 may sit inside a string
        if not line.strip():
            continue
        source_rows.append(number)
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            records.append({})
            errors.append(f"invalid JSON line ({exc.msg})")
            raw.append(line)
            continue
        if not isinstance(value, dict):
            records.append({})
            errors.append("JSON line is not an object")
            raw.append(line)
            continue
        records.append(value)
        errors.append(None)
        raw.append(None)
    return _bookkept(records, source_rows, errors, raw, uri)


def _parse_parquet(data: bytes, uri: str) -> pd.DataFrame:
    import pyarrow as pa

    try:
        frame = pd.read_parquet(io.BytesIO(data))
    except (pa.ArrowException, ValueError, OSError) as exc:
        what = " ".join(str(exc).split())[:200]
        raise ContractViolation(
            f"{uri}: cannot be read as parquet: {what} (rule 'readable file'); re-export the file"
        ) from exc
    _refuse_reserved(set(map(str, frame.columns)), uri)
    frame = frame.reset_index(drop=True)
    frame["source_row"] = pd.array(np.arange(1, len(frame) + 1), dtype="Int64")
    frame["read_error"] = pd.array([None] * len(frame), dtype="string")
    frame["raw_line"] = pd.array([None] * len(frame), dtype="string")
    return frame


def read_table(uri: str, endpoint_url: str | None = None) -> pd.DataFrame:
    """Read a parquet / CSV / JSONL file (.gz allowed) into raw values plus the BOOKKEEPING columns."""
    name = uri.lower().removesuffix(".gz")
    if not name.endswith(_FORMATS):
        raise ContractViolation(
            f"{uri}: unsupported format (rule 'known format'); use .parquet, .csv or .jsonl, optionally .gz"
        )
    raw = _open_bytes(uri, endpoint_url)
    if not raw:
        raise ContractViolation(f"{uri}: empty file (0 bytes) (rule 'non-empty batch'); write at least one data row")
    data = _gunzip(raw, uri) if uri.lower().endswith(".gz") else raw
    if not data:
        raise ContractViolation(
            f"{uri}: empty file (0 bytes once decompressed) (rule 'non-empty batch'); write at least one data row"
        )
    if name.endswith(".parquet"):
        return _parse_parquet(data, uri)
    text = _decode(data, uri)
    return _parse_csv(text, uri) if name.endswith(".csv") else _parse_jsonl(text, uri)


def _kind(value: object) -> str:
    """What a raw value is, in the words a reason uses ('missing' and 'text' are fine for a text column)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return "missing"
    if isinstance(value, float) and math.isnan(value):
        return "missing"
    if isinstance(value, str):
        return "text"
    if isinstance(value, bool | np.bool_):
        return "a boolean"
    if isinstance(value, numbers.Number):
        return "a number"
    if isinstance(value, datetime | date | np.datetime64):
        return "a timestamp"
    if isinstance(value, list | tuple | np.ndarray):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _as_text(value: object) -> str | None:
    """The value as the quarantine shows it (lists and objects as JSON, so they read back)."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


def _note(errors: pd.Series, mask: pd.Series, reason: str) -> pd.Series:
    """Add a reason to the rows in mask, after the reasons they already have."""
    return errors.mask(mask, (errors + "; " + reason).fillna(reason))


def coerce(frame: pd.DataFrame, kind: str, uri: str) -> pd.DataFrame:
    """Type a raw frame to the contract (ids and text as strings, timestamps as UTC), keeping the BOOKKEEPING.

    Text columns accept only text: anything else is kept as its text for the quarantine and named in
    `read_error` (a float id 7.0 would otherwise become the item "7.0"). Timestamp columns accept timestamps and
    text; a value that does not parse becomes null and is quarantined by validation. A frame without the
    bookkeeping columns (an in-memory batch) gets them, rows numbered from 1.
    """
    columns = CATALOG_COLUMNS if kind == "catalog" else EVENTS_COLUMNS
    missing = missing_columns(list(frame.columns), kind)
    if missing:
        found = [c for c in frame.columns if c not in BOOKKEEPING]
        hint = "write those columns"
        header = " ".join(map(str, found))
        for sep, name in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
            if sep in header:
                hint = f"the header contains a {name}: write comma-separated CSV"
        raise ContractViolation(
            f"{uri}: the {kind} misses columns {missing}; found {found} (rule 'required columns'); {hint}"
        )
    out = frame.reset_index(drop=True).copy()
    if "source_row" not in out.columns:
        out["source_row"] = pd.array(np.arange(1, len(out) + 1), dtype="Int64")
    for column in ("read_error", "raw_line"):
        if column not in out.columns:
            out[column] = pd.array([None] * len(out), dtype="string")
        out[column] = out[column].astype("string")
    errors = out["read_error"]
    for column, kind_of in columns.items():
        values = out[column]
        if kind_of == "timestamp":
            if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values.dtype):
                out[column] = pd.to_datetime(values, utc=True)
                continue
            kinds = values.map(_kind).astype(object)
            wrong = ~kinds.isin(["missing", "text", "a timestamp"])
            for what in sorted(set(kinds[wrong])):
                errors = _note(errors, kinds == what, f"wrong type: {column} is {what}, expected a timestamp")
            usable = values.where(~wrong & kinds.ne("missing"), None).astype(object)
            out[column] = pd.to_datetime(usable, utc=True, errors="coerce", format="mixed")
            continue
        if isinstance(values.dtype, pd.StringDtype):
            text = values
        else:
            kinds = values.map(_kind).astype(object)
            wrong = ~kinds.isin(["missing", "text"])
            for what in sorted(set(kinds[wrong])):
                errors = _note(errors, kinds == what, f"wrong type: {column} is {what}, expected text")
            pairs = zip(values, kinds, strict=True)
            shown = [None if k == "missing" else v if k == "text" else _as_text(v) for v, k in pairs]
            text = pd.Series(shown, index=values.index, dtype="string")
        nul = text.str.contains("\x00", regex=False).fillna(False).astype(bool)
        if nul.any():
            errors = _note(errors, nul, f"NUL byte in {column}")
        out[column] = text
    out["read_error"] = errors
    extra = [c for c in out.columns if c not in columns and c not in BOOKKEEPING]
    return out[list(columns) + extra + list(BOOKKEEPING)]


def _read(uri: str, kind: str, endpoint_url: str | None) -> pd.DataFrame:
    raw = read_table(uri, endpoint_url)
    if len(raw) == 0:
        raise ContractViolation(
            f"{uri}: no data rows (rule 'non-empty batch'); an empty {kind} batch is refused, write at least one row"
        )
    parsed = raw["raw_line"].isna()
    if not parsed.any():  # no line parsed: there are no columns to check, say why the lines failed
        reasons = raw["read_error"].value_counts()
        rows = ", ".join(str(r) for r in raw["source_row"].head(5))
        raise ContractViolation(
            f"{uri}: no line could be parsed ({reasons.index[0]}; source rows {rows}...) (rule 'readable file'); "
            "fix the file's format"
        )
    return coerce(raw, kind, uri)


def read_catalog(uri: str, endpoint_url: str | None = None) -> pd.DataFrame:
    """The catalog typed to the contract (item_id, title, description, brand, categories, updated_at) + BOOKKEEPING.

    Not validated: use components.data.ingest.load_validated (or validate_catalog) before using the rows.
    """
    frame = _read(uri, "catalog", endpoint_url)
    for column in ("description", "brand", "categories"):
        frame[column] = frame[column].fillna("")
    return frame


def read_events(uri: str, endpoint_url: str | None = None) -> pd.DataFrame:
    """The event log typed to the contract (user_id, item_id, event_timestamp, event_type) + BOOKKEEPING.

    Not validated: use components.data.ingest.load_validated (or validate_events) before using the rows.
    """
    return _read(uri, "events", endpoint_url)


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write parquet/CSV/JSONL by suffix (used by tests and the synthetic generator)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name.lower().removesuffix(".gz")
    compression = "gzip" if path.name.lower().endswith(".gz") else None
    if name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    elif name.endswith(".csv"):
        frame.to_csv(path, index=False, compression=compression)
    elif name.endswith(".jsonl"):
        frame.to_json(path, orient="records", lines=True, date_format="iso", compression=compression)
    else:
        raise ValueError(f"unsupported output format: {path}")
    return path

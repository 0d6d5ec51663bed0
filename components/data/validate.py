"""Great Expectations validation of catalog and event batches, with a per-row quarantine.

GX gives the verdicts on every parsed row: each expectation runs with result_format COMPLETE, so it reports the
index of every failing row; those indices become the per-row `reason` of the quarantine, together with the
row's `source_row` in its file. Lines the reader could not parse at all (invalid JSON, wrong CSV field count)
have no values to judge and are quarantined with the reader's reason. Good rows go on; a batch breaks the
contract (ContractViolation) when it has no rows or when the share of bad rows exceeds the configured limit, so
one bad row never blocks a feed and a corrupted feed never slips through.
"""

from __future__ import annotations

import functools
import itertools
import logging
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from components.config import DataConfig
from components.data.contracts import BOOKKEEPING, EVENT_TYPES, PLACEHOLDER_IDS_REGEX, ContractViolation
from components.data.readers import coerce, read_catalog, read_events

log = logging.getLogger(__name__)

READ_ERROR_RULE = "value of the wrong type or unreadable line"  # the reader's own reason is written on the row
DUPLICATE_ITEM_RULE = "duplicate item_id"


@dataclass
class ValidationReport:
    """Good rows, quarantined rows (with `reason`, `source_file` and `source_row`) and a JSON-able summary."""

    good: pd.DataFrame
    quarantine: pd.DataFrame
    summary: dict = field(default_factory=dict)


@dataclass
class _Rule:
    name: str  # the reason written on each failing row
    expectation: object


@functools.cache
def _gx_context():
    """One ephemeral context per process: creating it costs seconds, a run on it well under one."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    for name in ("great_expectations", "great_expectations.core", "great_expectations.data_context"):
        logging.getLogger(name).setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


_run_ids = itertools.count()


def _run_rules(frame: pd.DataFrame, rules: list[_Rule], suite_name: str) -> tuple[dict[str, list[int]], dict]:
    """Run the rules as one GX suite; return {rule name: failing row positions} and per-expectation results."""
    import great_expectations as gx

    context = _gx_context()
    name = f"{suite_name}_{next(_run_ids)}"  # the context is shared: every run gets its own objects, then drops them
    source = context.data_sources.add_pandas(f"{name}_source")
    batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("whole")
    suite = context.suites.add(gx.ExpectationSuite(name=name))
    for rule in rules:
        suite.add_expectation(rule.expectation)
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = definition.run(
                batch_parameters={"dataframe": frame.reset_index(drop=True)},
                result_format={"result_format": "COMPLETE"},
            )
    finally:
        context.validation_definitions.delete(name)
        context.suites.delete(name)
        context.data_sources.delete(f"{name}_source")
    failing: dict[str, list[int]] = {}
    by_expectation: dict[str, dict] = {}
    for rule, res in zip(rules, _ordered(result.results, rules), strict=True):
        if res.exception_info and res.exception_info.get("raised_exception"):
            raise RuntimeError(f"GX expectation '{rule.name}' failed to run: {res.exception_info}")
        rows = [int(i) for i in res.result.get("unexpected_index_list") or []]
        failing[rule.name] = rows
        by_expectation[rule.name] = {"success": bool(res.success), "failing_rows": len(rows)}
    return failing, by_expectation


def _ordered(results, rules: list[_Rule]):
    """GX returns results grouped by column; match them back to our rules by expectation id."""
    by_id = {str(r.expectation_config.id): r for r in results}
    return [by_id[str(rule.expectation.id)] for rule in rules]


def _id_rules(column: str) -> list[_Rule]:
    """An id must be present, not blank, not padded, and not a null written out as text ('<NA>', 'nan')."""
    import great_expectations.expectations as gxe

    return [
        _Rule(f"missing {column}", gxe.ExpectColumnValuesToNotBeNull(column=column)),
        _Rule(f"blank {column}", gxe.ExpectColumnValuesToMatchRegex(column=column, regex=r"\S")),
        _Rule(
            f"{column} with leading/trailing whitespace",
            gxe.ExpectColumnValuesToNotMatchRegex(column=column, regex=r"^\s+\S|\S\s+$"),
        ),
        _Rule(
            f"placeholder {column} (a null written as text)",
            gxe.ExpectColumnValuesToNotMatchRegex(column=column, regex=PLACEHOLDER_IDS_REGEX),
        ),
    ]


def _time_rules(column: str, cfg: DataConfig) -> list[_Rule]:
    """Present, not before min_timestamp and not in the future beyond the configured tolerance (checked now)."""
    import great_expectations.expectations as gxe

    lo = pd.Timestamp(cfg.min_timestamp, tz="UTC")
    hi = pd.Timestamp.now(tz="UTC") + pd.Timedelta(hours=cfg.future_tolerance_hours)
    return [
        _Rule(f"missing or unparseable {column}", gxe.ExpectColumnValuesToNotBeNull(column=column)),
        _Rule(f"{column} before {cfg.min_timestamp}", gxe.ExpectColumnValuesToBeBetween(column=column, min_value=lo)),
        _Rule(
            f"{column} in the future (later than now + {cfg.future_tolerance_hours:g} h)",
            gxe.ExpectColumnValuesToBeBetween(column=column, max_value=hi),
        ),
    ]


def _read_error_rule() -> _Rule:
    import great_expectations.expectations as gxe

    return _Rule(READ_ERROR_RULE, gxe.ExpectColumnValuesToBeNull(column="read_error"))


def _prepare(frame: pd.DataFrame, kind: str, source: str) -> tuple[pd.DataFrame, pd.Series]:
    """Type an in-memory batch like the readers do and refuse an empty one; flag the lines that were not parsed."""
    data = frame if "read_error" in frame.columns else coerce(frame, kind, source)
    data = data.reset_index(drop=True)
    if len(data) == 0:
        raise ContractViolation(
            f"{source}: the {kind} batch has 0 data rows (rule 'non-empty batch'); an empty batch is refused, "
            "check the export that wrote it"
        )
    return data, data["raw_line"].notna()


def _reasons(failing: dict[str, list[int]], data: pd.DataFrame, unparsed: pd.Series) -> dict[int, list[str]]:
    """Row position in data -> reasons.

    GX ran on the parsed rows only, so its row numbers are mapped back to positions in data. A row the reader
    flagged carries the reader's words rather than the generic rule name; an unparsed line only the reader's reason.
    """
    positions = np.flatnonzero(~unparsed.to_numpy())
    reasons: dict[int, list[str]] = {int(p): data.at[p, "read_error"].split("; ") for p in np.flatnonzero(unparsed)}
    for rule, rows in failing.items():
        for row in rows:
            pos = int(positions[row])
            if rule == READ_ERROR_RULE:
                reasons.setdefault(pos, []).extend(str(data.at[pos, "read_error"]).split("; "))
            else:
                reasons.setdefault(pos, []).append(rule)
    return reasons


def _split(data: pd.DataFrame, reasons: dict[int, list[str]], source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    bad_rows = sorted(reasons)
    quarantine = data.iloc[bad_rows].drop(columns=["read_error"])
    quarantine["reason"] = ["; ".join(dict.fromkeys(reasons[i])) for i in bad_rows]
    quarantine["source_file"] = source
    good = data.drop(index=bad_rows).drop(columns=list(BOOKKEEPING)).reset_index(drop=True)
    return good, quarantine.reset_index(drop=True)


def _rows_text(rows: pd.Series, limit: int = 5) -> str:
    rows = sorted(int(r) for r in rows)
    shown = ", ".join(str(r) for r in rows[:limit])
    return f"row {shown}" if len(rows) == 1 else f"rows {shown}{', ...' if len(rows) > limit else ''}"


def _enforce_threshold(report: ValidationReport, total: int, cfg: DataConfig, source: str, kind: str) -> None:
    bad = len(report.quarantine)
    share = bad / max(total, 1)
    if share <= cfg.max_bad_row_share:
        return
    per_reason = report.quarantine.assign(reason=report.quarantine["reason"].str.split("; ")).explode("reason")
    by_rule = per_reason.groupby("reason", sort=False)["source_row"]
    order = by_rule.size().sort_values(ascending=False, kind="stable")
    worst = "; ".join(f"{rule} ({_rows_text(by_rule.get_group(rule))})" for rule in order.index[:3])
    more = f"; and {len(order) - 3} more rules" if len(order) > 3 else ""
    examples = report.quarantine.head(5).drop(columns=["source_file"]).to_string(max_colwidth=40)
    raise ContractViolation(
        f"{source}: {bad} of {total} {kind} rows ({share:.0%}) are bad, limit {cfg.max_bad_row_share:.0%} "
        f"(rule 'max bad row share'); by rule, with source rows: {worst}{more}; fix those rows at the source "
        "(or raise data.max_bad_row_share)",
        details=f"rows by rule: {order.to_dict()}\nexample rows:\n{examples}",
    )


def validate_catalog(frame: pd.DataFrame, cfg: DataConfig, source: str) -> ValidationReport:
    """Validate a catalog batch typed by read_catalog; keeps the newest row of a duplicated item_id."""
    import great_expectations.expectations as gxe

    data, unparsed = _prepare(frame, "catalog", source)
    parsed = data[~unparsed].reset_index(drop=True)
    rules = [
        _read_error_rule(),
        *_id_rules("item_id"),
        _Rule("missing title", gxe.ExpectColumnValuesToNotBeNull(column="title")),
        _Rule("blank title", gxe.ExpectColumnValuesToMatchRegex(column="title", regex=r"\S")),
        _Rule(
            f"title longer than {cfg.max_title_chars} chars",
            gxe.ExpectColumnValueLengthsToBeBetween(column="title", max_value=cfg.max_title_chars),
        ),
        _Rule(
            f"description longer than {cfg.max_description_chars} chars",
            gxe.ExpectColumnValueLengthsToBeBetween(column="description", max_value=cfg.max_description_chars),
        ),
        *_time_rules("updated_at", cfg),
        _Rule(DUPLICATE_ITEM_RULE, gxe.ExpectColumnValuesToBeUnique(column="item_id")),
    ]
    failing, results = _run_rules(parsed, rules, "catalog")
    # Duplicate ids: GX flags every copy; the newest updated_at is the item's current version and stays.
    copies = failing.pop(DUPLICATE_ITEM_RULE)
    reasons = _reasons(failing, data, unparsed)
    if copies:
        candidates = parsed.loc[copies].assign(_pos=copies)
        keep = candidates.sort_values(["updated_at", "_pos"], na_position="first").groupby("item_id").tail(1)
        positions = np.flatnonzero(~unparsed.to_numpy())
        for pos in set(candidates["_pos"]) - set(keep["_pos"]):
            reasons.setdefault(int(positions[pos]), []).append("duplicate item_id (older version)")
    good, quarantine = _split(data, reasons, source)
    report = ValidationReport(good, quarantine, _summary("catalog", source, len(data), quarantine, results))
    _enforce_threshold(report, len(data), cfg, source, "catalog")
    return report


def validate_events(
    frame: pd.DataFrame, catalog_item_ids: set[str] | list[str], cfg: DataConfig, source: str
) -> ValidationReport:
    """Validate an event batch against the (validated) catalog's item ids."""
    import great_expectations.expectations as gxe

    data, unparsed = _prepare(frame, "events", source)
    parsed = data[~unparsed].reset_index(drop=True)
    rules = [
        _read_error_rule(),
        *_id_rules("user_id"),
        *_id_rules("item_id"),
        _Rule(
            "unknown item_id (not in catalog)",
            gxe.ExpectColumnValuesToBeInSet(column="item_id", value_set=sorted(set(catalog_item_ids))),
        ),
        *_time_rules("event_timestamp", cfg),
        _Rule(
            f"event_type not in {list(EVENT_TYPES)}",
            gxe.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(EVENT_TYPES)),
        ),
    ]
    failing, results = _run_rules(parsed, rules, "events")
    reasons = _reasons(failing, data, unparsed)
    key = ["user_id", "item_id", "event_timestamp", "event_type"]
    duplicated = data.duplicated(subset=key, keep="first") & ~unparsed  # unparsed lines have no key to compare
    for pos in np.flatnonzero(duplicated.to_numpy()):
        reasons.setdefault(int(pos), []).append("duplicate row")
    results["duplicate row"] = {"success": not duplicated.any(), "failing_rows": int(duplicated.sum())}
    good, quarantine = _split(data, reasons, source)
    report = ValidationReport(good, quarantine, _summary("events", source, len(data), quarantine, results))
    _enforce_threshold(report, len(data), cfg, source, "events")
    return report


def validate_catalog_file(uri: str, cfg: DataConfig, endpoint_url: str | None = None) -> ValidationReport:
    """Read and validate one catalog file: the one path raw catalog data takes into the system."""
    return validate_catalog(read_catalog(uri, endpoint_url), cfg, uri)


def validate_events_file(
    uri: str, catalog_item_ids: set[str] | list[str], cfg: DataConfig, endpoint_url: str | None = None
) -> ValidationReport:
    """Read and validate one events file against the validated catalog's item ids."""
    return validate_events(read_events(uri, endpoint_url), catalog_item_ids, cfg, uri)


def _summary(kind: str, source: str, total: int, quarantine: pd.DataFrame, results: dict) -> dict:
    by_reason = quarantine["reason"].str.split("; ").explode().value_counts().to_dict() if len(quarantine) else {}
    return {
        "kind": kind,
        "source": source,
        "rows": int(total),
        "good_rows": int(total - len(quarantine)),
        "quarantined_rows": int(len(quarantine)),
        "rows_by_reason": {k: int(v) for k, v in by_reason.items()},
        "expectations": results,
        "success": len(quarantine) == 0,
    }

"""Great Expectations validation of catalog and event batches, with a per-row quarantine.

GX is the single source of the verdicts: each expectation runs with result_format COMPLETE, so it reports the
index of every failing row; those indices become the per-row `reason` of the quarantine. Good rows go on; a
batch breaks the contract (ContractViolation) only when the share of bad rows exceeds the configured limit, so
one bad row never blocks a feed and a corrupted feed never slips through.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import pandas as pd

from components.config import DataConfig
from components.data.contracts import EVENT_TYPES, ContractViolation

log = logging.getLogger(__name__)


@dataclass
class ValidationReport:
    """Good rows, quarantined rows (with `reason` and `source_file`) and a JSON-able summary."""

    good: pd.DataFrame
    quarantine: pd.DataFrame
    summary: dict = field(default_factory=dict)


@dataclass
class _Rule:
    name: str  # the reason written on each failing row
    expectation: object


def _gx_context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    for name in ("great_expectations", "great_expectations.core", "great_expectations.data_context"):
        logging.getLogger(name).setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _run_rules(frame: pd.DataFrame, rules: list[_Rule], suite_name: str) -> tuple[dict[int, list[str]], dict]:
    """Run the rules as one GX suite; return {row position: [reasons]} and per-expectation results."""
    import great_expectations as gx

    context = _gx_context()
    data = frame.reset_index(drop=True)
    asset = context.data_sources.add_pandas(f"{suite_name}_source").add_dataframe_asset(suite_name)
    batch = asset.add_batch_definition_whole_dataframe("whole")
    suite = context.suites.add(gx.ExpectationSuite(name=suite_name))
    for rule in rules:
        suite.add_expectation(rule.expectation)
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=suite_name, data=batch, suite=suite))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = definition.run(batch_parameters={"dataframe": data}, result_format={"result_format": "COMPLETE"})
    reasons: dict[int, list[str]] = {}
    by_expectation: dict[str, dict] = {}
    for rule, res in zip(rules, _ordered(result.results, rules), strict=True):
        failing = res.result.get("unexpected_index_list") or []
        by_expectation[rule.name] = {"success": bool(res.success), "failing_rows": len(failing)}
        for idx in failing:
            reasons.setdefault(int(idx), []).append(rule.name)
    return reasons, by_expectation


def _ordered(results, rules: list[_Rule]):
    """GX returns results grouped by column; match them back to our rules by expectation id."""
    by_id = {str(r.expectation_config.id): r for r in results}
    return [by_id[str(rule.expectation.id)] for rule in rules]


def _split(frame: pd.DataFrame, reasons: dict[int, list[str]], source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    data = frame.reset_index(drop=True)
    bad_rows = sorted(reasons)
    quarantine = data.iloc[bad_rows].copy()
    quarantine["reason"] = ["; ".join(dict.fromkeys(reasons[i])) for i in bad_rows]
    quarantine["source_file"] = source
    good = data.drop(index=bad_rows).reset_index(drop=True)
    return good, quarantine.reset_index(drop=True)


def _enforce_threshold(report: ValidationReport, total: int, cfg: DataConfig, source: str, kind: str) -> None:
    bad = len(report.quarantine)
    share = bad / max(total, 1)
    if share > cfg.max_bad_row_share:
        worst = report.quarantine["reason"].str.split("; ").explode().value_counts()
        examples = report.quarantine.head(5).drop(columns=["source_file"]).to_string(max_colwidth=40)
        raise ContractViolation(
            f"{source}: the {kind} batch breaks the contract: {bad} of {total} rows ({share:.1%}) are bad, "
            f"limit {cfg.max_bad_row_share:.0%}.\n"
            f"rules broken (rows): {worst.to_dict()}\n"
            f"example rows:\n{examples}"
        )


def validate_catalog(frame: pd.DataFrame, cfg: DataConfig, source: str) -> ValidationReport:
    """Validate a catalog batch typed by read_catalog; keeps the newest row of a duplicated item_id."""
    import great_expectations.expectations as gxe

    lo, hi = pd.Timestamp(cfg.min_timestamp, tz="UTC"), pd.Timestamp(cfg.max_timestamp, tz="UTC")
    rules = [
        _Rule("missing item_id", gxe.ExpectColumnValuesToNotBeNull(column="item_id")),
        _Rule("missing title", gxe.ExpectColumnValuesToNotBeNull(column="title")),
        _Rule("empty title", gxe.ExpectColumnValueLengthsToBeBetween(column="title", min_value=1)),
        _Rule(
            f"title longer than {cfg.max_title_chars} chars",
            gxe.ExpectColumnValueLengthsToBeBetween(column="title", max_value=cfg.max_title_chars),
        ),
        _Rule(
            f"description longer than {cfg.max_description_chars} chars",
            gxe.ExpectColumnValueLengthsToBeBetween(column="description", max_value=cfg.max_description_chars),
        ),
        _Rule("missing or unparseable updated_at", gxe.ExpectColumnValuesToNotBeNull(column="updated_at")),
        _Rule(
            f"updated_at outside [{cfg.min_timestamp}, {cfg.max_timestamp}]",
            gxe.ExpectColumnValuesToBeBetween(column="updated_at", min_value=lo, max_value=hi),
        ),
    ]
    data = frame.reset_index(drop=True)
    reasons, results = _run_rules(data, rules, "catalog")
    # Duplicate ids: GX flags every copy; the newest updated_at is the item's current version and stays.
    dup_rule = gxe.ExpectColumnValuesToBeUnique(column="item_id")
    dup_reasons, dup_result = _run_rules(data, [_Rule("duplicate item_id", dup_rule)], "catalog_unique")
    results.update(dup_result)
    if dup_reasons:
        candidates = data.loc[sorted(dup_reasons)].assign(_pos=sorted(dup_reasons))
        keep = candidates.sort_values(["updated_at", "_pos"], na_position="first").groupby("item_id").tail(1)
        for pos in set(candidates["_pos"]) - set(keep["_pos"]):
            reasons.setdefault(int(pos), []).append("duplicate item_id (older version)")
    good, quarantine = _split(data, reasons, source)
    report = ValidationReport(good, quarantine, _summary("catalog", source, len(data), quarantine, results))
    _enforce_threshold(report, len(data), cfg, source, "catalog")
    return report


def validate_events(
    frame: pd.DataFrame, catalog_item_ids: set[str] | list[str], cfg: DataConfig, source: str
) -> ValidationReport:
    """Validate an event batch against the (validated) catalog's item ids."""
    import great_expectations.expectations as gxe

    lo, hi = pd.Timestamp(cfg.min_timestamp, tz="UTC"), pd.Timestamp(cfg.max_timestamp, tz="UTC")
    rules = [
        _Rule("missing user_id", gxe.ExpectColumnValuesToNotBeNull(column="user_id")),
        _Rule("missing item_id", gxe.ExpectColumnValuesToNotBeNull(column="item_id")),
        _Rule(
            "unknown item_id (not in catalog)",
            gxe.ExpectColumnValuesToBeInSet(column="item_id", value_set=sorted(set(catalog_item_ids))),
        ),
        _Rule("missing or unparseable event_timestamp", gxe.ExpectColumnValuesToNotBeNull(column="event_timestamp")),
        _Rule(
            f"event_timestamp outside [{cfg.min_timestamp}, {cfg.max_timestamp}]",
            gxe.ExpectColumnValuesToBeBetween(column="event_timestamp", min_value=lo, max_value=hi),
        ),
        _Rule(
            f"event_type not in {list(EVENT_TYPES)}",
            gxe.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(EVENT_TYPES)),
        ),
    ]
    data = frame.reset_index(drop=True)
    reasons, results = _run_rules(data, rules, "events")
    key = ["user_id", "item_id", "event_timestamp", "event_type"]
    duplicated = data.duplicated(subset=key, keep="first")
    for pos in duplicated[duplicated].index:
        reasons.setdefault(int(pos), []).append("duplicate row")
    results["duplicate row"] = {"success": not duplicated.any(), "failing_rows": int(duplicated.sum())}
    good, quarantine = _split(data, reasons, source)
    report = ValidationReport(good, quarantine, _summary("events", source, len(data), quarantine, results))
    _enforce_threshold(report, len(data), cfg, source, "events")
    return report


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

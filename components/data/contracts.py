"""The data contracts: the columns and types sidrec accepts for the catalog and the event log.

Everything downstream (SIDs, Feast, training) assumes these exact names and types, so readers coerce to them
and validation checks them before anything is curated.
"""

from __future__ import annotations

CATALOG_COLUMNS: dict[str, str] = {
    "item_id": "string",
    "title": "string",
    "description": "string",
    "brand": "string",
    "categories": "string",
    "updated_at": "timestamp",
}
EVENTS_COLUMNS: dict[str, str] = {
    "user_id": "string",
    "item_id": "string",
    "event_timestamp": "timestamp",
    "event_type": "string",
}
# Columns that may be empty strings but are not allowed to be missing from the file.
OPTIONAL_TEXT = ("description", "brand", "categories")
EVENT_TYPES = ("purchase", "view", "click", "add_to_cart", "review")


class ContractViolation(ValueError):
    """A batch that breaks the data contract: the message names the file, the rule and example rows."""


def missing_columns(columns: list[str], kind: str) -> list[str]:
    expected = CATALOG_COLUMNS if kind == "catalog" else EVENTS_COLUMNS
    return [c for c in expected if c not in columns]

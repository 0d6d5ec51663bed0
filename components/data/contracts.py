"""The data contracts: the columns and types sidrec accepts for the catalog and the event log.

Everything downstream (SIDs, Feast, training) assumes these exact names and types, so readers coerce to them
and validation checks them before anything is curated.

Every row a reader returns carries three bookkeeping columns (BOOKKEEPING) so that a quarantined row can be found
in its source file: `source_row` is the 1-based line of the record in the (decompressed) text file, the CSV
header being line 1, so the first CSV data row is 2 and the first JSONL line is 1; for parquet it is the 1-based
row position. `read_error` says why the reader could not keep a value as it was (wrong type, NUL byte) or could
not parse the line at all; `raw_line` holds the text of a line that could not be parsed, so nothing is lost.
"""

from __future__ import annotations

from components.errors import SidrecError

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


BOOKKEEPING = ("source_row", "read_error", "raw_line")
# Text a null turns into when a tool writes it out as a string; as an id it would become a real item or user.
PLACEHOLDER_IDS_REGEX = r"(?i)^\s*(?:<na>|na|n/a|nan|nat|none|null|undefined)\s*$"


class ContractViolation(SidrecError, ValueError):
    """A file or batch that breaks the data contract.

    str(exc) is one line (what, where: file and source rows, how to fix) because the CLI prints exactly that;
    anything longer (example rows) goes in `details`. ValueError stays a base so older `except ValueError` code
    keeps catching it.
    """

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(" ".join(message.splitlines()))
        self.details = details


def missing_columns(columns: list[str], kind: str) -> list[str]:
    expected = CATALOG_COLUMNS if kind == "catalog" else EVENTS_COLUMNS
    return [c for c in expected if c not in columns]

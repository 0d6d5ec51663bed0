"""Vendor ../shared/datasets/amazon-industrial into data/amazon-industrial in sidrec's data contract.

Why a script: the vendored files must be reproducible from the source. The source catalog has no
`updated_at` and the events have no `event_type`; we add them here (updated_at = the item's first
interaction, the time it was first seen; event_type = "purchase", since every row is a verified review).
ids become strings, as the contract wants. Split files are copied unchanged (ids as strings).
"""

from __future__ import annotations

import gzip
import json
import shutil
import sys
from pathlib import Path

import pandas as pd

SRC = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/datasets/amazon-industrial")
DST = Path(sys.argv[2] if len(sys.argv) > 2 else "data/amazon-industrial")


def _gz_write(path: Path, text: str) -> None:
    # mtime=0 keeps the archives byte-identical across runs.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write(text.encode("utf-8"))


def main() -> None:
    DST.mkdir(parents=True, exist_ok=True)
    events = pd.read_csv(SRC / "events.csv", dtype={"user_id": str, "item_id": str})
    first_seen = events.groupby("item_id")["event_timestamp"].min()
    lines = []
    with open(SRC / "items.jsonl") as f:
        for line in f:
            row = json.loads(line)
            iid = str(row["item_id"])
            row["item_id"] = iid
            row["updated_at"] = first_seen.get(iid, events["event_timestamp"].min())
            lines.append(json.dumps(row, ensure_ascii=False))
    _gz_write(DST / "catalog.jsonl.gz", "\n".join(lines) + "\n")

    events["event_type"] = "purchase"
    events = events[["user_id", "item_id", "event_timestamp", "event_type", "split"]]
    _gz_write(DST / "events.csv.gz", events.to_csv(index=False))

    for split in ("train", "valid", "test"):
        out = []
        with open(SRC / f"{split}.jsonl") as f:
            for line in f:
                row = json.loads(line)
                row["history"] = [str(i) for i in row["history"]]
                row["target"] = str(row["target"])
                out.append(json.dumps(row))
        _gz_write(DST / f"{split}.jsonl.gz", "\n".join(out) + "\n")
    shutil.copy(SRC / "README.md", DST / "SOURCE_README.md")
    print(f"vendored {len(lines)} items, {len(events)} events into {DST}")


if __name__ == "__main__":
    main()

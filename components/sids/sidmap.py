"""The Semantic ID map: item_id <-> SID codes, the one structure every later step shares.

A SID is a fixed-length tuple of codes, one per level; every item has the same number of levels, so decoding
always takes exactly `n_levels` steps. How a SID is written for the LLM (its tokens) is the model's language and
lives in components.runtime.language; this map knows only codes.

Retired items (gone from the catalog) keep their codes in the map: they are still evidence of taste in a user's
history (prompts show them), but they are never recommended (the trie and every served stage leave them out),
and their codes stay reserved so that no new item takes a code a cached answer could still mean.

Versions: a build is "sid-<settings hash>-<codes digest>"; a refresh of it (new items coded with the same
codebooks, existing items keeping their codes) is "<build version>.r<digest>". Maps of one lineage (a build and
its refreshes) agree on every code they share, so a model trained on one decodes with any other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from components.errors import SidrecError


class SidMapError(SidrecError):
    """A SID map directory that is missing, incomplete or unreadable."""


@dataclass
class SidMap:
    """item_id -> SID codes, plus the codebook sizes and the version that produced them."""

    item_ids: list[str]
    codes: np.ndarray  # int64 [n_items, n_levels], rows unique
    codebook_sizes: list[int]  # per level; vocabulary tokens exist for codes 0..size-1
    version: str
    meta: dict = field(default_factory=dict)
    # per level [codebook_size, dim] centroids of the build (when loaded from a build directory): what a code
    # means in embedding space, e.g. to initialise its LLM token (TrainConfig.sid_init = "codebook")
    codebooks: list[np.ndarray] | None = field(default=None, compare=False, repr=False)
    retired: frozenset[str] = field(default_factory=frozenset)  # in the map (prompts), never recommended

    def __post_init__(self) -> None:
        self.retired = frozenset(self.retired)
        if not self.retired <= set(self.item_ids):
            raise ValueError("retired items must be items of the map")
        self.codes = np.asarray(self.codes, dtype=np.int64)
        if self.codes.ndim != 2 or self.codes.shape[0] != len(self.item_ids):
            raise ValueError(f"codes shape {self.codes.shape} does not match {len(self.item_ids)} items")
        if self.codes.shape[1] != len(self.codebook_sizes):
            raise ValueError("one codebook size per level is required")
        self._index = {iid: i for i, iid in enumerate(self.item_ids)}
        self._by_codes = {tuple(row): self.item_ids[i] for i, row in enumerate(self.codes.tolist())}

    @property
    def n_levels(self) -> int:
        return self.codes.shape[1]

    def __len__(self) -> int:
        return len(self.item_ids)

    def n_collisions(self) -> int:
        """Items sharing a SID with an earlier item (must be 0 for a published map)."""
        return len(self.item_ids) - len(self._by_codes)

    def codes_of(self, item_id: str) -> tuple[int, ...]:
        return tuple(int(c) for c in self.codes[self._index[item_id]])

    def item_of(self, codes: tuple[int, ...] | list[int]) -> str | None:
        """The item with exactly these codes, or None for an invalid SID."""
        return self._by_codes.get(tuple(int(c) for c in codes))

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    def servable(self, item_id: str) -> bool:
        """An item that may be recommended: in the map and not retired."""
        return item_id in self._index and item_id not in self.retired

    @property
    def lineage(self) -> str:
        return lineage(self.version)

    def active(self) -> SidMap:
        """The map of the items that may be recommended (what the trie is built from)."""
        if not self.retired:
            return self
        keep = [i for i, item in enumerate(self.item_ids) if item not in self.retired]
        return SidMap([self.item_ids[i] for i in keep], self.codes[keep], self.codebook_sizes, self.version, self.meta)

    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame({"item_id": self.item_ids})
        for level in range(self.n_levels):
            frame[f"c{level}"] = self.codes[:, level]
        frame["retired"] = [item in self.retired for item in self.item_ids]
        return frame

    def save(self, directory: str | Path) -> Path:
        """Write sid_map.parquet + sid_map.json into `directory` (a local staging dir to publish)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.to_frame().to_parquet(directory / "sid_map.parquet", index=False)
        header = {"version": self.version, "codebook_sizes": self.codebook_sizes, "meta": self.meta}
        (directory / "sid_map.json").write_text(json.dumps(header, indent=2, default=str))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> SidMap:
        directory = Path(directory)
        missing = [n for n in ("sid_map.json", "sid_map.parquet") if not (directory / n).exists()]
        if missing:
            raise SidMapError(
                f"{directory}: not a SID map (missing {', '.join(missing)}); build one with `sidrec sids build`"
            )
        try:
            header = json.loads((directory / "sid_map.json").read_text())
            frame = pd.read_parquet(directory / "sid_map.parquet")
        except (ValueError, OSError) as exc:
            raise SidMapError(f"{directory}: unreadable SID map ({exc}); rebuild it with `sidrec sids build`") from exc
        n_levels = len(header["codebook_sizes"])
        codes = frame[[f"c{i}" for i in range(n_levels)]].to_numpy(dtype=np.int64)
        item_ids = frame["item_id"].astype(str).tolist()
        retired = frame["retired"].astype(bool).tolist() if "retired" in frame else [False] * len(item_ids)
        return cls(
            item_ids=item_ids,
            codes=codes,
            codebook_sizes=list(header["codebook_sizes"]),
            version=header["version"],
            meta=header.get("meta", {}),
            codebooks=_load_codebooks(directory / "codebooks", n_levels),
            retired=frozenset(i for i, r in zip(item_ids, retired, strict=True) if r),
        )


def _load_codebooks(books: Path, n_levels: int) -> list[np.ndarray] | None:
    files = [books / f"level_{level}.npy" for level in range(n_levels)]
    return [np.load(f) for f in files] if all(f.exists() for f in files) else None


def lineage(version: str) -> str:
    """The build a SID version belongs to: a refresh "<build>.r<digest>" belongs to <build>."""
    return version.split(".r", 1)[0]

"""The Semantic ID map: item_id <-> SID codes, the one structure every later step shares.

A SID is a fixed-length tuple of codes, one per level, written as tokens "<a_12><b_200><c_7>" with no spaces
(a space would become an extra token). Every item has the same number of levels, so decoding always takes
exactly `n_levels` steps. Level letters start at 'a'.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

LEVEL_LETTERS = "abcdefgh"
_TOKEN_RE = re.compile(r"<([a-h])_(\d+)>")


def sid_token(level: int, code: int) -> str:
    """The vocabulary token for `code` at `level` (0-based)."""
    return f"<{LEVEL_LETTERS[level]}_{int(code)}>"


def sid_string(codes: tuple[int, ...] | list[int] | np.ndarray) -> str:
    """Codes -> "<a_1><b_2><c_3>"."""
    return "".join(sid_token(level, code) for level, code in enumerate(codes))


def parse_sid(text: str) -> tuple[int, ...]:
    """ "<a_1><b_2><c_3>" -> (1, 2, 3); raises ValueError on anything that is not a well-formed SID."""
    matches = list(_TOKEN_RE.finditer(text))
    if not matches or "".join(m.group(0) for m in matches) != text.strip():
        raise ValueError(f"not a SID string: {text!r}")
    for level, m in enumerate(matches):
        if m.group(1) != LEVEL_LETTERS[level]:
            raise ValueError(f"SID level {level} has letter {m.group(1)!r} in {text!r}")
    return tuple(int(m.group(2)) for m in matches)


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

    def __post_init__(self) -> None:
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

    def sid_of(self, item_id: str) -> str:
        return sid_string(self.codes[self._index[item_id]])

    def item_of(self, codes: tuple[int, ...] | list[int]) -> str | None:
        """The item with exactly these codes, or None for an invalid SID."""
        return self._by_codes.get(tuple(int(c) for c in codes))

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    def all_tokens(self) -> list[str]:
        """Every SID token of every level (the tokens added to the LLM vocabulary)."""
        return [sid_token(lv, c) for lv, size in enumerate(self.codebook_sizes) for c in range(size)]

    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame({"item_id": self.item_ids, "sid": [sid_string(r) for r in self.codes]})
        for level in range(self.n_levels):
            frame[f"c{level}"] = self.codes[:, level]
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
        header = json.loads((directory / "sid_map.json").read_text())
        frame = pd.read_parquet(directory / "sid_map.parquet")
        n_levels = len(header["codebook_sizes"])
        codes = frame[[f"c{i}" for i in range(n_levels)]].to_numpy(dtype=np.int64)
        return cls(
            item_ids=frame["item_id"].astype(str).tolist(),
            codes=codes,
            codebook_sizes=list(header["codebook_sizes"]),
            version=header["version"],
            meta=header.get("meta", {}),
            codebooks=_load_codebooks(directory / "codebooks", n_levels),
        )


def _load_codebooks(books: Path, n_levels: int) -> list[np.ndarray] | None:
    files = [books / f"level_{level}.npy" for level in range(n_levels)]
    return [np.load(f) for f in files] if all(f.exists() for f in files) else None

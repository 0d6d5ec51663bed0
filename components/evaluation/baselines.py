"""Baselines scored by the same protocol as the generative model: most-popular, last-item Markov, SASRec.

SASRec here is the self-attentive sequential recommender trained with a full softmax over all items
(cross-entropy), which is the strong variant; it is selected on valid by its best epoch.
"""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pandas as pd
import torch
from torch import nn

from components.data.splits import fit_split, load_splits
from components.metrics import hit_rate_ndcg
from components.runtime.transitions import TransitionTable


def _targets_and_histories(examples: pd.DataFrame) -> list[list[str]]:
    return [list(h) + [t] for h, t in zip(examples["history"], examples["target"], strict=True)]


class MostPopular:
    name = "most-popular"

    def fit(self, train: pd.DataFrame) -> MostPopular:
        counts = Counter()
        for seq in _targets_and_histories(train):
            counts.update(seq)
        self.ranking = [i for i, _ in counts.most_common()]
        return self

    def recommend(self, histories: list[list[str]], k: int) -> list[list[str]]:
        return [self.ranking[:k] for _ in histories]


class LastItemMarkov:
    """P(next | last item) from transition counts, backed off to popularity to fill k slots."""

    name = "last-item Markov"

    def fit(self, train: pd.DataFrame) -> LastItemMarkov:
        # the same table the served hybrid blends with (decoding.transitions)
        self.table = TransitionTable.from_examples(train["history"], train["target"])
        self.popular = MostPopular().fit(train).ranking
        return self

    def recommend(self, histories: list[list[str]], k: int) -> list[list[str]]:
        out = []
        for history in histories:
            successors = Counter(self.table.successors.get(history[-1], {})) if history else Counter()
            ranked = [i for i, _ in successors.most_common(k)]
            for item in self.popular:
                if len(ranked) >= k:
                    break
                if item not in ranked:
                    ranked.append(item)
            out.append(ranked)
        return out


class _SASRecNet(nn.Module):
    def __init__(self, n_items: int, dim: int, layers: int, heads: int, max_len: int, dropout: float) -> None:
        super().__init__()
        self.items = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.pos = nn.Embedding(max_len, dim)
        block = nn.TransformerEncoderLayer(dim, heads, dim * 2, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, seqs: torch.Tensor) -> torch.Tensor:
        """seqs [B, L] right-aligned item indices (0 = pad) -> logits over items [B, n_items + 1]."""
        length = seqs.shape[1]
        real = (seqs > 0).unsqueeze(-1).float()
        x = self.drop((self.items(seqs) * self.items.embedding_dim**0.5 + self.pos(torch.arange(length))) * real)
        # sequences are right-aligned, so under the causal mask the last position sees every real item; pads
        # are zero vectors (a key-padding mask would leave fully masked pad rows = NaN)
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool), 1)
        h = self.norm(self.encoder(x, mask=causal))
        return h[:, -1] @ self.items.weight.T


class SASRec:
    """SASRec with full-softmax cross-entropy over all items."""

    name = "SASRec (full softmax)"

    def __init__(
        self,
        dim: int = 64,
        layers: int = 2,
        heads: int = 2,
        max_len: int = 10,
        dropout: float = 0.2,
        epochs: int = 30,
        lr: float = 3e-3,
        batch_size: int = 128,
        seed: int = 0,
    ) -> None:
        self.params = dict(dim=dim, layers=layers, heads=heads, max_len=max_len, dropout=dropout)
        self.epochs, self.lr, self.batch_size, self.seed = epochs, lr, batch_size, seed

    def _encode(self, histories: list[list[str]]) -> torch.Tensor:
        length = self.params["max_len"]
        out = torch.zeros((len(histories), length), dtype=torch.long)
        for r, h in enumerate(histories):
            ids = [self.index[i] for i in h if i in self.index][-length:]
            if ids:
                out[r, length - len(ids) :] = torch.tensor(ids)
        return out

    def fit(
        self, train: pd.DataFrame, valid: pd.DataFrame | None = None, catalog_ids: list[str] | None = None
    ) -> SASRec:
        torch.manual_seed(self.seed)
        ids = sorted(set(catalog_ids or []) | {i for s in _targets_and_histories(train) for i in s})
        self.index = {iid: n + 1 for n, iid in enumerate(ids)}
        self.ids = ["<pad>", *ids]
        self.net = _SASRecNet(len(ids), **self.params)
        x = self._encode([list(h) for h in train["history"]])
        y = torch.tensor([self.index[t] for t in train["target"]])
        optim = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        best, best_state, self.curve = -1.0, None, []
        t0 = time.perf_counter()
        for _epoch in range(self.epochs):
            self.net.train()
            perm = torch.randperm(len(x))
            for start in range(0, len(x), self.batch_size):
                idx = perm[start : start + self.batch_size]
                logits = self.net(x[idx])
                logits[:, 0] = float("-inf")
                loss = nn.functional.cross_entropy(logits, y[idx])
                optim.zero_grad()
                loss.backward()
                optim.step()
            if valid is not None:
                score = hit_rate_ndcg(
                    self.recommend([list(h) for h in valid["history"]], 10), valid["target"].tolist(), [10]
                )["NDCG@10"]
                self.curve.append(score)
                if score > best:
                    best, best_state = score, {k: v.clone() for k, v in self.net.state_dict().items()}
        if best_state is not None:
            self.net.load_state_dict(best_state)
            self.best_epoch = int(np.argmax(self.curve)) + 1
        self.train_seconds = time.perf_counter() - t0
        return self

    @torch.inference_mode()
    def recommend(self, histories: list[list[str]], k: int) -> list[list[str]]:
        self.net.eval()
        out = []
        for start in range(0, len(histories), 512):
            logits = self.net(self._encode(histories[start : start + 512]))
            logits[:, 0] = float("-inf")
            top = logits.topk(k, dim=-1).indices
            out += [[self.ids[i] for i in row] for row in top.tolist()]
        return out


def score_baselines(
    splits: dict[str, pd.DataFrame] | str,
    split: str,
    ks: list[int],
    catalog_ids: list[str] | None = None,
    sasrec_epochs: int | None = None,
) -> dict[str, dict]:
    """Fit each baseline (train for valid; train + valid for test) and score it on `split`.

    SASRec's epoch count is selected on valid; pass the selected count (`sasrec_epochs`) when scoring test so it
    is not selected twice."""
    splits = load_splits(splits) if isinstance(splits, str) else splits
    fit = fit_split(splits, split)
    target = splits[split]
    histories = [list(h) for h in target["history"]]
    out = {}
    for model in (MostPopular(), LastItemMarkov(), SASRec()):
        t0 = time.perf_counter()
        if isinstance(model, SASRec):
            if split == "test" and sasrec_epochs:
                model = SASRec(epochs=sasrec_epochs).fit(fit, None, catalog_ids)
            else:
                model.fit(splits["train"], splits["valid"], catalog_ids)
                if split == "test":
                    model = SASRec(epochs=model.best_epoch).fit(fit, None, catalog_ids)
        else:
            model.fit(fit)
        seconds = time.perf_counter() - t0
        metrics = hit_rate_ndcg(model.recommend(histories, max(ks)), target["target"].tolist(), ks)
        metrics.update({"invalid_rate": 0.0, "train_seconds": round(seconds, 1)})
        if isinstance(model, SASRec):
            metrics["epochs"] = getattr(model, "best_epoch", model.epochs)
        out[model.name] = metrics
    return out

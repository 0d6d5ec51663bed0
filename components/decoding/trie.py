"""The SID trie as tensors: which code may follow which prefix, with no Python per beam at decode time.

Level l has one node per distinct SID prefix of length l (the root is the only level-0 node). For each level:
`allowed[l]` [n_nodes_l, K] says which codes may follow a node, `child[l]` [n_nodes_l, K] gives the child
node id. After the last level a node id is an item index into `item_ids`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from components.sids.sidmap import SidMap, sid_token


@dataclass
class SidTrie:
    level_token_ids: torch.Tensor  # [L, K] vocabulary id of code k at level l
    allowed: list[torch.Tensor]  # per level [n_nodes, K] bool
    child: list[torch.Tensor]  # per level [n_nodes, K] int64 (-1 where not allowed)
    leaf_item: torch.Tensor  # [n_items] index into item_ids, by last-level node id
    item_ids: list[str]
    prefix_nodes: list[dict[tuple[int, ...], int]]  # per level: prefix tuple -> node id
    level_sizes: list[int]  # codes per level (level_token_ids is 0-padded beyond)

    @property
    def n_levels(self) -> int:
        return self.level_token_ids.shape[0]

    @classmethod
    def from_sidmap(cls, sidmap: SidMap, tokenizer) -> SidTrie:
        n_levels, width = sidmap.n_levels, max(sidmap.codebook_sizes)
        token_ids = torch.zeros((n_levels, width), dtype=torch.long)
        for level, size in enumerate(sidmap.codebook_sizes):
            ids = tokenizer.convert_tokens_to_ids([sid_token(level, c) for c in range(size)])
            if any(i is None or i == tokenizer.unk_token_id for i in ids):
                raise ValueError("the tokenizer lacks SID tokens: run components.model.vocab.add_sid_tokens first")
            token_ids[level, :size] = torch.tensor(ids)
        codes = sidmap.codes
        prefix_nodes: list[dict[tuple[int, ...], int]] = [{(): 0}]
        for level in range(1, n_levels + 1):
            prefixes = sorted({tuple(r) for r in codes[:, :level].tolist()})
            prefix_nodes.append({p: i for i, p in enumerate(prefixes)})
        allowed, child = [], []
        for level in range(n_levels):
            parents, children = prefix_nodes[level], prefix_nodes[level + 1]
            a = torch.zeros((len(parents), width), dtype=torch.bool)
            c = torch.full((len(parents), width), -1, dtype=torch.long)
            for prefix, node in children.items():
                parent = parents[prefix[:-1]]
                a[parent, prefix[-1]] = True
                c[parent, prefix[-1]] = node
            allowed.append(a)
            child.append(c)
        leaves = prefix_nodes[n_levels]
        leaf_item = torch.full((len(leaves),), -1, dtype=torch.long)
        for index, row in enumerate(codes.tolist()):
            leaf_item[leaves[tuple(row)]] = index
        return cls(
            token_ids, allowed, child, leaf_item, list(sidmap.item_ids), prefix_nodes, list(sidmap.codebook_sizes)
        )

    def to(self, device) -> SidTrie:
        """Move the mask/lookup tensors (e.g. to the GPU Triton instance's device)."""
        self.level_token_ids = self.level_token_ids.to(device)
        self.allowed = [a.to(device) for a in self.allowed]
        self.child = [c.to(device) for c in self.child]
        self.leaf_item = self.leaf_item.to(device)
        return self

    def node_of(self, prefix: tuple[int, ...]) -> int | None:
        return self.prefix_nodes[len(prefix)].get(tuple(int(c) for c in prefix))

    def prefix_mask(self, prefixes: list[tuple[int, ...]] | None) -> torch.Tensor | None:
        """[n_nodes_at_depth, ...] is not needed: returns the set of allowed node ids at depth len(prefix)."""
        if not prefixes:
            return None
        nodes = [self.node_of(p) for p in prefixes]
        return torch.tensor(sorted({n for n in nodes if n is not None}), dtype=torch.long)

    def codes_of_node(self, level: int) -> np.ndarray:
        """[n_nodes, level] prefix codes of each node id at depth `level`."""
        out = np.zeros((len(self.prefix_nodes[level]), level), dtype=np.int64)
        for prefix, node in self.prefix_nodes[level].items():
            out[node] = prefix
        return out

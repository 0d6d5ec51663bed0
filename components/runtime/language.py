"""The model's language: how SIDs are written as tokens, the prompt, think-ahead prefixes, and the trie.

Everything that turns items into text the LLM reads, and the LLM's tokens back into items, lives here, so
training, evaluation, think-ahead, Triton and the client cannot drift apart.

- A SID is written as one token per level, "<a_12><b_200><c_7>", with no spaces (a space would become an extra
  token). Level letters start at 'a'. The tokens are added to the vocabulary as special tokens
  (training.vocab.add_sid_tokens), so "<a_12>" never splits.
- The prompt: history SIDs concatenated with no separator (each SID token names its level, so item boundaries
  are unambiguous); the answer (the target SID, or with reasoning " <think> ... </think>" then the SID) follows
  "Next:". Titles, a runtime context line (as PLUM puts in the prompt) and a hint line (the recent items' most
  frequent successors in the training data, runtime.transitions) are optional.
- A think-ahead prefix is the first codes of a SID, stored and sent as text "12_7" (encode_prefix /
  decode_prefix: the one encoding, used by the think-ahead job, the online store, the client and Triton).
- SidTrie: which code may follow which prefix, as tensors, so constrained decoding needs no Python per beam.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from components.sids.sidmap import SidMap

LEVEL_LETTERS = "abcdefgh"
ITEM_TOKEN_PREFIX = "<i_"  # "<i_N>": outside the SID letters, so parse_sid never reads one
_TOKEN_RE = re.compile(r"<([a-h])_(\d+)>")
ANSWER = "\nNext:"
THINK, END_THINK = " <think>", " </think>"
THINK_TOKENS = ("<think>", "</think>")
PREFIX_SEPARATOR = "_"


# -- SID tokens ----------------------------------------------------------------------------------------------
def sid_token(level: int, code: int) -> str:
    """The vocabulary token for `code` at `level` (0-based)."""
    return f"<{LEVEL_LETTERS[level]}_{int(code)}>"


def sid_text(codes: Sequence[int] | np.ndarray) -> str:
    """Codes -> "<a_1><b_2><c_3>"."""
    return "".join(sid_token(level, code) for level, code in enumerate(codes))


def sid_of(sidmap: SidMap, item_id: str) -> str:
    """The SID text of an item of `sidmap`."""
    return sid_text(sidmap.codes_of(item_id))


def parse_sid(text: str) -> tuple[int, ...]:
    """ "<a_1><b_2><c_3>" -> (1, 2, 3); ValueError on anything that is not a well-formed SID."""
    matches = list(_TOKEN_RE.finditer(text))
    if not matches or "".join(m.group(0) for m in matches) != text.strip():
        raise ValueError(f"not a SID string: {text!r}")
    for level, m in enumerate(matches):
        if m.group(1) != LEVEL_LETTERS[level]:
            raise ValueError(f"SID level {level} has letter {m.group(1)!r} in {text!r}")
    return tuple(int(m.group(2)) for m in matches)


def item_token(index: int) -> str:
    """The input-only token of the item at `index` of a model's item token list (TrainConfig.item_tokens)."""
    return f"{ITEM_TOKEN_PREFIX}{int(index)}>"


def item_token_map(items: Sequence[str]) -> dict[str, str]:
    """{item id: its token} for a model's item token list (item_tokens.json), in list order."""
    return {str(item): item_token(index) for index, item in enumerate(items)}


def sid_tokens(codebook_sizes: Sequence[int]) -> list[str]:
    """Every SID token of every level: the tokens a model of this map has in its vocabulary."""
    return [sid_token(lv, c) for lv, size in enumerate(codebook_sizes) for c in range(size)]


def sid_token_ids(tokenizer, sidmap: SidMap) -> torch.Tensor:
    """[n_levels, max codebook size] token id of each (level, code); -1 where a level has fewer codes.

    A tokenizer without the SID tokens is an error: the model was not extended for this map."""
    table = torch.full((sidmap.n_levels, max(sidmap.codebook_sizes)), -1, dtype=torch.long)
    unknown = tokenizer.unk_token_id
    for level, size in enumerate(sidmap.codebook_sizes):
        ids = tokenizer.convert_tokens_to_ids([sid_token(level, c) for c in range(size)])
        if any(i is None or (unknown is not None and i == unknown) for i in ids):
            raise ValueError("the tokenizer lacks SID tokens: extend it with training.vocab.add_sid_tokens first")
        table[level, :size] = torch.tensor(ids)
    return table


# -- prompt --------------------------------------------------------------------------------------------------
def format_prompt(
    history: Sequence[str],
    sidmap: SidMap,
    titles: dict[str, str] | None = None,
    context: str | None = None,
    max_title_chars: int = 40,
    hints: Sequence[str] | None = None,
    item_tokens: Mapping[str, str] | None = None,
) -> str:
    """The prompt for the next item after `history` (oldest first); items outside the map are skipped.

    `hints`: item ids written as a line of SIDs before the history ("Often next: ..."), e.g. the recent
    items' most frequent successors (TransitionTable.top_successors); the model learns when to copy one. An empty or
    None list writes no line, so a prompt without hints is the plain one. `item_tokens` ({item id: token},
    item_token_map): a history item that has one is written as its SID followed by its own token."""
    parts = []
    for item in history:
        if item not in sidmap:
            continue
        sid = sid_of(sidmap, item)
        if item_tokens and str(item) in item_tokens:
            sid += item_tokens[str(item)]
        parts.append(f'{sid} "{titles[item][:max_title_chars]}"' if titles and item in titles else sid)
    joiner = "; " if titles else ""
    head = f"{context}\n" if context else ""
    hinted = [sid_of(sidmap, item) for item in hints or () if item in sidmap]
    if hinted:
        head += f"Often next: {''.join(hinted)}\n"
    return f"{head}User bought: {joiner.join(parts)}{ANSWER}"


def reasoning_answer(rationale: str, target_sid: str) -> str:
    """What a reasoning model writes after the prompt: its rationale between the think markers, then the SID."""
    return f"{THINK} {rationale}{END_THINK}{target_sid}"


# -- think-ahead prefixes ------------------------------------------------------------------------------------
def encode_prefix(codes: Sequence[int]) -> str:
    """(12, 7) -> "12_7": how a SID prefix is stored (parquet, online store) and sent (Triton)."""
    return PREFIX_SEPARATOR.join(str(int(c)) for c in codes)


def decode_prefix(text: str | bytes) -> tuple[int, ...]:
    """ "12_7" -> (12, 7); ValueError naming the text for anything else."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    parts = text.strip().split(PREFIX_SEPARATOR)
    if not text.strip() or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a SID prefix: {text!r} (expected codes joined by '{PREFIX_SEPARATOR}', e.g. '12_7')")
    return tuple(int(p) for p in parts)


# -- trie ----------------------------------------------------------------------------------------------------
@dataclass
class SidTrie:
    """Level l has one node per distinct SID prefix of length l (the root is the only level-0 node).

    `allowed[l]` [n_nodes_l, K] says which codes may follow a node, `child[l]` [n_nodes_l, K] gives the child node
    id; after the last level a node id maps to an item index into `item_ids` through `leaf_item`."""

    level_token_ids: torch.Tensor  # [L, K] vocabulary id of code k at level l (0 beyond a level's size)
    allowed: list[torch.Tensor]  # per level [n_nodes, K] bool
    child: list[torch.Tensor]  # per level [n_nodes, K] int64 (-1 where not allowed)
    leaf_item: torch.Tensor  # [n_items] index into item_ids, by last-level node id
    item_ids: list[str]
    prefix_nodes: list[dict[tuple[int, ...], int]]  # per level: prefix tuple -> node id
    level_sizes: list[int]  # codes per level

    @property
    def n_levels(self) -> int:
        return self.level_token_ids.shape[0]

    @classmethod
    def from_sidmap(cls, sidmap: SidMap, tokenizer) -> SidTrie:
        """The trie of the items that may be recommended (a map's retired items are left out)."""
        token_ids = sid_token_ids(tokenizer, sidmap).clamp(min=0)
        n_levels, width = token_ids.shape
        sidmap = sidmap.active()
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
        """Move the mask/lookup tensors (e.g. to a GPU Triton instance's device)."""
        self.level_token_ids = self.level_token_ids.to(device)
        self.allowed = [a.to(device) for a in self.allowed]
        self.child = [c.to(device) for c in self.child]
        self.leaf_item = self.leaf_item.to(device)
        return self

    def node_of(self, prefix: Sequence[int]) -> int | None:
        """The node id of a prefix, or None when no item of the map starts with it."""
        if len(prefix) >= len(self.prefix_nodes):
            return None
        return self.prefix_nodes[len(prefix)].get(tuple(int(c) for c in prefix))


def prefix_trie(sidmap: SidMap, tokenizer, levels: int) -> SidTrie:
    """A trie over the distinct `levels`-long SID prefixes of the map (same tokens as the full SIDs): what the
    think-ahead job decodes."""
    prefixes = np.array(sorted({tuple(r[:levels]) for r in sidmap.codes.tolist()}), dtype=np.int64)
    pmap = SidMap([encode_prefix(p) for p in prefixes], prefixes, sidmap.codebook_sizes[:levels], sidmap.version)
    return SidTrie.from_sidmap(pmap, tokenizer)

"""Training texts for the three tasks, as (prompt, completion) pairs; the loss is on the completion only.

1. next-item: the shared history prompt -> the target's SID (what serving asks); optionally also with the
   history cut to its last items (suffix crops), or with an item bought later than the next (future targets).
2. alignment: SID -> title and title -> SID (ties the new tokens to the language the LLM knows).
3. behaviour: "The user bought <sid> "title", then <sid> "title" ..." (empty prompt: every token is learnt).
Task sizes follow the configured weights, relative to the number of next-item examples.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from components.config import TrainConfig
from components.runtime.content import ContentIndex
from components.runtime.context import context_texts, contexts_of
from components.runtime.language import format_prompt, parse_sid, sid_of, sid_token
from components.runtime.transitions import TransitionTable
from components.sids.sidmap import SidMap

HintFn = Callable[[Sequence[str], str], list[str]]  # (history, target) -> the item ids of the row's hint line


def next_item_examples(
    examples: pd.DataFrame,
    sidmap: SidMap,
    titles: dict[str, str] | None = None,
    context: bool = False,
    hints: HintFn | None = None,
    item_tokens: Mapping[str, str] | None = None,
) -> list[tuple[str, str]]:
    """The served prompt of each example -> its target's SID; with `context`, the prompt carries the example's
    request context (runtime.context.contexts_of: its event time and the user's last event time before it);
    with `hints`, its hint line (training_hints); with `item_tokens`, its items' own tokens."""
    lines = context_texts(contexts_of(examples) if context else None, len(examples))
    out = []
    for row, line in zip(examples.itertuples(index=False), lines, strict=True):
        if row.target not in sidmap:
            continue
        history = list(row.history)
        hinted = hints(history, str(row.target)) if hints is not None else None
        prompt = format_prompt(history, sidmap, titles, line, hints=hinted, item_tokens=item_tokens)
        out.append((prompt, sid_of(sidmap, row.target)))
    return out


def item_token_items(examples: pd.DataFrame, sidmap: SidMap, min_users: int) -> list[str]:
    """The items that get their own prompt token (TrainConfig.item_tokens), sorted: those in the training
    histories of at least `min_users` users (items of `sidmap` only). Why users, not rows: a user's rows repeat
    the history, so an item counts once per user that read it; a token only learns from prompts it is in, so
    an item seen only as a target gets none. Empty for min_users 0 (off)."""
    if min_users <= 0 or not len(examples):
        return []
    users = examples["user_id"].astype(str) if "user_id" in examples else pd.Series(range(len(examples)))
    readers: dict[str, set[str]] = {}
    for user, history in zip(users, examples["history"], strict=True):
        for item in history:
            readers.setdefault(str(item), set()).add(user)
    return sorted(item for item, who in readers.items() if len(who) >= min_users and item in sidmap)


SoftTargets = dict[tuple[str, str], list[dict[str, float]]]


Teacher = Callable[[list[str], str], Mapping[str, float]]  # (history, target) -> weights on other items


def count_teacher(examples: pd.DataFrame, sidmap: SidMap) -> Teacher:
    """The last item's successors among `examples` (TransitionTable), the row's own transition left out so that
    the teacher never just repeats the label. Why: the generator alone ranked worse than counting last-item
    transitions, and a one-hot target teaches one successor per row where the counts know several."""
    rows = examples[examples["target"].astype(str).map(lambda t: t in sidmap)]
    table = TransitionTable.from_examples(rows["history"], rows["target"].astype(str))

    def teach(history: list[str], target: str) -> Mapping[str, float]:
        return table.other_successors(str(history[-1]) if len(history) else None, target)

    return teach


def content_teacher(index: ContentIndex, neighbours: int = 20) -> Teacher:
    """The `neighbours` catalog items nearest in content to the history (runtime.content: the newest purchase
    counts most), weighted by their similarity; the history's items and the target left out.

    Why: on 85% of the valid rows no count leads from the history to the target (docs/benchmark.md, segments),
    and there the generator finds the target in its top 10 for 3% of the rows where the history's nearest items
    in content do for 6-7%. The SIDs hold content only as a share of their codes, and a 2-layer model learns
    from ~10k rows which items follow which; this teacher tells it, on every row, which items are like the ones
    the user bought."""

    def teach(history: list[str], target: str) -> Mapping[str, float]:
        return dict(index.neighbours(history, neighbours, exclude=[target]))

    return teach


def distilled_soft_targets(
    examples: pd.DataFrame,
    sidmap: SidMap,
    teachers: Sequence[tuple[Teacher, float]],
    titles: dict[str, str] | None = None,
    context: bool = False,
    hints: HintFn | None = None,
    item_tokens: Mapping[str, str] | None = None,
) -> SoftTargets:
    """Distillation targets for the next-item pairs of `examples` (as next_item_examples writes them):
    {(prompt, completion): one {SID token: weight} per SID level}; each (teacher, share) adds `share` to a level.

    A teacher's mass at level l is taken over its items that share the target's first l codes (what the model
    conditions on under teacher forcing), normalised, and given `share` of the level's target. A level where the
    teacher has no such item gets nothing from it (the pair keeps the one-hot target there); rows no teacher
    knows anything about are absent.
    """
    teachers = [(teach, share) for teach, share in teachers if share > 0]
    if not teachers or not len(examples):
        return {}
    rows = examples[examples["target"].astype(str).map(lambda t: t in sidmap)]
    targets = rows["target"].astype(str)
    pairs = next_item_examples(rows, sidmap, titles, context, hints, item_tokens)
    out: SoftTargets = {}
    for pair, history, target in zip(pairs, rows["history"], targets, strict=True):
        if pair in out:
            continue
        gold = sidmap.codes_of(target)
        levels: list[dict[str, float]] = [{} for _ in range(sidmap.n_levels)]
        for teach, share in teachers:
            weights = {item: w for item, w in teach(list(history), target).items() if item in sidmap and w > 0}
            for level in range(sidmap.n_levels):
                mass: dict[str, float] = {}
                for item, w in weights.items():
                    codes = sidmap.codes_of(item)
                    if codes[:level] == gold[:level]:
                        token = sid_token(level, codes[level])
                        mass[token] = mass.get(token, 0.0) + w
                total = sum(mass.values())
                for token, m in mass.items():
                    levels[level][token] = levels[level].get(token, 0.0) + share * m / total
        if any(levels):
            out[pair] = levels
    return out


def sibling_soft_targets(pairs: Sequence[tuple[str, str]], sidmap: SidMap, share: float) -> SoftTargets:
    """Sibling smoothing targets, in distilled_soft_targets' form, for the training pairs whose completion is a SID:
    at SID level l >= 1, `share` of the target moves onto the level's codes of the catalog's other items that
    share the target's first l codes, in proportion to how many items each code leads to.

    Why: most valid rows have no count path from the history to the target (docs/benchmark.md, segments), and
    there the model can only generalise by the SID's content + collaborative prefix; uniform label smoothing
    spreads its mass over all of a level's codes, most of which are no item under the target's prefix, where
    this spreads it over the target's neighbours. Level 0 is left to label smoothing (every item shares the
    empty prefix); a level where the target has no sibling keeps the one-hot target.
    """
    if share <= 0:
        return {}
    children: dict[tuple[int, ...], dict[int, int]] = {}
    for row in sidmap.codes.tolist():
        for level in range(1, sidmap.n_levels):
            below = children.setdefault(tuple(row[:level]), {})
            below[row[level]] = below.get(row[level], 0) + 1
    out: SoftTargets = {}
    for prompt, completion in pairs:
        try:
            gold = parse_sid(completion)
        except ValueError:  # a text completion (a title): nothing to smooth over
            continue
        levels: list[dict[str, float]] = [{}]
        for level in range(1, len(gold)):
            others = {c: n for c, n in children.get(gold[:level], {}).items() if c != gold[level]}
            total = sum(others.values())
            levels.append({sid_token(level, c): share * n / total for c, n in others.items()} if total else {})
        if any(levels):
            out[(prompt, completion)] = levels
    return out


def merge_soft_targets(*parts: SoftTargets) -> SoftTargets:
    """Several soft-target sets as one: a pair's weights on a token add up (their shares must sum below 1)."""
    out: SoftTargets = {}
    for part in parts:
        for pair, levels in part.items():
            merged = out.setdefault(pair, [{} for _ in levels])
            merged.extend({} for _ in range(len(levels) - len(merged)))
            for into, level in zip(merged, levels, strict=False):
                for token, weight in level.items():
                    into[token] = into.get(token, 0.0) + weight
    return out


def suffix_crop_examples(
    examples: pd.DataFrame,
    sidmap: SidMap,
    n: int,
    seed: int,
    titles: dict[str, str] | None = None,
    hints: HintFn | None = None,
    item_tokens: Mapping[str, str] | None = None,
) -> list[tuple[str, str]]:
    """n next-item examples whose history is cut to its last k items (k uniform in 1..len-1).

    Why: in a full history the last item's transition is one signal among many, and a small model learns the
    rare ones poorly (on valid, 141 of the last-item Markov chain's 498 hits were missed, 98 of them with the
    target's first SID code nowhere in the model's top 10). The short prompts teach those transitions on their
    own. On the benchmark setting they lowered valid HR@10 (README, "Training options tried on valid").
    """
    rng = random.Random(seed + 1)
    rows = [r for r in examples.itertuples(index=False) if len(r.history) >= 2 and r.target in sidmap]
    out = []
    for _ in range(n if rows else 0):
        row = rng.choice(rows)
        k = rng.randint(1, len(row.history) - 1)
        history = list(row.history)[-k:]  # its last transition is not a counted one: nothing to leave out
        hinted = hints(history, "") if hints is not None else None
        prompt = format_prompt(history, sidmap, titles, hints=hinted, item_tokens=item_tokens)
        out.append((prompt, sid_of(sidmap, row.target)))
    return out


def future_target_examples(
    examples: pd.DataFrame,
    sidmap: SidMap,
    n: int,
    horizon: int,
    seed: int,
    titles: dict[str, str] | None = None,
    item_tokens: Mapping[str, str] | None = None,
) -> list[tuple[str, str]]:
    """n examples pairing a row's served prompt with an item the user bought 2..`horizon` steps after it (not the
    next one), drawn without replacement while pairs last.

    Why: on amazon-industrial valid 85% of rows have no count path from the history to the target, and there the
    generator misses most (docs/benchmark.md, segment table); a one-step target teaches one item per prompt,
    while what a user buys later also says what the history is about (the dense all-action loss of PinnerFormer).
    A user's rows are prefixes of one sequence (the data contract), in sequence_order; a later
    row continues a row when its history ends with that row's target, so pairs never cross a gap in the rows.
    """
    if n <= 0 or horizon < 2 or examples.empty:
        return []
    order = sequence_order(examples)
    rows = examples.iloc[order["position"].to_numpy()]
    users = order["user"].to_numpy()
    histories = [list(h) for h in rows["history"]]
    targets = rows["target"].astype(str).tolist()
    pairs: list[tuple[int, str]] = []  # (row, a later target of the same sequence)
    for i in range(len(rows)):
        j = i
        for _ in range(horizon - 1):  # row j + 1 must continue row j
            nxt = j + 1
            if nxt >= len(rows) or users[nxt] != users[i] or not histories[nxt]:
                break
            if str(histories[nxt][-1]) != targets[j]:
                break
            j = nxt
            if targets[j] in sidmap:
                pairs.append((i, targets[j]))
    if not pairs:
        return []
    rng = random.Random(seed + 2)
    chosen = rng.sample(pairs, n) if n <= len(pairs) else pairs * (n // len(pairs)) + rng.sample(pairs, n % len(pairs))
    return [
        (format_prompt(histories[i], sidmap, titles, item_tokens=item_tokens), sid_of(sidmap, t)) for i, t in chosen
    ]


def alignment_examples(sidmap: SidMap, titles: dict[str, str], n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    items = [i for i in sidmap.item_ids if titles.get(i)]
    out = []
    for k in range(n):
        item = rng.choice(items)
        title = titles[item][:60]
        if k % 2 == 0:
            out.append((f"Item {sid_of(sidmap, item)} is called:", f" {title}"))
        else:
            out.append((f'The item "{title}" has ID:', sid_of(sidmap, item)))
    return out


def behaviour_examples(
    examples: pd.DataFrame, sidmap: SidMap, titles: dict[str, str], n: int, seed: int
) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = [r for r in examples.itertuples(index=False) if len(r.history) >= 1]
    out = []
    for _ in range(min(n, len(rows)) if rows else 0):
        row = rng.choice(rows)
        seq = [i for i in [*list(row.history)[-4:], row.target] if i in sidmap]
        text = ", then ".join(f'{sid_of(sidmap, i)} "{titles.get(i, "")[:40]}"' for i in seq)
        out.append(("", f"The user bought {text}."))
    return out


def training_hints(cfg: TrainConfig, table: TransitionTable, counted: bool) -> HintFn | None:
    """The hint line of a training row (TrainConfig.hint_successors, None when off): its best successors in
    `table` (TransitionTable.top_successors). `counted`: the table was counted from these very rows, so each
    row's own transition is taken out first; else a hint could name the label only because the row itself was
    counted, which no served request sees. A served model's transitions.json is counted elsewhere (False)."""
    if cfg.hint_successors <= 0:
        return None
    n, window = cfg.hint_successors, cfg.hint_window
    return lambda history, target: table.top_successors(history, n, window, target if counted else None)


def sequence_order(examples: pd.DataFrame) -> pd.DataFrame:
    """The rows' (user, history length, position) sorted: each user's rows oldest first (shorter history first,
    file order among equals, as with histories capped at max_history). Rows of the data contract are prefixes of
    each user's sequence, so this is the order of the user's transitions."""
    order = pd.DataFrame(
        {
            "user": examples["user_id"].astype(str).to_numpy(),
            "length": examples["history"].map(len).to_numpy(),
            "position": np.arange(len(examples)),
        }
    )
    return order.sort_values(["user", "length", "position"])


def newest_rows(examples: pd.DataFrame) -> pd.Series:
    """user -> the position of that user's newest row (its longest history; the last in file order among equals),
    users in sorted order (sequence_order's last row of each user)."""
    newest = sequence_order(examples).groupby("user").tail(1)
    return pd.Series(newest["position"].to_numpy(), index=newest["user"].to_numpy())


def with_recent_copies(examples: pd.DataFrame, copies: int) -> pd.DataFrame:
    """`examples` plus `copies` extra copies of each user's newest row (newest_rows), appended. Why: valid and test
    follow the training rows in time, and holding those rows out of training cost the model about 0.01 HR@10 on
    valid, more than their share of the rows. Measured on amazon-industrial valid, one extra copy did not help: the
    model fits the repeated rows sooner and ranks valid lower (docs/benchmark.md, lever table), so configs keep 0."""
    if copies <= 0 or examples.empty:
        return examples
    newest = np.sort(newest_rows(examples).to_numpy())
    return pd.concat([examples, examples.iloc[np.repeat(newest, copies)]], ignore_index=True)


def build_training_texts(
    examples: pd.DataFrame,
    sidmap: SidMap,
    catalog: pd.DataFrame,
    cfg: TrainConfig,
    hints: HintFn | None = None,
    item_tokens: Mapping[str, str] | None = None,
) -> list[tuple[str, str]]:
    """The weighted task mix, shuffled deterministically; `hints`: the rows' hint lines (training_hints), by
    default read from the transitions of `examples` themselves, each row's own left out; `item_tokens`: the
    prompts' item tokens (item_token_items)."""
    titles = dict(zip(catalog["item_id"].astype(str), catalog["title"].fillna("").astype(str), strict=True))
    history_titles = titles if cfg.include_titles_in_history else None
    if hints is None and cfg.hint_successors > 0:
        table = TransitionTable.from_examples(examples["history"], examples["target"].astype(str))
        hints = training_hints(cfg, table, counted=True)
    nxt = next_item_examples(examples, sidmap, history_titles, cfg.context, hints, item_tokens)
    n_next = max(1, int(round(len(nxt) * cfg.weight_next_item)))
    texts = (nxt * (1 + n_next // max(len(nxt), 1)))[:n_next] if nxt else []
    texts += suffix_crop_examples(
        examples, sidmap, int(round(len(nxt) * cfg.weight_suffix_crops)), cfg.seed, history_titles, hints, item_tokens
    )
    texts += future_target_examples(
        examples,
        sidmap,
        int(round(len(nxt) * cfg.weight_future_targets)),
        cfg.future_horizon,
        cfg.seed,
        history_titles,
        item_tokens,
    )
    texts += alignment_examples(sidmap, titles, int(round(len(nxt) * cfg.weight_sid_title)), cfg.seed)
    texts += behaviour_examples(examples, sidmap, titles, int(round(len(nxt) * cfg.weight_behaviour)), cfg.seed)
    random.Random(cfg.seed).shuffle(texts)
    return texts

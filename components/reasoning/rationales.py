"""Rationales for OneRec-Think reasoning training: why this user, after this history, took the target item.

The default teacher is grounded: every sentence it writes is a fact the data holds, checked for this example —
how many other customers bought the target after an item of this history (co-purchase counts from the training
examples, this example's own purchase left out), a brand the history shares, a shared category path, shared
product terms of the titles, and the SID's semantic bucket (the target's first code shared with a history item:
items alike in content and in who buys them). A rationale with none of these says so honestly ("no concrete
reason in the data") and does not count toward coverage: the share of rationales with at least one concrete
reason, which the pipeline logs with samples (goal: >= 90%). An LLM teacher (any HF causal LM, e.g.
SmolLM2-135M-Instruct, prompted with the titles through its chat template) stays an option for a GPU.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import pandas as pd

from components.runtime.candidates import ItemStats

_STOP = set(
    "the a an and or for with of to in on by from x pack inch inches set count pcs piece pieces new size "
    "black white blue red green yellow each per use used home made this that your are can".split()
)
NO_REASON = "There is no concrete reason in the data; it is a frequently bought item."
REASON_KINDS = (
    "co-purchase",
    "bought together",
    "brand",
    "category",
    "terms",
    "description",
    "semantic bucket",
    "family co-purchase",
)


def _terms(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z][a-z0-9-]{3,}", text.lower()) if w not in _STOP}


def _short(title: str, n: int = 40) -> str:
    return title if len(title) <= n else title[: n - 1].rstrip() + "…"


@dataclass
class Evidence:
    """What the grounded teacher may cite: the catalog's attributes, purchase counts from the training examples,
    and (optionally) the SID codes of the items."""

    titles: dict[str, str]
    brands: dict[str, str]
    categories: dict[str, str]
    descriptions: dict[str, set[str]]  # salient terms of each item's description
    stats: ItemStats
    together: dict[str, Counter]  # item -> items other customers' purchase sequences also hold
    codes: dict[str, tuple[int, ...]] | None = None
    # (first code of a recent item, first code of the item bought then) -> how many training examples went that way
    family_next: Counter | None = None
    # the rationales are written for the very examples `stats` counted: each counted itself once per recent item
    leave_one_out: bool = True

    @classmethod
    def from_data(cls, catalog: pd.DataFrame, train: pd.DataFrame, codes: dict | None = None) -> Evidence:
        ids = catalog["item_id"].astype(str)

        def column(name: str) -> dict[str, str]:
            values = catalog[name] if name in catalog else pd.Series([""] * len(catalog))
            return dict(zip(ids, values.fillna("").astype(str).str.strip(), strict=True))

        stats = ItemStats.from_examples(train["history"], train["target"])
        together: dict[str, Counter] = {}
        for items in _sequences(train):
            for a in items:
                row = together.setdefault(a, Counter())
                row.update(b for b in items if b != a)
        descriptions = {item: _terms(text[:600]) for item, text in column("description").items()}
        family_next = None
        if codes:
            family_next = Counter()
            for h, t in zip(train["history"], train["target"], strict=True):
                if str(t) in codes:
                    recent = {codes[str(i)][0] for i in list(h)[-stats.window :] if str(i) in codes}
                    family_next.update((code, codes[str(t)][0]) for code in recent)
        return cls(
            column("title"), column("brand"), column("categories"), descriptions, stats, together, codes, family_next
        )


def _sequences(train: pd.DataFrame) -> list[set[str]]:
    """Each customer's purchases in the training examples (their longest history plus its target)."""
    longest: dict[str, list[str]] = {}
    for user, history, target in zip(train["user_id"], train["history"], train["target"], strict=True):
        items = [str(i) for i in history] + [str(target)]
        if len(items) > len(longest.get(str(user), [])):
            longest[str(user)] = items
    return [set(items) for items in longest.values()]


def grounded_rationale(history: list[str], target: str, evidence: Evidence) -> tuple[str, list[str]]:
    """(rationale, reason kinds): the facts this example's data supports, strongest first."""
    history = [str(i) for i in history]
    target = str(target)
    title = evidence.titles.get
    reasons: list[tuple[str, str]] = []
    window = evidence.stats.window
    # co-purchases: other customers who bought the target after one of the recent items (this purchase left out)
    best = None
    for item in reversed(history[-window:]):
        count = evidence.stats.successors.get(item, Counter()).get(target, 0)
        count += evidence.stats.nearby.get(item, Counter()).get(target, 0)
        own = 1 if evidence.leave_one_out else 0  # ItemStats counted this example once for each recent item
        if count - own > 0 and (best is None or count - own > best[0]):
            best = (count - own, item)
    if best is not None:
        n, item = best
        who = "another customer" if n == 1 else f"{n} other customers"
        reasons.append(("co-purchase", f"{who} bought it after {_short(title(item, item))}"))
    if best is None:  # bought by the same customers, in any order (this customer left out)
        own = 1 if evidence.leave_one_out else 0
        counts = [(evidence.together.get(item, Counter()).get(target, 0) - own, item) for item in reversed(history)]
        n, item = max(counts, default=(0, ""))
        if n > 0:
            who = "another customer" if n == 1 else f"{n} other customers"
            reasons.append(("bought together", f"{who} who bought {_short(title(item, item))} also bought it"))
    brand = evidence.brands.get(target, "")
    same_brand = [i for i in history if brand and evidence.brands.get(i, "") == brand]
    if same_brand:
        reasons.append(("brand", f"the user bought {len(same_brand)} item(s) from {brand} before"))
    category = evidence.categories.get(target, "")
    same_category = [i for i in history if category and evidence.categories.get(i, "") == category]
    if same_category:
        like = _short(title(same_category[-1], ""))
        reasons.append(("category", f"it is in the same category ({category}) as {like}"))
    target_terms = _terms(title(target, ""))
    for item in reversed(history):
        shared = sorted(target_terms & _terms(title(item, "")))
        if shared:
            reasons.append(("terms", f"like {_short(title(item, item))}, it is about {', '.join(shared[:3])}"))
            break
    if not any(kind == "terms" for kind, _ in reasons):
        target_words = evidence.descriptions.get(target, set()) | target_terms
        for item in reversed(history):
            shared = sorted(target_words & (evidence.descriptions.get(item, set()) | _terms(title(item, ""))))
            if len(shared) >= 2:
                reasons.append(
                    ("description", f"its description shares {', '.join(shared[:3])} with {_short(title(item, item))}")
                )
                break
    codes = evidence.codes
    if codes and target in codes:
        alike = [i for i in history if i in codes and codes[i][0] == codes[target][0]]
        if alike:
            like = _short(title(alike[-1], ""))
            reasons.append(("semantic bucket", f"it sits in the same product family as {like}"))
        elif evidence.family_next is not None:
            own = 1 if evidence.leave_one_out else 0
            pairs = [
                (evidence.family_next.get((codes[i][0], codes[target][0]), 0) - own, i)
                for i in reversed(history[-window:])
                if i in codes
            ]
            n, item = max(pairs, default=(0, ""))
            if n > 0:
                like = _short(title(item, item))
                reasons.append(
                    (
                        "family co-purchase",
                        f"customers who bought items like {like} then bought this family {n} time(s)",
                    )
                )
    if not reasons:
        return NO_REASON, []
    return "Because " + "; ".join(text for _, text in reasons[:3]) + ".", [kind for kind, _ in reasons]


def llm_rationale(
    model,
    tokenizer,
    history_titles: list[str],
    target_title: str,
    max_new_tokens: int = 48,
    do_sample: bool = False,
    temperature: float = 0.8,
) -> str:
    """Ask an instruct LLM for a one-sentence reason (chat template, short generation)."""
    import torch

    messages = [
        {
            "role": "user",
            "content": (
                "A customer bought, in order: "
                + "; ".join(t[:60] for t in history_titles[-5:])
                + f". Next they bought: {target_title[:60]}. In one short sentence, why did they buy it?"
            ),
        }
    ]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            temperature=temperature if do_sample else None,
            top_k=None,
            top_p=None,
            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
        )
    text = tokenizer.decode(out[0, enc.input_ids.shape[1] :], skip_special_tokens=True).strip()
    return re.sub(r"\s+", " ", text).split("\n")[0][:300] or "No reason given."


def build_rationales(
    examples: pd.DataFrame,
    evidence: Evidence,
    teacher: str = "template",
    teacher_model=None,
    teacher_tokenizer=None,
    limit: int | None = None,
) -> pd.DataFrame:
    """examples + `rationale`, `teacher` and `reasons` (the kinds of fact cited; empty: no concrete reason)."""
    frame = examples.head(limit).copy() if limit else examples.copy()
    out = []
    for row in frame.itertuples(index=False):
        if teacher == "template" or teacher_model is None:
            text, kinds = grounded_rationale(list(row.history), row.target, evidence)
            out.append((text, "template", kinds))
        else:
            titles = [evidence.titles.get(str(i), "") for i in row.history]
            text = llm_rationale(teacher_model, teacher_tokenizer, titles, evidence.titles.get(str(row.target), ""))
            out.append((text, teacher, []))
    frame["rationale"] = [r for r, _, _ in out]
    frame["teacher"] = [t for _, t, _ in out]
    frame["reasons"] = [k for _, _, k in out]
    return frame


def coverage(frame: pd.DataFrame) -> dict:
    """Share of rationales with a concrete reason, the share of each kind, and a few samples (for the task log)."""
    grounded = frame["reasons"].map(len) > 0
    kinds = Counter(kind for reasons in frame["reasons"] for kind in reasons)
    samples = frame[grounded].head(3)["rationale"].tolist() + frame[~grounded].head(1)["rationale"].tolist()
    return {
        "rationales": int(len(frame)),
        "coverage": float(grounded.mean()) if len(frame) else 0.0,
        "by_kind": {k: round(kinds[k] / max(len(frame), 1), 3) for k in REASON_KINDS},
        "samples": samples,
    }

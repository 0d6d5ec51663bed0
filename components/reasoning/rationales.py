"""Rationales for OneRec-Think reasoning training: why this user, after this history, took the target item.

Two teachers, both kept and recorded per example:
- "template": grounded in item attributes the history and the target share (brand, category, title terms), so
  it never states anything the catalog does not support; no model needed.
- an LLM teacher (any HF causal LM; SmolLM2-135M-Instruct here) prompted with the history titles and the target
  title through its chat template.
"""

from __future__ import annotations

import re
from collections import Counter

import pandas as pd

_STOP = set("the a an and or for with of to in on by from x pack inch inches set count pcs piece pieces new".split())


def _terms(title: str) -> set[str]:
    return {w for w in re.findall(r"[a-z][a-z0-9-]{2,}", title.lower()) if w not in _STOP}


def template_rationale(history: list[str], target: str, catalog: pd.DataFrame) -> str:
    """A short rationale citing the attributes the target shares with the history (or its recency)."""
    info = catalog.set_index("item_id") if "item_id" in catalog.columns else catalog
    rows = [info.loc[i] for i in history if i in info.index]
    tgt = info.loc[target] if target in info.index else None
    if tgt is None or not rows:
        return "The user is starting a new need; a popular item fits."
    reasons = []
    brands = Counter(str(r["brand"]) for r in rows if str(r["brand"]))
    if str(tgt["brand"]) and brands.get(str(tgt["brand"])):
        reasons.append(f"the user bought {brands[str(tgt['brand'])]} item(s) from {tgt['brand']} before")
    shared = _terms(str(tgt["title"])) & set().union(*(_terms(str(r["title"])) for r in rows))
    if shared:
        reasons.append("the history mentions " + ", ".join(sorted(shared)[:4]))
    cats = str(tgt.get("categories", "") or "")
    if cats and any(cats == str(r.get("categories", "")) for r in rows):
        reasons.append(f"it is in the same category ({cats})")
    if not reasons:
        last = str(rows[-1]["title"])[:40]
        reasons.append(f"it complements the last purchase, {last}")
    return "Because " + "; ".join(reasons) + "."


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
    catalog: pd.DataFrame,
    teacher: str = "template",
    teacher_model=None,
    teacher_tokenizer=None,
    limit: int | None = None,
) -> pd.DataFrame:
    """examples + `rationale` and `teacher` columns (teacher: 'template' or the LLM's name)."""
    frame = examples.head(limit).copy() if limit else examples.copy()
    titles = dict(zip(catalog["item_id"].astype(str), catalog["title"].astype(str), strict=True))
    out = []
    for row in frame.itertuples(index=False):
        if teacher == "template" or teacher_model is None:
            out.append((template_rationale(list(row.history), row.target, catalog), "template"))
        else:
            text = llm_rationale(
                teacher_model, teacher_tokenizer, [titles.get(i, "") for i in row.history], titles.get(row.target, "")
            )
            out.append((text, teacher))
    frame["rationale"] = [r for r, _ in out]
    frame["teacher"] = [t for _, t in out]
    return frame

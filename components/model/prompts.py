"""The prompt shared by training, evaluation, reasoning and serving.

History SIDs are concatenated with no separator (each SID token already names its level, so item boundaries
are unambiguous) and the model's answer is the target SID's tokens right after "Next:". Titles and runtime
context (as PLUM puts in the prompt) are optional.
"""

from __future__ import annotations

from components.sids.sidmap import SidMap

ANSWER = "\nNext:"


def format_history_prompt(
    history: list[str],
    sidmap: SidMap,
    titles: dict[str, str] | None = None,
    context: str | None = None,
    max_title_chars: int = 40,
) -> str:
    """Prompt for the next item after `history` (oldest first); unknown items are skipped."""
    parts = []
    for item in history:
        if item not in sidmap:
            continue
        sid = sidmap.sid_of(item)
        parts.append(f'{sid} "{titles[item][:max_title_chars]}"' if titles and item in titles else sid)
    joiner = "; " if titles else ""
    head = f"{context}\n" if context else ""
    return f"{head}User bought: {joiner.join(parts)}{ANSWER}"

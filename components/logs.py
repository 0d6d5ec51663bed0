"""Logs a person can read: progress bars only on a terminal, third-party noise filtered.

Airflow task logs, CI logs and `make demo > file` are not terminals: a tqdm bar there writes thousands of
carriage-return lines. `progress` draws a bar on a terminal and otherwise logs one line every `every_s` seconds
(and one at the end). `quiet_third_party` filters warnings that are not ours to fix (pinned libraries'
deprecations) once, at the entry points (CLI, DAG tasks, Triton backend).
"""

from __future__ import annotations

import logging
import sys
import time
import warnings

log = logging.getLogger("sidrec.progress")

# (category, message regex, module regex) of third-party warnings that say nothing to a sidrec user: each is a
# pinned library's own deprecation, not something our code calls wrongly.
_NOISE = [
    (DeprecationWarning, r".*fetch_arrow_table.*", r""),  # ibis inside Feast's DuckDB offline store
    (FutureWarning, r".*fetch_arrow_table.*", r""),
    (DeprecationWarning, r".*datetime.datetime.utcnow.*", r""),  # Feast, great_expectations
    (UserWarning, r".*Field name .* shadows an attribute.*", r""),  # pydantic inside great_expectations
    (DeprecationWarning, r".*pkg_resources.*", r""),
    (FutureWarning, r".*`resume_download` is deprecated.*", r""),
    (FutureWarning, r".*is_gradient_checkpointing.*", r""),  # peft reads transformers' deprecated alias (LoRA)
]


def filter_noise() -> None:
    """Put the known third-party warnings' ignore filters at the front of the filter list. Call it again after
    importing a library that installs its own filters at import time: Feast's modules run
    `warnings.simplefilter("once", DeprecationWarning)`, which goes in front of ours and brings ibis's
    fetch_arrow_table deprecation back into every materialisation's log."""
    for category, message, module in _NOISE:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


def quiet_third_party() -> None:
    """Filter the known third-party warnings and lower chatty library loggers to WARNING."""
    filter_noise()
    for name in ("great_expectations", "feast", "ibis", "httpx", "urllib3", "filelock", "numexpr"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # the serving environment may lack nothing, but a bare one might
        pass


def on_terminal() -> bool:
    return sys.stderr.isatty()


class _LineProgress:
    """tqdm's interface (update, set_postfix, close) writing one log line every `every_s` seconds."""

    def __init__(self, total: int | None, initial: int, desc: str, unit: str, every_s: float) -> None:
        self.total, self.n, self.desc, self.unit, self.every_s = total, initial, desc, unit, every_s
        self.postfix = ""
        self._start = self._last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self._emit(now)

    def set_postfix(self, **values) -> None:
        self.postfix = " ".join(f"{k}={v}" for k, v in values.items())

    def _emit(self, now: float) -> None:
        of = f"/{self.total}" if self.total else ""
        log.info("%s: %d%s %s (%.0f s) %s", self.desc, self.n, of, self.unit, now - self._start, self.postfix)

    def close(self) -> None:
        self._emit(time.monotonic())

    def __iter__(self):
        raise TypeError("wrap the iterable with progress(iterable, ...) instead")


class _IterProgress(_LineProgress):
    def __init__(self, iterable, **kwargs) -> None:
        super().__init__(**kwargs)
        self.iterable = iterable

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()


def progress(
    iterable=None,
    *,
    total: int | None = None,
    initial: int = 0,
    desc: str = "",
    unit: str = "it",
    every_s: float = 30.0,
):
    """A tqdm bar on a terminal; elsewhere one log line every `every_s` seconds (same interface)."""
    if on_terminal():
        from tqdm import tqdm

        return tqdm(iterable, total=total, initial=initial, desc=desc, unit=unit, leave=False)
    if iterable is not None:
        total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        return _IterProgress(iterable, total=total, initial=initial, desc=desc, unit=unit, every_s=every_s)
    return _LineProgress(total, initial, desc, unit, every_s)

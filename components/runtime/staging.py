"""Directories published whole: written into a staging directory beside the target, then renamed into place.

Why: a reader (the Triton backend, a gate, the next training run) must see either the old directory or the new
one, never a half-written mix; a rename within one parent directory gives that, a copy or an in-place write
does not.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_directory(path: str | Path) -> Iterator[Path]:
    """Yield an empty directory beside `path`; on a clean exit it replaces `path` (and whatever was there) whole,
    on an error it is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    staging.chmod(0o755)  # mkdtemp's 0700 would hide it from a server running as another user
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(staging, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, path)

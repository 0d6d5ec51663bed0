"""The project's one kind of expected error.

An expected error is bad input, a missing or foreign artifact, a refused action: something the user can fix. Its
message is one line that says what went wrong, where (file, row, artifact version) and how to fix it. The `sidrec`
CLI prints it as that one line with a non-zero exit and no traceback (`sidrec --debug ...` shows the traceback);
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class SidrecError(Exception):
    """An expected error; subclasses name the part of the system that raised it."""


class MissingFileError(SidrecError, FileNotFoundError):
    """A file or tool a step needs is not there; the message names it and how to get it.

    Why a FileNotFoundError too: library callers that caught that keep working, while the CLI prints one line.
    """

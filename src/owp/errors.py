"""User-facing error type.

Every problem caused by the user's input (a missing file, a malformed JSON, an unknown class
name, ...) is raised as :class:`OwpInputError` with one line that names the file and the
problem. The command line prints that line and exits non-zero without a traceback; Python
callers can catch it like any ``ValueError``.
"""

from __future__ import annotations

from pathlib import Path


class OwpInputError(ValueError):
    """Bad user input: the message is one line naming the file and the problem."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        text = message if path is None else f"{path}: {message}"
        super().__init__(text)


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, too many unreadable images): one line that
    names the step and the last good checkpoint or the offending file."""

"""Writing files safely: atomic replace, so an interrupted write never leaves half a file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from owp.errors import OwpInputError


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write`` on a temporary file next to ``path``, fsync it, then rename it to ``path``.

    The parent folder is created when missing; a folder at ``path`` or a file where a parent
    folder should be is an :class:`OwpInputError`. On any failure (including Ctrl-C) the
    temporary file is removed and an existing ``path`` is left untouched.
    """
    path = Path(path)
    if path.is_dir():
        raise OwpInputError("is a folder, expected a file to write", path=path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OwpInputError("cannot create the folder: a file is in the way", path=path) from None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, data: Any, *, indent: int | None = 1) -> Path:
    """Write ``data`` as JSON to ``path`` atomically (see :func:`write_atomic`)."""
    text = json.dumps(data, indent=indent).encode()
    return write_atomic(path, lambda f: f.write(text))

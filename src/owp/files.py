"""Writing result files safely: atomic replace, so an interrupted write never leaves half a file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from owp.errors import OwpInputError


def write_json(path: str | Path, data: Any, *, indent: int | None = 1) -> Path:
    """Write ``data`` as JSON to ``path`` via a temporary file and an atomic rename.

    The parent folder is created when missing; a folder at ``path`` is an error.
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
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=indent)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
    try:
        # mkstemp creates the file 0600; the result gets the mode a plain open() would give.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


TEMPORARY_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def link_atomic(target: str | Path, path: str | Path) -> Path:
    """Make ``path`` a second name of the file ``target`` (a hard link, no extra space),
    replacing ``path`` atomically; where hard links are not supported, an atomic copy."""
    target, path = Path(target), Path(path)
    tmp = path.with_name(f".{path.name}.link{TEMPORARY_SUFFIX}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(target, tmp)
    except OSError:
        return write_atomic(path, lambda f: f.write(target.read_bytes()))
    os.replace(tmp, path)
    return path


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files an interrupted :func:`write_atomic` or :func:`link_atomic`
    left in ``folder`` (hidden ``.<name>.*.tmp`` files); returns them."""
    stale = sorted(Path(folder).glob(f".*{TEMPORARY_SUFFIX}")) if Path(folder).is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def write_json(path: str | Path, data: Any, *, indent: int | None = 1) -> Path:
    """Write ``data`` as JSON to ``path`` atomically (see :func:`write_atomic`)."""
    text = json.dumps(data, indent=indent).encode()
    return write_atomic(path, lambda f: f.write(text))


def check_output_file(path: Path | None) -> None:
    """Fail before any work when ``path`` cannot be written as a file (a folder is in the way)."""
    if path is None:
        return
    if path.is_dir():
        raise OwpInputError("is a folder, expected a file to write", path=path)
    check_folder_path(path.parent)


def check_folder_path(folder: Path) -> None:
    """Fail when ``folder`` or its nearest existing ancestor is a file, not a folder."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            if not candidate.is_dir():
                raise OwpInputError("is a file, expected a folder", path=candidate)
            return

"""Package attributes imported on first use (PEP 562), so that importing a package costs
nothing until one of its names is used: ``owp`` (no torch for the data and evaluation tools) and
``owp.models`` (no model table for a submodule import). Written by hand: the standard library
offers ``importlib.util.LazyLoader`` for whole modules, not a name table."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``: ``exports`` maps a public name to the
    module that defines it; a name is imported once, then kept in ``namespace`` (the package's
    ``globals()``) so that later look-ups skip ``__getattr__``."""

    def __getattr__(name: str) -> Any:  # noqa: N807 (PEP 562's name)
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__

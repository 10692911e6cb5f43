"""Type and range checks for values read from user JSON/YAML (where ``True`` must not pass as
``1``): JSON numbers, and config fields checked against their dataclass annotations."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from types import UnionType
from typing import Any, get_args, get_origin


def is_int(value: Any) -> bool:
    """A JSON integer: ``int`` but not ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    """A finite JSON number: ``int`` or ``float`` but not ``bool``, NaN or infinity."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Range:
    """Numbers in ``[low, high]`` (either end open when asked; ``high=None``: no upper bound)."""

    low: float
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def problem(self, value: float) -> str | None:
        too_low = value <= self.low if self.open_low else value < self.low
        too_high = self.high is not None and (
            value >= self.high if self.open_high else value > self.high
        )
        if not (too_low or too_high):
            return None
        low = f"> {self.low:g}" if self.open_low else f">= {self.low:g}"
        if self.high is None:
            return f"must be {low}"
        high = f"< {self.high:g}" if self.open_high else f"<= {self.high:g}"
        return f"must be {low} and {high}"


@dataclass(frozen=True)
class Choices:
    """Strings from a list (given by a function, so that it may be read lazily); with
    ``prefix_of=":"`` only the part before the first ``:`` must be a choice (``cuda:1``)."""

    names: Callable[[], tuple[str, ...]]
    prefix_of: str | None = None

    def problem(self, value: str) -> str | None:
        head = value.split(self.prefix_of, 1)[0] if self.prefix_of else value
        names = self.names()
        return None if head in names else f"must be one of {', '.join(names)}"


Rule = Range | Choices


def check_value(where: str, value: Any, annotation: Any, rule: Rule | None = None) -> Any:
    """``value`` checked against a dataclass field's type ``annotation`` (``int``, ``float``,
    ``bool``, ``str``, ``X | None``, ``tuple[X, ...]``, ``dict``, ``Any``) and ``rule``.

    Returns the value converted where the conversion is lossless (a list to a tuple, an
    integer or a numeric string such as YAML's ``1e-4`` to a float; one string to a one-element
    tuple of strings). Raises :class:`~owp.errors.OwpInputError` naming ``where`` otherwise.
    """
    from owp.errors import OwpInputError

    options = get_args(annotation) if isinstance(annotation, UnionType) else (annotation,)
    if value is None:
        if type(None) in options:
            return None
        raise OwpInputError(f"{where} must be {_describe(annotation)}, got null")
    kinds = [t for t in options if t is not type(None)]
    kind = kinds[0] if len(kinds) == 1 else Any
    converted = _convert(value, kind)
    if converted is _INVALID:
        raise OwpInputError(f"{where} must be {_describe(kind)}, got {value!r}")
    for item in converted if isinstance(converted, tuple) else (converted,):
        applies = (isinstance(rule, Range) and is_finite_number(item)) or (
            isinstance(rule, Choices) and isinstance(item, str)
        )
        problem = rule.problem(item) if applies else None
        if problem:
            raise OwpInputError(f"{where} {problem}, got {value!r}")
    return converted


_INVALID = object()


def _convert(value: Any, kind: Any) -> Any:
    """``value`` as ``kind``, or :data:`_INVALID`."""
    origin = get_origin(kind)
    if kind is Any:
        return value
    if kind is bool:
        return value if isinstance(value, bool) else _INVALID
    if kind is int:
        return value if is_int(value) else _INVALID
    if kind is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                return _INVALID
        return float(value) if is_finite_number(value) else _INVALID
    if kind is str:  # a path given from Python counts as its string
        return os.fspath(value) if isinstance(value, str | os.PathLike) else _INVALID
    if origin is tuple:
        item_kind = get_args(kind)[0]
        if isinstance(value, str) and item_kind is str:
            value = (value,)
        if not isinstance(value, list | tuple):
            return _INVALID
        items = tuple(_convert(v, item_kind) for v in value)
        return _INVALID if any(i is _INVALID for i in items) else items
    if origin is dict or kind is dict:
        return value if isinstance(value, dict) else _INVALID
    return value


def _describe(kind: Any) -> str:
    if isinstance(kind, UnionType):
        return " or ".join(_describe(k) for k in get_args(kind))
    origin = get_origin(kind)
    if origin is tuple:
        plural = {int: "integers", float: "numbers", str: "strings"}
        return f"a list of {plural.get(get_args(kind)[0], 'values')}"
    names = {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        type(None): "null",
        dict: "a mapping",
    }
    return names.get(origin or kind, str(kind))

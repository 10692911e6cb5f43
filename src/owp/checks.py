"""Type checks for values read from user JSON/YAML (where ``True`` must not pass as ``1``)."""

from __future__ import annotations

import math
from typing import Any


def is_int(value: Any) -> bool:
    """A JSON integer: ``int`` but not ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    """A finite JSON number: ``int`` or ``float`` but not ``bool``, NaN or infinity."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)

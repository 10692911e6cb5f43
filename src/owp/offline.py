"""Whether owp may download anything: ``OWP_OFFLINE=1`` (``owp --offline``) forbids it.

Read where a download would start (:mod:`owp.models.weights`, :mod:`owp.data.download`), so
that setting it at any time takes effect. Nothing here imports torch.
"""

from __future__ import annotations

import os

OFFLINE_ENV = "OWP_OFFLINE"
"""The environment variable that forbids downloads when set to anything but ``""`` or ``0``."""


def is_offline() -> bool:
    """Whether downloads are forbidden (:data:`OFFLINE_ENV`)."""
    return os.environ.get(OFFLINE_ENV, "").strip() not in ("", "0")

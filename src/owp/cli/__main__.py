"""``python -m owp.cli`` (e.g. under ``torchrun ... -m owp.cli train``)."""

import sys

from owp.cli import main

sys.exit(main())

"""``python -m owp``: the ``owp`` command."""

from owp.cli import main

raise SystemExit(main())

"""``owp data``: make, split and inspect datasets (one module per subcommand)."""

from __future__ import annotations

import argparse
import sys

from owp.cli.commands import data_download, data_split, data_stats, data_synth


def register(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser(
        "data", help="make, split and inspect datasets", description="Dataset tools."
    )
    sub = data.add_subparsers(title="data commands", metavar="DATA_COMMAND")
    data.set_defaults(handler=lambda args: _missing_subcommand(data))
    for command in (data_synth, data_split, data_stats, data_download):
        command.register(sub)


def _missing_subcommand(parser: argparse.ArgumentParser) -> int:
    """A command group called without its subcommand: one error line, exit status 2."""
    print(f"owp: error: choose a subcommand (see {parser.prog} --help)", file=sys.stderr)
    return 2

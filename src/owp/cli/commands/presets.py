"""``owp presets``: list the shipped training presets and study groups."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    presets = commands.add_parser(
        "presets",
        help="list the shipped training presets and study groups",
        description="List the shipped presets (one experiment each, `owp train --preset NAME`) "
        "and the study groups (`owp study NAME`), one line each.",
    )
    presets.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from owp.config import list_groups, list_presets

    presets, groups = list_presets(), list_groups()
    width = max(map(len, [*presets, *groups]))
    print("presets (owp train --preset NAME):")
    for name, description in presets.items():
        print(f"  {name:<{width}}  {description}")
    print("study groups (owp study NAME):")
    for name, description in groups.items():
        print(f"  {name:<{width}}  {description}")

"""``owp models``: list the model names for create_model."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser(
        "models",
        help="list the model names for create_model",
        description="List the model names accepted by `create_model` and `model.name`, with "
        "what each builds.",
    )
    models.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from owp.models import list_models

    models = list_models()
    width = max(map(len, models))
    for name, description in models.items():
        print(f"{name:<{width}}  {description}")

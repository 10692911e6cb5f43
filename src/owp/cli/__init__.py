"""The ``owp`` command line. It only parses arguments and calls the library: one module per
command in :mod:`owp.cli.commands`, each with ``register(subparsers)`` and ``run(args)``.

Importing it, and ``--help``, do not import torch: the commands import the library inside
``run``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from owp.cli.commands import (
    bench,
    data,
    demo,
    eval_detections,
    eval_proposals,
    export,
    models,
    predict,
    presets,
    propose_baseline,
    pseudo_label,
    report,
    study,
    train,
)
from owp.cli.commands import eval as evaluate
from owp.version import __version__

COMMANDS = (
    demo,
    train,
    evaluate,
    predict,
    presets,
    models,
    export,
    study,
    bench,
    report,
    pseudo_label,
    data,
    propose_baseline,
    eval_proposals,
    eval_detections,
)
"""The command modules, in the order ``owp --help`` lists them."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``owp`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    if args.offline:
        os.environ["OWP_OFFLINE"] = "1"  # owp.offline.OFFLINE_ENV, read where downloads start
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    from owp.errors import OwpInputError, TrainingError

    try:
        status = args.handler(args)
    except (OwpInputError, TrainingError) as err:
        _close_progress_bars()
        print(f"owp: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`owp presets | head`): stop quietly, as Unix tools do; stdout is
        # pointed at devnull so that the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as err:  # e.g. an output folder that cannot be created: one line, no traceback
        where = f"{err.filename}: " if err.filename else ""
        print(f"owp: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("owp: interrupted", file=sys.stderr)
        return 130
    return status if isinstance(status, int) else 0


def build_parser() -> argparse.ArgumentParser:
    """The ``owp`` parser with every command (what ``--help`` and the docs show)."""
    parser = CommandParser(
        prog="owp",
        description="Open-world object proposals: find every object, including kinds never "
        "labelled, ranked by learned objectness.",
    )
    parser.add_argument("--version", action="version", version=f"owp {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="more log output")
    parser.add_argument(
        "--offline",
        action="store_true",
        help="download nothing (as OWP_OFFLINE=1): weights must be in the torch hub cache",
    )
    commands = parser.add_subparsers(
        title="commands", metavar="COMMAND", parser_class=CommandParser
    )
    for command in COMMANDS:
        command.register(commands)
    return parser


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` after an option's help unless the help already says it, or the
    default is empty."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


class CommandParser(argparse.ArgumentParser):
    """Every ``owp`` (sub)command's parser: defaults shown in ``--help``, and a bad argument is
    one ``owp: error:`` line (no usage block), exit status 2."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        print(f"owp: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _close_progress_bars() -> None:
    """End the progress bars an error interrupted, so that the error starts its own line."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        bar.close()


def _configure_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LowercaseLevelFormatter("owp: %(levelname)s: %(message)s"))
    root = logging.getLogger("owp")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


class _LowercaseLevelFormatter(logging.Formatter):
    """``owp: warning: ...`` rather than ``owp: WARNING: ...``, like the error lines."""

    def format(self, record: logging.LogRecord) -> str:
        record = logging.makeLogRecord(record.__dict__)
        record.levelname = record.levelname.lower()
        return super().format(record)

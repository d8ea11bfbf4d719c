"""The ``zhichao`` command: one entry point, a subcommand per task.

Each subcommand lives in its own module ``zhichao/cli/<name>.py`` exposing
``add_parser(subparsers)`` and ``run(args) -> int``; this module only wires them together
and turns every :class:`~zhichao.errors.ZhichaoError` into a one-line message and exit
status 2, never a traceback.
"""

import argparse
import importlib
import sys
from collections.abc import Sequence

from rich.console import Console

from zhichao import __version__
from zhichao.errors import ZhichaoError

COMMANDS = ("demo", "grade", "edge", "sim", "plate", "keys", "center")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="zhichao",
        description="治超 zhichao: off-site overload enforcement of freight trucks.",
    )
    parser.add_argument("--version", action="version", version=f"zhichao {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"zhichao.cli.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except ZhichaoError as exc:
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            f"[bold red]error:[/] {exc}", markup=True)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

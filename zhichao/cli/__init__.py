"""The ``zhichao`` command: one entry point, a subcommand per task.

Each subcommand lives in its own module ``zhichao/cli/<name>.py`` exposing
``add_parser(subparsers)`` and ``run(args) -> int``; this module only wires them together
and turns every :class:`~zhichao.errors.ZhichaoError` into a one-line message and exit
status 2, never a traceback. Any other exception is a fault of zhichao, not of its input:
one line names it and the file in the temporary folder the full traceback was written to,
exit status 1 (``zhichao --debug ...`` prints the traceback to stderr instead).
"""

import argparse
import importlib
import sys
import tempfile
import traceback
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape

from zhichao import __version__
from zhichao.errors import ZhichaoError

COMMANDS = ("demo", "grade", "edge", "sim", "plate", "keys", "center", "calibrate")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="zhichao",
        description="治超 zhichao: off-site overload enforcement of freight trucks.",
    )
    parser.add_argument("--version", action="version", version=f"zhichao {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="on an unexpected error, print the full traceback to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"zhichao.cli.{name}").add_parser(sub)
    return parser


REPORT_CHARS = 200
"""An unexpected error's message is cut to this many characters in its one-line report."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        return int(args.run(args) or 0)
    except ZhichaoError as exc:
        errors.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a fault of zhichao: reported in one line, traced in a file
        return _unexpected(exc, args, errors)


def _unexpected(exc: Exception, args: argparse.Namespace, errors: Console) -> int:
    """One line naming the exception and where its full traceback went; exit status 1."""
    trace = "".join(traceback.format_exception(exc))
    words = " ".join(str(exc).split())
    if len(words) > REPORT_CHARS:
        words = words[:REPORT_CHARS - 1] + "…"
    what = f"{type(exc).__name__}: {words}" if words else type(exc).__name__
    if args.debug:
        sys.stderr.write(trace)
        where = "traceback above"
    else:
        try:
            with tempfile.NamedTemporaryFile("w", encoding="utf-8", prefix="zhichao-error-",
                                             suffix=".txt", delete=False) as f:
                f.write(f"zhichao {__version__}: {' '.join(sys.argv)}\n{trace}")
            where = f"full traceback in {f.name}"
        except OSError:
            sys.stderr.write(trace)
            where = "traceback above: it could not be written to a file"
    errors.print(f"[bold red]unexpected error[/] (a fault of zhichao, please report it): "
                 f"{escape(what)}; {escape(where)}", markup=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())

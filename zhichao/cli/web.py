"""``zhichao center web`` serves the center's pages; ``zhichao center staff password ID``
sets an officer's log-in password (read from standard input, never from the command
line, where other users of the machine could see it)."""

import argparse
import getpass
import sys

from rich.console import Console
from sqlalchemy.orm import Session

from center.service import open_db
from center.web import auth
from center.web.serve import address, serve_in_foreground
from zhichao.cli.center_common import config_option, settings_of
from zhichao.errors import ConfigError


def add_web_commands(center: argparse._SubParsersAction,
                     staff: argparse._SubParsersAction | None) -> None:
    """Register ``center web`` and, under ``center staff``, ``password``."""
    web = config_option(center.add_parser("web", help="serve the center's web pages"))
    web.add_argument("--host", metavar="ADDR", help="listen here (default: web.host)")
    web.add_argument("--port", type=int, metavar="N", help="TCP port (default: web.port)")
    web.set_defaults(run=run_web)
    if staff is not None:
        pw = config_option(staff.add_parser("password", help="set an officer's web "
                                            "password (read from standard input)"))
        pw.add_argument("officer_id", metavar="ID")
        pw.set_defaults(run=run_password)


def run_web(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    if args.port is not None and not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: must be 0 to 65535")
    say = Console(stderr=True, highlight=False).print
    serve_in_foreground(settings, args.host, args.port, on_ready=lambda: say(
        f"center pages on {address(settings, args.host, args.port)} (Ctrl-C stops)"))
    Console(stderr=True, highlight=False).print("stopped serving the pages.")
    return 0


def run_password(args: argparse.Namespace) -> int:
    password = getpass.getpass("password: ") if sys.stdin.isatty() \
        else sys.stdin.readline().rstrip("\n")
    engine = open_db(settings_of(args))
    with Session(engine) as session, session.begin():
        auth.set_password(session, args.officer_id, password)
    Console(highlight=False).print(f"password of {args.officer_id} set; their sessions ended")
    return 0

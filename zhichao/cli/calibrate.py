"""``zhichao calibrate``: calibration of a roadside unit and proof of its accuracy.

``zhichao calibrate accuracy`` assesses the errors of a test against COST 323's accuracy
classes: per criterion (gross weight, group of axles, single axle, axle of a group) the
sample's mean and standard deviation, the confidence π0 the test plan and environment
demand, the smallest tolerance that meets it (d_min), the criterion's own class, and the
tolerance δ and share π at the unit's class (or at the class asked for with ``--class``);
each explained in a sentence, or with ``--json`` one JSON object.

The errors file is CSV with the header ``criterion,error_pct``: criterion one of gvw,
group, single, group_axle; error_pct = (measured − static) / static × 100. Bad rows are
named by line and left out; the rest are assessed. Exit status 1 when ``--class`` is given
and not met.
"""

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from calibration.accuracy import ENVIRONMENTS, PLANS, assess, read_errors_csv


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``zhichao calibrate`` and its actions (one function per action below)."""
    p = sub.add_parser("calibrate", help="calibrate a unit and assess its accuracy class",
                       description=__doc__.split("\n\n")[0])
    actions = p.add_subparsers(dest="calibrate_command", metavar="ACTION", required=True)
    for register in ACTIONS:
        register(actions)


def _add_accuracy(actions: argparse._SubParsersAction) -> None:
    """Register ``zhichao calibrate accuracy``."""
    p = actions.add_parser("accuracy", help="COST 323 accuracy class of a test's errors",
                           description=__doc__.split("\n\n")[1])
    p.add_argument("--errors", required=True, type=Path, metavar="FILE",
                   help="CSV with the header criterion,error_pct")
    p.add_argument("--plan", required=True, choices=PLANS,
                   help="test plan: r1 full repeatability, r2 extended repeatability, "
                        "R1 limited reproducibility, R2 full reproducibility")
    p.add_argument("--env", required=True, choices=ENVIRONMENTS,
                   help="environment: I repeatability (hours), II limited (days), "
                        "III full reproducibility (a year)")
    p.add_argument("--initial", action="store_true",
                   help="initial verification: tolerances 0.8 × the class's")
    p.add_argument("--class", dest="wanted_class", metavar="CLASS",
                   help="assess at this class, e.g. B+(7); exit status 1 if not met")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run_accuracy)


ACTIONS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (_add_accuracy,)
"""The actions of ``zhichao calibrate``, each registering its own parser and ``run``."""


def run_accuracy(args: argparse.Namespace) -> int:
    """Read the errors, assess them, print the table and sentences (or JSON)."""
    refused: list[str] = []
    errors = read_errors_csv(args.errors, refused)
    warn = Console(stderr=True, highlight=False, soft_wrap=True)
    for line in refused:
        warn.print(f"[yellow]refused[/] {escape(str(args.errors))}: {escape(line)}",
                   markup=True)
    result = assess(errors, plan=args.plan, env=args.env, initial=args.initial,
                    wanted_class=args.wanted_class)
    if args.json:
        data = result.to_dict()
        data["refused"] = refused
        sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
    else:
        _print(result)
    return 1 if args.wanted_class is not None and not result.accepted else 0


def _print(result) -> None:
    """A table of the numbers, then the sentences that explain them."""
    console = Console(highlight=False, soft_wrap=True)
    at = result.wanted or result.class_name
    table = Table(title=f"COST 323, plan {result.plan}, environment {result.env}"
                        + (", initial verification" if result.initial else "")
                        + f"; all in %, δ and π at class {at}",
                  header_style="bold")
    for name in ("criterion", "n", "mean", "std", "π0", "d_min", "class", "δ", "π", "ok"):
        table.add_column(name, justify="left" if name == "criterion" else "right")
    for c in result.criteria:
        table.add_row(c.criterion, str(c.n), f"{c.mean:+.2f}", f"{c.std:.2f}",
                      f"{c.pi0:.1f}", f"{c.d_min:.2f}", c.class_name, f"±{c.delta:g}",
                      f"{c.pi:.1f}", "[green]yes[/]" if c.accepted else "[bold red]no[/]")
    console.print(table)
    for line in result.explain():
        console.print(escape(line))

"""``zhichao grade``: grade one vehicle against the rule tables and explain the result.

Prints the limit and why, the tolerance, the excess, the band, the action and the fine, and
every rule that produced them with its source; with ``--json``, exactly one JSON object.
"""

import argparse
import json
import math
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from overload import Grade, RuleError, grade, load_rules
from overload.applied import fmt_num

ACTION_STYLE = {"none": "green", "warning": "yellow", "fine": "bold red"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``zhichao grade``."""
    p = sub.add_parser("grade", help="grade one vehicle's gross mass under the rule tables",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--axles", required=True, metavar="CODE", help="axle code, e.g. 157")
    p.add_argument("--gross-kg", required=True, metavar="N", help="measured gross mass, kg")
    p.add_argument("--benchmark", default="national", metavar="NAME",
                   help="discretion benchmark (a file under rules/benchmarks; default national)")
    p.add_argument("--tolerance", default="none", metavar="POLICY",
                   help="tolerance policy of tolerance.yaml (default none)")
    p.add_argument("--accuracy-class", metavar="C", help="device accuracy class (for mpe)")
    p.add_argument("--rounding", choices=("floor", "ceil", "pro_rata"),
                   help="how a partial tonne counts (default: the benchmark's)")
    p.add_argument("--licence-mass-kg", metavar="N", help="total mass on the vehicle licence")
    p.add_argument("--air-suspension", action="store_true",
                   help="drive axles dual-tyred and air-suspended (from the register)")
    p.add_argument("--height-m", metavar="M", help="measured height, m")
    p.add_argument("--width-m", metavar="M", help="measured width, m")
    p.add_argument("--length-m", metavar="M", help="measured length, m")
    p.add_argument("--rules", type=Path, metavar="DIR", help="rules folder (default: shipped)")
    p.add_argument("--vendor", default="generic", help="vendor table for digits 8 and 9")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)


def _number(text: str | None, option: str, *, positive: bool = False) -> float | None:
    """Parse a command-line number, or raise RuleError naming the option and the value."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    floor_ok = value > 0 if positive else value >= 0
    if not (math.isfinite(value) and floor_ok):
        bound = "above 0" if positive else "0 or more"
        raise RuleError(f"option {option} must be a number {bound} (got {text!r})")
    return value


def run(args: argparse.Namespace) -> int:
    """Grade and print; returns the exit status."""
    rules = load_rules(args.rules, vendor=args.vendor)
    result = grade(
        args.axles,
        _number(args.gross_kg, "--gross-kg"),
        rules,
        benchmark=args.benchmark,
        tolerance=args.tolerance,
        accuracy_class=_number(args.accuracy_class, "--accuracy-class", positive=True),
        rounding=args.rounding,
        licence_mass_kg=_number(args.licence_mass_kg, "--licence-mass-kg", positive=True),
        air_suspension=args.air_suspension,
        height_m=_number(args.height_m, "--height-m", positive=True),
        width_m=_number(args.width_m, "--width-m", positive=True),
        length_m=_number(args.length_m, "--length-m", positive=True),
    )
    if args.json:
        sys.stdout.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
    else:
        _explain(result, Console(highlight=False, soft_wrap=True))
    return 0


def _fine_words(g: Grade) -> str:
    if g.action != "fine":
        return "no fine"
    if g.fine_yuan is not None:
        return f"fine {fmt_num(g.fine_yuan)} yuan"
    return f"fine {fmt_num(g.fine_min_yuan or 0)}–{fmt_num(g.fine_max_yuan or 0)} yuan"


def _explain(g: Grade, console: Console) -> None:
    """The grade in plain words, then each rule with its source."""
    style = ACTION_STYLE[g.action]
    inferred = " [yellow](inferred: code not in the vehicle map)[/]" if g.inferred else ""
    console.print(
        f"[bold]{g.axle_code}[/] {g.kind}{inferred}: limit [bold]{fmt_num(g.limit_kg)} kg[/]; "
        f"measured {fmt_num(g.measured_kg)} kg, tolerance {fmt_num(round(g.tolerance_kg, 2))} kg "
        f"({g.tolerance_policy}) → graded excess {fmt_num(round(g.excess_kg, 2))} kg "
        f"({g.excess_pct:.1f} % of the limit)."
    )
    console.print(
        f"benchmark {g.benchmark}, band {g.band or '—'}, rounding {g.rounding}: "
        f"[{style}]{g.action}[/], {_fine_words(g)}."
    )
    for check in g.dimensions:
        verdict = "over" if check.over else "within"
        console.print(f"{check.quantity} {fmt_num(check.measured_m)} m: {verdict} "
                      f"the {fmt_num(check.limit_m)} m limit")
    for note in g.assumptions:
        console.print(f"[yellow]assumed:[/] {note}")
    table = Table(title="rules applied", header_style="bold", show_lines=False)
    for name in ("rule", "what it did", "source"):
        table.add_column(name, overflow="fold")
    for rule in g.rules:
        mark = " [yellow](verify)[/]" if rule.verify else ""
        table.add_row(rule.id + mark, rule.detail, rule.source.cite())
    console.print(table)
    console.print(f"rule tables {g.rules_digest[:12]}")

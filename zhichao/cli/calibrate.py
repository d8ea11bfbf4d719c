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
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from calibration.accuracy import ENVIRONMENTS, PLANS, assess, read_errors_csv
from calibration.chain import Chain
from calibration.procedure import (
    apply_chain,
    certificate_from,
    load_trucks,
    read_passes,
    run_calibration,
    save_truck,
    weigh_axles,
)
from drivers.serial_link import PROTOCOLS, SerialDevice
from edge.settings import EdgeSettings, load_edge_settings
from edge.weighing import unit_chain
from zhichao.errors import ConfigError

MAX_REFUSED_SHOWN = 20


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


def _add_run(actions: argparse._SubParsersAction) -> None:
    """Register ``zhichao calibrate run``."""
    p = actions.add_parser(
        "run", help="fit a calibration from reference trucks and write the report",
        description="Match the passes a unit weighed to reference trucks weighed on a static "
        "scale, fit channel gains, speed factors and a temperature correction to the chain "
        "the unit weighs with now, and write the proposed chain and an HTML report to "
        "--out. Nothing is applied: see `zhichao calibrate apply`.")
    p.add_argument("--config", required=True, type=Path, help="the unit's settings file")
    p.add_argument("--trucks", required=True, type=Path,
                   help="YAML: the reference trucks' static axle loads (docs/calibration.md)")
    p.add_argument("--passes", required=True, type=Path,
                   help="JSON lines of the passes weighed during the runs "
                        "(zhichao edge run --json)")
    p.add_argument("--out", required=True, type=Path, help="folder for the chain and report")
    p.add_argument("--version", required=True, help="name of the new chain, e.g. 2026-12-cal")
    p.add_argument("--plan", default="r2", choices=PLANS, help="COST 323 test plan")
    p.add_argument("--env", default="I", choices=ENVIRONMENTS, help="COST 323 environment")
    p.add_argument("--no-report", action="store_true", help="the chain only, no HTML")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run_run)


def _add_apply(actions: argparse._SubParsersAction) -> None:
    """Register ``zhichao calibrate apply``."""
    p = actions.add_parser(
        "apply", help="approve a proposed chain and make it the unit's",
        description="Approve every stage of a proposed chain in a person's name and write it "
        "to the unit's calibration_file (the chain it replaces is kept beside it). A unit "
        "adjusted must be verified again: a chain without a valid verification "
        "certificate gives captures the center does not take as evidence.")
    p.add_argument("--config", required=True, type=Path, help="the unit's settings file")
    p.add_argument("--chain", required=True, type=Path, help="the proposed chain (JSON)")
    p.add_argument("--by", required=True, help="who approves it (name or staff number)")
    p.add_argument("--certificate", help="number of the verification certificate")
    p.add_argument("--valid-from", type=date.fromisoformat, metavar="YYYY-MM-DD")
    p.add_argument("--valid-to", type=date.fromisoformat, metavar="YYYY-MM-DD")
    p.set_defaults(run=run_apply)


def _add_weigh(actions: argparse._SubParsersAction) -> None:
    """Register ``zhichao calibrate weigh``."""
    p = actions.add_parser(
        "weigh", help="weigh a reference truck axle by axle on a static scale",
        description="Read each axle's stable weight from a static scale indicator (XK3190 "
        "or Toledo continuous output) and put the truck into a trucks file for "
        "`zhichao calibrate run`. For each axle: drive it onto the scale alone, wait, press "
        "Enter; the first stable weight after that is taken.")
    p.add_argument("--serial", required=True, metavar="PORT", help="the indicator's port")
    p.add_argument("--protocol", required=True, choices=("xk3190", "toledo"))
    p.add_argument("--baud", type=int, default=9600)
    p.add_argument("--truck", required=True, help="the truck's name in the trucks file")
    p.add_argument("--axles", required=True, type=int, choices=range(2, 9), metavar="2..8")
    p.add_argument("--trucks", required=True, type=Path, help="trucks file (YAML) to write")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds to wait for a stable weight per axle")
    p.set_defaults(run=run_weigh)


ACTIONS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_accuracy, _add_run, _add_apply, _add_weigh)
"""The actions of ``zhichao calibrate``, each registering its own parser and ``run``."""


def run_run(args: argparse.Namespace) -> int:
    """Read the settings, trucks and passes; match, fit, write; print what was found."""
    settings = load_edge_settings(args.config)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    before = _chain_now(settings, args.config, err)
    trucks = load_trucks(args.trucks)
    refused: list[str] = []
    passes = read_passes(args.passes, refused)
    with err.status("calibrating") as status:
        result = run_calibration(trucks, passes, before, settings.site, args.out,
                                 version=args.version, plan=args.plan, env=args.env,
                                 refused=refused, report=not args.no_report,
                                 progress=lambda m: status.update(escape(m)))
    for line in result.refused[:MAX_REFUSED_SHOWN]:
        err.print(f"[yellow]set aside[/] {escape(line)}", markup=True)
    if args.json:
        sys.stdout.write(json.dumps({
            "runs": len(result.runs), "refused": result.refused,
            "before": result.before.to_dict(), "after": result.after.to_dict(),
            "chain": str(result.chain_path), "report": str(result.report_path or ""),
            "uncertainty_pct": result.fit.uncertainty_pct, "notes": result.fit.notes},
            ensure_ascii=False) + "\n")
        return 0
    out = Console(highlight=False)
    out.print(f"{len(result.runs)} runs of {len(trucks)} trucks; gross weight "
              f"{result.before.class_name} before, {result.after.class_name} after "
              f"(on the same runs; plan {args.plan}, environment {args.env})")
    for line in result.fit.chain.describe():
        out.print("  " + escape(line))
    for note in result.fit.notes:
        out.print("[yellow]note[/] " + escape(note))
    out.print(f"proposed chain: {escape(str(result.chain_path))}"
              + (f"\nreport: {escape(str(result.report_path))}" if result.report_path else "")
              + f"\napply it with: zhichao calibrate apply --config {escape(str(args.config))} "
                f"--chain {escape(str(result.chain_path))} --by NAME")
    return 0


def _chain_now(settings: EdgeSettings, config: Path, err: Console) -> Chain:
    """The chain the passes were weighed with: the unit's; the factory chain where the
    settings name a calibration file that is not written yet (the first calibration)."""
    target = settings.calibration_file
    if target is not None and not (config.parent / target).exists():
        err.print(f"[yellow]note[/] {escape(str(target))} does not exist yet: the passes "
                  "are taken as weighed without calibration (factory)", markup=True)
        return Chain.identity(settings.device_id, settings.evidence.calibration_version)
    return unit_chain(settings, config.parent)


def run_apply(args: argparse.Namespace) -> int:
    """Approve the chain and write it where the settings say the unit's chain is."""
    settings = load_edge_settings(args.config)
    if settings.calibration_file is None:
        raise ConfigError(f"{args.config}: calibration_file is not set; name the file the "
                          "unit's chain is kept in (e.g. calibration_file: calibration.json)")
    target = settings.calibration_file
    if not target.is_absolute():
        target = args.config.parent / target
    certificate = certificate_from(args.certificate, args.valid_from, args.valid_to)
    chain = apply_chain(args.chain, target, device_id=settings.device_id, by=args.by,
                        certificate=certificate)
    out = Console(highlight=False)
    out.print(f"{escape(target.name)}: chain {escape(chain.version)} "
              f"({chain.digest()[:12]}) applied by {escape(args.by)}")
    if chain.certificate is None:
        out.print("[yellow]no verification certificate:[/] captures weighed with this chain "
                  "are not evidence until one is recorded (--certificate, --valid-from, "
                  "--valid-to)")
    return 0


def run_weigh(args: argparse.Namespace) -> int:
    """Weigh the axles one by one and write the truck into the trucks file."""
    device = SerialDevice("scale", args.serial, PROTOCOLS[args.protocol], baudrate=args.baud)
    out = Console(highlight=False)

    def ask(k: int) -> None:
        out.print(f"drive axle {k + 1} of {args.axles} onto the scale alone, then press Enter")
        sys.stdin.readline()

    device.start()
    try:
        loads = weigh_axles(lambda t: device.readings(timeout_s=t), args.axles, prompt=ask,
                            timeout_s=args.timeout)
    finally:
        device.stop()
    save_truck(args.trucks, args.truck, loads, scale=f"{args.protocol} on {args.serial}")
    out.print(f"{escape(args.truck)}: " + ", ".join(f"{w:.0f}" for w in loads)
              + f" kg (gross {sum(loads):.0f} kg) → {escape(str(args.trucks))}")
    return 0

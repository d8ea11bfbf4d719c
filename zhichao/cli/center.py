"""``zhichao center``: run the center, keep its device registry, review cases, export.

``run`` receives packets (``center.receiver``) and turns stored packets into graded
captures and cases every few seconds; ``devices`` imports, lists and enrols the registry;
``cases`` lists and shows cases and takes them through the procedure after review
(``zhichao.cli.procedure``: review, approve, notify, defence, decide, serve, pay, close,
reject; every step audited); ``vehicles`` and ``staff`` keep the registers;
``export --closed`` writes the Order 62 Art. 44 data set. Every command reads the center's
settings (``--config FILE``; defaults without one) and brings the database to the latest
migration first, but ``doctor``, which only reads and says what is wrong (``center.doctor``).
"""

import argparse
import json
import logging
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.orm import Session

from center import doctor as center_doctor
from center import service
from center.cases import (
    case_detail,
    case_to_dict,
    law_rules,
    list_cases,
)
from center.export import closed_rows, to_csv, to_json
from center.law_models import CASE_STATUSES
from center.registry import (
    accuracy_classes,
    count_devices,
    device_to_dict,
    import_registry,
    iter_devices,
    list_devices,
)
from center.service import open_db
from overload.applied import fmt_num
from zhichao.cli.center_common import config_option, console, count, settings_of
from zhichao.cli.center_keys import add_center_key_commands
from zhichao.cli.device_keys import add_key_commands
from zhichao.cli.procedure import add_procedure_commands
from zhichao.cli.registers import add_register_commands, subparsers_of
from zhichao.cli.web import add_web_commands
from zhichao.errors import ConfigError

LIST_PAGE = 100
"""Devices shown by ``devices list`` without ``--limit`` (the table; --json gives all)."""
IDS_SHOWN = 10
"""Device ids named after an import; the others are counted."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``zhichao center`` and its subcommands."""
    p = sub.add_parser("center", help="the center: receive, registry, cases, export",
                       description=__doc__.split("\n\n")[0])
    center = p.add_subparsers(dest="center_command", metavar="ACTION", required=True)

    run = config_option(center.add_parser("run", help="receive packets and make cases"))
    run.add_argument("--seconds", type=float, metavar="N",
                     help="stop after N seconds (default: until interrupted)")
    only = run.add_mutually_exclusive_group()
    only.add_argument("--process-only", action="store_true",
                      help="no receiver: only turn stored packets into captures and cases "
                      "(another process receives; several may run on one PostgreSQL "
                      "database, each claiming packets with row locks)")
    only.add_argument("--receive-only", action="store_true",
                      help="no case processing: only receive, store and acknowledge "
                      "packets (a --process-only process makes the cases; several "
                      "receivers may share one PostgreSQL database and image store)")
    run.set_defaults(run=run_center)

    devices = center.add_parser("devices", help="the device registry").add_subparsers(
        dest="devices_command", metavar="ACTION", required=True)
    imp = config_option(devices.add_parser("import", help="import devices from CSV or YAML"))
    imp.add_argument("file", type=Path, metavar="FILE", help="devices.csv or devices.yaml")
    imp.add_argument("--by", default="import", metavar="NAME", help="who imports (audit)")
    imp.add_argument("--encoding", metavar="NAME",
                     help="the file's encoding (utf-8, gbk, gb18030, utf-16…); default: "
                     "its byte order mark, else utf-8 if it decodes, else gb18030")
    imp.set_defaults(run=run_devices_import)
    lst = config_option(devices.add_parser("list", help="list registered devices"))
    lst.add_argument("--json", action="store_true", help="one JSON object per device")
    lst.add_argument("--limit", type=count, metavar="N",
                     help=f"at most N devices (default: {LIST_PAGE} in the table, all with "
                     "--json, read a page at a time)")
    lst.add_argument("--offset", type=count, default=0, metavar="N",
                     help="skip the first N devices (by device id)")
    lst.set_defaults(run=run_devices_list)
    enrol = config_option(devices.add_parser("enrol", help="accept a roadside unit's keys"))
    enrol.add_argument("--id", required=True, metavar="ID", help="device id")
    enrol.add_argument("--sign-key", required=True, type=Path, metavar="PUBFILE",
                       help="the unit's NAME.sign.pub (zhichao keys new)")
    enrol.add_argument("--curve-key", required=True, type=Path, metavar="PUBFILE",
                       help="the unit's NAME.key (CURVE public key)")
    enrol.add_argument("--replace", action="store_true", help="replace enrolled keys")
    enrol.set_defaults(run=run_devices_enrol)
    add_key_commands(devices)

    cases = center.add_parser("cases", help="review cases").add_subparsers(
        dest="cases_command", metavar="ACTION", required=True)
    clist = config_option(cases.add_parser("list", help="list cases"))
    clist.add_argument("--status", choices=CASE_STATUSES, help="only cases in this state")
    clist.add_argument("--json", action="store_true", help="one JSON object per case")
    clist.set_defaults(run=run_cases_list)
    show = config_option(cases.add_parser("show", help="a case with its captures, rules, checks"))
    show.add_argument("case_id", type=int, metavar="ID")
    show.add_argument("--json", action="store_true", help="one JSON object")
    show.set_defaults(run=run_cases_show)
    add_procedure_commands(cases, center, config_option)
    add_register_commands(center)
    add_web_commands(center, subparsers_of(center.choices["staff"]))
    add_center_key_commands(center)

    doc = config_option(center.add_parser(
        "doctor", help="check the center and say what to fix",
        description="Check the center (center/doctor.py): the database reachable and at the "
        "code's migration, the image store writable, free disk, enrolled units silent for "
        "too long, the CURVE secret key's permissions, the last hour's refusals. Only "
        "reads (never migrates). Exit status 1 when anything is an error."))
    doc.add_argument("--json", action="store_true", help="one JSON object")
    doc.set_defaults(run=run_doctor)

    export = config_option(center.add_parser("export", help="the Order 62 Art. 44 data set"))
    export.add_argument("--closed", action="store_true", required=True,
                        help="closed cases (the only data set so far)")
    export.add_argument("--format", choices=("json", "csv"), default="json")
    export.add_argument("--out", type=Path, metavar="FILE", help="write here, not stdout")
    export.set_defaults(run=run_export)


def run_center(args: argparse.Namespace) -> int:
    """Receiver and case processing (or one of them) until interrupted or ``--seconds``
    passed."""
    settings = settings_of(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    service.run_center(settings, seconds=args.seconds, receive=not args.process_only,
                       process=not args.receive_only)
    return 0


def run_devices_import(args: argparse.Namespace) -> int:
    """Import a registry file in one transaction; print what changed."""
    settings = settings_of(args)
    classes = accuracy_classes(law_rules(settings.law))
    engine = open_db(settings)
    with Session(engine) as session, session.begin():
        result = import_registry(session, args.file, actor=args.by, encoding=args.encoding,
                                 classes=classes)
    ids = ", ".join(result.devices[:IDS_SHOWN])
    more = len(result.devices) - IDS_SHOWN
    ids += f" and {more} more" if more > 0 else ""
    console().print(f"{args.file}: {result.added} devices added, {result.updated} updated "
                     f"({ids})")
    return 0


def run_devices_list(args: argparse.Namespace) -> int:
    """Registered devices, their certificates, notices and suspensions: a page of them,
    read from the database a page at a time."""
    engine = open_db(settings_of(args))
    with Session(engine) as session:
        if args.json and args.limit is None:
            devices = iter_devices(session, offset=args.offset)
        else:
            limit = LIST_PAGE if args.limit is None else args.limit
            devices = list_devices(session, limit=limit, offset=args.offset)
        if args.json:
            for record, stops in devices:
                data = device_to_dict(record, stops)
                sys.stdout.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")
            return 0
        table = Table(title="device registry", header_style="bold")
        for name in ("device", "place", "review", "certificate", "signs", "notice",
                     "enforcement", "active", "suspensions"):
            table.add_column(name, overflow="fold")
        for r, stops in devices:
            cells = (
                r.device_id, f"{r.road} {r.stake} {r.direction} ({r.latitude}, {r.longitude})",
                str(r.review_date or "—"),
                f"{r.certificate_number or '—'} class {r.accuracy_class or '—'} "
                f"{r.certificate_valid_from or '?'}–{r.certificate_valid_to or '?'}",
                str(r.signs_installed or "—"),
                f"{r.notice_date or '—'} {r.notice_document or ''}",
                str(r.enforcement_start or "—"), "yes" if r.active else "no",
                "; ".join(f"{s.starts}–{s.ends or ''} {s.reason}" for s in stops) or "—")
            table.add_row(*(escape(cell) for cell in cells))
        total = count_devices(session)
        first, last = args.offset + 1, args.offset + len(devices)
        if len(devices) < total:
            table.caption = (f"devices {first}–{last} of {total}" if devices
                             else f"no device after the first {args.offset} of {total}")
            if last < total:
                table.caption += f"; --offset {last} for the next"
        console().print(table)
    return 0


def run_devices_enrol(args: argparse.Namespace) -> int:
    """Enrol a roadside unit's public keys (the receiver accepts it at its next connection)."""
    from center.ingest import enrol_from_files  # noqa: PLC0415 (zmq only when enrolling)

    engine = open_db(settings_of(args))
    enrol_from_files(engine, args.id, args.sign_key, args.curve_key, replace=args.replace)
    console().print(f"device {args.id} enrolled")
    return 0


def run_cases_list(args: argparse.Namespace) -> int:
    """Cases, newest first, as a table or JSON lines."""
    engine = open_db(settings_of(args))
    with Session(engine) as session:
        cases = [case_to_dict(c) for c in list_cases(session, args.status)]
    if args.json:
        for case in cases:
            sys.stdout.write(json.dumps(case, ensure_ascii=False) + "\n")
        return 0
    table = Table(title=f"cases ({args.status or 'all'})", header_style="bold")
    for name in ("id", "plate", "status", "last capture (UTC)", "action", "fine yuan",
                 "first violation", "acts 12 m"):
        table.add_column(name, overflow="fold")
    for c in cases:
        table.add_row(str(c["id"]), escape(c["plate"]), c["status"], c["last_at"],
                      c["action"], _num(c["fine_yuan"]),
                      "yes" if c["first_violation"] else "no",
                      f"{c['cases_12m']}" + (" (Art. 66)" if c["repeat_over_limit"] else ""))
    console().print(table)
    return 0


def run_cases_show(args: argparse.Namespace) -> int:
    """One case: its state, each capture with every rule applied and every legality check,
    and the audit trail."""
    engine = open_db(settings_of(args))
    with Session(engine) as session:
        detail = case_detail(session, args.case_id)
    if args.json:
        sys.stdout.write(json.dumps(detail, ensure_ascii=False) + "\n")
        return 0
    _show(detail, console())
    return 0


def _num(value: float | None, unit: str = "") -> str:
    return "—" if value is None else f"{fmt_num(round(value, 2))}{unit}"


def _show(detail: dict, console: Console) -> None:
    """The case in words; the evidence capture with every check and rule, the attached
    ones with their failed checks; then the audit trail."""
    case = detail["case"]
    console.print(f"[bold]case {case['id']}[/] {escape(case['plate'])} "
                  f"({escape(str(case['plate_colour']))}): {case['status']}; "
                  f"{case['action']}, fine {_num(case['fine_yuan'], ' yuan')}")
    console.print(f"first violation (行政处罚法 Art. 33): "
                  f"{'yes' if case['first_violation'] else 'no'}; acts in the look-back: "
                  f"{case['cases_12m']}, overload captures: {case['captures_12m']}"
                  + (" — more than allowed (公路安全保护条例 Art. 66)"
                     if case["repeat_over_limit"] else ""))
    if case["decision"] is not None:
        console.print(f"decision: {escape(case['decision'])}, fine "
                      f"{_num(case['decision_fine_yuan'], ' yuan')}")
    for c in detail["captures"]:
        console.print(f"\n[bold]capture {c['id']}[/] ({c['role']}) {escape(c['device_id'])} "
                      f"#{c['sequence']} at {c['captured_at']}: {c['axle_code']} "
                      f"{_num(c['gross_kg'], ' kg')}, limit {_num(c['limit_kg'], ' kg')}, "
                      f"graded excess {_num(c['excess_kg'], ' kg')}, {c['action']}; "
                      f"evidence: {'yes' if c['evidential'] else 'no'}")
        if c["role"] != "evidence":
            failed = [k for k in c["checks"] if not k["ok"]]
            console.print(f"{len(c['checks']) - len(failed)} of {len(c['checks'])} "
                          "legality checks passed")
            for k in failed:
                console.print(f"  [red]{k['id']}[/]: {escape(k['text'])} "
                              f"({escape(k['source'])})")
            continue
        checks = Table(title="legality", header_style="bold")
        for name in ("check", "ok", "finding", "source"):
            checks.add_column(name, overflow="fold")
        for k in c["checks"]:
            checks.add_row(k["id"], "yes" if k["ok"] else "[red]no[/]", escape(k["text"]),
                           escape(k["source"]))
        console.print(checks)
        rules = Table(title="rules applied", header_style="bold")
        for name in ("rule", "what it did", "source"):
            rules.add_column(name, overflow="fold")
        for r in (c["grade"] or {}).get("rules", []):
            rules.add_row(r["id"] + (" [yellow](verify)[/]" if r["verify"] else ""),
                          escape(r["detail"]), escape(r["cite"]))
        console.print(rules)
    console.print("\n[bold]audit[/]")
    for a in detail["audit"]:
        console.print(f"{a['at']} {escape(a['actor'])}: {a['action']} — {escape(a['detail'])}")


def run_export(args: argparse.Namespace) -> int:
    """The closed cases as JSON or CSV, to a file or stdout."""
    settings = settings_of(args)
    rules = law_rules(settings.law)
    engine = open_db(settings)
    with Session(engine) as session:
        rows = closed_rows(session, rules)
    text = to_json(rows) if args.format == "json" else to_csv(rows)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    try:
        args.out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--out {args.out}: cannot write: {exc.strerror or exc}") from None
    Console(stderr=True, highlight=False).print(f"{len(rows)} closed cases → {args.out}")
    return 0


def run_doctor(args: argparse.Namespace) -> int:
    """Run ``zhichao center doctor``; the exit status says whether anything is an error."""
    findings = center_doctor.examine(settings_of(args))
    if args.json:
        print(json.dumps(center_doctor.summary(findings), ensure_ascii=False), flush=True)
        return center_doctor.exit_status(findings)
    table = Table(title="center", show_lines=True)
    for column in ("check", "", "what", "fix"):
        table.add_column(column, overflow="fold")
    marks = {"error": "[red]ERROR[/]", "warning": "[yellow]warn[/]", "info": "[green]ok[/]"}
    for f in findings:
        table.add_row(escape(f.check), marks["info"] if f.ok else marks[f.severity],
                      escape(f.what), escape(f.fix))
    Console(highlight=False).print(table)
    return center_doctor.exit_status(findings)

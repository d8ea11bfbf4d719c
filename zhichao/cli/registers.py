"""``zhichao center vehicles|staff …`` and ``zhichao center devices history``: the registers.

``vehicles import FILE [--dry-run]`` adds or updates the vehicle register (kind, licence
mass, air suspension, owner, transport certificate) from CSV or YAML in one transaction;
``vehicles list`` and ``vehicles show PLATE`` print it. ``staff import FILE`` and ``staff
list`` keep the officers, their roles and credential numbers. ``devices history DEVICE``
prints every version of a device of the registry, with the day each is in force from.
Parsing and printing only: the work is in :mod:`center.vehicles`, :mod:`center.staff` and
:mod:`center.registry`. Every command reads ``--config FILE`` like the other center
commands and brings the database to the latest migration first.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.orm import Session

from center.registry import RegistryError, device_history
from center.service import open_db
from center.staff import import_staff, list_staff
from center.vehicles import (
    VehicleError,
    count_vehicles,
    find_plate,
    import_vehicles,
    list_vehicles,
    vehicle_to_dict,
)
from zhichao.cli.center_common import config_option as _config
from zhichao.cli.center_common import count as _count
from zhichao.cli.center_common import settings_of

LIST_PAGE = 100
"""Vehicles shown by ``vehicles list`` without ``--limit`` (the table; --json gives all)."""
SHOWN = 10
"""Plates or officers named after an import; the others are counted."""


def subparsers_of(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    """The parser's subcommands, if it has any."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def add_register_commands(center: argparse._SubParsersAction) -> None:
    """Register ``vehicles`` and ``staff`` under ``zhichao center``, and ``history``
    under its ``devices`` (when that is registered already)."""
    _vehicles(center)
    _staff(center)
    devices = center.choices.get("devices")
    found = subparsers_of(devices) if devices is not None else None
    if found is not None:
        add_devices_history(found)


def _encoding(p: argparse.ArgumentParser) -> None:
    p.add_argument("--encoding", metavar="NAME",
                   help="the file's encoding (utf-8, gbk, gb18030, utf-16…); default: its "
                   "byte order mark, else utf-8 if it decodes, else gb18030")
    p.add_argument("--by", default="import", metavar="NAME", help="who imports (audit)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the file and say what would change; write nothing")


def _vehicles(center: argparse._SubParsersAction) -> None:
    sub = center.add_parser("vehicles", help="the vehicle register").add_subparsers(
        dest="vehicles_command", metavar="ACTION", required=True)
    imp = _config(sub.add_parser("import", help="import vehicles from CSV or YAML"))
    imp.add_argument("file", type=Path, metavar="FILE", help="vehicles.csv or vehicles.yaml")
    _encoding(imp)
    imp.set_defaults(run=run_vehicles_import)
    lst = _config(sub.add_parser("list", help="list the vehicle register"))
    lst.add_argument("--json", action="store_true", help="one JSON object per vehicle")
    lst.add_argument("--limit", type=_count, metavar="N",
                     help=f"at most N vehicles (default: {LIST_PAGE} in the table, all with "
                     "--json)")
    lst.add_argument("--offset", type=_count, default=0, metavar="N",
                     help="skip the first N vehicles (by plate)")
    lst.set_defaults(run=run_vehicles_list)
    show = _config(sub.add_parser("show", help="one plate's entries (every colour)"))
    show.add_argument("plate", metavar="PLATE")
    show.add_argument("--json", action="store_true", help="one JSON object per entry")
    show.set_defaults(run=run_vehicles_show)


def _staff(center: argparse._SubParsersAction) -> None:
    sub = center.add_parser("staff", help="the staff register").add_subparsers(
        dest="staff_command", metavar="ACTION", required=True)
    imp = _config(sub.add_parser("import", help="import officers from CSV or YAML"))
    imp.add_argument("file", type=Path, metavar="FILE", help="staff.csv or staff.yaml")
    _encoding(imp)
    imp.set_defaults(run=run_staff_import)
    lst = _config(sub.add_parser("list", help="list the officers"))
    lst.add_argument("--json", action="store_true", help="one JSON object per officer")
    lst.set_defaults(run=run_staff_list)


def add_devices_history(devices: argparse._SubParsersAction) -> None:
    """Register ``history DEVICE`` under ``zhichao center devices``."""
    history = _config(devices.add_parser(
        "history", help="every version of a device, with the day each is in force from"))
    history.add_argument("device_id", metavar="DEVICE")
    history.add_argument("--json", action="store_true", help="one JSON object per version")
    history.set_defaults(run=run_devices_history)


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _summary(args: argparse.Namespace, noun: str, added: int, updated: int,
             names: tuple[str, ...]) -> str:
    """What an import did (or, dry, would do), naming the first few rows."""
    shown = ", ".join(names[:SHOWN])
    more = len(names) - SHOWN
    shown += f" and {more} more" if more > 0 else ""
    if args.dry_run:
        return (f"{args.file}: checked, nothing written: {added} {noun} would be added, "
                f"{updated} updated ({shown})")
    return f"{args.file}: {added} {noun} added, {updated} updated ({shown})"


def run_vehicles_import(args: argparse.Namespace) -> int:
    """Import a vehicle register file in one transaction (or only check it)."""
    engine = open_db(settings_of(args))
    with Session(engine) as session:
        result = import_vehicles(session, args.file, actor=args.by, encoding=args.encoding,
                                 dry_run=args.dry_run)
        if not args.dry_run:
            session.commit()
    _console().print(_summary(args, "vehicles", result.added, result.updated, result.plates))
    return 0


def _jsonable(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, default=str)


def _vehicle_table(rows: list, title: str) -> Table:
    table = Table(title=title, header_style="bold")
    for name in ("plate", "colour", "kind", "licence kg", "air susp.", "axles", "owner",
                 "id number", "contact", "transport cert."):
        table.add_column(name, overflow="fold")
    for v in rows:
        contact = " ".join(x for x in (v.phone, v.email, v.address) if x) or "—"
        cells = (v.plate, v.plate_colour, v.kind or "—",
                 "—" if v.licence_mass_kg is None else f"{v.licence_mass_kg:g}",
                 "yes" if v.air_suspension else "no", v.axle_code or "—",
                 f"{v.owner_name} ({v.owner_kind})", v.owner_id_number or "—", contact,
                 v.transport_certificate or "—")
        table.add_row(*(escape(c) for c in cells))
    return table


def run_vehicles_list(args: argparse.Namespace) -> int:
    """The vehicle register, a page of it in a table or all of it as JSON lines."""
    engine = open_db(settings_of(args))
    with Session(engine) as session:
        limit = args.limit if args.limit is not None or args.json else LIST_PAGE
        rows = list_vehicles(session, limit=limit, offset=args.offset)
        if args.json:
            for v in rows:
                sys.stdout.write(_jsonable(vehicle_to_dict(v)) + "\n")
            return 0
        table = _vehicle_table(rows, "vehicle register")
        total = count_vehicles(session)
        if len(rows) < total:
            last = args.offset + len(rows)
            table.caption = f"vehicles {args.offset + 1}–{last} of {total}" if rows else \
                f"no vehicle after the first {args.offset} of {total}"
    _console().print(table)
    return 0


def run_vehicles_show(args: argparse.Namespace) -> int:
    """One plate's register entries (a plate text may be registered in two colours)."""
    engine = open_db(settings_of(args))
    with Session(engine) as session:
        rows = find_plate(session, args.plate)
        if not rows:
            raise VehicleError(f"plate {args.plate} is not in the vehicle register")
        if args.json:
            for v in rows:
                sys.stdout.write(_jsonable(vehicle_to_dict(v)) + "\n")
            return 0
        _console().print(_vehicle_table(rows, f"vehicle register: {args.plate}"))
    return 0


def run_staff_import(args: argparse.Namespace) -> int:
    """Import a staff register file in one transaction (or only check it)."""
    engine = open_db(settings_of(args))
    with Session(engine) as session:
        result = import_staff(session, args.file, actor=args.by, encoding=args.encoding,
                              dry_run=args.dry_run)
        if not args.dry_run:
            session.commit()
    _console().print(_summary(args, "officers", result.added, result.updated,
                              result.officers))
    return 0


def run_staff_list(args: argparse.Namespace) -> int:
    """The officers, their roles, credentials and validity."""
    engine = open_db(settings_of(args))
    with Session(engine) as session:
        officers = list_staff(session)
    if args.json:
        for o in officers:
            sys.stdout.write(_jsonable(o.to_dict()) + "\n")
        return 0
    table = Table(title="staff register", header_style="bold")
    for name in ("officer", "name", "credential", "roles", "active", "valid"):
        table.add_column(name, overflow="fold")
    for o in officers:
        cells = (o.officer_id, o.name, o.credential_number or "—", ", ".join(sorted(o.roles)),
                 "yes" if o.active else "no", f"{o.valid_from or '…'} – {o.valid_to or '…'}")
        table.add_row(*(escape(c) for c in cells))
    _console().print(table)
    return 0


HISTORY_COLUMNS = ("version", "effective_from", "review_date", "certificate_number",
                   "accuracy_class", "certificate_valid_from", "certificate_valid_to",
                   "signs_installed", "notice_date", "notice_document", "enforcement_start",
                   "active", "road", "stake", "direction", "updated_at")


def run_devices_history(args: argparse.Namespace) -> int:
    """Every version of one device, oldest first."""
    engine = open_db(settings_of(args))
    with Session(engine) as session:
        versions = device_history(session, args.device_id)
        if not versions:
            raise RegistryError(f"device {args.device_id} is not in the registry")
        if args.json:
            for r in versions:
                sys.stdout.write(_jsonable({"device_id": r.device_id, **{
                    c: getattr(r, c) for c in HISTORY_COLUMNS}}) + "\n")
            return 0
        table = Table(title=f"device {args.device_id}: every version", header_style="bold")
        for name in ("version", "in force from", "review", "certificate", "signs", "notice",
                     "enforcement", "active", "place", "written (UTC)"):
            table.add_column(name, overflow="fold")
        for r in versions:
            cells = (str(r.version), str(r.effective_from), str(r.review_date or "—"),
                     f"{r.certificate_number or '—'} class {r.accuracy_class or '—'} "
                     f"{r.certificate_valid_from or '?'}–{r.certificate_valid_to or '?'}",
                     str(r.signs_installed or "—"),
                     f"{r.notice_date or '—'} {r.notice_document or ''}",
                     str(r.enforcement_start or "—"), "yes" if r.active else "no",
                     f"{r.road} {r.stake} {r.direction}", f"{r.updated_at:%Y-%m-%d %H:%M}")
            table.add_row(*(escape(c) for c in cells))
    _console().print(table)
    return 0

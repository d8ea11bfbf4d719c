"""Staff pages: the queue's query and filters, what falls due, the registers (devices with
their history, vehicles, staff) and their imports, devices flagged for review.

Every filter and page size is bounded and checked here, and a bad value is refused in one
line (422), never passed to the database. The queue is one query with LIMIT (cases joined
to their evidence capture by its key) and one count; no query per row. Imports run in one
transaction: a file with a bad row writes nothing and the page names every bad row.
"""

import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from center.cases import law_rules, utc
from center.china_time import CST
from center.china_time import today as china_today
from center.law_models import CASE_STATUSES, Capture, Case, DeviceSuspension
from center.oversight import OversightError, oversee
from center.procedure import desk_for, due
from center.registry import (
    RegistryError,
    count_devices,
    device_history,
    device_to_dict,
    import_registry,
    list_devices,
)
from center.settings import CenterSettings
from center.staff import list_staff
from center.vehicles import count_vehicles, import_vehicles, list_vehicles, vehicle_to_dict
from center.web import auth
from center.web.pages import DB, AnyStaff, check_csrf, page, refused, settings_of, staff

router = APIRouter(tags=["staff"])

LIMIT_DEFAULT = 100
"""Rows a list page shows unless asked otherwise."""
LIMIT_MAX = 500
"""The most rows one page may ask for."""
OFFSET_MAX = 10_000_000
"""The furthest a page may start (beyond any register this center holds)."""
DUE_DAYS_DEFAULT = 7
DUE_DAYS_MAX = 366
"""The due list looks at most a year ahead."""
UPLOAD_MAX_BYTES = 5_000_000
"""The largest register file an import takes (5 MB: some 20 000 device rows)."""
UPLOAD_SUFFIXES = (".csv", ".yaml", ".yml")
"""The register files' formats (center.registry.file_rows)."""
TEXT_MAX = 64
"""The longest text filter (a device id has at most 64 characters)."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DAY = re.compile(r"\d{4}-\d\d-\d\d")

Administrator = Annotated[auth.Login, Depends(staff("administrator"))]
"""A handler's log-in: an administrator."""


class FilterError(ValueError):
    """A query parameter out of bounds; the message is the page's one line."""


# --- query parameters --------------------------------------------------------------------

def _only(request: Request, *known: str) -> None:
    """FilterError for a query parameter the page does not know (a typo filters nothing)."""
    unknown = sorted(set(request.query_params) - set(known))
    if unknown:
        raise FilterError(f"unknown parameter {unknown[0][:40]!r} (known: "
                          f"{', '.join(known) or 'none'})")


def _int(name: str, raw: str | None, default: int, low: int, high: int) -> int:
    """A bounded whole number from the query string."""
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise FilterError(f"{name} must be a whole number from {low} to {high} (got {raw[:20]!r})")
    value = int(raw)
    if not low <= value <= high:
        raise FilterError(f"{name} must be from {low} to {high} (got {value})")
    return value


def _text(name: str, raw: str | None) -> str | None:
    """A bounded printable text filter (None when empty)."""
    if raw is None or not raw.strip():
        return None
    raw = raw.strip()
    if len(raw) > TEXT_MAX or _CONTROL.search(raw):
        raise FilterError(f"{name} must be printable text of at most {TEXT_MAX} characters")
    return raw


def _day(name: str, raw: str | None) -> date | None:
    """A calendar day (YYYY-MM-DD) from the query string."""
    if raw is None or raw == "":
        return None
    if not _DAY.fullmatch(raw):
        raise FilterError(f"{name} must be a day YYYY-MM-DD (got {raw[:20]!r})")
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise FilterError(f"{name} {raw} is no calendar day") from None
    if not date(2000, 1, 1) <= day <= date(2100, 12, 31):
        raise FilterError(f"{name} must lie between 2000-01-01 and 2100-12-31 (got {raw})")
    return day


def _choice(name: str, raw: str | None, allowed: tuple[str, ...], default: str | None
            ) -> str | None:
    """One of ``allowed`` (``default`` when absent)."""
    if raw is None or raw == "":
        return default
    if raw not in allowed:
        raise FilterError(f"{name} must be one of {', '.join(allowed)} (got {raw[:40]!r})")
    return raw


def band_ids(settings: CenterSettings) -> tuple[str, ...]:
    """Every band id of the benchmarks in the rule tables (a grade names one)."""
    rules = law_rules(settings.law)
    ids: list[str] = []
    for bench in rules.benchmarks.values():
        ids += [b.id for b in bench.mass.bands]
        if bench.dimensions is not None:
            ids += [b.id for b in bench.dimensions.bands]
    return tuple(ids)


def awaited_steps(settings: CenterSettings) -> dict[str, list[str]]:
    """For each case state, the procedure's steps that may be taken from it (what the case
    awaits), from the procedure table in force."""
    procedure = desk_for(settings, notify=False).procedure
    return {status: [name for name, step in procedure.steps.items()
                     if status in step.from_states and name != "reject"]
            for status in CASE_STATUSES}


# --- the queue ---------------------------------------------------------------------------

EVIDENTIAL = ("yes", "no")
"""yes: cases (opened on evidence); no: captures over the limit that are no evidence."""


@dataclass(frozen=True)
class QueueFilter:
    """The queue's filters and page, each checked."""

    site: str | None
    day: date | None
    band: str | None
    evidential: str
    status: str
    limit: int
    offset: int

    def query(self) -> dict[str, Any]:
        """The filters as query parameters (for links to other pages of the list)."""
        out = {"site": self.site, "day": self.day.isoformat() if self.day else None,
               "band": self.band, "evidential": self.evidential, "status": self.status,
               "limit": self.limit}
        return {k: v for k, v in out.items() if v is not None}


def queue_filter(request: Request, settings: CenterSettings) -> QueueFilter:
    """The queue's filters from the query string; FilterError for an unknown parameter or
    a value out of bounds."""
    q = request.query_params
    _only(request, "site", "day", "band", "evidential", "status", "limit", "offset")
    return QueueFilter(
        site=_text("site", q.get("site")), day=_day("day", q.get("day")),
        band=_choice("band", q.get("band"), band_ids(settings), None),
        evidential=_choice("evidential", q.get("evidential"), EVIDENTIAL, "yes") or "yes",
        status=_choice("status", q.get("status"), CASE_STATUSES, "awaiting_review")
        or "awaiting_review",
        limit=_int("limit", q.get("limit"), LIMIT_DEFAULT, 1, LIMIT_MAX),
        offset=_int("offset", q.get("offset"), 0, 0, OFFSET_MAX))


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    """A CST calendar day as UTC bounds [start, end)."""
    start = datetime.combine(day, time(), CST).astimezone(UTC)
    return start, start + timedelta(days=1)


def _band() -> Any:
    """The band a capture's grade names (JSON on either database)."""
    return Capture.grade["band"].as_string()


def _filtered(query: Select, f: QueueFilter) -> Select:
    """Site, day and band, on the capture joined (the case's evidence, or the capture)."""
    if f.site is not None:
        query = query.where(Capture.device_id == f.site)
    if f.day is not None:
        lo, hi = _day_bounds(f.day)
        query = query.where(Capture.captured_at >= lo, Capture.captured_at < hi)
    if f.band is not None:
        query = query.where(_band() == f.band)
    return query


def _iso(t: datetime | None) -> str | None:
    return None if t is None else utc(t).isoformat().replace("+00:00", "Z")


def _cst(t: datetime | None) -> str | None:
    """A time as China reads it (the pages show CST, the JSON keeps UTC beside it)."""
    return None if t is None else utc(t).astimezone(CST).strftime("%Y-%m-%d %H:%M")


QUEUE_COLUMNS = (Case.id, Case.plate, Case.plate_colour, Case.status, Case.first_at,
                 Case.action, Case.fine_yuan, Case.first_violation, Case.repeat_over_limit)
"""The case columns the queue shows (only these are sorted: a narrow row sorts in memory)."""


def queue_cases(session: Session, f: QueueFilter) -> tuple[int, list[dict[str, Any]]]:
    """Cases in the state asked, oldest first capture first, with the evidence capture's
    site, time and band: one query for the page, one for the count (which joins the
    captures only when a filter is on them)."""
    base = _filtered(select(*QUEUE_COLUMNS, Capture.device_id, Capture.captured_at,
                            _band().label("band"), Capture.evidential).join(
        Capture, Capture.id == Case.best_capture_id).where(Case.status == f.status), f)
    counted = select(func.count()).select_from(Case).where(Case.status == f.status)
    if f.site is not None or f.day is not None or f.band is not None:
        counted = _filtered(counted.join(Capture, Capture.id == Case.best_capture_id), f)
    count = session.scalar(counted) or 0
    rows = session.execute(base.order_by(Case.first_at, Case.id)
                           .limit(f.limit).offset(f.offset or None)).all()
    return count, [{"id": r.id, "plate": r.plate, "plate_colour": r.plate_colour,
                    "status": r.status, "first_at": _iso(r.first_at),
                    "first_at_cst": _cst(r.first_at), "site": r.device_id,
                    "evidence_at": _iso(r.captured_at), "band": r.band, "evidential": r.evidential,
                    "action": r.action, "fine_yuan": r.fine_yuan,
                    "first_violation": r.first_violation,
                    "repeat_over_limit": r.repeat_over_limit}
                   for r in rows]


def queue_captures(session: Session, f: QueueFilter) -> tuple[int, list[dict[str, Any]]]:
    """Captures over the limit that are no evidence (no case opened on them), oldest
    first, each with the checks it failed."""
    where = (Capture.over, ~Capture.evidential)
    count = session.scalar(_filtered(select(func.count()).select_from(Capture)
                                     .where(*where), f)) or 0
    rows = session.scalars(_filtered(select(Capture).where(*where), f)
                           .order_by(Capture.captured_at, Capture.id)
                           .limit(f.limit).offset(f.offset or None)).all()
    return count, [{"capture_id": c.id, "plate": c.plate, "site": c.device_id,
                    "sequence": c.sequence, "captured_at": _iso(c.captured_at),
                    "captured_at_cst": _cst(c.captured_at),
                    "band": (c.grade or {}).get("band"), "action": c.action,
                    "fine_yuan": c.fine_yuan,
                    "failed": [ch.get("text") for ch in c.checks if not ch.get("ok")]}
                   for c in rows]


def queue_context(session: Session, settings: CenterSettings, f: QueueFilter
                  ) -> dict[str, Any]:
    """Everything the queue page shows (and its JSON twin says)."""
    count, rows = (queue_cases if f.evidential == "yes" else queue_captures)(session, f)
    awaited = awaited_steps(settings)
    return {"filters": {**f.query(), "offset": f.offset}, "count": count, "rows": rows,
            "kind": "cases" if f.evidential == "yes" else "captures",
            "awaiting": awaited.get(f.status, []), "statuses": list(CASE_STATUSES),
            "steps": awaited, "bands": list(band_ids(settings)),
            "pages": _pages(count, f.limit, f.offset, f.query())}


def _pages(count: int, limit: int, offset: int, query: dict[str, Any]) -> dict[str, Any]:
    """Links to the page before and after (None at either end), with the filters kept."""
    def link(at: int) -> str:
        return "?" + urlencode({**query, "offset": at})
    return {"from": offset + 1 if count else 0, "to": min(offset + limit, count),
            "previous": link(max(0, offset - limit)) if offset > 0 else None,
            "next": link(offset + limit) if offset + limit < count else None}


# --- what falls due ------------------------------------------------------------------------

@router.get("/staff/due", name="staff_due")
@router.get("/staff/due.json", name="staff_due_json")
def due_list(request: Request, login: AnyStaff, session: DB) -> Response:
    """Every deadline of an open case within the next N days (``days``, 0 to 366), overdue
    first (center.procedure.due)."""
    try:
        _only(request, "days")
        days = _int("days", request.query_params.get("days"), DUE_DAYS_DEFAULT, 0,
                    DUE_DAYS_MAX)
    except FilterError as exc:
        return refused(request, 422, str(exc), login)
    desk = desk_for(settings_of(request), notify=False)
    items = sorted(due(session, desk, days), key=lambda i: (not i.overdue, i.due, i.case_id))
    rows = [{"case_id": i.case_id, "plate": i.plate, "status": i.status, "what": i.what,
             "due": i.due, "days_left": i.days_left, "overdue": i.overdue, "source": i.source}
            for i in items]
    return page(request, "staff/lists_due.html",
                {"days": days, "today": desk.today, "count": len(rows),
                 "overdue": sum(1 for r in rows if r["overdue"]), "items": rows}, login=login)


# --- registers -------------------------------------------------------------------------------

def _paging(request: Request) -> tuple[int, int]:
    """``limit`` and ``offset`` of a register page; FilterError for anything else."""
    _only(request, "limit", "offset")
    q = request.query_params
    return (_int("limit", q.get("limit"), LIMIT_DEFAULT, 1, LIMIT_MAX),
            _int("offset", q.get("offset"), 0, 0, OFFSET_MAX))


def _device_rows(session: Session, limit: int, offset: int) -> list[dict[str, Any]]:
    """A page of the registry: each device's current version with its suspensions."""
    return [device_to_dict(r, s) for r, s in list_devices(session, limit=limit, offset=offset)]


def devices_context(session: Session, limit: int, offset: int) -> dict[str, Any]:
    """The registry page's facts."""
    count = count_devices(session)
    return {"count": count, "devices": _device_rows(session, limit, offset),
            "pages": _pages(count, limit, offset, {"limit": limit}),
            "upload_max_bytes": UPLOAD_MAX_BYTES, "imported": None, "errors": []}


@router.get("/staff/devices", name="staff_devices")
@router.get("/staff/devices.json", name="staff_devices_json")
def devices(request: Request, login: AnyStaff, session: DB) -> Response:
    """The registry: every device's current version, with its suspensions."""
    try:
        limit, offset = _paging(request)
    except FilterError as exc:
        return refused(request, 422, str(exc), login)
    return page(request, "staff/lists_devices.html", devices_context(session, limit, offset),
                login=login)


@router.get("/staff/devices/{device_id}", name="staff_device")
@router.get("/staff/devices/{device_id}.json", name="staff_device_json")  # matched first
def device(request: Request, device_id: str, login: AnyStaff, session: DB) -> Response:
    """One device's every version, oldest first, and its suspensions."""
    if len(device_id) > TEXT_MAX or _CONTROL.search(device_id):
        return refused(request, 422, f"a device id has at most {TEXT_MAX} printable "
                       "characters", login)
    versions = device_history(session, device_id)
    if not versions:
        return refused(request, 404, f"device {device_id} is not in the registry", login)
    stops = list(session.scalars(select(DeviceSuspension).where(
        DeviceSuspension.device_id == device_id).order_by(DeviceSuspension.starts)))
    rows = [device_to_dict(v, []) for v in versions]
    for row in rows:
        row.pop("suspensions")
    return page(request, "staff/lists_device.html", {
        "device_id": device_id, "versions": rows,
        "suspensions": [{"starts": s.starts, "ends": s.ends, "reason": s.reason}
                        for s in stops]}, login=login)


@router.get("/staff/vehicles", name="staff_vehicles")
@router.get("/staff/vehicles.json", name="staff_vehicles_json")
def vehicles(request: Request, login: AnyStaff, session: DB) -> Response:
    """The vehicle register, by plate."""
    try:
        limit, offset = _paging(request)
    except FilterError as exc:
        return refused(request, 422, str(exc), login)
    return page(request, "staff/lists_vehicles.html",
                vehicles_context(session, limit, offset), login=login)


def vehicles_context(session: Session, limit: int, offset: int) -> dict[str, Any]:
    """The vehicle register page's facts."""
    count = count_vehicles(session)
    return {"count": count,
            "vehicles": [vehicle_to_dict(v) for v in list_vehicles(session, limit=limit,
                                                                   offset=offset)],
            "pages": _pages(count, limit, offset, {"limit": limit}),
            "upload_max_bytes": UPLOAD_MAX_BYTES, "imported": None, "errors": []}


@router.get("/staff/staff", name="staff_register")
@router.get("/staff/staff.json", name="staff_register_json")
def staff_register(request: Request, login: Administrator, session: DB) -> Response:
    """The staff register (administrators only): who may act, in which roles, when."""
    officers = [o.to_dict() for o in list_staff(session)]
    return page(request, "staff/lists_staff.html", {"count": len(officers),
                                                     "officers": officers}, login=login)


# --- imports ---------------------------------------------------------------------------------

class UploadError(ValueError):
    """An upload refused before it is read as a register: too big, no file, wrong type."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _upload_name(upload: Any) -> str:
    """A safe file name for the upload (its own name's stem, the register's suffix)."""
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise UploadError(422, "choose a register file (.csv, .yaml or .yml) to import")
    name = Path(upload.filename.replace("\\", "/")).name
    suffix = Path(name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise UploadError(415, f"a register file is .csv, .yaml or .yml (got "
                            f"{suffix[:10] or 'no suffix'!r})")
    stem = re.sub(r"[^0-9A-Za-z_.-]", "_", Path(name).stem)[:60] or "register"
    return stem + suffix


async def _upload(request: Request, login: auth.Login) -> tuple[str, bytes]:
    """The CSRF-checked form's register file, bounded in size before it is parsed."""
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise UploadError(411, "the upload must state its length")
    if int(length) > UPLOAD_MAX_BYTES + 64_000:
        raise UploadError(413, f"a register file is at most {UPLOAD_MAX_BYTES} bytes")
    form = await request.form(max_files=1, max_fields=4)
    csrf = form.get("csrf")
    check_csrf(login, csrf if isinstance(csrf, str) else None)
    upload = form.get("file")
    name = _upload_name(upload)
    data = await upload.read(UPLOAD_MAX_BYTES + 1)
    if len(data) > UPLOAD_MAX_BYTES:
        raise UploadError(413, f"a register file is at most {UPLOAD_MAX_BYTES} bytes")
    if not data:
        raise UploadError(422, f"{name} is empty")
    return name, data


def _run_import(session: Session, importer: Any, name: str, data: bytes, actor: str
                ) -> tuple[Any, list[str]]:
    """Write the upload to a private temporary folder and import it in one transaction:
    (result, []) committed, or (None, the bad rows) with nothing written."""
    with tempfile.TemporaryDirectory(prefix="zhichao-import-") as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        try:
            result = importer(session, path, actor=actor)
        except RegistryError as exc:
            session.rollback()
            text = str(exc).replace(folder + "/", "").replace(folder, "")
            return None, [line for line in text.splitlines() if line.strip()]
        session.commit()
    return result, []


def _actor(login: auth.Login) -> str:
    """Who an import's audit entry names."""
    return f"{login.officer.officer_id} {login.officer.name} (web)"


async def _import(request: Request, login: auth.Login, session: Session, importer: Any
                  ) -> tuple[Any, list[str], Response | None]:
    """The upload imported, or the one-line refusal of the upload itself."""
    try:
        name, data = await _upload(request, login)
    except UploadError as exc:
        return None, [], refused(request, exc.status, str(exc), login)
    result, errors = await run_in_threadpool(_run_import, session, importer, name, data,
                                             _actor(login))
    return result, errors, None


@router.post("/staff/devices/import", name="staff_devices_import")
async def devices_import(request: Request, login: Administrator, session: DB) -> Response:
    """Import a registry file (administrators; CSRF; at most 5 MB): every bad row named
    and nothing written (422), or what changed."""
    result, errors, refusal = await _import(request, login, session, import_registry)
    if refusal is not None:
        return refusal
    ctx = await run_in_threadpool(devices_context, session, LIMIT_DEFAULT, 0)
    if errors:
        return page(request, "staff/lists_devices.html", {**ctx, "errors": errors}, 422,
                    login=login)
    ctx["imported"] = {"added": result.added, "updated": result.updated,
                       "unchanged": result.unchanged, "devices": list(result.devices)}
    return page(request, "staff/lists_devices.html", ctx, login=login)


@router.post("/staff/vehicles/import", name="staff_vehicles_import")
async def vehicles_import(request: Request, login: Administrator, session: DB) -> Response:
    """Import a vehicle register file (administrators; CSRF; at most 5 MB)."""
    result, errors, refusal = await _import(request, login, session, import_vehicles)
    if refusal is not None:
        return refusal
    ctx = await run_in_threadpool(vehicles_context, session, LIMIT_DEFAULT, 0)
    if errors:
        return page(request, "staff/lists_vehicles.html", {**ctx, "errors": errors}, 422,
                    login=login)
    ctx["imported"] = {"added": result.added, "updated": result.updated,
                       "plates": list(result.plates)}
    return page(request, "staff/lists_vehicles.html", ctx, login=login)


# --- oversight -----------------------------------------------------------------------------

@router.get("/staff/oversight", name="staff_oversight")
@router.get("/staff/oversight.json", name="staff_oversight_json")
def oversight(request: Request, login: Administrator, session: DB) -> Response:
    """Devices whose cases or fines per 1 000 vehicles stand far above comparable devices
    (国发〔2024〕5号), for administrators; ``until``: the period's last CST day."""
    try:
        _only(request, "until")
        until = _day("until", request.query_params.get("until")) or china_today()
        table, period, judged = oversee(session, until, settings_of(request).law.rules_folder)
    except (FilterError, OversightError) as exc:
        return refused(request, 422, str(exc).splitlines()[0], login)
    rows = [j.to_dict() for j in judged]
    return page(request, "staff/lists_oversight.html", {
        "title": table.title, "period": {"first": period.first, "last": period.last},
        "per_vehicles": table.per_vehicles.value, "ratio": table.ratio.value,
        "statistics": table.statistics.value, "rule": table.sources(),
        "flagged": sum(1 for r in rows if r["flagged"]), "devices": rows}, login=login)

"""The device registry: where each enforcement device stands, its review, verification
certificate, signs, public notice, enforcement start and suspensions — imported from a CSV
or YAML file that the authority keeps.

Every row is validated before any is written, and the rows go in one transaction, so a
file with one bad row changes nothing; the error names the file, the row and the value
("devices.csv row 4: certificate_valid_to '2025-13-01' is not a date (YYYY-MM-DD)"). In a
CSV file the row is the spreadsheet's row (the header is row 1); in a YAML file it is the
device's place in the list, from 1. Importing again updates the devices named and leaves
the others; a device's suspensions are replaced by those of the file.

CSV suspensions are one cell: ``FROM..TO reason; FROM.. reason`` (an empty TO: open).
"""

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from center.law_models import AuditEntry, DeviceRecord, DeviceSuspension
from zhichao.errors import ZhichaoError

MAX_ERRORS = 50
"""Errors listed at most; a file with more is surely in the wrong format."""


class RegistryError(ZhichaoError):
    """A registry file cannot be imported; nothing of it was written."""


class SuspensionRow(BaseModel):
    """A period of calendar days (both included) in which the device gives no evidence."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    starts: date
    ends: date | None = None
    reason: str = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> "SuspensionRow":
        if self.ends is not None and self.ends < self.starts:
            raise ValueError(f"suspension ends {self.ends} before it starts {self.starts}")
        return self


class DeviceRow(BaseModel):
    """One device of the registry file."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    device_id: str = Field(min_length=1, max_length=64)
    road: str = Field(min_length=1)
    stake: str = Field(min_length=1, description="桩号, e.g. K123+450")
    direction: str = Field(min_length=1)
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    review_date: date | None = None
    certificate_number: str | None = None
    accuracy_class: str | None = None
    certificate_valid_from: date | None = None
    certificate_valid_to: date | None = None
    signs_installed: date | None = None
    notice_date: date | None = None
    notice_document: str | None = None
    notice_url: str | None = None
    enforcement_start: date | None = None
    active: bool = True
    suspensions: list[SuspensionRow] = []

    @model_validator(mode="after")
    def _certificate_ordered(self) -> "DeviceRow":
        start, end = self.certificate_valid_from, self.certificate_valid_to
        if start is not None and end is not None and end < start:
            raise ValueError(f"certificate_valid_to {end} is before certificate_valid_from "
                             f"{start}")
        return self


@dataclass(frozen=True)
class ImportResult:
    """What an import did."""

    added: int
    updated: int
    devices: tuple[str, ...]


@dataclass(frozen=True)
class BadRow:
    """A row that could not even be split into fields, and why."""

    message: str


FIELDS = tuple(DeviceRow.model_fields)
_WORDS = {
    "date_from_datetime_parsing": "is not a date (YYYY-MM-DD)",
    "date_parsing": "is not a date (YYYY-MM-DD)",
    "date_type": "is not a date (YYYY-MM-DD)",
    "float_parsing": "is not a number",
    "float_type": "is not a number",
    "bool_parsing": "is not true or false",
    "missing": "is required but missing",
    "extra_forbidden": "is not a known column",
    "string_too_short": "is empty",
}


def _describe(where: str, exc: ValidationError) -> Iterator[str]:
    """One line per problem: the row, the column, the value and what was wrong."""
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        value = err.get("input")
        words = _WORDS.get(err["type"])
        if words is None:
            words = err["msg"].removeprefix("Value error, ")
            words = words.replace("Input should be", "must be")
        shown = "" if err["type"] in ("missing",) or isinstance(value, dict | list) \
            else f" {value!r}"
        if loc:
            yield f"{where}: {loc}{shown} {words}"
        else:
            yield f"{where}: {words}"


def _parse_suspensions(cell: str) -> list[dict[str, Any]]:
    """``FROM..TO reason; FROM.. reason`` → suspension dicts (validated later)."""
    out = []
    for part in (p.strip() for p in cell.split(";")):
        if not part:
            continue
        span, _, reason = part.partition(" ")
        starts, sep, ends = span.partition("..")
        if not sep:
            raise ValueError(f"suspension {part!r} is not FROM..TO reason")
        out.append({"starts": starts, "ends": ends or None, "reason": reason.strip()})
    return out


def _csv_rows(path: Path, text: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each data row of a CSV file as (where, dict); empty cells are absent values."""
    reader = csv.DictReader(io.StringIO(text))
    unknown = [c for c in reader.fieldnames or () if c and c.strip() not in FIELDS]
    if not reader.fieldnames:
        raise RegistryError(f"{path}: empty file (the header row names the columns: "
                            f"{', '.join(FIELDS)})")
    if unknown:
        raise RegistryError(f"{path} row 1: unknown column(s) {', '.join(unknown)} "
                            f"(known: {', '.join(FIELDS)})")
    for row in reader:
        where = f"{path.name} row {reader.line_num}"
        data: dict[str, Any] = {k.strip(): v for k, v in row.items()
                                if k is not None and v is not None and v.strip() != ""}
        if None in row:
            yield where, BadRow(f"{where}: more cells than the header has columns")
            continue
        if "suspensions" in data:
            try:
                data["suspensions"] = _parse_suspensions(data["suspensions"])
            except ValueError as exc:
                yield where, BadRow(f"{where}: {exc}")
                continue
        yield where, data


def _yaml_rows(path: Path, text: str) -> Iterator[tuple[str, Any]]:
    """Each device of a YAML file (a list, or a mapping with ``devices:``)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise RegistryError(f"{path}:{line} not valid YAML: "
                            f"{getattr(exc, 'problem', exc)}") from None
    if isinstance(data, dict) and set(data) == {"devices"}:
        data = data["devices"]
    if not isinstance(data, list):
        raise RegistryError(f"{path}: expected a list of devices (or 'devices:' with one)")
    for i, item in enumerate(data, start=1):
        label = f" ({item['device_id']})" if isinstance(item, dict) and "device_id" in item \
            else ""
        yield f"{path.name} row {i}{label}", item


def read_registry(path: Path) -> list[DeviceRow]:
    """Read and validate every row of a CSV or YAML registry file; RegistryError listing
    every bad row (up to MAX_ERRORS) if any is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read: {exc.strerror or exc}") from None
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = _csv_rows(path, text)
    elif suffix in (".yaml", ".yml"):
        rows = _yaml_rows(path, text)
    else:
        raise RegistryError(f"{path}: unknown format {suffix!r} (use .csv, .yaml or .yml)")
    devices: list[DeviceRow] = []
    errors: list[str] = []
    seen: dict[str, str] = {}
    for where, data in rows:
        if isinstance(data, BadRow):
            errors.append(data.message)
            continue
        try:
            row = DeviceRow.model_validate(data)
        except ValidationError as exc:
            errors.extend(_describe(where, exc))
            continue
        if row.device_id in seen:
            errors.append(f"{where}: device_id {row.device_id!r} is also in "
                          f"{seen[row.device_id]}")
            continue
        seen[row.device_id] = where
        devices.append(row)
    if errors:
        more = f"\n… and {len(errors) - MAX_ERRORS} more" if len(errors) > MAX_ERRORS else ""
        raise RegistryError("nothing imported:\n" + "\n".join(errors[:MAX_ERRORS]) + more)
    if not devices:
        raise RegistryError(f"{path}: no devices in the file")
    return devices


def import_registry(session: Session, path: Path, actor: str = "import") -> ImportResult:
    """Validate the whole file, then add or update its devices in the session's
    transaction (the caller commits; an exception leaves nothing written)."""
    rows = read_registry(path)
    now = datetime.now(UTC)
    added = updated = 0
    for row in rows:
        values = row.model_dump(exclude={"suspensions"})
        record = session.scalars(select(DeviceRecord).where(
            DeviceRecord.device_id == row.device_id)).first()
        if record is None:
            session.add(DeviceRecord(**values, updated_at=now))
            added += 1
        else:
            for key, value in values.items():
                setattr(record, key, value)
            record.updated_at = now
            updated += 1
        session.execute(delete(DeviceSuspension).where(
            DeviceSuspension.device_id == row.device_id))
        session.add_all(DeviceSuspension(device_id=row.device_id, **s.model_dump())
                        for s in row.suspensions)
    session.add(AuditEntry(at=now, actor=actor, case_id=None, action="devices_import",
                           detail=f"{path}: {added} added, {updated} updated"))
    session.flush()
    return ImportResult(added, updated, tuple(r.device_id for r in rows))


def list_devices(session: Session) -> list[tuple[DeviceRecord, list[DeviceSuspension]]]:
    """Every registered device with its suspensions, by device id."""
    records = session.scalars(select(DeviceRecord).order_by(DeviceRecord.device_id)).all()
    suspensions = session.scalars(select(DeviceSuspension).order_by(
        DeviceSuspension.starts)).all()
    by_device: dict[str, list[DeviceSuspension]] = {}
    for s in suspensions:
        by_device.setdefault(s.device_id, []).append(s)
    return [(r, by_device.get(r.device_id, [])) for r in records]

"""The staff register: who may act on a case, in which roles, and with which credential.

行政处罚法 (2021) Art. 42: an administrative penalty is carried out by enforcement officers
holding enforcement qualifications (具有行政执法资格的执法人员), at least two of them. So a
reviewer (the officers who review and approve a case) must carry the number of an
enforcement credential (执法证号); a legal reviewer (法制审核, Art. 58) and an administrator
need none here. Each entry has a validity (calendar days in China, both included) and may
be made inactive; an officer outside it cannot act.

Imported like the device registry (:mod:`center.registry`): CSV or YAML (``staff:`` with a
list, or the list alone), the encodings a spreadsheet writes, every bad row named, all or
nothing. In CSV the roles are one cell, separated by ``;``, ``,`` (quoted), ``|`` or spaces.
An officer already registered is updated; the others stay.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from center import audit
from center.china_time import today as china_today
from center.law_models import StaffRow
from center.registry import (
    CHUNK_ROWS,
    EARLIEST_DATE,
    Day,
    Layout,
    Refusals,
    RegistryError,
    _implausible,
    _latest_days,
    _printable,
    validated,
)
from zhichao.errors import ZhichaoError

ROLES = ("reviewer", "legal_reviewer", "administrator")
"""reviewer: reviews and approves cases (two different ones per case, Art. 42);
legal_reviewer: 法制审核 (Art. 58); administrator: keeps the registers."""
ENFORCEMENT_ROLES = frozenset({"reviewer"})
"""Roles that are enforcement (行政处罚法 Art. 42): they need a credential number."""
ART42 = "行政处罚法（2021） 第四十二条"

_OFFICER_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z_.-]{0,31}")
_ROLE_SPLIT = re.compile(r"[;,|\s]+")


class StaffError(ZhichaoError):
    """An officer cannot act: unknown, inactive, outside their validity, without the
    role or the credential it needs."""


class StaffImportError(RegistryError):
    """A staff register file cannot be imported; nothing of it was."""


def _roles_cell(data: dict[str, Any]) -> dict[str, Any]:
    """A CSV row's roles cell as a list."""
    if "roles" in data:
        data["roles"] = [r for r in _ROLE_SPLIT.split(data["roles"]) if r]
    return data


class StaffEntry(BaseModel):
    """One officer of the staff file."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    officer_id: str = Field(min_length=1, max_length=32, description="工号")
    name: str = Field(min_length=1, max_length=64)
    credential_number: str | None = Field(None, min_length=1, max_length=32,
                                          description="执法证号")
    roles: list[Literal[ROLES]] = Field(min_length=1, max_length=len(ROLES))  # type: ignore[valid-type]
    active: bool = True
    valid_from: Day = None
    valid_to: Day = None

    _text = field_validator("name", "credential_number")(_printable)

    @field_validator("officer_id")
    @classmethod
    def _an_id(cls, value: str) -> str:
        if not _OFFICER_ID.fullmatch(value):
            raise ValueError("must be letters, digits, '_', '.' or '-' (up to 32)")
        return value

    @field_validator("roles")
    @classmethod
    def _a_set(cls, value: list[str]) -> list[str]:
        return sorted(set(value))

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> "StaffEntry":
        needs = sorted(ENFORCEMENT_ROLES & set(self.roles))
        if needs and self.credential_number is None:
            raise ValueError(f"role {', '.join(needs)} needs credential_number (执法证号, "
                             f"{ART42})")
        if self.valid_from and self.valid_to and self.valid_to < self.valid_from:
            raise ValueError(f"valid_to {self.valid_to} is before valid_from {self.valid_from}")
        planned, ends = _latest_days((info.context or {}).get("today") or china_today())
        for name, day, latest in (("valid_from", self.valid_from, planned),
                                  ("valid_to", self.valid_to, ends)):
            if day is not None and day < EARLIEST_DATE:
                raise ValueError(f"{name} {day} is before {EARLIEST_DATE}")
            if day is not None and day > latest:
                _implausible(name, day, latest is planned, latest)
        return self


FIELDS = tuple(StaffEntry.model_fields)
LAYOUT = Layout(FIELDS, "staff", "officer_id", _roles_cell)


@dataclass(frozen=True)
class Officer:
    """A member of staff as the register holds them."""

    officer_id: str
    name: str
    credential_number: str | None
    roles: frozenset[str]
    active: bool
    valid_from: date | None
    valid_to: date | None

    @classmethod
    def of(cls, row: StaffRow) -> "Officer":
        return cls(row.officer_id, row.name, row.credential_number, frozenset(row.roles),
                   row.active, row.valid_from, row.valid_to)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (roles sorted, dates ISO)."""
        return {"officer_id": self.officer_id, "name": self.name,
                "credential_number": self.credential_number, "roles": sorted(self.roles),
                "active": self.active,
                "valid_from": self.valid_from.isoformat() if self.valid_from else None,
                "valid_to": self.valid_to.isoformat() if self.valid_to else None}


@dataclass(frozen=True)
class StaffImport:
    """What an import did (or, with ``dry_run``, would do)."""

    added: int
    updated: int
    officers: tuple[str, ...]


def has_role(officer: Officer, role: str) -> bool:
    """Whether the officer holds ``role`` (one of :data:`ROLES`)."""
    if role not in ROLES:
        raise StaffError(f"unknown role {role!r} (known: {', '.join(ROLES)})")
    return role in officer.roles


def get_officer(session: Session, officer_id: str, *, role: str | None = None,
                on: date | None = None, check: bool = True) -> Officer:
    """The officer who may act on ``on`` (default: today in China), holding ``role`` when
    one is asked; StaffError in one line when unknown, inactive, outside the validity,
    without the role, or in an enforcement role without a credential number.
    ``check=False``: the officer as registered, whatever they may do now (who signed a
    document in the past); StaffError only when unknown."""
    row = session.scalars(select(StaffRow).where(StaffRow.officer_id == officer_id)).first()
    if row is None:
        raise StaffError(f"officer {officer_id!r} is not in the staff register")
    officer = Officer.of(row)
    if not check:
        return officer
    day = on or china_today()
    who = f"officer {officer_id} ({officer.name})"
    if not officer.active:
        raise StaffError(f"{who} is inactive in the staff register")
    if officer.valid_from is not None and day < officer.valid_from:
        raise StaffError(f"{who} is valid from {officer.valid_from}, after {day}")
    if officer.valid_to is not None and day > officer.valid_to:
        raise StaffError(f"{who} was valid to {officer.valid_to}, before {day}")
    if role is not None and not has_role(officer, role):
        raise StaffError(f"{who} does not hold the role {role} (holds: "
                         f"{', '.join(sorted(officer.roles))})")
    asked = {role} if role is not None else officer.roles
    if ENFORCEMENT_ROLES & asked and not officer.credential_number:
        raise StaffError(f"{who} has no enforcement credential number (执法证号), which "
                         f"{ART42} requires of an enforcement officer")
    return officer


def _validated(path: Path, refusals: Refusals, encoding: str | None
               ) -> Iterator[tuple[str, StaffEntry]]:
    return validated(path, StaffEntry, LAYOUT, refusals, key=lambda r: r.officer_id,
                     encoding=encoding)


def read_staff(path: Path, encoding: str | None = None) -> list[StaffEntry]:
    """Every officer of a staff file; StaffImportError listing every bad row."""
    refusals = Refusals(kind=StaffImportError)
    rows = [row for _, row in _validated(path, refusals, encoding)]
    if refusals.count:
        raise refusals.error()
    if not rows:
        raise StaffImportError(f"{path}: no officers in the file")
    return rows


def _known(session: Session, ids: list[str]) -> set[str]:
    return set(session.scalars(select(StaffRow.officer_id).where(StaffRow.officer_id.in_(ids))))


def _upsert(session: Session, rows: list[StaffEntry], now: datetime) -> None:
    conn = session.connection()
    insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = insert(StaffRow.__table__)
    changed = [f for f in FIELDS if f != "officer_id"] + ["updated_at"]
    conn.execute(statement.on_conflict_do_update(
        index_elements=["officer_id"], set_={c: statement.excluded[c] for c in changed}),
        [{**r.model_dump(), "updated_at": now} for r in rows])


def import_staff(session: Session, path: Path, actor: str = "import", *,
                 encoding: str | None = None, dry_run: bool = False,
                 chunk_rows: int = CHUNK_ROWS) -> StaffImport:
    """Add or update the file's officers in the session's transaction (the caller
    commits); StaffImportError listing every bad row, after which the caller rolls back
    and nothing is imported. ``dry_run``: check and count, write nothing."""
    now = datetime.now(UTC)
    refusals = Refusals(kind=StaffImportError)
    ids: list[str] = []
    chunk: list[StaffEntry] = []
    added = total = 0

    def flush() -> int:
        new = len(chunk) - len(_known(session, [r.officer_id for r in chunk]))
        if not dry_run:
            _upsert(session, chunk, now)
        return new

    for _, row in _validated(path, refusals, encoding):
        ids.append(row.officer_id)
        if refusals.count:
            continue
        chunk.append(row)
        if len(chunk) >= chunk_rows:
            added += flush()
            total, chunk = total + len(chunk), []
    if refusals.count:
        raise refusals.error()
    if not ids:
        raise StaffImportError(f"{path}: no officers in the file")
    if chunk:
        added += flush()
        total += len(chunk)
    if not dry_run:
        audit.append(session, None, "staff_import",
                     f"{path}: {added} added, {total - added} updated", actor=actor, at=now)
        session.flush()
    return StaffImport(added, total - added, tuple(ids))


def list_staff(session: Session) -> list[Officer]:
    """Every officer of the register, by officer id."""
    return [Officer.of(r) for r in session.scalars(select(StaffRow).order_by(
        StaffRow.officer_id))]

"""The vehicle register: what the authority knows of a vehicle by its plate and plate colour.

Grading needs the vehicle's kind (truck or combination: the axle digits alone cannot
always tell them apart), the total mass on its licence (行驶证核定总质量: a 2-axle truck's
limit never exceeds it) and whether its drive axles are air-suspended (GB 1589-2016: +1 000
kg for 3- and 4-axle trucks, 37 t for a 4-axle combination); the notice and the Order 62
Art. 44 report need the owner (a person or a company), how to reach them, and the road
transport certificate (道路运输证号).

The register is imported like the device registry (:mod:`center.registry`): a CSV or YAML
file (``vehicles:`` with a list, or the list alone) in UTF-8, UTF-16 or GBK/GB18030, every
row validated by form and meaning, every bad row named, and the whole file written in the
caller's transaction or nothing. A plate and colour already registered is updated; the
others stay. The register is the authority's present knowledge, not a history: a capture
is graded with the entry as it is when the capture is processed, and the grade records the
facts it took (``grade["register"]``), so a later change never alters a graded capture.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from center import audit
from center.law_models import VehicleRow
from center.legality import grammar_fits
from center.registry import CHUNK_ROWS, Layout, Refusals, RegistryError, _printable, validated
from overload.limits import KINDS
from overload.plates import PLATE_COLOURS, PlateGrammar, load_plate_grammar

MAX_LICENCE_MASS_KG = 100_000.0
"""No licence mass of a road vehicle exceeds this; more is a slip (grams, a serial)."""
OWNER_KINDS = ("person", "company")

_AXLE_CODE = re.compile(r"[1-9]{2,12}")
_PERSON_ID = re.compile(r"\d{17}[\dX]")
"""身份证号 (GB 11643): 17 digits and a check character (a digit or X)."""
_CREDIT_CODE = re.compile(r"[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}")
"""统一社会信用代码 (GB 32100-2015): 18 characters, no I, O, S, V, Z."""
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_CODE_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CODE_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def person_id_ok(number: str) -> bool:
    """Whether an identity card number's last character is its check character (GB
    11643-1999, ISO 7064 MOD 11-2).

    >>> person_id_ok("11010519491231002X"), person_id_ok("110105194912310021")
    (True, False)
    """
    total = sum(int(c) * w for c, w in zip(number[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == number[17]


def credit_code_ok(code: str) -> bool:
    """Whether a unified social credit code's last character is its check character
    (GB 32100-2015, modulus 31).

    >>> credit_code_ok("91350100M000100Y43"), credit_code_ok("91350100M000100Y44")
    (True, False)
    """
    total = sum(_CODE_CHARS.index(c) * w for c, w in zip(code[:17], _CODE_WEIGHTS, strict=True))
    return _CODE_CHARS[(31 - total % 31) % 31] == code[17]
_PHONE = re.compile(r"\+?[0-9][0-9 ()-]{4,31}")
_EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s.\x00-\x1f\x7f]+(\.[^@\s.\x00-\x1f\x7f]+)+")


class VehicleError(RegistryError):
    """A vehicle register file cannot be imported (nothing of it was), or a look-up
    cannot be made."""


class VehicleEntry(BaseModel):
    """One vehicle of the register file. Validation may take a context of ``grammar``
    (the plate grammar; default: the shipped one)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    plate: str = Field(min_length=2, max_length=32)
    plate_colour: Literal[PLATE_COLOURS] = "yellow"  # type: ignore[valid-type]
    kind: Literal[KINDS] | None = None  # type: ignore[valid-type]
    licence_mass_kg: float | None = Field(None, gt=0, le=MAX_LICENCE_MASS_KG,
                                          allow_inf_nan=False)
    air_suspension: bool = False
    axle_code: str | None = Field(None, max_length=16)
    owner_kind: Literal[OWNER_KINDS]  # type: ignore[valid-type]
    owner_name: str = Field(min_length=1, max_length=128)
    owner_id_number: str | None = Field(None, max_length=32)
    address: str | None = Field(None, max_length=256)
    phone: str | None = Field(None, max_length=32)
    email: str | None = Field(None, max_length=254)
    transport_certificate: str | None = Field(None, max_length=64)

    _text = field_validator("plate", "owner_name", "owner_id_number", "address",
                            "transport_certificate")(_printable)

    @field_validator("plate")
    @classmethod
    def _a_plate(cls, value: str, info: ValidationInfo) -> str:
        grammar: PlateGrammar = (info.context or {}).get("grammar") or load_plate_grammar()
        if not grammar.is_plate(value):
            raise ValueError("is not a number plate (GA 36)")
        return value

    @field_validator("plate_colour")
    @classmethod
    def _colour_fits(cls, value: str, info: ValidationInfo) -> str:
        plate = info.data.get("plate")
        grammar: PlateGrammar = (info.context or {}).get("grammar") or load_plate_grammar()
        if plate is not None and not grammar_fits(plate, value, grammar):
            raise ValueError(f"is not a colour plate {plate} comes in (GA 36)")
        return value

    @field_validator("axle_code")
    @classmethod
    def _axle_code(cls, value: str | None) -> str | None:
        if value is not None and not _AXLE_CODE.fullmatch(value):
            raise ValueError("must be 2 to 12 digits 1-9, one per axle group (e.g. 157)")
        return value

    @field_validator("owner_id_number")
    @classmethod
    def _id_number(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        value = value.upper()
        if info.data.get("owner_kind") == "company":
            if not _CREDIT_CODE.fullmatch(value):
                raise ValueError("is not a unified social credit code (统一社会信用代码, 18 "
                                 "characters)")
            if not credit_code_ok(value):
                raise ValueError("fails the credit code's check character (GB 32100-2015): "
                                 "a typo?")
        elif not _PERSON_ID.fullmatch(value):
            raise ValueError("is not an identity card number (身份证号, 17 digits and a "
                             "digit or X)")
        elif not person_id_ok(value):
            raise ValueError("fails the identity card number's check character "
                             "(GB 11643-1999): a typo?")
        return value

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value is not None and not _PHONE.fullmatch(value):
            raise ValueError("is not a telephone number (digits, spaces, +, -, brackets)")
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.fullmatch(value):
            raise ValueError("is not an e-mail address")
        return value


FIELDS = tuple(VehicleEntry.model_fields)
LAYOUT = Layout(FIELDS, "vehicles", "plate")


@dataclass(frozen=True)
class VehicleImport:
    """What an import did (or, with ``dry_run``, would do)."""

    added: int
    updated: int
    plates: tuple[str, ...]


def read_vehicles(path: Path, encoding: str | None = None) -> list[VehicleEntry]:
    """Every vehicle of a register file; VehicleError listing every bad row."""
    refusals = Refusals(kind=VehicleError)
    rows = [row for _, row in _validated(path, refusals, encoding)]
    if refusals.count:
        raise refusals.error()
    if not rows:
        raise VehicleError(f"{path}: no vehicles in the file")
    return rows


def _validated(path: Path, refusals: Refusals, encoding: str | None
               ) -> Iterator[tuple[str, VehicleEntry]]:
    return validated(path, VehicleEntry, LAYOUT, refusals,
                     key=lambda r: (r.plate, r.plate_colour), encoding=encoding,
                     context={"grammar": load_plate_grammar()})


def _upsert(session: Session, rows: list[VehicleEntry], now: datetime) -> int:
    """Add or update a chunk of vehicles in one statement; how many were new."""
    conn = session.connection()
    keys = [(r.plate, r.plate_colour) for r in rows]
    known = {tuple(k) for k in conn.execute(select(VehicleRow.plate, VehicleRow.plate_colour)
                                            .where(VehicleRow.plate.in_([k[0] for k in keys])))}
    insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = insert(VehicleRow.__table__)
    changed = [f for f in FIELDS if f not in ("plate", "plate_colour")] + ["updated_at"]
    conn.execute(statement.on_conflict_do_update(
        index_elements=["plate", "plate_colour"],
        set_={c: statement.excluded[c] for c in changed}),
        [{**r.model_dump(), "updated_at": now} for r in rows])
    return sum(1 for k in keys if k not in known)


def import_vehicles(session: Session, path: Path, actor: str = "import", *,
                    encoding: str | None = None, dry_run: bool = False,
                    chunk_rows: int = CHUNK_ROWS) -> VehicleImport:
    """Add or update the file's vehicles in the session's transaction (the caller
    commits), a chunk at a time; VehicleError listing every bad row, after which the
    caller rolls back and nothing is imported. ``dry_run``: check the file and count what
    would be added and updated, writing nothing."""
    now = datetime.now(UTC)
    refusals = Refusals(kind=VehicleError)
    plates: list[str] = []
    chunk: list[VehicleEntry] = []
    added = total = 0
    for _, row in _validated(path, refusals, encoding):
        plates.append(row.plate)
        if refusals.count:
            continue  # nothing more is written; the rest is only checked
        chunk.append(row)
        if len(chunk) >= chunk_rows:
            added += _count_new(session, chunk) if dry_run else _upsert(session, chunk, now)
            total, chunk = total + len(chunk), []
    if refusals.count:
        raise refusals.error()
    if not plates:
        raise VehicleError(f"{path}: no vehicles in the file")
    if chunk:
        added += _count_new(session, chunk) if dry_run else _upsert(session, chunk, now)
        total += len(chunk)
    if not dry_run:
        audit.append(session, None, "vehicles_import",
                     f"{path}: {added} added, {total - added} updated", actor=actor, at=now)
        session.flush()
    return VehicleImport(added, total - added, tuple(plates))


def _count_new(session: Session, rows: list[VehicleEntry]) -> int:
    """How many of these vehicles the register does not hold yet."""
    known = {tuple(k) for k in session.execute(
        select(VehicleRow.plate, VehicleRow.plate_colour)
        .where(VehicleRow.plate.in_([r.plate for r in rows])))}
    return sum(1 for r in rows if (r.plate, r.plate_colour) not in known)


UNKNOWN_COLOURS = (None, "", "unknown")
"""Colours a capture may give when the camera saw none (an infrared frame)."""


def lookup(session: Session, plate: str, colour: str | None) -> VehicleRow | None:
    """The register's entry of this plate and colour, or None. Without a colour (the
    camera saw none) the plate alone decides, when only one colour of it is registered:
    two vehicles may carry the same text in different colours, and guessing between them
    would grade one by the other's facts."""
    if colour not in UNKNOWN_COLOURS:
        return session.scalars(select(VehicleRow).where(
            VehicleRow.plate == plate, VehicleRow.plate_colour == colour)).first()
    rows = session.scalars(select(VehicleRow).where(VehicleRow.plate == plate).limit(2)).all()
    return rows[0] if len(rows) == 1 else None


def count_vehicles(session: Session) -> int:
    """How many vehicles the register holds."""
    return session.scalar(select(func.count()).select_from(VehicleRow)) or 0


def list_vehicles(session: Session, *, limit: int | None = None, offset: int = 0
                  ) -> list[VehicleRow]:
    """A page of the register by plate and colour: ``limit`` (all when None) from the
    ``offset``-th."""
    return list(session.scalars(select(VehicleRow).order_by(
        VehicleRow.plate, VehicleRow.plate_colour).offset(offset or None).limit(limit)))


def find_plate(session: Session, plate: str) -> list[VehicleRow]:
    """Every entry of this plate text, whatever its colour."""
    return list(session.scalars(select(VehicleRow).where(VehicleRow.plate == plate)
                                .order_by(VehicleRow.plate_colour)))


def vehicle_to_dict(row: VehicleRow) -> dict[str, Any]:
    """A register entry as plain data (every column but the id)."""
    data = {c.name: getattr(row, c.name) for c in VehicleRow.__table__.columns
            if c.name != "id"}
    data["updated_at"] = row.updated_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return data


def grading_facts(row: VehicleRow | None, plate: str | None, colour: str | None
                  ) -> dict[str, Any]:
    """What a grade records of the register: the facts taken from it, or that none was
    found (the limit then follows the axle code alone)."""
    if row is None:
        return {"found": False, "plate": plate, "plate_colour": colour,
                "note": "no entry in the vehicle register: kind from the axle code, no "
                        "licence mass, no air suspension"}
    return {"found": True, "plate": row.plate, "plate_colour": row.plate_colour,
            "kind": row.kind, "licence_mass_kg": row.licence_mass_kg,
            "air_suspension": row.air_suspension, "axle_code": row.axle_code,
            "source": "vehicle register"}

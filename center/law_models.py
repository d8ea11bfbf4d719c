"""The tables of the law at the center (built by migration ``0002_law``; the plate's source
columns by ``0003_plate_source``; the registers and the registry's history by
``0004_registers``): the device registry (every version of each device) and its
suspensions, the vehicle and staff registers, one graded capture per stored packet, cases,
the captures of each case, and the audit log.

A capture is keyed by device and sequence, like the packet it comes from, so processing
a packet twice finds its capture and does nothing. Dates of the registry are calendar
days in China Standard Time (what a certificate or a notice says); times are UTC.
"""

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from center.db import Base

BigId = BigInteger().with_variant(Integer(), "sqlite")
"""An id column: BIGINT on PostgreSQL, INTEGER (the rowid) on SQLite."""



class UtcTime(TypeDecorator):
    """A time with a time zone, written as UTC and read back aware on every database
    (SQLite keeps no zone and gives back naive times)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(f"time {value} has no time zone; the center stores UTC")
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


CASE_STATUSES = ("awaiting_review", "reviewed", "approved", "notified", "heard",
                 "legally_reviewed", "decided", "served", "paid", "closed", "rejected")
"""The states of the procedure (``config/rules/procedure.yaml`` moves a case between them)."""


class DeviceRecord(Base):
    """What the public and the law know about one enforcement device (行政处罚法 Art. 41)
    from a calendar day (CST) on: where it stands, its review, its verification
    certificate, signs, public notice. A device has one row per version, never updated: a
    renewed certificate adds a version, so a capture is judged by the row in force on its
    day (the latest version whose ``effective_from`` is not after it)."""

    __tablename__ = "device_records"
    __table_args__ = (UniqueConstraint("device_id", "version",
                                       name="uq_device_records_device_version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, doc="1, 2, … in the order imported")
    effective_from: Mapped[date] = mapped_column(Date, doc="first day in force (CST)")
    road: Mapped[str] = mapped_column(String(128))
    stake: Mapped[str] = mapped_column(String(64), doc="桩号, e.g. K123+450")
    direction: Mapped[str] = mapped_column(String(64))
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)
    review_date: Mapped[date | None] = mapped_column(Date, nullable=True,
                                                     doc="legal and technical review passed")
    certificate_number: Mapped[str | None] = mapped_column(String(128), nullable=True)
    accuracy_class: Mapped[str | None] = mapped_column(String(16), nullable=True)
    certificate_valid_from: Mapped[date | None] = mapped_column(Date, nullable=True)
    certificate_valid_to: Mapped[date | None] = mapped_column(Date, nullable=True)
    signs_installed: Mapped[date | None] = mapped_column(Date, nullable=True)
    notice_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    notice_document: Mapped[str | None] = mapped_column(String(256), nullable=True)
    notice_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    enforcement_start: Mapped[date | None] = mapped_column(Date, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(UtcTime, doc="when this version was written")


class DeviceSuspension(Base):
    """A period (calendar days, both included; no end = still suspended) in which a
    device's captures are not evidence."""

    __tablename__ = "device_suspensions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64), index=True)
    starts: Mapped[date] = mapped_column(Date)
    ends: Mapped[date | None] = mapped_column(Date, nullable=True)
    reason: Mapped[str] = mapped_column(Text)


class Capture(Base):
    """One stored packet as the law sees it: its grade and whether it is evidence."""

    __tablename__ = "captures"
    __table_args__ = (UniqueConstraint("device_id", "sequence", name="uq_captures_device_seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    packet_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True,
                                                  doc="packets.id when stored there")
    device_id: Mapped[str] = mapped_column(String(64))
    sequence: Mapped[int] = mapped_column(BigInteger)
    captured_at: Mapped[datetime] = mapped_column(UtcTime, index=True)
    plate: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    plate_colour: Mapped[str | None] = mapped_column(String(16), nullable=True)
    plate_confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    plate_source: Mapped[str | None] = mapped_column(
        String(8), nullable=True, doc="who read the plate: edge (the roadside unit) or "
        "center (from the images, the unit's reader having been busy); None: nobody")
    plate_province_confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    plate_front_rear: Mapped[str | None] = mapped_column(
        String(16), nullable=True, doc="agree, conflict, front only, rear only; None where "
        "one camera was read")
    gross_kg: Mapped[float] = mapped_column(Float)
    axle_code: Mapped[str | None] = mapped_column(String(16), nullable=True)
    limit_kg: Mapped[float | None] = mapped_column(Float, nullable=True)
    tolerance_kg: Mapped[float | None] = mapped_column(Float, nullable=True)
    excess_kg: Mapped[float | None] = mapped_column(Float, nullable=True)
    over: Mapped[bool] = mapped_column(Boolean)
    action: Mapped[str | None] = mapped_column(String(16), nullable=True)
    fine_yuan: Mapped[float | None] = mapped_column(Float, nullable=True)
    grade: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True,
                                                         doc="the whole grade, with its rules")
    grade_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    evidential: Mapped[bool] = mapped_column(Boolean)
    checks: Mapped[list[dict[str, Any]]] = mapped_column(
        JSON, doc="every legality check: id, ok, text, source")
    processed_at: Mapped[datetime] = mapped_column(UtcTime)


class Case(Base):
    """One act (one trip) of one vehicle, for staff to review."""

    __tablename__ = "cases"
    __table_args__ = (Index("ix_cases_queue", "status", "first_at", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    plate: Mapped[str] = mapped_column(String(32), index=True)
    plate_colour: Mapped[str | None] = mapped_column(String(16), nullable=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcTime)
    first_at: Mapped[datetime] = mapped_column(UtcTime)
    last_at: Mapped[datetime] = mapped_column(UtcTime)
    best_capture_id: Mapped[int] = mapped_column(BigId, ForeignKey("captures.id"))
    first_violation: Mapped[bool] = mapped_column(Boolean)
    captures_12m: Mapped[int] = mapped_column(Integer)
    cases_12m: Mapped[int] = mapped_column(Integer)
    repeat_over_limit: Mapped[bool] = mapped_column(Boolean)
    action: Mapped[str] = mapped_column(String(16))
    fine_yuan: Mapped[float | None] = mapped_column(Float, nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UtcTime, nullable=True)
    decision: Mapped[str | None] = mapped_column(Text, nullable=True)
    decision_fine_yuan: Mapped[float | None] = mapped_column(Float, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UtcTime, nullable=True)


class CaseCapture(Base):
    """A capture of a case: the evidence (the best one) or attached (same trip)."""

    __tablename__ = "case_captures"

    case_id: Mapped[int] = mapped_column(BigId, ForeignKey("cases.id"), primary_key=True)
    capture_id: Mapped[int] = mapped_column(BigId, ForeignKey("captures.id"),
                                            primary_key=True, unique=True)
    role: Mapped[str] = mapped_column(String(16), doc="evidence or attached")


class AuditEntry(Base):
    """Who did what to which case, and when; never updated, never deleted; each entry
    chained to the one before by its hash (migration ``0005_procedure``, center.audit)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcTime, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    case_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("cases.id"), nullable=True,
                                                index=True)
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str | None] = mapped_column(String(64), nullable=True,
                                                  doc="entry_hash of the entry before")
    entry_hash: Mapped[str | None] = mapped_column(String(64), nullable=True,
                                                   doc="SHA-256 of this entry and prev_hash "
                                                   "(center.audit)")


class VehicleRow(Base):
    """One vehicle of the vehicle register, by plate and plate colour: the facts grading
    needs (kind, licence mass 核定总质量, air suspension) and the party of a case (owner,
    transport certificate 道路运输证) for the notice and the Order 62 Art. 44 report."""

    __tablename__ = "vehicles"
    __table_args__ = (UniqueConstraint("plate", "plate_colour", name="uq_vehicles_plate"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    plate: Mapped[str] = mapped_column(String(32))
    plate_colour: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str | None] = mapped_column(String(16), nullable=True,
                                             doc="truck or combination (overload's kinds)")
    licence_mass_kg: Mapped[float | None] = mapped_column(Float, nullable=True)
    air_suspension: Mapped[bool] = mapped_column(Boolean)
    axle_code: Mapped[str | None] = mapped_column(String(16), nullable=True)
    owner_kind: Mapped[str] = mapped_column(String(8), doc="person or company")
    owner_name: Mapped[str] = mapped_column(String(128))
    owner_id_number: Mapped[str | None] = mapped_column(
        String(32), nullable=True, doc="身份证号 of a person, 统一社会信用代码 of a company")
    address: Mapped[str | None] = mapped_column(String(256), nullable=True)
    phone: Mapped[str | None] = mapped_column(String(32), nullable=True)
    email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    transport_certificate: Mapped[str | None] = mapped_column(String(64), nullable=True,
                                                              doc="道路运输证号")
    updated_at: Mapped[datetime] = mapped_column(UtcTime)


class StaffRow(Base):
    """One member of staff: officer id (工号), name, enforcement credential (执法证号),
    roles, and the days (CST) the entry is valid."""

    __tablename__ = "staff"
    __table_args__ = (UniqueConstraint("officer_id", name="uq_staff_officer_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    officer_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(64))
    credential_number: Mapped[str | None] = mapped_column(String(32), nullable=True)
    roles: Mapped[list[str]] = mapped_column(JSON, doc="sorted role names")
    active: Mapped[bool] = mapped_column(Boolean)
    valid_from: Mapped[date | None] = mapped_column(Date, nullable=True)
    valid_to: Mapped[date | None] = mapped_column(Date, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcTime)

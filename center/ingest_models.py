"""The tables of ingestion: enrolled devices, stored packets and their images, sequence
gaps and refusals (built by migration ``0001_ingest``).

Types are those both SQLite and PostgreSQL hold alike: text, big integers, booleans,
binary, and times with a time zone (UTC). A packet is unique by device and sequence, which
is what makes a resent packet a harmless duplicate.
"""

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from center.db import Base

BigId = BigInteger().with_variant(Integer(), "sqlite")
"""An id column: BIGINT on PostgreSQL, INTEGER (the rowid) on SQLite."""


class Device(Base):
    """A roadside unit the center accepts packets from."""

    __tablename__ = "devices"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    sign_public_key: Mapped[str] = mapped_column(Text, doc="Ed25519 public key, PEM")
    curve_public_key: Mapped[str] = mapped_column(String(40), unique=True,
                                                  doc="CURVE public key, Z85 (40 chars)")
    enrolled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class StoredPacket(Base):
    """One packet as received: its signed bytes and the fields queries need."""

    __tablename__ = "packets"
    __table_args__ = (UniqueConstraint("device_id", "sequence", name="uq_packets_device_seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64), ForeignKey("devices.device_id"))
    sequence: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    previous_hash: Mapped[str] = mapped_column(String(64))
    captured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    lane: Mapped[int] = mapped_column(Integer)
    suspected_overload: Mapped[bool] = mapped_column(Boolean)
    meta: Mapped[bytes] = mapped_column(LargeBinary, doc="canonical bytes, as signed")
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    chain_ok: Mapped[bool | None] = mapped_column(
        Boolean, nullable=True, doc="previous_hash equals the hash of sequence - 1; "
        "None while that packet has not arrived")


class StoredImage(Base):
    """One image file under ``images_dir``, named by its SHA-256 (stored once however
    many packets name it)."""

    __tablename__ = "images"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(32))


class PacketImage(Base):
    """Which images a packet names, in its order and with their roles."""

    __tablename__ = "packet_images"

    packet_id: Mapped[int] = mapped_column(BigId, ForeignKey("packets.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64), ForeignKey("images.sha256"), index=True)


class SequenceGap(Base):
    """Sequences of a device found missing when a later one arrived; ``closed_at`` is set
    once every one of them has arrived."""

    __tablename__ = "sequence_gaps"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64), index=True)
    first_missing: Mapped[int] = mapped_column(BigInteger)
    last_missing: Mapped[int] = mapped_column(BigInteger)
    found_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Refusal(Base):
    """A message the receiver would not store, and why."""

    __tablename__ = "refusals"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    peer: Mapped[str] = mapped_column(String(64), doc="CURVE key (Z85) of the sender")
    device_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sequence: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    reason: Mapped[str] = mapped_column(String(32), doc="signature, unknown_device, "
                                        "malformed, schema, device_mismatch")
    detail: Mapped[str] = mapped_column(Text)

"""The tables of the center's web pages (migration ``0006_web``): staff passwords (argon2
hashes), staff sessions, the look-up code printed on a case's notice, an owner's
statements and defences with their attachments, and plates keyed in by staff.

A session is kept by the center, not in the cookie: the cookie carries a random token,
the table its SHA-256, so a stolen database does not hand out sessions, and logging out
ends a session everywhere.
"""

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from center.db import Base
from center.law_models import BigId, UtcTime


class StaffPassword(Base):
    """An officer's password, as an argon2 hash."""

    __tablename__ = "staff_passwords"

    officer_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    hash: Mapped[str] = mapped_column(String(256))
    set_at: Mapped[datetime] = mapped_column(UtcTime)


class WebSession(Base):
    """A staff member logged in: the SHA-256 of the cookie's token, and the CSRF token
    every form of the session carries."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    officer_id: Mapped[str] = mapped_column(String(32), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcTime)
    expires_at: Mapped[datetime] = mapped_column(UtcTime)


class CaseAccess(Base):
    """The code printed on a case's notice, with which the owner looks the case up."""

    __tablename__ = "case_access"

    case_id: Mapped[int] = mapped_column(BigId, ForeignKey("cases.id"), primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcTime)


class OwnerStatement(Base):
    """A statement and defence (陈述申辩) an owner submitted online."""

    __tablename__ = "owner_statements"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(BigId, ForeignKey("cases.id"), index=True)
    submitted_at: Mapped[datetime] = mapped_column(UtcTime)
    text: Mapped[str] = mapped_column(Text)


class OwnerAttachment(Base):
    """A file attached to a statement, stored outside the web root under a generated
    name."""

    __tablename__ = "owner_attachments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    statement_id: Mapped[int] = mapped_column(BigId, ForeignKey("owner_statements.id"),
                                              index=True)
    stored_name: Mapped[str] = mapped_column(String(80))
    original_name: Mapped[str] = mapped_column(String(255))
    media_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))


class PlateEntry(Base):
    """A plate keyed in by staff for a capture the reader missed or misread."""

    __tablename__ = "plate_entries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    capture_id: Mapped[int] = mapped_column(BigId, ForeignKey("captures.id"), index=True)
    plate: Mapped[str] = mapped_column(String(32))
    colour: Mapped[str] = mapped_column(String(16))
    officer_id: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UtcTime)
    previous: Mapped[str | None] = mapped_column(String(32), nullable=True)

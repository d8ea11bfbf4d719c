"""The audit trail as a hash chain: each entry carries the SHA-256 of its own content and
of the entry before it, so an entry edited, deleted or slipped in afterwards breaks the
chain from that point, and :func:`verify` names the first entry that does not fit.

Every writer of the audit log goes through :func:`append`. On PostgreSQL several center
processes may append at once: an advisory lock held to the end of the transaction makes
them take turns, so each new entry hashes the entry committed before it. A transaction
that also locks plates (case-making) takes those first and this one last, in that order
everywhere, so two transactions never wait on each other in a circle.

The chain shows that the log was changed, not who changed it: a person able to rewrite
every later row can rebuild the chain. :func:`head` is the hash to write down elsewhere
(a daily report, a signed export) so that such a rebuild shows too.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from center.law_models import AuditEntry

GENESIS = "0" * 64
"""The "previous hash" of the first entry."""

AUDIT_LOCK = 0x7A686361  # "zhca": the advisory lock key of the chain on PostgreSQL
"""PostgreSQL advisory lock key that serialises appends to the chain."""


def _utc_text(t: datetime) -> str:
    """A time as the chain hashes it: UTC, microseconds, whatever the database gave back."""
    t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(prev_hash: str, *, at: datetime, actor: str, case_id: int | None,
               action: str, detail: str) -> str:
    """The SHA-256 (hex) of one entry's content chained to the one before.

    >>> t = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    >>> entry_hash(GENESIS, at=t, actor="center", case_id=1, action="case_opened",
    ...            detail="x")[:12]
    '4a6c2a2b5f36'
    """
    content = json.dumps([prev_hash, _utc_text(at), actor, case_id, action, detail],
                         ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def _lock(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": AUDIT_LOCK})


def head(session: Session) -> str:
    """The hash of the last entry (the genesis value for an empty log)."""
    last = session.scalars(select(AuditEntry.entry_hash).order_by(AuditEntry.id.desc())
                           .limit(1)).first()
    return last or GENESIS


def append(session: Session, case_id: int | None, action: str, detail: str, *, actor: str,
           at: datetime | None = None) -> AuditEntry:
    """Add one entry to the chain in the session's transaction (flushed, so the next
    append in the same transaction chains to it)."""
    _lock(session)
    at = at or datetime.now(UTC)
    prev = head(session)
    entry = AuditEntry(at=at, actor=actor, case_id=case_id, action=action, detail=detail,
                       prev_hash=prev,
                       entry_hash=entry_hash(prev, at=at, actor=actor, case_id=case_id,
                                             action=action, detail=detail))
    session.add(entry)
    session.flush()
    return entry


@dataclass(frozen=True)
class Broken:
    """The first entry that does not fit the chain, and how."""

    entry_id: int
    reason: str


def verify(session: Session, batch: int = 5000) -> tuple[int, Broken | None]:
    """Walk the chain in entry order: how many entries were checked, and the first broken
    one (None when the chain holds). Read in batches, so a long log needs little memory."""
    prev, checked, after = GENESIS, 0, 0
    while True:
        rows = session.scalars(select(AuditEntry).where(AuditEntry.id > after)
                               .order_by(AuditEntry.id).limit(batch)).all()
        if not rows:
            return checked, None
        for e in rows:
            if e.prev_hash != prev:
                return checked, Broken(e.id, "does not follow the entry before it (an "
                                       "entry was deleted or inserted before this one)")
            if e.entry_hash != entry_hash(prev, at=e.at, actor=e.actor, case_id=e.case_id,
                                          action=e.action, detail=e.detail):
                return checked, Broken(e.id, "its content does not match its hash (the "
                                       "entry was edited)")
            prev, checked, after = e.entry_hash, checked + 1, e.id

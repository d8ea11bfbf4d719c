"""A unit's keys over time: rotation with an overlap, and revocation.

The ``devices`` table holds each unit's current keys (``zhichao center devices enrol``
writes them). ``device_keys`` (migration ``0007_device_keys``) holds the others:

* a key **retired** by a rotation (``zhichao center devices rotate``) is accepted until
  the end of its overlap date, in China time (the law's days are China's), and refused
  after it. The moment that counts is the packet's **receipt** at the center, not its
  capture time: the capture time is written by whoever holds the key, so a stolen old key
  could backdate packets into the overlap; the receipt time is the center's own clock.
  The price: a unit whose outbox still holds packets signed with the old key when the
  overlap ends gets them refused, so the overlap must be longer than any backlog the unit
  may have (``zhichao edge doctor`` shows its oldest pending packet).
* a key **revoked** (``zhichao center devices revoke``) is refused from the moment of the
  revocation, with its reason, whether current or retired; a revoked CURVE key is dropped
  from the receiver's ZAP allow-list. Revocation is not retroactive: packets stored
  before it stay as they are, unmarked — they were verified with a key that was good when
  they came. A revoked key stays revoked, even if enrolled again.

A key is named by its fingerprint: the SHA-256 (hex) of its 32 raw bytes, for an Ed25519
signing key and a CURVE key alike; any unique prefix of 8 or more characters names it on
the command line.
"""

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from sqlalchemy import (
    BigInteger,
    Connection,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column
from zmq.utils import z85

from center.china_time import CST, day_of
from center.db import Base
from center.ingest_models import Device
from evidence.signing import KeyFileError, load_public_key
from zhichao.errors import ZhichaoError

Kind = Literal["sign", "curve"]
FINGERPRINT_SHOWN = 16
"""Characters of a fingerprint shown in messages (the prefix that names it)."""
FINGERPRINT_MIN = 8
"""The shortest prefix that names a key on the command line."""


class DeviceKeyError(ZhichaoError):
    """A rotation or revocation cannot be done as asked."""


class DeviceKey(Base):
    """A unit's key other than a plain current one: retired (``accepted_until``) or
    revoked (``revoked_at``, ``revoked_reason``), or both."""

    __tablename__ = "device_keys"
    __table_args__ = (UniqueConstraint("device_id", "kind", "fingerprint",
                                       name="uq_device_keys_key"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"),
                                    primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64), ForeignKey("devices.device_id"),
                                           index=True)
    kind: Mapped[str] = mapped_column(String(8), doc="sign (Ed25519) or curve")
    public_key: Mapped[str] = mapped_column(Text, doc="PEM (sign) or Z85 (curve)")
    fingerprint: Mapped[str] = mapped_column(String(64))
    accepted_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                            nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                        nullable=True)
    revoked_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


T = DeviceKey.__table__


def _utc(t: datetime | None) -> datetime | None:
    """SQLite gives stored times back naive: they are UTC."""
    return t if t is None or t.tzinfo is not None else t.replace(tzinfo=UTC)


def fingerprint(kind: Kind, public_key: str) -> str:
    """SHA-256 (hex) of the key's 32 raw bytes. DeviceKeyError if it is no such key."""
    try:
        raw = (load_public_key(public_key).public_bytes_raw() if kind == "sign"
               else z85.decode(public_key.strip()))
    except (KeyFileError, ValueError, KeyError) as exc:
        raise DeviceKeyError(f"not a {kind} public key: {exc}") from None
    if len(raw) != 32:
        raise DeviceKeyError(f"not a {kind} public key: {len(raw)} bytes, 32 expected")
    return hashlib.sha256(raw).hexdigest()


def end_of_day(day: date) -> datetime:
    """The moment a day ends in China (the next day's midnight, UTC+8), in UTC: the end
    of an overlap given as a date."""
    return datetime.combine(day + timedelta(days=1), time(), CST).astimezone(UTC)


@dataclass(frozen=True)
class KeyState:
    """One key of a device and whether it is accepted at a moment."""

    kind: Kind
    public_key: str
    fingerprint: str
    accepted_until: datetime | None = None
    revoked_at: datetime | None = None
    revoked_reason: str | None = None

    @property
    def short(self) -> str:
        return self.fingerprint[:FINGERPRINT_SHOWN]

    def refusal(self, now: datetime) -> tuple[str, str] | None:
        """None if the key is accepted at ``now``; else the refusal's kind and words."""
        name = f"{'signing' if self.kind == 'sign' else 'CURVE'} key {self.short}"
        if self.revoked_at is not None and now >= self.revoked_at:
            return "revoked_key", (f"{name} was revoked on {self.revoked_at:%Y-%m-%d %H:%M} "
                                   f"UTC: {self.revoked_reason}")
        if self.accepted_until is not None and now >= self.accepted_until:
            last = day_of(self.accepted_until - timedelta(seconds=1))
            return "expired_key", (f"{name} was replaced by a rotation and accepted until "
                                   f"{last:%Y-%m-%d} (China time); received after it")
        return None


@dataclass(frozen=True)
class DeviceKeys:
    """A device's keys of one kind and another, the current one first in each."""

    sign: list[KeyState]
    curve: list[KeyState]

    def curve_refusal(self, peer: str, now: datetime) -> tuple[str, str] | None:
        """None if a packet may come over the connection of CURVE key ``peer``."""
        for key in self.curve:
            if key.public_key == peer:
                return key.refusal(now)
        return "device_mismatch", (f"came over the connection of CURVE key {peer}, not one "
                                   "of the device's own")


def device_keys(conn: Connection, device_id: str) -> DeviceKeys | None:
    """Every key of an enrolled device with its state, or None if it is not enrolled."""
    row = conn.execute(select(Device.sign_public_key, Device.curve_public_key).where(
        Device.device_id == device_id)).first()
    if row is None:
        return None
    others = conn.execute(select(T).where(T.c.device_id == device_id).order_by(T.c.id)).all()
    by_key = {(r.kind, r.fingerprint): r for r in others}
    keys: dict[str, list[KeyState]] = {"sign": [], "curve": []}
    for kind, current in (("sign", row[0]), ("curve", row[1])):
        fp = _safe_fp(kind, current)
        r = by_key.pop((kind, fp), None)  # a current key revoked
        keys[kind].append(KeyState(kind, current, fp, None, _utc(r.revoked_at) if r else None,
                                   r.revoked_reason if r else None))
    for (kind, _), r in by_key.items():
        keys[kind].append(KeyState(kind, r.public_key, r.fingerprint,
                                   _utc(r.accepted_until), _utc(r.revoked_at),
                                   r.revoked_reason))
    return DeviceKeys(keys["sign"], keys["curve"])


def _safe_fp(kind: Kind, key: str) -> str:
    """The fingerprint, or a stand-in for a key stored unreadable (tests' placeholders)."""
    try:
        return fingerprint(kind, key)
    except DeviceKeyError:
        return hashlib.sha256(key.encode()).hexdigest()


def accepted_curve_keys(engine: Engine, now: datetime | None = None) -> set[str]:
    """The CURVE keys (Z85) the receiver lets through its handshake: each device's current
    key and the retired ones still in their overlap, none revoked."""
    now = now or datetime.now(UTC)
    with engine.connect() as conn:
        keys = set(conn.execute(select(Device.curve_public_key)).scalars())
        for key, until, revoked in conn.execute(select(
                T.c.public_key, T.c.accepted_until, T.c.revoked_at).where(
                T.c.kind == "curve")):
            if revoked is not None:
                keys.discard(key)
            elif until is not None and _utc(until) > now:
                keys.add(key)
    return keys


def keys_generation(conn: Connection) -> tuple:
    """Changes whenever a key is enrolled, rotated or revoked: a cache of keys compares
    it once a batch and drops what it holds when it differs."""
    return tuple(conn.execute(select(
        select(func.count()).select_from(T).scalar_subquery(),
        select(func.max(T.c.changed_at)).scalar_subquery(),
        select(func.count()).select_from(Device).scalar_subquery(),
        select(func.max(Device.enrolled_at)).scalar_subquery())).one())


def _put(conn: Connection, device_id: str, kind: Kind, key: str, now: datetime,
         **values) -> None:
    """Insert or update the row of one key."""
    fp = fingerprint(kind, key)
    where = (T.c.device_id == device_id) & (T.c.kind == kind) & (T.c.fingerprint == fp)
    if conn.execute(select(T.c.id).where(where)).first() is None:
        conn.execute(insert(T).values(device_id=device_id, kind=kind, public_key=key,
                                      fingerprint=fp, changed_at=now, **values))
    else:
        conn.execute(update(T).where(where).values(changed_at=now, **values))


def rotate_device(engine: Engine, device_id: str, *, sign_public_pem: str | None = None,
                  curve_public: str | None = None, old_until: date,
                  now: datetime | None = None) -> list[tuple[KeyState, str]]:
    """Make the given keys the device's current ones; the keys they replace stay accepted
    until the end of ``old_until`` (China time). Returns each replaced key with its
    successor's fingerprint. DeviceKeyError if the device is not enrolled, a key is bad,
    revoked, unchanged, or the CURVE key belongs to another device."""
    now = now or datetime.now(UTC)
    if sign_public_pem is None and curve_public is None:
        raise DeviceKeyError("give a new signing key, a new CURVE key, or both")
    until = end_of_day(old_until)
    if until <= now:
        raise DeviceKeyError(f"--old-key-until {old_until}: that day has ended already")
    new = {k: v.strip() if k == "curve" else v for k, v in
           (("sign", sign_public_pem), ("curve", curve_public)) if v is not None}
    fps = {kind: fingerprint(kind, key) for kind, key in new.items()}  # type: ignore[arg-type]
    replaced: list[tuple[KeyState, str]] = []
    with engine.begin() as conn:
        keys = device_keys(conn, device_id)
        if keys is None:
            raise DeviceKeyError(f"device {device_id} is not enrolled")
        for kind, key in new.items():
            states = keys.sign if kind == "sign" else keys.curve
            replaced.append((_rotate_one(conn, device_id, states, key, until=until, now=now),
                             fps[kind]))
        columns = {"sign": "sign_public_key", "curve": "curve_public_key"}
        conn.execute(update(Device).where(Device.device_id == device_id).values(
            {columns[k]: v for k, v in new.items()}))
    return replaced


def _rotate_one(conn: Connection, device_id: str, states: list[KeyState], key: str, *,
                until: datetime, now: datetime) -> KeyState:
    """Retire the device's current key of one kind (``states[0]``) in favour of ``key``."""
    current = states[0]
    kind = current.kind
    fp = fingerprint(kind, key)
    if current.fingerprint == fp:
        raise DeviceKeyError(f"the new {kind} key {fp[:FINGERPRINT_SHOWN]} is the current "
                             "one already")
    for state in states[1:]:
        if state.fingerprint == fp and state.revoked_at is not None:
            raise DeviceKeyError(f"{kind} key {fp[:FINGERPRINT_SHOWN]} was revoked: "
                                 "a revoked key is never enrolled again")
    if kind == "curve":
        other = conn.execute(select(Device.device_id).where(
            Device.curve_public_key == key, Device.device_id != device_id)).first()
        if other is not None:
            raise DeviceKeyError(f"CURVE key {key} is enrolled already for device {other[0]}")
    _put(conn, device_id, kind, current.public_key, now, accepted_until=until)
    return KeyState(current.kind, current.public_key, current.fingerprint, until,
                    current.revoked_at, current.revoked_reason)


def revoke_keys(engine: Engine, device_id: str, key: str, reason: str,
                now: datetime | None = None) -> list[KeyState]:
    """Revoke one key of the device (``key`` a fingerprint or a unique prefix of 8 or
    more) or all of them (``all``); returns the keys revoked now. DeviceKeyError if the
    device is not enrolled, no reason is given, or ``key`` names none or several."""
    now = now or datetime.now(UTC)
    if not reason.strip():
        raise DeviceKeyError("--reason: say why the key is revoked (it is told to the unit "
                             "with each refusal)")
    with engine.begin() as conn:
        keys = device_keys(conn, device_id)
        if keys is None:
            raise DeviceKeyError(f"device {device_id} is not enrolled")
        chosen = _choose(keys, key, device_id)
        for state in chosen:
            _put(conn, device_id, state.kind, state.public_key, now, revoked_at=now,
                 revoked_reason=reason.strip())
    return chosen


def _choose(keys: DeviceKeys, key: str, device_id: str) -> list[KeyState]:
    """The keys ``key`` names among the device's not revoked yet."""
    live = [k for k in keys.sign + keys.curve if k.revoked_at is None]
    if key == "all":
        return live
    text = key.strip().lower()
    if len(text) < FINGERPRINT_MIN:
        raise DeviceKeyError(f"--key {key!r}: give 'all' or at least {FINGERPRINT_MIN} "
                             "characters of a fingerprint")
    found = [k for k in live if k.fingerprint.startswith(text)]
    if len(found) == 1:
        return found
    listed = ", ".join(f"{k.kind} {k.short}" for k in live) or "none"
    what = "several keys" if found else "no key not revoked yet"
    raise DeviceKeyError(f"--key {key}: {what} of device {device_id} (its keys not revoked: "
                         f"{listed})")

"""``zhichao center doctor``: is the center well, and if not, what to do.

A center runs unattended for a province; when cases stop appearing, the person on duty
needs one command that looks at everything the center depends on and says, in plain
words with the numbers, what is wrong and what to do. The findings have the shape of
``zhichao edge doctor``'s (:class:`edge.doctor.Finding`: ``check``, ``ok``, ``severity``,
``what``, ``fix``), so one reader, table or JSON, serves both.

The checks, in order: the database reachable, its migration the code's head, the image
store present and writable, free disk where the images and (SQLite) the database live,
enrolled units silent for too long, the center's CURVE secret key, and refusals of the
last hour by reason.

The doctor only reads: it never creates the database nor upgrades it (every other
``zhichao center`` command does, at its start), so it can be run beside a running center
and tells a database that is behind its code instead of quietly fixing it. What a test
cannot set (a file system's usage, the time now) is passed in (:class:`Probes`);
thresholds are :class:`Limits`.
"""

import os
import shutil
import stat
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import zmq.auth
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, exists, func, or_, select, text
from sqlalchemy.engine import make_url

from center.china_time import day_of
from center.db import MIGRATIONS, database_url
from center.ingest_models import Device, Refusal, StoredPacket
from center.law_models import DeviceRecord, DeviceSuspension
from center.registry import is_latest
from center.settings import CenterSettings
from zhichao.health import (
    CST,
    DiskUsage,
    Finding,
    bad,
    duration_words,
    exit_status,
    good,
    summary,
)

__all__ = ["Limits", "Probes", "examine", "exit_status", "summary"]

UPGRADE_FIX = ("run any `zhichao center` command with this --config (e.g. `zhichao center "
               "devices list --config FILE`, or restart `zhichao center run`): each brings "
               "the database to the latest migration at its start")
"""How the center upgrades its schema: every center command but the doctor does, first."""


@dataclass(frozen=True)
class Limits:
    """Where the doctor draws its lines, each with the reason for its value."""

    disk_warn_pct: float = 10.0
    """Below this share free the images of weeks, not years, still fit."""
    disk_error_pct: float = 2.0
    """Below this share free the next batch of packets with images may not fit, and a
    receiver that cannot store a packet does not acknowledge it."""
    silent_warn_s: float = 3600.0
    """An active unit sends light records all day: an hour without a packet means it or
    its link is down."""
    silent_error_s: float = 86_400.0
    """A day without a packet: a whole day of the site's traffic is not enforced."""
    silent_named: int = 50
    """Silent units named one finding each; past this, the rest in one finding (a center
    whose network is down would otherwise print a province's units)."""
    refusals_window_s: float = 3600.0
    """Refusals are counted over the last hour: recent enough to be happening now."""
    refusals_warn: int = 60
    """More refusals than this in the window (one a minute) is a unit or a sender that
    keeps trying, not a passing mistake."""
    connect_timeout_s: int = 5
    """How long a PostgreSQL server has to accept the connection."""


def utc_now() -> datetime:
    """The time now, in UTC (what the database's times are kept in)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Probes:
    """The parts of the world the doctor reads that a test cannot set: a file system's
    usage and the time now."""

    disk_usage: Callable[[Path], DiskUsage] = shutil.disk_usage  # type: ignore[assignment]
    now: Callable[[], datetime] = utc_now


def _utc(t: datetime) -> datetime:
    """A stored time in UTC: SQLite gives it back without its zone, PostgreSQL in the
    session's."""
    return t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)


# -- the database --------------------------------------------------------------------------


def _shown(url: str) -> str:
    """The database URL as it may be printed: never its password."""
    return make_url(url).render_as_string(hide_password=True)


def sqlite_path(settings: CenterSettings) -> Path | None:
    """The SQLite file of the settings, or None for PostgreSQL."""
    url = make_url(database_url(settings.database))
    if url.get_backend_name() != "sqlite":
        return None
    return Path(url.database or "")


def reader_engine(settings: CenterSettings, limits: Limits) -> Engine:
    """An engine that only reads: without the center's SQLite pragmas (WAL is the file's
    own once set) and with a bounded connection wait, so a dead server is a finding in
    seconds, not a hang."""
    url = database_url(settings.database)
    if make_url(url).get_backend_name() == "sqlite":
        return create_engine(url, connect_args={"timeout": limits.connect_timeout_s})
    return create_engine(url, connect_args={"connect_timeout": limits.connect_timeout_s})


def check_database(settings: CenterSettings, limits: Limits
                   ) -> tuple[Engine | None, list[Finding]]:
    """The database opened and answering a query; the engine for the checks that read
    it, or None when it cannot be reached (they are then left out)."""
    path = sqlite_path(settings)
    shown = _shown(database_url(settings.database))
    if path is not None and not path.is_file():
        return None, [bad("database", "error", f"no SQLite database at {path}",
                          "correct `database` in the settings; for a new center, "
                          + UPGRADE_FIX + " (which also makes the file)")]
    engine = reader_engine(settings, limits)
    try:
        with engine.connect() as conn:
            # SQLite reads a file's header only for its schema: SELECT 1 opens anything
            conn.execute(text("SELECT count(*) FROM sqlite_master" if path else "SELECT 1"))
            size = _database_size(conn)
    except Exception as exc:
        engine.dispose()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, [bad("database", "error", f"database {shown} cannot be opened: {first}",
                          _unreachable_fix(path))]
    return engine, [good("database", f"database {shown} answers" + size)]


def _database_size(conn: Connection) -> str:
    """The database's size on a PostgreSQL server, for the record (its disk is the
    server's, which the doctor cannot see)."""
    if conn.dialect.name != "postgresql":
        return ""
    size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
    return f" ({size / 1e9:.2f} GB on the server; its disk is checked there, not here)"


def _unreachable_fix(path: Path | None) -> str:
    """What to check for a database that does not open, by its kind."""
    if path is not None:
        return (f"check the center's user may read and write {path} and its folder, and "
                "that it is a zhichao database (`sqlite3 FILE 'PRAGMA integrity_check'`); "
                "restore the last backup if it is damaged")
    return ("check the PostgreSQL server runs (`systemctl status postgresql`), that host, "
            "port, user, password and database name in `database` are right, and that the "
            "server lets this host in (pg_hba.conf, the firewall)")


def code_heads() -> tuple[str, ...]:
    """The latest migration(s) of this code's ``center/migrations``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return tuple(ScriptDirectory.from_config(config).get_heads())


def check_migrations(engine: Engine) -> list[Finding]:
    """The database's Alembic revision against the code's head: a database behind its
    code misses tables the code uses; one ahead of it was migrated by a newer zhichao."""
    heads = code_heads()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    head = ", ".join(heads)
    if current in heads:
        return [good("migrations", f"database at migration {current}, the code's head")]
    if current is None:
        return [bad("migrations", "error", f"the database has no zhichao tables (no "
                    f"migration applied; the code's head is {head})", UPGRADE_FIX)]
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    known = {s.revision for s in ScriptDirectory.from_config(config).walk_revisions()}
    if current not in known:
        return [bad("migrations", "error", f"database at migration {current}, which this "
                    f"zhichao does not know (its head is {head}): a newer zhichao migrated "
                    "it", "run the zhichao version that migrated it (migrations only go "
                    "forward), or upgrade this one")]
    return [bad("migrations", "error", f"database at migration {current}, behind the "
                f"code's head {head}: the code's new tables and columns are missing",
                UPGRADE_FIX)]


# -- image store and disk ------------------------------------------------------------------


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing parent: the file system it is (or will be) on."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def check_image_store(images_dir: Path) -> list[Finding]:
    """The image folder there and writable: the receiver stores every packet's images
    there before it acknowledges the packet, so a store it cannot write refuses all
    packets with images (the overloads)."""
    check = "image store"
    if not images_dir.is_dir():
        return [bad(check, "error", f"image store {images_dir} (images_dir) does not exist"
                    + (" (a file is there)" if images_dir.exists() else ""),
                    "if the disk holding it is not mounted, mount it; else correct "
                    "images_dir, or make the folder (`mkdir -p`, owned by the center's user)")]
    try:
        with tempfile.NamedTemporaryFile(dir=images_dir, prefix=".doctor-"):
            pass
    except OSError as exc:
        return [bad(check, "error", f"image store {images_dir} cannot be written: "
                    f"{exc.strerror or exc}", "give the center's user write access to it "
                    "(`chown -R USER` it), or remount its file system read-write")]
    return [good(check, f"image store {images_dir} present and writable")]


def check_disks(places: dict[str, Path], limits: Limits,
                disk_usage: Callable[[Path], DiskUsage]) -> list[Finding]:
    """Free space on each file system the center writes to (the image store, a SQLite
    database), one finding per file system, naming what lives on it."""
    by_fs: dict[int, tuple[Path, list[str]]] = {}
    for role, path in places.items():
        where = _existing(path).resolve()
        by_fs.setdefault(os.stat(where).st_dev, (where, []))[1].append(f"{role} {path}")
    return [_disk_finding(where, roles, limits, disk_usage)
            for where, roles in by_fs.values()]


def _disk_finding(where: Path, roles: list[str], limits: Limits,
                  disk_usage: Callable[[Path], DiskUsage]) -> Finding:
    """One file system's free share against the limits."""
    total, _, free = disk_usage(where)
    pct = 100.0 * free / total if total else 0.0
    what = (f"{free / 1e9:.2f} GB free of {total / 1e9:.2f} GB ({pct:.1f} %) on the disk "
            f"of the {' and the '.join(roles)}")
    fix = ("free space on that file system (old logs, backups, files not of the center) or "
           "move the image store (images_dir) to a larger disk; never delete images or the "
           "database: they are evidence of open and closed cases")
    if pct < limits.disk_error_pct:
        return bad("disk", "error", what + f", below {limits.disk_error_pct:g} %", fix)
    if pct < limits.disk_warn_pct:
        return bad("disk", "warning", what + f", below {limits.disk_warn_pct:g} %", fix)
    return good("disk", what)


# -- enrolled units ------------------------------------------------------------------------


@dataclass(frozen=True)
class UnitSeen:
    """An enrolled unit, when it was enrolled, its last packet's arrival (None: never),
    whether the registry has it active (None: not in the registry) and whether it is
    suspended today (a repair: it may well be off)."""

    device_id: str
    enrolled_at: datetime
    last_packet_at: datetime | None
    active: bool | None
    suspended: bool = False

    @property
    def expected(self) -> bool:
        """Whether the unit should be sending: not inactive, not suspended today."""
        return self.active is not False and not self.suspended


def units_seen(conn: Connection, today: date) -> list[UnitSeen]:
    """Every enrolled unit with its last packet's arrival: the arrival of its highest
    sequence, read through the (device, sequence) index, so a province's packets are not
    scanned (a unit sends its sequences in order; a resent old one changes nothing);
    with its registry state on ``today`` (China's day, as suspensions are dated)."""
    last = (select(StoredPacket.received_at)
            .where(StoredPacket.device_id == Device.device_id)
            .order_by(StoredPacket.sequence.desc()).limit(1)
            .correlate(Device).scalar_subquery())
    active = (select(DeviceRecord.active)
              .where(DeviceRecord.device_id == Device.device_id, is_latest())
              .correlate(Device).scalar_subquery())
    suspended = exists().where(
        DeviceSuspension.device_id == Device.device_id, DeviceSuspension.starts <= today,
        or_(DeviceSuspension.ends.is_(None), DeviceSuspension.ends >= today))
    rows = conn.execute(select(Device.device_id, Device.enrolled_at, last, active,
                               suspended.correlate(Device)).order_by(Device.device_id))
    return [UnitSeen(d, _utc(e), _utc(t) if t is not None else None,
                     None if a is None else bool(a), bool(s)) for d, e, t, a, s in rows]


def check_silent_units(engine: Engine, limits: Limits, now: datetime) -> list[Finding]:
    """Enrolled units the registry does not mark inactive nor suspended today that sent
    nothing for longer than the limits, each named with its last packet's time; a unit
    out of service is set inactive in the registry and is then not expected."""
    with engine.connect() as conn:
        units = units_seen(conn, now.astimezone(CST).date())
    if not units:
        return [good("units", "no unit enrolled yet (`zhichao center devices enrol`)")]
    expected = [u for u in units if u.expected]
    silent = [(u, s) for u in expected
              if (s := (now - (u.last_packet_at or u.enrolled_at)).total_seconds())
              > limits.silent_warn_s]
    silent.sort(key=lambda pair: -pair[1])
    findings = [_silent_finding(u, s, limits) for u, s in silent[:limits.silent_named]]
    findings += _silent_rest(silent[limits.silent_named:], limits)
    counted = _counted(units, len(expected))
    if not silent:
        return [good("units", counted + f": each sent within "
                     f"{duration_words(limits.silent_warn_s)}")]
    if expected and len(silent) == len(expected) and len(expected) > 1:
        findings.insert(0, bad("units", "error", counted + ": every one is silent",
                               "the center's receiver is likely down or cut off: check it "
                               "runs (`systemctl status zhichao-center`), receiver.listen, "
                               "the firewall and the network the units reach it by"))
    return findings


def _counted(units: list[UnitSeen], expected: int) -> str:
    """How many units are enrolled and expected to send, and why the others are not."""
    inactive = sum(1 for u in units if u.active is False)
    suspended = sum(1 for u in units if u.suspended and u.active is not False)
    why = [f"{n} {what}" for n, what in ((inactive, "inactive in the registry"),
                                         (suspended, "suspended today")) if n]
    return (f"{len(units)} units enrolled, {expected} expected to send"
            + (f" ({', '.join(why)})" if why else ""))


def _silent_finding(u: UnitSeen, seconds: float, limits: Limits) -> Finding:
    """One silent unit: since when, and where to look."""
    severity = "error" if seconds > limits.silent_error_s else "warning"
    since = (f"last packet {u.last_packet_at:%Y-%m-%d %H:%M} UTC" if u.last_packet_at
             else f"no packet since enrolled {u.enrolled_at:%Y-%m-%d %H:%M} UTC")
    registry = "" if u.active else " (not in the registry)"
    return bad(f"unit {u.device_id}", severity, f"unit {u.device_id}{registry} silent for "
               f"{duration_words(seconds)}: {since}",
               "on the unit, run `zhichao edge doctor --config FILE` (devices, outbox, the "
               "link to the center); check its power and network; see the refusals check "
               "for its packets; if it is out of service, set it inactive in the registry")


def _silent_rest(rest: list[tuple[UnitSeen, float]], limits: Limits) -> list[Finding]:
    """The silent units past the named ones, in one finding."""
    if not rest:
        return []
    severity = "error" if any(s > limits.silent_error_s for _, s in rest) else "warning"
    ids = ", ".join(u.device_id for u, _ in rest)
    return [bad("units", severity, f"{len(rest)} more units silent for over "
                f"{duration_words(limits.silent_warn_s)}: {ids}",
                "as for the units named above")]


# -- keys ----------------------------------------------------------------------------------


def check_center_key(path: Path, option: str = "receiver.server_secret_key"
                     ) -> list[Finding]:
    """The center's CURVE secret key (the one ``option`` names) present, a key, and
    readable by its owner only: a copy of it lets anyone pose as the center to every
    unit."""
    check = f"key {option.removeprefix('receiver.')}"
    make = ("make it with `zhichao keys new --name center --curve-only --out DIR` and give "
            f"every unit the new center.key; or correct {option}")
    if not path.exists():
        return [bad(check, "error", f"the center's CURVE secret key {path} "
                    f"({option}) is missing: the receiver cannot start", make)]
    try:
        _, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        return [bad(check, "error", f"{path} is not a CURVE key file: {exc}", make)]
    if secret is None:
        return [bad(check, "error", f"{path} holds no secret key (the .key_secret file of "
                    "`zhichao keys new` is needed)", make)]
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        who = " and ".join(w for w, bits in (("group", 0o070), ("others", 0o007))
                           if mode & bits)
        return [bad(check, "error", f"the center's CURVE secret key {path} can be read by "
                    f"{who} (mode {mode:04o})", f"`chmod 600 {path}` (owned by the center's "
                    "user); if others may have copied it, make a new key and give the units "
                    "its public half")]
    return [good(check, f"the center's CURVE secret key {path} present, mode {mode:04o}")]


def check_rotation(settings: CenterSettings, today: date) -> list[Finding]:
    """During a rotation of the center's key: the new key checked as the old one is, and
    once the overlap is over, the step that finishes the rotation (the receiver has
    closed the old key's socket by then, but the settings still name it)."""
    rotation = settings.receiver.rotation
    if rotation is None:
        return []
    findings = check_center_key(rotation.server_secret_key, "receiver.rotation.server_secret_key")
    if today > rotation.old_key_until:
        findings.append(bad(
            "key rotation", "warning", f"the rotation's overlap ended on "
            f"{rotation.old_key_until}: the old key is no longer served",
            "finish the rotation: set receiver.server_secret_key and receiver.listen to the "
            "rotation's, remove the rotation section, restart the center"))
    else:
        findings.append(good("key rotation", f"the old key is served until the end of "
                             f"{rotation.old_key_until} (China time), the new one on "
                             f"{', '.join(rotation.listen)}"))
    return findings


# -- refusals ------------------------------------------------------------------------------


REASON_FIXES = {
    "unknown_key": "a sender's CURVE key is not enrolled: enrol the unit "
                   "(`zhichao center devices enrol`) or, if it is not one of yours, block it",
    "unknown_device": "packets name a device that is not enrolled: enrol it",
    "device_mismatch": "a unit sends under another unit's name: check its device_id",
    "signature": "a unit's signing key is not the enrolled one: enrol its new key "
                 "(`devices enrol --replace`) if it was renewed, else suspect a forgery",
    "conflict": "a unit sent another packet under a stored sequence: its outbox was "
                "replaced or copied; look at the unit",
}
"""What to do about the usual refusal reasons; others: read their detail."""


def check_refusals(engine: Engine, limits: Limits, now: datetime) -> list[Finding]:
    """Messages the receiver would not store in the last hour, counted by reason: a few
    are a passing mistake (said for the record), many a unit that keeps trying."""
    since = now.timestamp() - limits.refusals_window_s
    with engine.connect() as conn:
        rows = conn.execute(select(Refusal.reason, func.count()).where(
            Refusal.at >= datetime.fromtimestamp(since, UTC)).group_by(Refusal.reason))
        counts = Counter({reason: n for reason, n in rows})
    window = duration_words(limits.refusals_window_s)
    if not counts:
        return [good("refusals", f"no message refused in the last {window}")]
    total = sum(counts.values())
    what = f"{total} messages refused in the last {window}: " + ", ".join(
        f"{n} {reason}" for reason, n in counts.most_common())
    fix = "; ".join(f"{reason}: {REASON_FIXES[reason]}" for reason in counts
                    if reason in REASON_FIXES)
    fix = (fix + "; " if fix else "") + ("each refusal's detail is in the refusals table "
                                         "(`SELECT at, device_id, detail FROM refusals "
                                         "ORDER BY at DESC`)")
    if total > limits.refusals_warn:
        return [bad("refusals", "warning", what + f" (more than {limits.refusals_warn})", fix)]
    return [Finding("refusals", True, "info", what, fix)]


# -- all of it -----------------------------------------------------------------------------


def examine(settings: CenterSettings, *, limits: Limits | None = None,
            probes: Probes | None = None) -> list[Finding]:
    """Every check of the center of ``settings``, in the order they depend on each other:
    the database first (the checks that read it are left out when it does not open, and
    those of its tables when it is not migrated), then the image store and disks, the
    units, the key, the refusals."""
    limits, probes = limits or Limits(), probes or Probes()
    engine, findings = check_database(settings, limits)
    migrated = False
    if engine is not None:
        findings += check_migrations(engine)
        migrated = findings[-1].ok
    findings += check_image_store(settings.images_dir)
    places = {"image store": settings.images_dir}
    if (path := sqlite_path(settings)) is not None:
        places["database"] = path
    findings += check_disks(places, limits, probes.disk_usage)
    if migrated and engine is not None:
        findings += check_silent_units(engine, limits, probes.now())
    findings += check_center_key(settings.receiver.server_secret_key)
    findings += check_rotation(settings, day_of(probes.now()))
    if migrated and engine is not None:
        findings += check_refusals(engine, limits, probes.now())
    else:
        findings.append(good("units", "silent units and refusals not checked: the "
                             "database is not open or not at the code's migration"))
    if engine is not None:
        engine.dispose()
    return findings

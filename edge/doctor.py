"""``zhichao edge doctor``: is the whole roadside unit well, and if not, what to do.

A unit runs unattended in a cabinet for years; when its evidence stops arriving, a
technician on site needs one command that looks at everything the unit depends on and
says, in plain words with the numbers, what is wrong and what to do about it. Each check
gives :class:`Finding` objects: ``check`` (what was looked at), ``ok``, ``severity``
(``error``: the unit's captures are lost or are not evidence until it is fixed;
``warning``: it works now but will not for long, or works less well; ``info``: fine, or
said for the record), ``what`` and ``fix``.

The checks, in order: every configured device reachable and sending (each driver's own
:meth:`~drivers.base.Device.diagnose`, as ``edge probe`` uses), the digitiser's clock
fit, the host clock (kernel discipline, GPS), disk free where the outbox lives, the
outbox's backlog, its disk policy (room above the outbox's reserve; with the unit's
metrics page, what the running unit dropped, held or lost for want of disk), the key
files and their permissions, each center endpoint (a CURVE handshake and a ping
answered), the calibration chain and its verification certificate, and the rule tables'
digest against the one each center's pong tells.

What cannot be changed from a test is passed in (:class:`Probes`): the kernel clock's
reading, the file system's usage, today's date, the time now. Thresholds are
:class:`Limits`.

The devices are opened and read as ``edge probe`` does, so run the doctor while the unit
is stopped: a serial port is not opened exclusively, and two readers of one line each get
part of its bytes. With ``seconds`` 0 the devices are left alone (a running unit's).
"""

import shutil
import sqlite3
import stat
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from prometheus_client.parser import text_string_to_metric_families
from zmq.utils.monitor import recv_monitor_message

from calibration.chain import Chain
from drivers import digitiser
from drivers.base import Device, DeviceStatus
from drivers.registry import open_device
from edge.metrics import PREFIX as METRICS_PREFIX
from edge.outbox import RESERVE_BYTES
from edge.sender import SenderOptions, dealer_socket
from edge.settings import EdgeSettings, EvidenceSettings
from edge.timebase import Timebase
from edge.timebase.clockfit import DeviceClockFit, transmit_s
from edge.timebase.kernel import (
    KernelClock,
    kernel_synced,
    read_kernel_clock,
)
from edge.weighing import load_rules_for, unit_chain
from evidence.packet import PacketError
from evidence.signing import KeyFileError, load_signing_key
from evidence.wire import PING, parse_pong
from zhichao.errors import ZhichaoError
from zhichao.health import (  # the findings' shape, shared with the center's doctor
    CST,
    DiskUsage,
    Finding,
    bad,
    duration_words,
    good,
)
from zhichao.metrics import split_address


@dataclass(frozen=True)
class Limits:
    """Where the doctor draws its lines, each with the reason for its value."""

    seconds: float = 5.0
    """How long each device is listened to: a scale or a digitiser sends many times a
    second, a WIM controller's records may need a vehicle; a few seconds tells a dead
    line from a live one."""
    disk_warn_pct: float = 10.0
    """Below this share free the outbox has weeks, not years, of evidence left."""
    disk_error_pct: float = 2.0
    """Below this share free the next burst of overloads (images) may not fit."""
    outbox_age_warn_s: float = 3600.0
    """A pending packet older than this was not acknowledged for an hour: the center is
    away or refuses the link."""
    outbox_depth_warn: int = 10_000
    """More pending packets than this is a day or so of a busy site's traffic."""
    certificate_warn_days: int = 30
    """A verification takes weeks to book: say so a month before the certificate ends."""
    center_timeout_s: float = 3.0
    """How long a center has to complete the handshake and answer a ping: a live center
    answers in milliseconds, a mobile link in a second or two."""
    fit_settle_s: float = 0.5
    """Digitiser frames of the first half second after the first one are left out of the
    clock fit: bytes queued in the port before it was opened arrive in one burst, and
    their receive times tell nothing of the clocks (the fit would restart on them)."""
    fit_uncertainty_warn_ms: float = 5.0
    """A digitiser clock fit looser than this times each axle worse than the cameras'
    frame interval (40 ms at 25 fps) allows to spare."""
    outbox_room_warn_bytes: int = 64 * 2**20
    """Free space beyond the outbox's own reserve below which the disk is nearly full:
    64 MiB is about a hundred suspected overloads with their images, an hour or two of a
    busy site while the center is away."""
    metrics_timeout_s: float = 2.0
    """How long the running unit's metrics page has to answer (it is on this machine)."""


def china_today() -> date:
    """Today in China: the day a verification certificate's dates are read in."""
    return datetime.now(CST).date()


@dataclass(frozen=True)
class Probes:
    """The parts of the world the doctor reads that a test cannot set: the kernel
    clock's discipline, a file system's usage, today's date and the time now."""

    read_kernel: Callable[[], KernelClock] = read_kernel_clock
    disk_usage: Callable[[Path], DiskUsage] = shutil.disk_usage  # type: ignore[assignment]
    today: Callable[[], date] = china_today
    now: Callable[[], float] = time.time


# -- devices -------------------------------------------------------------------------------


@dataclass
class Listened:
    """What the devices sent while the doctor listened: their statuses and hints, the
    digitiser's clock fit and the timebase fed with the GPS sentences."""

    timebase: Timebase
    statuses: dict[str, DeviceStatus] = field(default_factory=dict)
    hints: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0
    fit: DeviceClockFit | None = None
    gps: list[str] = field(default_factory=list)
    fit_settle_s: float = 0.5
    first_frame_at: float | None = None


def listen(settings: EdgeSettings, base_dir: Path, seconds: float, timebase: Timebase,
           *, source: str = "settings", fit_settle_s: float = 0.5
           ) -> tuple[Listened, list[Finding]]:
    """Open every configured device, read them all for ``seconds`` at once (so the run
    takes ``seconds``, not that per device), feed the digitiser's frames into a clock
    fit and the GPS sentences into ``timebase``; findings for devices that cannot even
    be opened."""
    out = Listened(timebase, fit=DeviceClockFit(settings.time.fit), fit_settle_s=fit_settle_s)
    out.gps = [n for n, s in settings.devices.items()
               if s.get("kind") == "serial" and s.get("protocol") == "nmea"]
    findings: list[Finding] = []
    devices: dict[str, Device] = {}
    if seconds <= 0:
        return out, findings
    for name, section in settings.devices.items():
        try:
            devices[name] = open_device(name, section, source=source, base_dir=base_dir)
        except ZhichaoError as exc:
            findings.append(bad(f"device {name}", "error", f"device {name} cannot be set up: "
                                f"{exc}", f"correct devices.{name} in the settings"))
    for device in devices.values():
        device.start()
    start = time.monotonic()
    try:
        while (left := seconds - (time.monotonic() - start)) > 0:
            for name, device in devices.items():
                for reading in device.readings(timeout_s=min(0.05, left)):
                    _take(out, settings, name, reading)
    finally:
        for name, device in devices.items():
            out.statuses[name] = device.get_status()  # before stop: stopped is unconnected
        for device in devices.values():
            device.stop()
    out.seconds = time.monotonic() - start
    for name, device in devices.items():
        out.hints[name] = device.diagnose(out.statuses[name], out.seconds)
    return out, findings


def _take(out: Listened, settings: EdgeSettings, name: str, reading: dict[str, Any]) -> None:
    """A digitiser frame into the clock fit (as the unit fits it), a GPS sentence into
    the timebase; anything else only counts in the device's status."""
    kind = reading.get("kind")
    if kind == "gps":
        out.timebase.feed_gps(reading)
    elif kind == "samples" and out.fit is not None and reading.get("t_host_s") is not None:
        t_host = float(reading["t_host_s"])
        out.first_frame_at = out.first_frame_at or t_host
        if t_host - out.first_frame_at < out.fit_settle_s:
            return
        samples = reading["samples"]
        baud = int(settings.devices[name].get("baudrate", 0) or 0)
        frame_bytes = digitiser.HEADER_BYTES + 2 * samples.size + digitiser.CRC_BYTES
        out.fit.add(reading["t_device_us"] / 1e6 + samples.shape[-1] / settings.site.fs_hz,
                    t_host, min_delay_s=transmit_s(frame_bytes, baud) if baud else 0.0)


def check_devices(settings: EdgeSettings, heard: Listened) -> list[Finding]:
    """One finding per device: sending (ok), sending with trouble (warning: the driver's
    hints), or silent (error, with the port or address named)."""
    if not settings.devices:
        return [bad("devices", "error", "no devices under 'devices' in the settings: the "
                    "unit weighs nothing", "list the site's devices in the settings "
                    "(zhichao sim --write-config shows the form)")]
    if not heard.statuses and heard.seconds <= 0:
        return [good("devices", f"{len(settings.devices)} devices not opened (--seconds 0): "
                     "a running unit reads them; stop it and give seconds to check them")]
    return [_device_finding(name, settings.devices[name], status, heard.hints[name],
                            heard.seconds)
            for name, status in heard.statuses.items()]


def _device_finding(name: str, section: dict[str, Any], status: DeviceStatus,
                    hints: list[str], seconds: float) -> Finding:
    """The finding of one device from its status and its driver's hints."""
    check = f"device {name}"
    where = str(status.extra.get("port") or status.extra.get("url") or "no address")
    problems = [h for h in hints if not h.startswith("ok")]
    probe = f"`zhichao edge probe --config FILE --device {name}` shows it live"
    if status.frames and not problems:
        rate = status.frames / seconds if seconds > 0 else 0.0
        return good(check, f"device {name} ({where}) sending: {status.frames} readings in "
                    f"{seconds:.1f} s ({rate:.1f}/s)")
    if status.frames:
        return bad(check, "warning", f"device {name} ({where}) sends, with trouble: "
                   + "; ".join(problems), f"check what the hints name; {probe}")
    if not status.connected:
        return bad(check, "error", f"device {name}: {where} not connected in {seconds:.1f} s"
                   f" ({status.last_error or 'no answer'}); nothing read from it",
                   _unconnected_fix(name, section, where) + f"; then {probe}")
    return bad(check, "error", f"device {name} ({where}) connected but nothing decoded in "
               f"{seconds:.1f} s: " + "; ".join(problems), f"{probe}; check what it names")


def _unconnected_fix(name: str, section: dict[str, Any], where: str) -> str:
    """What to check for a device that could not be reached, by its kind."""
    kind = section.get("kind")
    if kind == "serial":
        return (f"check the cable and the USB adapter of {name} (plugged in, powered), and "
                f"the port in settings (devices.{name}.port: {where})")
    if kind == "modbus":
        return (f"check the controller's power and network cable, and its address in "
                f"settings (devices.{name}.url: {where})")
    if kind == "temperature":
        return (f"check the temperature transmitter's power and its RS-485 or network "
                f"cable, its unit id and its address in settings (devices.{name}.url: "
                f"{where}); until it answers the unit weighs at pavement_temperature_c")
    return (f"check the camera's power and network cable, and its address in settings "
            f"(devices.{name}.url: {where})")


def check_clock_fit(heard: Listened, limits: Limits) -> list[Finding]:
    """The digitiser's clock against the host's, when a digitiser sent frames: how fast
    it runs and how well each axle can be timed."""
    fit = heard.fit
    if fit is None or fit.points_in == 0:
        return []
    check = "digitiser clock"
    if not fit.ready:
        return [bad(check, "warning", f"only {fit.n_points} digitiser frames usable in "
                    f"{heard.seconds:.1f} s, too few to fit its clock "
                    f"({fit.settings.min_points} needed)",
                    "run the doctor longer (--seconds); if frames are that rare, check the "
                    "digitiser's frame rate setting")]
    drift, unc_ms = fit.drift_ppm, fit.uncertainty_s() * 1e3
    what = (f"digitiser clock fitted on {fit.n_points} frames: runs {drift:+.0f} ppm against "
            f"the host, axle times ± {unc_ms:.2f} ms, {fit.restarts} restarts")
    if fit.restarts:
        return [bad(check, "warning", what + ": its clock went back or jumped",
                    "a digitiser that resets is failing or losing power: check its supply")]
    if unc_ms > limits.fit_uncertainty_warn_ms:
        return [bad(check, "warning", what + f", looser than {limits.fit_uncertainty_warn_ms:g}"
                    " ms", "use a higher baud rate or a serial adapter with a low latency "
                    "timer; a busy host delays frames too")]
    return [good(check, what)]


# -- the host clock ------------------------------------------------------------------------


def check_host_clock(settings: EdgeSettings, heard: Listened, read_kernel:
                     Callable[[], KernelClock]) -> list[Finding]:
    """The kernel's clock discipline and, when configured, the GPS: a capture time is
    evidence only with a clock some source vouches for."""
    k = read_kernel()
    now = time.monotonic()
    gps = heard.timebase.gps
    gps_fresh = bool(heard.gps) and gps.fresh(now)
    findings = [_kernel_finding(k, settings, gps_fresh)]
    if heard.gps:
        findings.append(_gps_finding(heard, now, kernel_synced(k, settings.time)))
    return findings


def _kernel_finding(k: KernelClock, settings: EdgeSettings, gps_fresh: bool) -> Finding:
    """Synced, synced once and lost, or never: an error unless a fresh GPS vouches."""
    check = "host clock"
    limit_ms = settings.time.synced_maxerror_ms
    maxerror_ms = k.maxerror_us / 1000.0
    if kernel_synced(k, settings.time):
        return good(check, f"host clock synchronised by the time daemon ({k.state_name}), "
                    f"max error {maxerror_ms:.3g} ms")
    if k.unsynchronised or k.state_name == "TIME_ERROR":
        what = (f"host clock not synchronised (kernel {k.state_name}, "
                f"{', '.join(k.flag_names()) or 'no flags'}; max error "
                f"{maxerror_ms / 1000:.3g} s)")
        fix = ("enable chrony/NTP (`systemctl enable --now chrony`, with a time server the "
               "unit can reach) or the GPS (a device with protocol nmea)")
    else:
        what = (f"host clock synchronised once but its max error {maxerror_ms:.3g} ms is "
                f"above {limit_ms:g} ms: the time daemon stopped updating it")
        fix = ("restart the time daemon (`systemctl restart chrony`) and check it reaches "
               "its time servers (`chronyc sources`), or use the GPS")
    if gps_fresh:
        return bad(check, "warning", what + "; the GPS vouches for capture times meanwhile",
                   fix)
    return bad(check, "error", what + ": capture times carry no bound", fix)


def _gps_finding(heard: Listened, now: float, kernel_ok: bool) -> Finding:
    """A configured GPS that gives no time is an error only when the kernel cannot
    vouch for the clock either."""
    gps = heard.timebase.gps
    text = gps.describe(now)
    if gps.fresh(now):
        return good("gps", text)
    return bad("gps", "warning" if kernel_ok else "error", text + f" after "
               f"{heard.seconds:.1f} s", "check the GPS antenna has open sky and its cable; "
               "after a cold start a receiver needs minutes for its first fix")


# -- disk and outbox -----------------------------------------------------------------------


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing parent: the file system it will be on."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def check_disk(evidence: EvidenceSettings, limits: Limits,
               disk_usage: Callable[[Path], DiskUsage]) -> list[Finding]:
    """Free space on the outbox's file system: the outbox keeps every unacknowledged
    packet, so a full disk means new captures can only be held in memory."""
    folder = _existing(evidence.outbox.parent).resolve()
    total, _, free = disk_usage(folder)
    pct = 100.0 * free / total if total else 0.0
    what = (f"{free / 1e9:.2f} GB free of {total / 1e9:.2f} GB ({pct:.1f} %) where the "
            f"outbox lives ({folder})")
    fix = (f"free space on that file system (old logs, files not of the unit), or lower "
           f"evidence.keep_days (now {evidence.keep_days:g}) so acknowledged packets are "
           f"pruned sooner; never delete the outbox file: unacknowledged evidence is in it")
    if pct < limits.disk_error_pct:
        return [bad("disk", "error", what + f", below {limits.disk_error_pct:g} %", fix)]
    if pct < limits.disk_warn_pct:
        return [bad("disk", "warning", what + f", below {limits.disk_warn_pct:g} %", fix)]
    return [good("disk", what)]


def outbox_state(path: Path) -> dict[str, Any]:
    """Pending and refused packets and the oldest pending one's time, read without
    writing (a running unit may hold the file)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        pending, oldest = db.execute("SELECT COUNT(*), MIN(created_at) FROM packets "
                                     "WHERE state = 'pending'").fetchone()
        refused = db.execute("SELECT COUNT(*) FROM packets WHERE state = 'refused'"
                             ).fetchone()[0]
        reason = db.execute("SELECT reason FROM packets WHERE state = 'refused' "
                            "ORDER BY sequence DESC LIMIT 1").fetchone()
    finally:
        db.close()
    return {"pending": pending, "oldest": oldest, "refused": refused,
            "reason": reason[0] if reason else None}


def check_outbox(evidence: EvidenceSettings, limits: Limits, now: float) -> list[Finding]:
    """How many packets wait for the center and for how long; packets the center
    refused."""
    path = evidence.outbox
    if not path.exists():
        return [good("outbox", f"no outbox yet at {path}: it is made when the unit first "
                     "commits a packet")]
    try:
        s = outbox_state(path)
    except sqlite3.Error as exc:
        return [bad("outbox", "error", f"outbox {path} cannot be read: {exc}",
                    "stop the unit and look at the file (`sqlite3 FILE 'PRAGMA "
                    "integrity_check'`); keep it: unacknowledged evidence is in it")]
    age_s = now - s["oldest"] if s["oldest"] is not None else 0.0
    what = f"{s['pending']} packets pending in {path}"
    if s["pending"]:
        what += f", the oldest {duration_words(age_s)} old"
    fix = ("nothing to delete: they go once the center answers (see the center check); "
           "a backlog that only grows means the link is slower than the traffic")
    findings = []
    if s["pending"] and (age_s > limits.outbox_age_warn_s
                         or s["pending"] > limits.outbox_depth_warn):
        findings.append(bad("outbox", "warning", what + f" (limits {limits.outbox_depth_warn}"
                            f" packets, {duration_words(limits.outbox_age_warn_s)})", fix))
    else:
        findings.append(good("outbox", what))
    if s["refused"]:
        findings.append(bad("outbox refused", "warning", f"{s['refused']} packets refused by "
                            f"the center, the last because: {s['reason']}",
                            "the center will never store them: its reason says what to set "
                            "right (registry entry, keys, certificate) for the packets to come"))
    return findings


# -- the outbox's disk policy --------------------------------------------------------------


def check_outbox_disk(evidence: EvidenceSettings, metrics_address: str | None,
                      limits: Limits, disk_usage: Callable[[Path], DiskUsage]
                      ) -> list[Finding]:
    """Whether the outbox has room, by its own rule (:data:`edge.outbox.RESERVE_BYTES`
    kept free), and — when the unit serves its metrics — whether the running unit has
    dropped light records, held or lost evidence, or has its disk-full alarm raised. The
    outbox keeps those counts in memory: with the unit stopped only the disk is seen."""
    findings = [_outbox_room(evidence, limits, disk_usage)]
    if metrics_address is not None:
        findings.append(_running_outbox(evidence, metrics_address, limits.metrics_timeout_s))
    return findings


def _room_fix(evidence: EvidenceSettings, folder: Path) -> str:
    """What to do about an outbox's disk without room, in plain words."""
    return (f"make room on {folder} now: remove files that are not the unit's (old logs, "
            "copies, anything left there), never the outbox file — the center has not "
            "acknowledged all of it; evidence held in memory is stored first once there is "
            "room, and is lost if the unit stops before, so do not restart it until no "
            "packet is held; then keep it from filling again: lower evidence.keep_light_days "
            f"(now {evidence.keep_light_days:g}) and keep_days (now {evidence.keep_days:g}),"
            " or give the outbox a disk of its own")


def _outbox_room(evidence: EvidenceSettings, limits: Limits,
                 disk_usage: Callable[[Path], DiskUsage]) -> Finding:
    """The outbox's file system against the reserve the outbox keeps free: below it
    the outbox drops new light records and holds evidence in memory."""
    folder = _existing(evidence.outbox.parent).resolve()
    free = disk_usage(folder)[2]
    mb = f"{free / 2**20:.1f} MiB free where the outbox lives ({folder})"
    reserve = f"{RESERVE_BYTES / 2**20:g} MiB"
    if free < RESERVE_BYTES:
        return bad("outbox disk", "error", f"the outbox's disk is full: {mb}, below the "
                   f"{reserve} the outbox keeps free for itself; a unit running now stores "
                   f"no new packet: it drops the light records (counted), holds suspected "
                   f"overloads in memory (at most evidence.hold_max, {evidence.hold_max}; "
                   "beyond, the oldest are lost) and has raised its disk-full alarm",
                   _room_fix(evidence, folder))
    if free < RESERVE_BYTES + limits.outbox_room_warn_bytes:
        return bad("outbox disk", "warning", f"the outbox's disk is nearly full: {mb}, "
                   f"{(free - RESERVE_BYTES) / 2**20:.1f} MiB above the {reserve} the "
                   "outbox keeps free; when that is used, new light records are dropped "
                   "and evidence is held in memory", _room_fix(evidence, folder))
    return good("outbox disk", f"{mb}: room for new packets")


def running_outbox_counts(address: str, timeout_s: float) -> dict[str, float]:
    """The disk policy's numbers from the running unit's metrics page at ``address``
    (HOST:PORT; a wildcard host is asked on loopback): disk_full, light_dropped, held,
    lost. OSError when nothing answers, ValueError when the page has none of them."""
    host, port = split_address(address)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"
    with urllib.request.urlopen(url, timeout=timeout_s) as answer:
        text = answer.read(4 * 2**20).decode("utf-8", "replace")
    samples = {s.name: s.value for family in text_string_to_metric_families(text)
               for s in family.samples}
    names = {"disk_full": "outbox_disk_full", "light_dropped": "outbox_light_dropped_total",
             "held": "outbox_held", "lost": "outbox_lost_total"}
    found = {k: samples.get(f"{METRICS_PREFIX}_{n}") for k, n in names.items()}
    if any(v is None for v in found.values()):
        raise ValueError(f"{url} does not show the outbox's disk policy (a unit run "
                         "without --send has no outbox)")
    return {k: float(v) for k, v in found.items() if v is not None}


def _running_outbox(evidence: EvidenceSettings, address: str, timeout_s: float) -> Finding:
    """What the running unit's outbox did since the unit started, from its metrics."""
    check = "outbox disk policy"
    try:
        c = running_outbox_counts(address, timeout_s)
    except (OSError, ValueError) as exc:
        return good(check, f"no running unit's outbox answered at {address} ({exc}): what "
                    "it dropped since it started is not known (the disk's room is above)")
    folder = _existing(evidence.outbox.parent).resolve()
    dropped, held, lost = int(c["light_dropped"]), int(c["held"]), int(c["lost"])
    said = (f"since it started the running unit dropped {dropped} light records for want "
            f"of disk, holds {held} packets in memory and lost {lost}; its disk-full alarm "
            f"is {'raised' if c['disk_full'] else 'cleared'}")
    if c["disk_full"] or held or lost:
        return bad(check, "error", said + (f" ({lost} suspected overloads lost: more than "
                   f"evidence.hold_max, {evidence.hold_max}, were held)" if lost else ""),
                   _room_fix(evidence, folder))
    if dropped:
        return bad(check, "warning", said + ": the disk was full for a while and has room "
                   "again; the light records dropped are gone (traffic counts only, no "
                   "evidence)", "find what filled the disk and keep it from filling again: "
                   f"lower evidence.keep_light_days (now {evidence.keep_light_days:g}) and "
                   f"keep_days (now {evidence.keep_days:g}), move other files off {folder}, "
                   "or give the outbox a disk of its own")
    return good(check, said)


# -- keys ----------------------------------------------------------------------------------


def check_keys(evidence: EvidenceSettings) -> list[Finding]:
    """The three key files present, of the right kind, and the private ones readable by
    their owner only: a copied signing key signs packets the center cannot tell from the
    unit's own."""
    return [_key_finding("signing key", "signing_key", evidence.signing_key, private=True),
            _key_finding("CURVE secret key", "curve_secret_key", evidence.curve_secret_key,
                         private=True),
            _key_finding("center public key", "center_public_key",
                         evidence.center_public_key, private=False),
            *(_key_finding(f"center public key of {e}", f"center_public_keys {e}", path,
                           private=False) for e, path in evidence.center_public_keys.items())]


def _key_finding(label: str, option: str, path: Path, private: bool) -> Finding:
    """One key file: present, loadable, and (when private) mode 600 or stricter."""
    check = f"key {option}"
    if not path.exists():
        make = ("copy the center's public key (center.key) from the center to that path"
                if not private else "make the unit's keys with `zhichao keys new --name UNIT "
                "--out DIR` and enrol the public halves at the center")
        return bad(check, "error", f"{label} {path} (evidence.{option}) is missing",
                   make + f", or correct evidence.{option}")
    problem = _key_problem(path, option)
    if problem:
        return bad(check, "error", f"{label} {path}: {problem}",
                   f"point evidence.{option} at the right file")
    mode = stat.S_IMODE(path.stat().st_mode)
    if private and mode & 0o077:
        who = " and ".join(w for w, bits in (("group", 0o070), ("others", 0o007))
                           if mode & bits)
        return bad(check, "error", f"{label} {path} can be read by {who} (mode {mode:04o})",
                   f"`chmod 600 {path}` (and owned by the unit's user); if others may have "
                   f"copied it, make new keys and enrol them")
    return good(check, f"{label} {path} present" + (f", mode {mode:04o}" if private else ""))


def _key_problem(path: Path, option: str) -> str:
    """Why the file is not the key it should be ('' when it is)."""
    try:
        if option == "signing_key":
            load_signing_key(path)
            return ""
        _, secret = zmq.auth.load_certificate(path)
    except (KeyFileError, OSError, ValueError) as exc:
        return str(exc)
    if option == "curve_secret_key" and secret is None:
        return "holds no secret key (the .key_secret file of zhichao keys new is needed)"
    return ""


# -- the centers ---------------------------------------------------------------------------


def check_centers(evidence: EvidenceSettings, limits: Limits,
                  answers: dict[str, "PingResult"] | None = None) -> list[Finding]:
    """Each configured endpoint: a CURVE handshake with this unit's keys and the center's
    key of that endpoint, and a ping answered. The center lets in only enrolled units, so
    an answer proves the whole link: network, center running, this unit enrolled, the
    center's key the right one. Each endpoint's result goes into ``answers`` (the rule
    tables' check compares the digests the centers told)."""
    try:
        public, secret = zmq.auth.load_certificate(evidence.curve_secret_key)
        servers = {e: zmq.auth.load_certificate(evidence.center_key_of(e))[0]
                   for e in evidence.endpoints}
    except (OSError, ValueError) as exc:
        return [bad("center", "error", f"no center tried: the CURVE keys cannot be read "
                    f"({exc})", "set the key files right first (see the key checks)")]
    if secret is None:
        return [bad("center", "error", "no center tried: the unit's CURVE secret key is "
                    "missing", "set the key files right first (see the key checks)")]
    findings = []
    for e in evidence.endpoints:
        result = ping_center(e, (servers[e], public, secret), evidence.zap_domain,
                             limits.center_timeout_s)
        if answers is not None:
            answers[e] = result
        findings.append(_center_finding(e, result, evidence))
    return findings


@dataclass(frozen=True)
class PingResult:
    """What one try of a center gave: the answer's round trip (None: no answer), which
    stages of the connection were seen (TCP connected, handshake done or refused) and
    the digest of the center's rule tables its pong told (None: a center of before the
    digest, or no answer)."""

    round_trip_s: float | None
    connected: bool = False
    handshake: bool = False
    refused: bool = False
    rules_digest: str | None = None


def ping_center(endpoint: str, keys: tuple[bytes, bytes, bytes], zap_domain: str,
                timeout_s: float) -> PingResult:
    """Connect to ``endpoint`` as the sender does, send a ping once the handshake is
    done, wait for the center's ping back; the socket's events tell how far it got."""
    ctx = zmq.Context()
    sock = dealer_socket(ctx, keys, SenderOptions(zap_domain=zap_domain))
    monitor = sock.get_monitor_socket()
    seen: set[int] = set()
    try:
        sock.connect(endpoint)
        start = time.monotonic()
        sent_at: float | None = None
        while time.monotonic() - start < timeout_s:
            seen |= _events(monitor)
            if sent_at is None and sock.poll(0, zmq.POLLOUT):
                sock.send_multipart([PING], zmq.NOBLOCK)
                sent_at = time.monotonic()
            if sock.poll(20, zmq.POLLIN) and (pong := sock.recv_multipart())[:1] == [PING]:
                return PingResult(time.monotonic() - (sent_at or start), True, True,
                                  rules_digest=_digest_of(pong))
        seen |= _events(monitor)
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)
        sock.close(linger=0)
        ctx.term()
    return PingResult(None, zmq.EVENT_CONNECTED in seen,
                      zmq.EVENT_HANDSHAKE_SUCCEEDED in seen,
                      zmq.EVENT_HANDSHAKE_FAILED_AUTH in seen)


def _digest_of(pong: list[bytes]) -> str | None:
    """The pong's rule-table digest; None if it has none or a malformed one."""
    try:
        return parse_pong(pong)
    except PacketError:
        return None


def _events(monitor: zmq.Socket) -> set[int]:
    """The socket events waiting on its monitor."""
    seen = set()
    while monitor.poll(0):
        seen.add(int(recv_monitor_message(monitor)["event"]))
    return seen


def _center_finding(endpoint: str, r: PingResult, evidence: EvidenceSettings) -> Finding:
    """The ping's result in words: where the link stopped, and what to check there."""
    check = f"center {endpoint}"
    if r.round_trip_s is not None:
        return good(check, f"center {endpoint} answered a ping over CURVE in "
                    f"{r.round_trip_s * 1e3:.0f} ms")
    unit_key = evidence.curve_secret_key.with_suffix(".key")
    if r.refused:
        return bad(check, "error", f"center {endpoint} refused this unit's key (CURVE "
                   "handshake denied)", f"enrol the unit at the center with its public "
                   f"key {unit_key} (its key may have been rotated or revoked)")
    if r.connected and not r.handshake:
        option = ("center_public_keys" if endpoint in evidence.center_public_keys
                  else "center_public_key")
        return bad(check, "error", f"center {endpoint}: connected, but the CURVE handshake "
                   "did not complete", f"check evidence.{option} "
                   f"({evidence.center_key_of(endpoint)}) is this center's key (a key the "
                   "center rotated: its new one has an endpoint of its own), that the unit is "
                   f"enrolled ({unit_key}), and evidence.zap_domain ({evidence.zap_domain})")
    if r.handshake:
        return bad(check, "error", f"center {endpoint}: handshake done but no answer to a "
                   "ping", "the center's receiver is stuck or overloaded: look at its logs")
    return bad(check, "error", f"center {endpoint} unreachable: no connection", "check the "
               "network (cable, mobile link, VPN, firewall), that the center's receiver "
               "runs at that address, and evidence.endpoints in the settings (a center "
               "that rotated its key closes the old key's address after the overlap: "
               "the new endpoint and key are in docs/keys.md)")


# -- calibration and rules -----------------------------------------------------------------


def check_calibration(settings: EdgeSettings, base_dir: Path, limits: Limits,
                      today: date) -> list[Finding]:
    """The unit's calibration chain and its verification certificate: the center takes a
    capture as evidence only when the chain's certificate covers its day."""
    check = "calibration"
    try:
        chain = unit_chain(settings, base_dir)
    except ZhichaoError as exc:
        return [bad(check, "error", str(exc), "install the unit's own chain, written by "
                    "`zhichao calibrate apply`, and point calibration_file at it")]
    if settings.calibration_file is None:
        return [bad(check, "error", "no calibration chain (calibration_file) in the "
                    "settings: the packets name no chain, so the center keeps the captures "
                    "as data, not as evidence", "calibrate the unit (`zhichao calibrate "
                    "apply`, with its verification certificate) and set calibration_file")]
    return _certificate_findings(chain, settings, limits, today)


def _certificate_findings(chain: Chain, settings: EdgeSettings, limits: Limits,
                          today: date) -> list[Finding]:
    """No certificate, adjusted after it, not yet or no longer valid, ending soon."""
    name = f"calibration chain {chain.version} ({chain.digest()[:12]})"
    cert = chain.certificate
    renew = ("have the unit verified (检定) and apply its chain with the new certificate "
             "(`zhichao calibrate apply`)")
    if cert is None:
        return [bad("certificate", "error", f"{name} has no verification certificate: "
                    "captures are not evidence", renew)]
    out = []
    if chain.applied_at is not None and chain.applied_at.astimezone(CST).date() > \
            cert.valid_from:
        out.append(bad("certificate", "error", f"{name} was applied on "
                       f"{chain.applied_at.astimezone(CST).date()}, after its certificate "
                       f"{cert.number} of {cert.valid_from}: the unit was adjusted after it "
                       "was verified", renew))
    days_left = (cert.valid_to - today).days
    period = f"certificate {cert.number} valid {cert.valid_from} to {cert.valid_to}"
    if today < cert.valid_from:
        out.append(bad("certificate", "error", f"{name}: {period}, not yet valid today "
                       f"({today})", "check the certificate's dates in the chain file"))
    elif days_left < 0:
        out.append(bad("certificate", "error", f"{name}: {period}, expired {-days_left} "
                       f"days ago: captures are not evidence", renew))
    elif days_left < limits.certificate_warn_days:
        out.append(bad("certificate", "warning", f"{name}: {period}, ends in {days_left} "
                       f"days", "book the verification now; " + renew))
    elif not out:
        out.append(good("certificate", f"{name}: {period}, {days_left} days left"))
    if settings.evidence.certificate and settings.evidence.certificate != cert.number:
        out.append(bad("certificate number", "warning", f"the settings name certificate "
                       f"{settings.evidence.certificate} (evidence.certificate), the chain "
                       f"{cert.number}", "set evidence.certificate to the chain's number"))
    return out


def check_rules(settings: EdgeSettings, answers: dict[str, PingResult] | None = None
                ) -> list[Finding]:
    """The rule tables' digest against the one each center that answered a ping told
    (``answers``, from :func:`check_centers`): the unit screens with its tables (which
    passes are suspected overloads and carry their images), the center grades with its
    own, and the two must be the same tables (the same vendor choice included)."""
    try:
        rules = load_rules_for(settings)
    except ZhichaoError as exc:
        return [bad("rule tables", "error", f"rule tables cannot be loaded: {exc}",
                    "correct rules.folder / rules.vendor in the settings")]
    where = settings.rules.folder or "shipped with zhichao"
    mine = (f"rule tables ({where}, vendor {settings.rules.vendor}) digest "
            f"{rules.digest[:16]}")
    answered = {e: r for e, r in (answers or {}).items() if r.round_trip_s is not None}
    told = {e: r.rules_digest for e, r in answered.items() if r.rules_digest is not None}
    other = {e: d for e, d in told.items() if d != rules.digest}
    if other:
        theirs = ", ".join(f"{e} {d[:16]}" for e, d in other.items())
        return [bad("rule tables", "warning", f"{mine}; the center grades with other rule "
                    f"tables ({theirs}): a truck the center finds overloaded may be sent "
                    "without its images", "the unit grades with other rule tables than the "
                    "center: copy config/rules from the center (its law.rules_folder, or the "
                    "tables shipped with its zhichao) into the unit's rules.folder, set "
                    "rules.vendor to the center's law.vendor, and restart the unit")]
    if told:
        return [good("rule tables", f"{mine}, equal to the center's "
                     f"({', '.join(told)})")]
    why = ("no center answered (see the center checks)" if not answered else
           "the center did not tell its digest (a receiver of before the digest)")
    return [good("rule tables", f"{mine}; not compared with the center's: {why}")]


# -- all of it -----------------------------------------------------------------------------


def examine(settings: EdgeSettings, base_dir: Path, *, source: str = "settings",
            limits: Limits | None = None, probes: Probes | None = None) -> list[Finding]:
    """Every check of the unit of ``settings`` (paths relative to ``base_dir``), in the
    order a technician works through them: devices first (they take ``limits.seconds``),
    then clocks, disk, outbox, keys, centers, calibration, rules."""
    limits, probes = limits or Limits(), probes or Probes()
    timebase = Timebase(settings.time, read_kernel=probes.read_kernel)
    heard, findings = listen(settings, base_dir, limits.seconds, timebase, source=source,
                             fit_settle_s=limits.fit_settle_s)
    evidence = settings.evidence.resolved(base_dir)
    findings += check_devices(settings, heard)
    findings += check_clock_fit(heard, limits)
    findings += check_host_clock(settings, heard, probes.read_kernel)
    findings += check_disk(evidence, limits, probes.disk_usage)
    findings += check_outbox(evidence, limits, probes.now())
    findings += check_outbox_disk(evidence, settings.unit.metrics_address, limits,
                                  probes.disk_usage)
    findings += check_keys(evidence)
    answers: dict[str, PingResult] = {}
    findings += check_centers(evidence, limits, answers)
    findings += check_calibration(settings, base_dir, limits, probes.today())
    findings += check_rules(settings, answers)
    return findings

"""``zhichao edge``: the roadside unit's commands for technicians.

``zhichao edge run --config FILE`` weighs from the devices the settings list.

``zhichao edge probe`` opens one device — from the edge settings, or given on the command
line — shows its decoded readings live with rates and error counts, and says in plain
words what looks wrong. ``--seconds N`` stops it after N seconds; ``--json`` prints one
JSON object per reading and, last, one with the counts.
"""

import argparse
import json
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from drivers.base import Device, DeviceStatus
from drivers.camera import Camera
from drivers.modbus_map import load_register_map
from drivers.modbus_wim import ModbusWimDevice
from drivers.registry import open_device
from drivers.serial_link import PROTOCOLS, SerialDevice
from edge.doctor import Limits, examine
from edge.settings import load_edge_settings
from edge.unit import Pass, RoadsideUnit
from zhichao.errors import ConfigError
from zhichao.health import Finding, exit_status, summary
from zhichao.resources import config_dir
from zhichao.systemd import Notifier, sd_notify


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``zhichao edge`` and its subcommands."""
    edge = sub.add_parser("edge", help="roadside unit: probe devices",
                          description=__doc__.split("\n\n")[0])
    edge_sub = edge.add_subparsers(dest="edge_command", metavar="COMMAND", required=True)
    probe = edge_sub.add_parser("probe", help="open one device and show what it sends",
                                description=__doc__.split("\n\n")[1])
    target = probe.add_mutually_exclusive_group(required=True)
    target.add_argument("--config", type=Path, metavar="FILE",
                        help="edge settings; probe the device --device names in it")
    target.add_argument("--serial", metavar="PORT",
                        help="a serial device: /dev/ttyUSB0, or a pyserial URL")
    target.add_argument("--modbus", metavar="URL",
                        help="a Modbus WIM controller: tcp://HOST[:PORT] or "
                             "rtu:///dev/ttyX?baud=9600&parity=N")
    target.add_argument("--camera", metavar="URL",
                        help="a camera: rtsp://..., usb:0, or a video file")
    probe.add_argument("--device", metavar="NAME", help="which device of --config")
    probe.add_argument("--protocol", choices=sorted(PROTOCOLS), default="wim_records",
                       help="what the --serial device speaks (default wim_records)")
    probe.add_argument("--baud", type=int, default=9600, help="--serial line speed")
    probe.add_argument("--link", default="8N1", metavar="8N1",
                       help="--serial data bits, parity, stop bits: 8N1, 7E1, ...")
    probe.add_argument("--map", type=Path, metavar="FILE",
                       help="register map for --modbus (default: the shipped example)")
    probe.add_argument("--seconds", type=float, default=10.0,
                       help="stop after this long (default 10)")
    probe.add_argument("--json", action="store_true",
                       help="one JSON object per reading, then one with the counts")
    probe.set_defaults(run=run_probe)
    run = edge_sub.add_parser("run", help="weigh from the configured devices",
                              description=RUN_HELP)
    run.add_argument("--config", type=Path, required=True, metavar="FILE",
                     help="edge settings with a devices: section")
    run.add_argument("--seconds", type=float, default=60.0,
                     help="stop after this long (default 60)")
    run.add_argument("--json", action="store_true", help="one JSON object per vehicle")
    run.add_argument("--send", action="store_true",
                     help="also commit every vehicle as a signed packet to the outbox and "
                          "send it to the center (the settings' evidence: section)")
    run.set_defaults(run=run_edge)
    doctor = edge_sub.add_parser("doctor", help="check the whole unit and say what to fix",
                                 description=DOCTOR_HELP)
    doctor.add_argument("--config", type=Path, required=True, metavar="FILE",
                        help="edge settings of the unit")
    doctor.add_argument("--seconds", type=float, default=5.0,
                        help="how long each device is listened to (default 5); 0 leaves "
                             "them alone, for a unit that is running")
    doctor.add_argument("--json", action="store_true", help="one JSON object")
    doctor.set_defaults(run=run_doctor)


RUN_HELP = """Run the roadside unit of the settings (edge/unit.py): sample frames of the
digitiser go through the signal loop, records of WIM controllers are taken as weighed, a
GPS receiver's time goes to the timebase; every vehicle is screened against the rule
tables, gets its cameras' frames at its axle times and its plate read beside the weighing,
and is printed. With --send, every vehicle is also committed as a signed packet to the
outbox (suspected overloads with their images, light records without) and sent to the
center. SIGHUP reads the settings file and the rule tables again and applies what can
change while weighing; the rest is logged as needing a restart (docs/install.md)."""


def open_probe_device(args: argparse.Namespace) -> Device:
    """The device the command line names, not yet started."""
    if args.config:
        return _configured_device(args.config, args.device)
    if args.serial:
        bits, parity, stop = _link(args.link)
        return SerialDevice("probe", args.serial, PROTOCOLS[args.protocol],
                            baudrate=args.baud, bytesize=bits, parity=parity, stopbits=stop)
    if args.modbus:
        map_path = args.map or config_dir() / "devices" / "wim_modbus.example.yaml"
        return ModbusWimDevice("probe", args.modbus, load_register_map(map_path))
    if args.camera:
        return Camera("probe", args.camera)
    raise ConfigError("name a device to probe (see zhichao edge probe --help)")


def _configured_device(path: Path, name: str | None) -> Device:
    """One device of an edge settings file."""
    settings = load_edge_settings(path)
    if name not in settings.devices:
        known = ", ".join(settings.devices) or "none"
        raise ConfigError(f"{path}: no device {name!r} under 'devices' (there are: {known})")
    return open_device(name, settings.devices[name], source=str(path), base_dir=path.parent)


def _link(text: str) -> tuple[int, str, int]:
    """'8N1' → (8, 'N', 1)."""
    if len(text) != 3 or text[0] not in "78" or text[1].upper() not in "NEO" \
            or text[2] not in "12":
        raise ConfigError(f"--link must be data bits, parity and stop bits like 8N1 or 7E1 "
                          f"(got {text!r})")
    return int(text[0]), text[1].upper(), int(text[2])


def run_probe(args: argparse.Namespace) -> int:
    """Run ``zhichao edge probe``; returns the exit status (1 when nothing was decoded)."""
    device = open_probe_device(args)
    out = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    if not args.json:
        err.print(f"probing [bold]{device.name}[/] for {args.seconds:g} s (Ctrl-C stops)")
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # the status says it plainly
    device.start()
    start = time.monotonic()
    try:
        while (left := args.seconds - (time.monotonic() - start)) > 0:
            for reading in device.readings(timeout_s=min(0.2, left)):
                _show(out, reading, args.json)
    except KeyboardInterrupt:
        pass
    finally:
        status = device.get_status()  # before stopping: stopped, nothing is connected
        device.stop()
    elapsed = time.monotonic() - start
    hints = device.diagnose(status, elapsed)
    if args.json:
        print(json.dumps({"frames": status.frames, "bad_frames": status.bad_frames,
                          "seconds": round(elapsed, 3), "status": status.as_dict(),
                          "hints": hints}, default=str))
    else:
        out.print(_status_table(status, elapsed))
        for hint in hints:
            out.print(f"• {hint}")
    return 0 if status.frames else 1


def _show(console: Console, reading: dict[str, Any], as_json: bool) -> None:
    """One decoded reading: a JSON line, or a compact line of its fields."""
    reading = {k: _summary(v) for k, v in reading.items()}
    if as_json:
        print(json.dumps(reading, default=str), flush=True)
        return
    console.print("  ".join(f"{k}={_short(v)}" for k, v in reading.items()))


def _summary(value: object) -> object:
    """Arrays (a digitiser's samples) as their shape and range, never the numbers."""
    if isinstance(value, np.ndarray):
        return {"shape": list(value.shape), "min": value.min().item() if value.size else None,
                "max": value.max().item() if value.size else None}
    return value


def _short(value: object) -> str:
    """Numbers rounded, sequences joined, for a one-line view."""
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list | tuple):
        return "/".join(_short(v) for v in value)
    return str(value)


def _status_table(status: DeviceStatus, elapsed_s: float) -> Table:
    """Counts and rates of one probe run."""
    table = Table(title=f"{status.name}: {elapsed_s:.1f} s", show_header=False)
    rate = status.frames / elapsed_s if elapsed_s > 0 else 0.0
    rows = [("connected", str(status.connected)), ("frames", f"{status.frames} ({rate:.1f}/s)"),
            ("bad frames", str(status.bad_frames)), ("garbage bytes", str(status.garbage_bytes)),
            ("reconnects", str(status.reconnects)), ("last error", status.last_error or "")]
    for key, value in rows:
        table.add_row(key, value)
    return table


def run_edge(args: argparse.Namespace) -> int:
    """Run ``zhichao edge run``: the roadside unit of the settings for ``--seconds``."""
    settings = load_edge_settings(args.config)
    if not settings.devices:
        raise ConfigError(f"{args.config}: no devices under 'devices' to weigh from")
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    console = Console(highlight=False)
    unit = RoadsideUnit(settings, args.config.parent, send=args.send, source=str(args.config),
                        on_pass=lambda p: _report(console, p, args.json),
                        settings_file=args.config)
    if not args.json:
        console.print(f"unit [bold]{settings.device_id}[/]: {len(unit.devices)} devices, "
                      f"{len(unit.cameras)} cameras, {settings.plates.workers} plate "
                      f"readers; clock: {unit.timebase.describe()}")
    start = time.monotonic()
    notifier = Notifier()
    unit.start()
    notifier.ready(f"unit {settings.device_id}: weighing")
    previous = _stop_on_sigterm()
    previous_hup = _reload_on_sighup(unit, notifier)
    told = 0

    def tick() -> None:
        """The watchdog and the status line; READY=1 again once a reload is done."""
        nonlocal told
        if unit.reloads != told:
            told = unit.reloads
            outcome = "applied" if unit.last_reload and unit.last_reload.ok \
                else "refused, old settings kept"
            notifier.ready(f"unit {settings.device_id}: weighing (reload {told}: {outcome})")
        notifier.tick(lambda: _status_line(unit))

    try:
        unit.run(args.seconds, tick=tick)
    finally:
        notifier.stopping("finishing the vehicles in the unit, closing the outbox")
        counts = unit.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if previous_hup is not None:
            signal.signal(signal.SIGHUP, previous_hup)
    _closing(console, counts, time.monotonic() - start, args.json)
    return 0


def _stop_on_sigterm() -> Any:
    """Make SIGTERM (``systemctl stop``) end the run as Ctrl-C does, so the vehicles in the
    unit are finished and the outbox closed rather than the process killed mid-write; a
    second SIGTERM during that stop is ignored. The handler it replaces (None: not in the
    main thread, where no handler can be set, and nothing was replaced)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(_signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, stop)


def _reload_on_sighup(unit: RoadsideUnit, notifier: Notifier) -> Any:
    """Make SIGHUP (``systemctl reload``) reload the settings file and the rule tables
    between two rounds of the unit (edge/reload.py), telling systemd RELOADING=1 now and
    READY=1 when done. The reload's outcome is logged; with no logging set up, its lines
    go to stderr. The handler it replaces (None: not in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    reload_log = logging.getLogger("edge.reload")
    if not logging.getLogger().handlers and not reload_log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        reload_log.addHandler(handler)
        reload_log.setLevel(logging.INFO)
        reload_log.propagate = False

    def reload(_signum: int, _frame: object) -> None:
        if notifier.enabled:  # MONOTONIC_USEC: systemd 253 and later want it with RELOADING
            usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            sd_notify(f"RELOADING=1\nMONOTONIC_USEC={usec}", notifier.env)
        unit.request_reload()

    return signal.signal(signal.SIGHUP, reload)


def _status_line(unit: RoadsideUnit) -> str:
    """The running unit in one line for ``systemctl status``: weighed, committed, the
    plate readers' backlog and the outbox's pending packets."""
    stats = unit.stats
    line = (f"{stats['weighed']} vehicles weighed ({stats['suspected']} suspected), "
            f"{stats['committed']} committed, plate backlog {unit.plates.backlog}")
    if unit.link is not None:
        line += f", outbox pending {unit.link.outbox.counts()['pending']}"
    return line


def _closing(console: Console, counts: dict[str, Any], elapsed_s: float, as_json: bool) -> None:
    """The run's counts: weighed, plates, images, evidence."""
    if as_json:
        print(json.dumps({"summary": counts}, default=str), flush=True)
        return
    console.print(f"{counts['weighed']} vehicles weighed in {elapsed_s:.0f} s "
                  f"({counts['suspected']} suspected overloads); plates read "
                  f"{counts['plates_read']}, unreadable {counts['plates_unreadable']}, left "
                  f"to the center {counts['plates_unread']}; images {counts['images']}, "
                  f"missing {counts['images_missing']}; {counts['blocks_dropped']} sample "
                  f"blocks dropped, {counts['gaps']} gaps")
    evidence = counts["evidence"]
    if evidence is not None:
        console.print(f"evidence: {evidence['acked']} acknowledged by the center, "
                      f"{evidence['pending']} pending in the outbox, {evidence['refused']} "
                      f"refused, {evidence['held']} held in memory, {evidence['lost']} lost")


def _times(p: Pass) -> dict[str, float | None]:
    """The pass's way through the unit on the host's monotonic clock (s): first and last
    axle, weighed, frames taken, plate in, committed."""
    return {k: round(v, 4) if v is not None else None for k, v in (
        ("first_axle", p.t_first_s), ("last_axle", p.t_last_s), ("weighed", p.weighed_at_s),
        ("frames", p.frames_done_at_s), ("plate", p.plate_at_s),
        ("committed", p.committed_at_s))}


def _report(console: Console, p: Pass, as_json: bool) -> None:
    """One committed pass, as a JSON line or a line of text."""
    v = p.vehicle
    plate = p.plate
    if as_json:
        print(json.dumps({**v, "captured_at": p.captured_at.isoformat(),
                          "clock_status": p.clock_status,
                          "clock_uncertainty_ms": p.clock_uncertainty_ms,
                          "suspected": p.suspected, "sequence": p.sequence,
                          "plate": plate.text if plate else None,
                          "plate_status": plate.status if plate else None,
                          "images": [i.camera for i in p.images],
                          "missing_images": [m.camera for m in p.missing],
                          "times": _times(p)},
                         default=str), flush=True)
        return
    text = plate.text if plate and plate.status == "read" else (
        f"({plate.status})" if plate else "")
    console.print(f"{v['source']:>10} lane {v['lane']} {(v['speed_mps'] or 0) * 3.6:5.1f} km/h"
                  f"  {v['axle_code'] or '?':>5}  {v['gross_kg'] / 1000:6.1f} t  {v['action']}"
                  + (f" ¥{v['fine_yuan']:,.0f}" if v["fine_yuan"] else "")
                  + f"  {text}  {p.captured_at:%H:%M:%S}.{p.captured_at.microsecond // 1000:03d}"
                  + f" {p.clock_status}"
                  + (f"  [{' '.join(v['flags'])}]" if v["flags"] else ""))


DOCTOR_HELP = """Check the whole roadside unit (edge/doctor.py): every device reachable and
sending, the digitiser's clock fit, the host clock and the GPS, disk free and the outbox's
backlog, the key files and their permissions, each center (a CURVE handshake and a ping),
the calibration chain's verification certificate, the rule tables' digest. Each finding
says what is wrong with the numbers and what to do. Exit status 1 when anything is an
error, 0 otherwise (warnings alone included). Stop the unit first, or give --seconds 0:
two programs reading one serial line each get part of its bytes."""


def run_doctor(args: argparse.Namespace) -> int:
    """Run ``zhichao edge doctor``; the exit status says whether anything is an error."""
    settings = load_edge_settings(args.config)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # the findings say it plainly
    if not args.json:
        Console(stderr=True, highlight=False).print(
            f"examining unit [bold]{escape(settings.device_id)}[/] (devices for "
            f"{args.seconds:g} s)")
    findings = examine(settings, args.config.parent, source=str(args.config),
                       limits=Limits(seconds=args.seconds))
    if args.json:
        print(json.dumps({"unit": settings.device_id, **summary(findings)}), flush=True)
    else:
        Console(highlight=False).print(_doctor_table(settings.device_id, findings))
    return exit_status(findings)


def _doctor_table(unit: str, findings: list[Finding]) -> Table:
    """The findings as a table: errors red, warnings yellow, each with its fix."""
    table = Table(title=f"unit {unit}", show_lines=True)
    for column in ("check", "", "what", "fix"):
        table.add_column(column, overflow="fold")
    marks = {"error": "[red]ERROR[/]", "warning": "[yellow]warn[/]", "info": "[green]ok[/]"}
    for f in findings:
        table.add_row(escape(f.check), marks[f.severity] if not f.ok else marks["info"],
                      escape(f.what), escape(f.fix))
    return table

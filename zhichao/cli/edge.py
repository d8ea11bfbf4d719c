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
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

import overload
from drivers.base import Device, DeviceStatus
from drivers.camera import Camera
from drivers.modbus_map import load_register_map
from drivers.modbus_wim import ModbusWimDevice
from drivers.registry import open_device
from drivers.serial_link import PROTOCOLS, SerialDevice
from edge.evidence_link import EvidenceLink
from edge.settings import load_edge_settings
from edge.signal.loop import SignalLoop
from edge.signal.vehicles import Vehicle
from edge.weighing import load_rules_for, signal_loop
from zhichao.errors import ConfigError
from zhichao.resources import config_dir


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


RUN_HELP = """Open every device in the settings: sample frames of each digitiser go through
the signal loop (their device clock gives the sample position, so lost frames are gaps),
records of WIM controllers are taken as weighed; every vehicle is screened against the
rule tables and printed. With --send, every vehicle is also committed as a signed packet to
the outbox (suspected overloads and light records) and sent to the center."""


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
    """Run ``zhichao edge run``: weigh from the devices for ``--seconds``."""
    settings = load_edge_settings(args.config)
    rules = load_rules_for(settings)
    loop = signal_loop(settings, rules)
    devices = {name: open_device(name, section, source=str(args.config),
                                 base_dir=args.config.parent)
               for name, section in settings.devices.items()}
    if not devices:
        raise ConfigError(f"{args.config}: no devices under 'devices' to weigh from")
    digitisers = [name for name, s in settings.devices.items()
                  if s.get("kind") == "serial" and s.get("protocol") == "digitiser"]
    if len(digitisers) > 1:  # one signal loop takes one digitiser's channels
        raise ConfigError(f"{args.config}: devices {', '.join(digitisers)} are all "
                          "digitisers; one site's signal loop reads one")
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    console = Console(highlight=False)
    link = EvidenceLink(settings, args.config.parent, rules) if args.send else None
    if link:
        link.start()
    for device in devices.values():
        device.start()
    weighed = 0
    start = time.monotonic()
    try:
        while time.monotonic() - start < args.seconds:
            for name, device in devices.items():
                for vehicle in _vehicles_from(name, device, loop, settings.site.fs_hz):
                    weighed += 1
                    _report(console, vehicle, rules, args.json, link)
            time.sleep(0.05)
    except KeyboardInterrupt:
        pass
    finally:
        for device in devices.values():
            device.stop()
    for vehicle in loop.flush():
        weighed += 1
        _report(console, _from_loop(vehicle), rules, args.json, link)
    counts = link.stop() if link else None
    if not args.json:
        console.print(f"{weighed} vehicles weighed in {time.monotonic() - start:.0f} s; "
                      f"{loop.stats.blocks_dropped} sample blocks dropped, "
                      f"{loop.stats.gaps} gaps")
        if counts is not None:
            console.print(f"evidence: {counts['acked']} acknowledged by the center, "
                          f"{counts['pending']} pending in the outbox, {counts['refused']} "
                          f"refused, {counts['held']} held in memory, {counts['lost']} lost")
    elif counts is not None:
        print(json.dumps({"evidence": counts}), flush=True)
    return 0


def _vehicles_from(name: str, device: Device, loop: SignalLoop, fs_hz: float
                   ) -> list[dict[str, Any]]:
    """What one device finished since the last look, as vehicle dicts."""
    out = []
    for reading in device.readings():
        if reading.get("kind") == "samples":
            start = round(reading["t_device_us"] * fs_hz / 1e6)
            out += [_from_loop(v) for v in loop.process(reading["samples"],
                                                         start_index=start)]
        elif "axle_loads_kg" in reading:
            speed = reading.get("speed_mps", reading.get("speed_kmh", 0.0) / 3.6)
            flags = reading.get("flags") or []
            out.append({"source": name, "lane": reading["lane"] + 1, "speed_mps": speed,
                        "axle_loads_kg": list(reading["axle_loads_kg"]),
                        "spacings_m": list(reading.get("spacings_m", [])),
                        "flags": [f"0x{flags:x}"] if isinstance(flags, int) else list(flags)})
    return out


def _from_loop(v: Vehicle) -> dict[str, Any]:
    """A vehicle of the signal loop as a plain dict."""
    return {"source": "signal", "lane": v.lane + 1, "t_s": round(v.t_s, 3),
            "speed_mps": round(v.speed_mps, 3), "axle_loads_kg": v.axle_loads_kg.round(0).tolist(),
            "spacings_m": v.spacings_m.round(3).tolist(), "tyres": list(v.tyres),
            "axle_code": v.axle_code, "flags": sorted(v.flags)}


def _report(console: Console, vehicle: dict[str, Any], rules: overload.RuleBook,
            as_json: bool, link: EvidenceLink | None = None) -> None:
    """Screen one vehicle against the rules, commit it as evidence when sending, and
    print it. The capture time is the host's clock at the report: the digitiser's clock
    is not yet fitted to it, so the packet says "free_running"."""
    vehicle = {**vehicle, **_screen(vehicle, rules)}
    if link is not None:
        over = vehicle["limit_kg"] is not None and vehicle["gross_kg"] > vehicle["limit_kg"]
        vehicle["sequence"] = link.put(vehicle, captured_at=datetime.now(UTC),
                                       clock_status="free_running", suspected=over)
    if as_json:
        print(json.dumps(vehicle), flush=True)
        return
    console.print(f"{vehicle['source']:>10} lane {vehicle['lane']} "
                  f"{(vehicle['speed_mps'] or 0) * 3.6:5.1f} km/h  {vehicle['axle_code']:>5}  "
                  f"{vehicle['gross_kg'] / 1000:6.1f} t  {vehicle['action']}"
                  + (f" ¥{vehicle['fine_yuan']:,.0f}" if vehicle["fine_yuan"] else "")
                  + (f"  [{' '.join(vehicle['flags'])}]" if vehicle["flags"] else ""))


def _screen(vehicle: dict[str, Any], rules: overload.RuleBook) -> dict[str, Any]:
    """Gross, axle code, limit and action of one vehicle (the law's default tyres when
    the source did not read them)."""
    loads = vehicle["axle_loads_kg"]
    tyres = vehicle.get("tyres") or ["single"] + ["dual"] * (len(loads) - 1)
    code = vehicle.get("axle_code")
    if not code:
        try:
            code = overload.axle_code_from_axles(vehicle["spacings_m"], tyres, rules)
        except overload.RuleError:
            code = "?"
    gross = float(sum(loads))
    if code == "?":
        return {"axle_code": code, "gross_kg": gross, "limit_kg": None, "action": "unknown",
                "fine_yuan": None}
    grade = overload.grade(code, gross, rules, tyres=tyres)
    return {"axle_code": code, "gross_kg": gross, "limit_kg": grade.limit_kg,
            "action": grade.action, "fine_yuan": grade.fine_yuan}

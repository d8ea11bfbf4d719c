"""``zhichao edge``: the roadside unit's commands for technicians.

``zhichao edge probe`` opens one device — from the edge settings, or given on the command
line — shows its decoded readings live with rates and error counts, and says in plain
words what looks wrong. ``--seconds N`` stops it after N seconds; ``--json`` prints one
JSON object per reading and, last, one with the counts.
"""

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from drivers.base import Device, DeviceStatus
from drivers.camera import Camera
from drivers.modbus_map import load_register_map
from drivers.modbus_wim import ModbusWimDevice
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
    target.add_argument("--modbus", metavar="URL",
                        help="a Modbus WIM controller: tcp://HOST[:PORT] or "
                             "rtu:///dev/ttyX?baud=9600&parity=N")
    target.add_argument("--camera", metavar="URL",
                        help="a camera: rtsp://..., usb:0, or a video file")
    probe.add_argument("--map", type=Path, metavar="FILE",
                       help="register map for --modbus (default: the shipped example)")
    probe.add_argument("--seconds", type=float, default=10.0,
                       help="stop after this long (default 10)")
    probe.add_argument("--json", action="store_true",
                       help="one JSON object per reading, then one with the counts")
    probe.set_defaults(run=run_probe)


def open_probe_device(args: argparse.Namespace) -> Device:
    """The device the command line names, not yet started."""
    if args.modbus:
        map_path = args.map or config_dir() / "devices" / "wim_modbus.example.yaml"
        return ModbusWimDevice("probe", args.modbus, load_register_map(map_path))
    if args.camera:
        return Camera("probe", args.camera)
    raise ConfigError("name a device to probe (see zhichao edge probe --help)")


def diagnose(device: Device, status: DeviceStatus, seconds: float) -> list[str]:
    """Plain-language hints about what looks wrong, for any kind of device."""
    own = getattr(device, "diagnose", None)
    if callable(own):
        return list(own(status, seconds))
    hints = []
    if not status.connected and status.frames == 0:
        hints.append(f"could not reach the device: {status.last_error or 'no answer'}")
    elif status.frames == 0 and status.bad_frames == 0:
        hints.append(f"the device answers but sent nothing to decode in {seconds:g} s: "
                     "no traffic, or the new-record counter is not where the map says")
    if status.bad_frames > status.frames:
        hints.append(f"{status.bad_frames} of {status.frames + status.bad_frames} records "
                     "failed to decode: check the register map (addresses, word order, "
                     "scaling)")
    if status.reconnects:
        hints.append(f"the connection dropped and came back {status.reconnects} time(s): "
                     "check cabling and power")
    return hints or ["no problems seen"]


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
    hints = diagnose(device, status, elapsed)
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
    if as_json:
        print(json.dumps(reading, default=str), flush=True)
        return
    console.print("  ".join(f"{k}={_short(v)}" for k, v in reading.items()))


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

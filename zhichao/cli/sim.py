"""``zhichao sim``: simulated roadside devices that speak the real protocols.

Starts, on this machine only: a strip-sensor digitiser and a WIM controller (text
records) on pseudo-terminals, a WIM controller on a Modbus TCP server on 127.0.0.1, a
Yaohua XK3190 and a Toledo scale indicator on pseudo-terminals, and a camera (a video of
lane 1). They are fed by one simulated traffic stream, and run until ``--seconds`` pass
or Ctrl-C. ``--write-config FILE`` writes edge settings that point at them, for
``zhichao edge probe --config FILE --device NAME``.
"""

import argparse
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from drivers.modbus_map import load_register_map
from drivers.strips import StripArray
from sim.camera_twin import render_lane_video
from sim.modbus_twin import ModbusTwin
from sim.serial_twins import DigitiserTwin, ToledoTwin, WimControllerTwin, XK3190Twin
from sim.traffic import generate_traffic
from zhichao.resources import config_dir

MODBUS_MAP = config_dir() / "devices" / "wim_modbus.example.yaml"


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``zhichao sim``."""
    p = sub.add_parser("sim", help="start simulated devices speaking the real protocols",
                       description=__doc__.split("\n\n")[1])
    p.add_argument("--seconds", type=float, default=120.0,
                   help="run this long, then stop (default 120)")
    p.add_argument("--lanes", type=int, default=2, help="lanes of the simulated site")
    p.add_argument("--seed", type=int, default=7, help="traffic seed")
    p.add_argument("--speed", type=float, default=1.0,
                   help="run the devices' clocks this many times faster than real time")
    p.add_argument("--scale-kg", type=float, default=31_000.0,
                   help="weight the scale indicators settle on (default 31 000)")
    p.add_argument("--write-config", type=Path, metavar="FILE",
                   help="write edge settings pointing at the simulated devices")
    p.set_defaults(run=run)


def start_devices(args: argparse.Namespace, stack: contextlib.ExitStack, workdir: Path
                  ) -> dict[str, dict[str, Any]]:
    """Start every simulated device; their edge settings sections, by name."""
    site = StripArray(lanes=args.lanes)
    traffic = generate_traffic(site, args.seconds * args.speed, seed=args.seed)
    digitiser = DigitiserTwin(site, traffic, speed=args.speed, render_seed=args.seed)
    lines = WimControllerTwin(site, traffic, speed=args.speed)
    xk3190, toledo = XK3190Twin(speed=args.speed), ToledoTwin(speed=args.speed)
    serial = {"digitiser": (digitiser, "digitiser", 921_600), "controller_lines":
              (lines, "wim_records", 115_200), "scale_xk3190": (xk3190, "xk3190", 9600),
              "scale_toledo": (toledo, "toledo", 9600)}
    sections: dict[str, dict[str, Any]] = {}
    for name, (twin, protocol, baudrate) in serial.items():
        port = twin.start()
        stack.callback(twin.stop)
        sections[name] = {"kind": "serial", "protocol": protocol, "port": port,
                          "baudrate": baudrate}
    for scale in (xk3190, toledo):
        scale.command(args.scale_kg)
    modbus = stack.enter_context(ModbusTwin(load_register_map(MODBUS_MAP)))
    sections["controller"] = {"kind": "modbus", "url": modbus.start(),
                              "register_map": str(MODBUS_MAP)}
    modbus.feed(traffic, speedup=args.speed)
    video = render_lane_video(traffic, workdir / "lane1.avi", lane=0,
                              duration_s=min(args.seconds * args.speed, 60.0))
    sections["front"] = {"kind": "camera", "url": str(video.path), "loop": True}
    return sections


def edge_settings(args: argparse.Namespace, devices: dict[str, dict[str, Any]]
                  ) -> dict[str, Any]:
    """Edge settings for the simulated site and its devices."""
    return {"device_id": "sim-site", "site": {"lanes": args.lanes}, "devices": devices}


def run(args: argparse.Namespace) -> int:
    """Run the simulated devices until the time is up or Ctrl-C."""
    console = Console(highlight=False)
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        with console.status("starting simulated devices (rendering the camera video)"):
            devices = start_devices(args, stack, Path(tmp))
        table = Table(title="simulated devices", header_style="bold")
        for column in ("device", "kind", "protocol", "where"):
            table.add_column(column)
        for name, s in devices.items():
            table.add_row(name, s["kind"], s.get("protocol", ""), s.get("port") or s["url"])
        console.print(table)
        if args.write_config:
            args.write_config.write_text(yaml.safe_dump(edge_settings(args, devices),
                                                        sort_keys=False), encoding="utf-8")
            console.print(f"edge settings written to {args.write_config}: try "
                          f"zhichao edge probe --config {args.write_config} --device digitiser")
        console.print(f"running for {args.seconds:g} s (Ctrl-C stops)")
        with contextlib.suppress(KeyboardInterrupt):
            time.sleep(args.seconds)
    return 0

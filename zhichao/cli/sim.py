"""``zhichao sim``: simulated roadside devices that speak the real protocols.

Starts, on this machine only, the twins of one simulated site (sim/site.py): a
strip-sensor digitiser on a pseudo-terminal, a live RTSP camera per lane (seen by a front
and a rear camera device) and a GPS receiver on a pseudo-terminal, all on one clock and fed
by one simulated traffic stream; with ``--controllers`` also two WIM controllers (text
records on a pty, Modbus TCP) and two scale indicators. They run until ``--seconds`` pass
or Ctrl-C. ``--write-config FILE`` writes the roadside unit's settings for them (``zhichao
edge run --config FILE``, ``zhichao edge probe --config FILE --device NAME``); ``--truth
FILE`` writes what really passed, plates included, to score a unit against.
"""

import argparse
import contextlib
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from sim.site import LEAD_S, TAIL_S, SimulatedSite
from sim.traffic import TrafficSettings
from zhichao.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``zhichao sim``."""
    p = sub.add_parser("sim", help="start simulated devices speaking the real protocols",
                       description=__doc__.split("\n\n")[1])
    p.add_argument("--seconds", type=float, default=120.0,
                   help="run this long, then stop (default 120)")
    p.add_argument("--lanes", type=int, default=2, choices=range(1, 7), metavar="N",
                   help="lanes of the simulated site (1-6, default 2)")
    p.add_argument("--seed", type=int, default=7, help="traffic seed")
    p.add_argument("--speed", type=float, default=1.0,
                   help="run the devices' clocks this many times faster than real time "
                        "(cameras only at 1)")
    p.add_argument("--scale-kg", type=float, default=31_000.0,
                   help="weight the scale indicators settle on (default 31 000)")
    p.add_argument("--flow", type=float, default=TrafficSettings.flow_per_lane_h,
                   metavar="N", help="vehicles per lane and hour (default %(default)g)")
    p.add_argument("--overloaded-share", type=float, metavar="P",
                   default=TrafficSettings.overloaded_share,
                   help="share of loaded trucks that are overloaded (default %(default)g)")
    p.add_argument("--controllers", action="store_true",
                   help="also start two WIM controllers and two scale indicators to probe")
    p.add_argument("--no-gps", action="store_true", help="no GPS receiver")
    p.add_argument("--write-config", type=Path, metavar="FILE",
                   help="write edge settings pointing at the simulated devices")
    p.add_argument("--truth", type=Path, metavar="FILE",
                   help="write every simulated vehicle (lane, time, loads, plate) as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the simulated devices until the time is up or Ctrl-C."""
    console = Console(highlight=False)
    if not 0 < args.flow <= 3600 or not 0 <= args.overloaded_share <= 1:
        raise ConfigError("--flow must be within (0, 3600] vehicles an hour and "
                          "--overloaded-share within [0, 1]")
    site = SimulatedSite(lanes=args.lanes, seconds=args.seconds, seed=args.seed,
                         speed=args.speed, scale_kg=args.scale_kg, gps=not args.no_gps,
                         controllers=args.controllers,
                         traffic=TrafficSettings(flow_per_lane_h=args.flow,
                                                 overloaded_share=args.overloaded_share))
    with site:
        table = Table(title="simulated devices", header_style="bold")
        for column in ("device", "kind", "protocol", "where"):
            table.add_column(column)
        for name, s in site.sections.items():
            table.add_row(name, s["kind"], s.get("protocol", s.get("role", "")),
                          s.get("port") or s["url"])
        console.print(table)
        if args.write_config:
            args.write_config.write_text(yaml.safe_dump(site.edge_settings(), sort_keys=False,
                                                        allow_unicode=True), encoding="utf-8")
            console.print(f"edge settings written to {args.write_config}: try "
                          f"zhichao edge run --config {args.write_config}")
        if args.truth:
            site.write_truth(args.truth)
        console.print(f"{len(site.traffic)} vehicles over {args.seconds:g} s (Ctrl-C stops)")
        with contextlib.suppress(KeyboardInterrupt):
            time.sleep(args.seconds / args.speed + LEAD_S + TAIL_S)
    return 0

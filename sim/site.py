"""A simulated roadside site: every twin a unit needs, on one clock, speaking real protocols.

:class:`SimulatedSite` starts, on this machine only:

- a strip-sensor digitiser on a pseudo-terminal (the unit's weighing);
- per lane a live RTSP camera (:class:`~sim.rtsp_twin.LiveFrames`) showing that lane at
  the moment the digitiser is at, seen by two camera devices: ``camN_front`` picks the
  frame at the first axle, ``camN_rear`` the one at the last (the front plate and the
  rear plate, the double-row one on a truck);
- a GPS receiver on a pseudo-terminal (NMEA RMC and ZDA), the unit's time source where the
  host clock is not kept by NTP;
- with ``controllers``, also a WIM controller speaking text records on a pty and one on
  Modbus TCP, and two scale indicators (XK3190, Toledo) for calibration — devices to probe,
  which weigh the same traffic the digitiser does.

Every twin shares one epoch (a host-monotonic instant = simulation time 0), so a camera
frame and a digitiser sample of one moment carry the same moment. :meth:`edge_settings`
writes the unit's settings for them; :meth:`truth` lists every vehicle with its plate.
"""

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Any

from drivers.modbus_map import load_register_map
from drivers.strips import StripArray
from sim.camera_twin import LaneScene, SceneSettings
from sim.modbus_twin import ModbusTwin
from sim.rtsp_twin import LiveFrames, RtspTwin
from sim.serial_twins import DigitiserTwin, GpsTwin, ToledoTwin, WimControllerTwin, XK3190Twin
from sim.traffic import TrafficSettings, VehicleTruth, generate_traffic
from zhichao.resources import config_dir

MODBUS_MAP = config_dir() / "devices" / "wim_modbus.example.yaml"
LEAD_S = 8.0
"""Simulation time 0 is this long after the site starts: a roadside unit started beside
it connects to every twin first (its cameras show the empty road until then)."""
TAIL_S = 8.0
"""The twins run this long past the traffic, so the last vehicles are weighed, pictured
and read before they stop."""
CAMERA_FPS = 25.0
PLATE_PX = 120
"""Plate width in the simulated picture: read reliably by the plate reader at 960 px."""
ROI_M = 3.0
"""Metres either side of the trigger line where plates are looked for."""


class SimulatedSite:
    """The twins of one simulated site, started by :meth:`start`, stopped by :meth:`stop`."""

    def __init__(self, *, lanes: int = 2, seconds: float = 120.0, seed: int = 7,
                 speed: float = 1.0, scale_kg: float = 31_000.0, cameras: bool = True,
                 gps: bool = True, controllers: bool = False,
                 traffic: TrafficSettings | None = None):
        self.site = StripArray(lanes=lanes)
        self.seconds, self.seed, self.speed = seconds, seed, speed
        self.scale_kg = scale_kg
        self.with_cameras = cameras and speed == 1.0  # a live camera runs in real time
        self.with_gps, self.with_controllers = gps, controllers
        self.traffic: list[VehicleTruth] = generate_traffic(self.site, seconds * speed,
                                                            seed=seed, settings=traffic)
        self.scene = SceneSettings(plate_px_w=PLATE_PX, fps=CAMERA_FPS)
        self.scenes = [LaneScene(self.traffic, lane=lane, scene=self.scene, seed=seed)
                       for lane in range(lanes)]
        self.epoch_s: float | None = None
        self.sections: dict[str, dict[str, Any]] = {}
        self._stack = contextlib.ExitStack()

    def start(self) -> dict[str, dict[str, Any]]:
        """Start every twin; their edge settings sections, by device name."""
        self.epoch_s = time.monotonic() + LEAD_S
        digitiser = DigitiserTwin(self.site, self.traffic, speed=self.speed,
                                  render_seed=self.seed, epoch_s=self.epoch_s)
        self._serial("digitiser", digitiser, "digitiser", 921_600)
        if self.with_gps:
            self._serial("gps", GpsTwin(), "nmea", 9600)
        if self.with_cameras:
            for lane, scene in enumerate(self.scenes):
                self._camera(lane, scene)
        if self.with_controllers:
            self._controllers()
        return self.sections

    def _serial(self, name: str, twin: Any, protocol: str, baudrate: int) -> None:
        port = twin.start()
        self._stack.callback(twin.stop)
        self.sections[name] = {"kind": "serial", "protocol": protocol, "port": port,
                               "baudrate": baudrate}

    def _camera(self, lane: int, scene: LaneScene) -> None:
        """One live RTSP view of ``lane``, and its front and rear camera devices."""
        assert self.epoch_s is not None
        live = LiveFrames(lambda t_s, k, scene=scene: scene.draw(t_s, number=k),
                          fps=self.scene.fps, epoch_s=self.epoch_s)
        twin = RtspTwin(live=live, path=f"lane{lane + 1}")
        twin.start()
        self._stack.callback(twin.stop)
        s = self.scene
        half = round(ROI_M * s.px_per_m)
        x0 = max(0, s.trigger_x_px - half)
        roi = [x0, s.height_px // 2, min(s.width_px, s.trigger_x_px + half) - x0,
               s.height_px - s.height_px // 2]
        for role in ("front", "rear"):
            self.sections[f"cam{lane + 1}_{role}"] = {
                "kind": "camera", "url": twin.url, "lane": lane + 1, "role": role,
                "distance_m": 0.0, "roi": list(roi), "max_dt_s": 1.5 / s.fps}

    def _controllers(self) -> None:
        """The devices a technician probes beside the unit's own."""
        lines = WimControllerTwin(self.site, self.traffic, speed=self.speed,
                                  epoch_s=self.epoch_s)
        xk3190, toledo = XK3190Twin(speed=self.speed), ToledoTwin(speed=self.speed)
        self._serial("controller_lines", lines, "wim_records", 115_200)
        self._serial("scale_xk3190", xk3190, "xk3190", 9600)
        self._serial("scale_toledo", toledo, "toledo", 9600)
        for scale in (xk3190, toledo):
            scale.command(self.scale_kg)
        modbus = self._stack.enter_context(ModbusTwin(load_register_map(MODBUS_MAP)))
        self.sections["controller"] = {"kind": "modbus", "url": modbus.start(),
                                       "register_map": str(MODBUS_MAP)}
        modbus.feed(self.traffic, speedup=self.speed)

    def stop(self) -> None:
        """Stop every twin."""
        self._stack.close()

    def __enter__(self) -> "SimulatedSite":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def edge_settings(self, device_id: str = "sim-site") -> dict[str, Any]:
        """Settings of a roadside unit for these twins (the ``evidence:`` section, which
        names keys and a center, is the site's own to add)."""
        return {"device_id": device_id, "site": {"lanes": self.site.lanes},
                "signal": {"batch_s": 1.0}, "devices": self.sections}

    def truth(self) -> list[dict[str, Any]]:
        """Every simulated vehicle: lane (1-based), when its front axle crossed (seconds
        after the epoch, and host-monotonic), its class, axle code, loads, driving and
        plate."""
        plates = {vid: p for scene in self.scenes for vid, p in scene.plates.items()}
        epoch = self.epoch_s if self.epoch_s is not None else math.nan
        return [{"vehicle_id": v.vehicle_id, "lane": v.lane + 1, "t0_s": v.t0_s,
                 "t0_mono_s": epoch + v.t0_s / self.speed, "name": v.name, "code": v.code,
                 "gross_kg": v.gvw_kg, "axle_loads_kg": v.axle_loads_kg.tolist(),
                 "tyres": list(v.tyres), "bad": v.bad, "is_car": v.is_car,
                 "plate": plates[v.vehicle_id][0], "plate_colour": plates[v.vehicle_id][1]}
                for v in self.traffic]

    def write_truth(self, path: Path) -> None:
        """:meth:`truth` as JSON, for a test or a demo to score the unit against."""
        Path(path).write_text(json.dumps(self.truth(), ensure_ascii=False, indent=1),
                              encoding="utf-8")

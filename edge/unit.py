"""The roadside unit: one object that weighs, photographs, reads plates and commits evidence.

``zhichao edge run`` and the demo both drive a :class:`RoadsideUnit`. Each call of
:meth:`RoadsideUnit.poll` does one round of the unit's work, none of which waits:

1. every device's readings are taken: a digitiser's sample frames go through the signal
   loop (their device clock gives the sample position, so lost frames are gaps, and each
   frame's receive time feeds the digitiser's clock fit); a WIM controller's records are
   taken as weighed; a GPS receiver's sentences go to the timebase;
2. every vehicle finished is screened against the rule tables (:mod:`edge.screening`),
   timed (the fitted host time of its first axle, in UTC by the timebase, with the clock's
   state and uncertainty) and becomes a :class:`Pass`;
3. each pass waits until every camera of its lane has a frame at the moment it needs
   (front: first axle, rear: last axle, each plus the camera's distance over the speed),
   or has given up on it (recorded as missing, with the reason);
4. its frames go to the plate readers (:mod:`edge.plate_workers`), beside the weighing;
5. when its plate is read — or not in time, then marked unread — it is committed through
   the evidence link and reported.

Between two rounds :meth:`RoadsideUnit.run` reloads the settings file and the rule tables
when asked (:meth:`RoadsideUnit.request_reload`, SIGHUP): :mod:`edge.reload`.
"""

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from drivers import digitiser
from drivers.base import Device
from drivers.camera import Camera
from drivers.camera_process import ProcessCamera
from drivers.frame_ring import Match
from drivers.registry import open_device
from drivers.temperature import TemperatureProbe
from edge.evidence_link import EvidenceLink
from edge.packets import CapturedImage
from edge.plate_workers import PlateJob, PlateResult, PlateWorkers
from edge.reload import Reloaded, read_new, refused, reload_unit, take_new
from edge.screening import finite_or_zero, screen
from edge.settings import EdgeSettings
from edge.signal.vehicles import Vehicle
from edge.timebase import Timebase
from edge.timebase.clockfit import DeviceClockFit, transmit_s
from edge.weighing import load_rules_for, signal_loop, unit_chain
from evidence.packet import MissingImage, PlateRecord
from zhichao.errors import ConfigError, ZhichaoError

log = logging.getLogger(__name__)

RING_CHECK_FRAMES = 10
"""Frames a camera's ring holds before its size and rate are taken as known."""
NOT_CONNECTED_S = 3.0
"""A device not connected this long after the start is named in the log with its port or
URL and the reason (a serial port that does not exist weighs nothing, quietly, otherwise)."""


@dataclass
class Pass:
    """One vehicle on its way through the unit, from weighing to commit."""

    key: int
    vehicle: dict[str, Any]
    t_first_s: float               # host-monotonic time of the first axle on the first row
    t_last_s: float                # ... of the last axle
    weighed_at_s: float            # host-monotonic time the unit knew the vehicle
    captured_at: datetime
    clock_status: str
    clock_uncertainty_ms: float | None   # None: no bound (a free-running clock)
    suspected: bool
    wanted: dict[str, float] = field(default_factory=dict)   # camera → host time
    images: list[CapturedImage] = field(default_factory=list)
    missing: list[MissingImage] = field(default_factory=list)
    crops: dict[str, list[np.ndarray]] = field(default_factory=dict)  # role → ROI crops
    frames_done: bool = False
    frames_done_at_s: float | None = None
    plate: PlateResult | None = None
    plate_at_s: float | None = None
    plate_deadline_s: float = 0.0
    committed_at_s: float | None = None
    sequence: int | None = None


Reporter = Callable[[Pass], None]


class RoadsideUnit:
    """The devices of one unit's settings, the signal loop, the cameras, the plate readers
    and (with ``send``) the evidence link."""

    def __init__(self, settings: EdgeSettings, base_dir: Path, *, send: bool = False,
                 source: str = "settings", on_pass: Reporter | None = None,
                 settings_file: Path | None = None):
        self.settings = settings
        self.settings_file = settings_file
        """The file :meth:`reload` reads again (None: the unit cannot be reloaded)."""
        self.reload_requested = False
        """Set by :meth:`request_reload` (a signal handler); :meth:`run` reloads between
        two rounds."""
        self.reloads = 0
        self.last_reload: Reloaded | None = None
        self._reading: threading.Thread | None = None
        self._read: list[Any] = []  # the file the reload's thread reads, then what it read
        self.rules = load_rules_for(settings)
        self.chain = unit_chain(settings, base_dir)
        self.loop = signal_loop(settings, self.rules, self.chain)
        self.devices: dict[str, Device] = {
            name: open_device(name, section, source=source, base_dir=base_dir)
            for name, section in settings.devices.items()}
        digitisers = [n for n, s in settings.devices.items()
                      if s.get("kind") == "serial" and s.get("protocol") == "digitiser"]
        if len(digitisers) > 1:  # one signal loop takes one digitiser's channels
            raise ConfigError(f"{source}: devices {', '.join(digitisers)} are all "
                              "digitisers; one site's signal loop reads one")
        self.digitiser = digitisers[0] if digitisers else None
        self.baudrate = int(settings.devices[self.digitiser].get("baudrate", 0) or 0) \
            if self.digitiser else 0
        self.cameras: dict[str, Camera | ProcessCamera] = {
            n: d for n, d in self.devices.items() if isinstance(d, Camera | ProcessCamera)}
        probes = [n for n, d in self.devices.items() if isinstance(d, TemperatureProbe)]
        if len(probes) > 1:  # one pavement, one temperature: two would disagree unseen
            raise ConfigError(f"{source}: devices {', '.join(probes)} are all temperature "
                              "probes; a unit weighs at one pavement temperature")
        self.probe = next((d for d in self.devices.values()
                           if isinstance(d, TemperatureProbe)), None)
        self.temperature_source = ""
        self.timebase = Timebase(settings.time)
        self.clock_fit = DeviceClockFit(settings.time.fit)
        self.plates = PlateWorkers(settings.plates)
        # the packets name the chain when the unit has one of its own (calibration_file)
        self.link = EvidenceLink(
            settings, base_dir, self.rules,
            chain=self.chain if settings.calibration_file is not None else None) \
            if send else None
        self.on_pass = on_pass
        self.pending: list[Pass] = []
        self._keys = 0
        self.stats = {"weighed": 0, "committed": 0, "suspected": 0, "plates_read": 0,
                      "plates_unread": 0, "plates_unreadable": 0, "images": 0,
                      "images_missing": 0}
        self.weighed_by_lane: Counter[int] = Counter()
        """Vehicles weighed per lane (1-based): the metrics' per-lane counter."""
        self.metrics: Any = None
        """The metrics page (edge.metrics.UnitMetrics) while ``unit.metrics_address`` is set."""
        self.started_at_s: float | None = None
        self.lag = LagMeter()
        self._connected_once: set[str] = set()
        self._named_late: set[str] = set()
        self._rings_checked: set[str] = set()

    # -- life ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the plate readers, the sender and every device. The readers load their
        models beside the weighing (a second or two): passes of that time wait in their
        queue, and the weighing never waits for them. The metrics page first: a port
        that cannot be bound stops the start before anything runs."""
        if self.settings.unit.metrics_address is not None:
            from edge.metrics import UnitMetrics  # noqa: PLC0415 (prometheus only when served)

            self.metrics = UnitMetrics(self, self.settings.unit.metrics_address)
        self.plates.start()
        if self.link is not None:
            self.link.start()
        for device in self.devices.values():
            device.start()
        self.started_at_s = time.monotonic()

    def stop(self, wait_s: float = 5.0) -> dict[str, Any]:
        """Finish every vehicle still in the unit — the cameras running until their frames
        are taken, the readers until the plates are read or late — then stop the devices,
        the readers and the sender; the counts."""
        now = time.monotonic()
        for v in self.loop.flush():
            self._add_pass(self._from_loop(v), now)
        deadline = now + self.settings.unit.frame_wait_s + self.settings.plates.wait_s
        while self.pending and time.monotonic() < deadline:
            self._advance()
            time.sleep(0.05)
        never = self._check_connections(final=True)
        for device in self.devices.values():
            device.stop()
        now = time.monotonic()
        for p in self.pending:
            self._finish_frames(p, now, final=True)
        for result in self.plates.stop():
            self._attach(result)
        self._commit_ready(now, final=True)
        if self.metrics is not None:  # before the outbox closes: the collector reads it
            self.metrics.stop()
        counts = self.link.stop(wait_s) if self.link is not None else None
        return {**self.stats, "loop_lag": self.lag.summary(),
                "blocks_dropped": self.loop.stats.blocks_dropped,
                "gaps": self.loop.stats.gaps, "plate_workers": dict(self.plates.counts),
                "evidence": counts, "never_connected": never}

    def run(self, seconds: float, period_s: float = 0.05,
            tick: Callable[[], None] | None = None) -> None:
        """Poll until ``seconds`` have passed (Ctrl-C ends it early); ``tick`` after each
        round (systemd's watchdog: a loop that hangs stops ticking and is restarted)."""
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                self.poll()
                self._reload_beside()
                if tick is not None:
                    tick()
                time.sleep(period_s)
        except KeyboardInterrupt:
            pass

    def request_reload(self) -> None:
        """Ask for a :meth:`reload` at the end of the current round: safe to call from a
        signal handler, which must not change the unit in the middle of a round."""
        self.reload_requested = True

    def reload(self) -> Reloaded:
        """Read :attr:`settings_file` and the rule tables again and apply what may change
        live (:mod:`edge.reload`); a bad file changes nothing and says why."""
        self.reload_requested = False
        if self.settings_file is None:
            return self._reloaded(refused(self, ConfigError("no settings file to read "
                                                            "again")))
        return self._reloaded(reload_unit(self, self.settings_file))

    def _reload_beside(self) -> None:
        """:meth:`reload` in two halves, so the weighing does not wait for the files: a
        requested reload reads and validates them on a thread of its own (the rule
        tables take a few tenths of a second), and the round after it has finished
        applies them (or says why not)."""
        if self.reload_requested and self._reading is None:
            self.reload_requested = False
            if self.settings_file is None:
                self.reload()
                return
            path, box = self.settings_file, self._read
            box[:] = [path]

            def read() -> None:
                try:
                    box.append(read_new(path))
                except (ZhichaoError, OSError) as exc:
                    box.append(exc)

            self._reading = threading.Thread(target=read, name="reload", daemon=True)
            self._reading.start()
        if self._reading is not None and not self._reading.is_alive():
            self._reading = None
            failed = ConfigError("reading the files failed unexpectedly (the traceback "
                                 "is in the log)")
            path, got = [*self._read, failed][:2]
            self._reloaded(refused(self, got) if isinstance(got, Exception)
                           else take_new(self, path, *got))

    def _reloaded(self, result: Reloaded) -> Reloaded:
        self.reloads += 1
        self.last_reload = result
        return result

    # -- one round ----------------------------------------------------------------------

    def poll(self) -> list[Pass]:
        """One round of the unit's work; the passes committed in it."""
        for name, device in self.devices.items():
            for reading in device.readings():
                for vehicle in self._take(name, reading):
                    self._add_pass(vehicle, time.monotonic())
        self._check_connections()
        self._check_rings()
        return self._advance()

    def ring_need_s(self) -> float:
        """How far back a camera's ring must reach for the unit to find a vehicle's
        frames: a digitiser's vehicle is known up to a batch of the signal loop (and the
        wait that closes it) after its first axle, a controller's record its delay after
        the vehicle left; one second more for the vehicle's own length and the frames
        read around the wanted one."""
        if self.digitiser is not None:
            known_s = self.settings.signal.batch_s + self.settings.signal.close_after_s
        else:
            known_s = self.settings.unit.record_delay_s
        return known_s + 1.0

    def _check_rings(self) -> None:
        """Name, once, each camera whose ring its byte bound (``max_bytes``) keeps
        shorter than :meth:`ring_need_s`: its frames of the vehicles would be missing,
        and without this the log would say only "too old", vehicle after vehicle."""
        for name, cam in self.cameras.items():
            ring = cam.ring
            n = len(ring)
            settled = n >= RING_CHECK_FRAMES or (n >= 2 and ring.dropped > 0)  # or full
            if name in self._rings_checked or not settled or ring.span_s <= 0:
                continue
            self._rings_checked.add(name)
            fps = (n - 1) / ring.span_s
            holds = min(ring.max_frames, int(ring.max_bytes // (ring.nbytes / n)))
            need_s = self.ring_need_s()
            if holds / fps < need_s:
                bound = "max_bytes" if holds < ring.max_frames else "max_frames"
                log.warning("camera %s: its ring holds %d frames, %.1f s at %.0f fps "
                            "(devices.%s.%s %d), less than the %.1f s the unit needs to "
                            "find a vehicle's frames: they will be missing; raise it (memory "
                            "allowing) or lower the stream's resolution or rate", name, holds,
                            holds / fps, fps, name, bound, getattr(ring, bound), need_s)

    def _check_connections(self, final: bool = False) -> dict[str, str]:
        """Name, once, each device not connected :data:`NOT_CONNECTED_S` after the start,
        with its port (or URL) and the reason; with ``final``, name those that never
        connected. The devices never connected so far, with their ports."""
        if self.started_at_s is None:
            return {}
        late = time.monotonic() - self.started_at_s >= NOT_CONNECTED_S
        never = {}
        for name, device in self.devices.items():
            if name in self._connected_once:
                continue
            status = device.get_status()
            if status.connected or status.frames or status.reconnects:
                self._connected_once.add(name)
                continue
            where = str(status.extra.get("port") or status.extra.get("url") or "")
            never[name] = where
            if late and name not in self._named_late:
                self._named_late.add(name)
                log.warning("device %s (%s) not connected %.0f s after the start, nothing is "
                            "read from it: %s", name, where or "no address",
                            time.monotonic() - self.started_at_s,
                            status.last_error or "no answer")
        if final and never:
            log.warning("devices never connected: %s", ", ".join(
                f"{name} ({where or 'no address'})" for name, where in never.items()))
        return never

    def _advance(self) -> list[Pass]:
        """Frames, plates and commits of the passes in the unit; the passes committed."""
        now = time.monotonic()
        for p in self.pending:
            if not p.frames_done:
                self._finish_frames(p, now)
        for result in self.plates.results():
            self._attach(result)
        return self._commit_ready(now)

    def _take(self, name: str, reading: dict[str, Any]) -> list[dict[str, Any]]:
        """The vehicles one reading finishes (most readings finish none)."""
        kind = reading.get("kind")
        if kind == "samples":
            return self._samples(reading)
        if kind == "gps":
            self.timebase.feed_gps(reading)
            return []
        if "axle_loads_kg" in reading:
            return [self._from_controller(name, reading)]
        return []

    def _samples(self, reading: dict[str, Any]) -> list[dict[str, Any]]:
        """Fit the digitiser's clock with the frame's receive time, then weigh it."""
        fs = self.settings.site.fs_hz
        samples = reading["samples"]
        t_device_s = reading["t_device_us"] / 1e6
        t_host = reading.get("t_host_s")
        if t_host is not None:
            self.lag.add(time.monotonic() - float(t_host))
            n = samples.shape[-1]
            frame_bytes = digitiser.HEADER_BYTES + 2 * samples.size + digitiser.CRC_BYTES
            self.clock_fit.add(t_device_s + n / fs, float(t_host),
                               min_delay_s=transmit_s(frame_bytes, self.baudrate)
                               if self.baudrate else 0.0)
        start = round(t_device_s * fs)
        return [self._from_loop(v) for v in self.loop.process(
            samples, start_index=start, temperature_c=self.pavement_c())]

    def pavement_c(self) -> float | None:
        """The pavement temperature to weigh the next block at: the probe's fresh reading,
        else the ``pavement_temperature_c`` setting (None: the strips' reference). Each
        change of source is logged once, with the reason: a unit weighing at a fixed
        temperature in July should say so (a warning when it has a probe)."""
        probe = self.probe
        value = probe.latest() if probe is not None else None
        source = "probe" if value is not None else \
            "setting" if self.settings.pavement_temperature_c is not None else "reference"
        if source != "probe":
            value = self.settings.pavement_temperature_c
        if source != self.temperature_source:
            said = {"probe": "the probe",
                    "setting": f"the setting pavement_temperature_c ({value} °C)",
                    "reference": "the strips' reference (no probe reading, no setting)"}
            why = probe.why_no_value() if probe is not None and source != "probe" else None
            log.log(logging.WARNING if probe is not None and source != "probe" else
                    logging.INFO, "weighing at the pavement temperature from %s%s",
                    said[source], f": {why}" if why else "")
            self.temperature_source = source
        return value

    def _from_loop(self, v: Vehicle) -> dict[str, Any]:
        """A vehicle of the signal loop as a plain dict, timed on the host clock."""
        out = {"source": "signal", "lane": v.lane + 1, "t_s": round(v.t_s, 3),
               "speed_mps": round(v.speed_mps, 3),
               "axle_loads_kg": v.axle_loads_kg.round(0).tolist(),
               "spacings_m": v.spacings_m.round(3).tolist(), "tyres": list(v.tyres),
               "axle_code": None if "unknown_code" in v.flags else v.axle_code,
               "flags": sorted(v.flags),
               "row_loads_kg": [[round(float(x), 1) if math.isfinite(x) else None
                                 for x in row] for row in v.row_loads_kg],
               "temperature_c": v.temperature_c,
               "temperature_source": self.temperature_source or None}
        length_s = float(np.sum(v.spacings_m)) / max(v.speed_mps, 0.1)
        if self.clock_fit.ready:
            out["t_first_s"] = self.clock_fit.host_time(v.t_s)
            out["t_last_s"] = self.clock_fit.host_time(v.t_s + length_s)
            out["fit_uncertainty_s"] = self.clock_fit.uncertainty_s(v.t_s)
        else:  # no fit yet (the first seconds): the frame's arrival is all there is
            now = time.monotonic()
            out["t_first_s"], out["t_last_s"] = now - length_s, now
            out["fit_uncertainty_s"] = self.settings.unit.unfitted_uncertainty_s
        return out

    def _from_controller(self, name: str, reading: dict[str, Any]) -> dict[str, Any]:
        """A WIM controller's record: weighed already; timed by its arrival, less the
        controller's usual delay, with that delay as its uncertainty."""
        speed = reading.get("speed_mps", reading.get("speed_kmh", 0.0) / 3.6)
        flags = reading.get("flags") or []
        spacings = list(reading.get("spacings_m", []))
        t_host = float(reading.get("t_host_s") or time.monotonic())
        delay = self.settings.unit.record_delay_s
        length_s = float(np.sum(spacings)) / max(speed, 0.1)
        return {"source": name, "lane": reading["lane"] + 1, "speed_mps": speed,
                "axle_loads_kg": list(reading["axle_loads_kg"]), "spacings_m": spacings,
                "flags": [f"0x{flags:x}"] if isinstance(flags, int) else list(flags),
                "t_first_s": t_host - delay - length_s, "t_last_s": t_host - delay,
                "fit_uncertainty_s": delay}

    # -- a pass -------------------------------------------------------------------------

    def _add_pass(self, vehicle: dict[str, Any], now: float) -> None:
        """A finished vehicle into the unit; one that cannot be taken is logged with its
        reason and counted, and the weighing goes on."""
        try:
            self._new_pass(vehicle, now)
        except (ZhichaoError, ValueError) as exc:
            self.stats["refused"] = self.stats.get("refused", 0) + 1
            log.error("lane %s vehicle not taken: %s (%s)", vehicle.get("lane"), exc,
                      {k: vehicle.get(k) for k in ("axle_loads_kg", "spacings_m", "flags")})

    def _new_pass(self, vehicle: dict[str, Any], now: float) -> None:
        """Screen a finished vehicle, time it, and say which frames it needs."""
        vehicle = {**vehicle, **screen(vehicle, self.rules)}
        vehicle["axle_loads_kg"] = finite_or_zero(vehicle["axle_loads_kg"])
        vehicle["spacings_m"] = finite_or_zero(vehicle.get("spacings_m", []))
        speed = float(vehicle.get("speed_mps") or 0.0)
        vehicle["speed_mps"] = speed if math.isfinite(speed) and speed >= 0 else 0.0
        if vehicle["gross_kg"] is None:
            vehicle["gross_kg"] = float(sum(vehicle["axle_loads_kg"]))
        state = self.timebase.state(vehicle["t_first_s"])
        uncertainty_ms = state.uncertainty_ms + 1000.0 * vehicle.pop("fit_uncertainty_s")
        vehicle.pop("t_s", None)  # the digitiser's own time: the host's is what counts
        suspected = vehicle["limit_kg"] is not None and vehicle["gross_kg"] > vehicle["limit_kg"]
        self._keys += 1
        t_first, t_last = vehicle.pop("t_first_s"), vehicle.pop("t_last_s")
        p = Pass(key=self._keys, vehicle=vehicle, t_first_s=t_first, t_last_s=t_last,
                 weighed_at_s=now, captured_at=self.timebase.to_utc(t_first),
                 clock_status=state.status,
                 clock_uncertainty_ms=round(uncertainty_ms, 1)
                 if math.isfinite(uncertainty_ms) else None,
                 suspected=suspected)
        speed = max(float(vehicle.get("speed_mps") or 0.0), 0.5)
        for name, cam in self.cameras.items():
            s = cam.settings
            if s.lane is not None and s.lane != vehicle["lane"]:
                continue
            axle_t = p.t_last_s if s.role == "rear" else p.t_first_s
            p.wanted[name] = axle_t + s.distance_m / speed
        self.stats["weighed"] += 1
        self.weighed_by_lane[int(vehicle["lane"])] += 1
        self.stats["suspected"] += suspected
        self.pending.append(p)

    def _finish_frames(self, p: Pass, now: float, final: bool = False) -> None:
        """Take each camera's frame once the ring holds the moment wanted (or give up on
        it after ``frame_wait_s``); then send the pass to the plate readers."""
        wait_s = self.settings.unit.frame_wait_s
        for name, t_want in list(p.wanted.items()):
            cam = self.cameras[name]
            newest = cam.ring.newest_s
            ripe = newest is not None and \
                newest >= t_want + cam.offset_s + cam.settings.max_dt_s
            if not (ripe or final or now >= t_want + wait_s):
                continue
            del p.wanted[name]
            self._pick(p, name, cam, t_want)
        if p.wanted:
            return
        p.frames_done, p.frames_done_at_s = True, now
        p.plate_deadline_s = now + self.settings.plates.wait_s
        job = PlateJob(p.key, p.crops.get("front", []), p.crops.get("rear", []), p.suspected)
        p.crops = {}
        if not job.front and not job.rear:
            p.plate = PlateResult(p.key, "unread", reason="no camera frame to read")
        elif final:
            p.plate = PlateResult(p.key, "unread", reason="the unit stopped")
        else:
            self.plates.submit(job)  # refused jobs come back unread through results()

    def _pick(self, p: Pass, name: str, cam: Camera | ProcessCamera, t_want: float
              ) -> None:
        """The frame nearest the wanted moment into the packet (JPEG, with its own time),
        and the frames around it, cut to the camera's region, for the plate readers."""
        s = cam.settings
        found = cam.ring.find(t_want, cam.offset_s, s.max_dt_s)
        if not isinstance(found, Match):
            p.missing.append(MissingImage(camera=name, role=s.role,
                                          reason=found.describe()[:200]))
            self.stats["images_missing"] += 1
            return
        ok, jpeg = cv2.imencode(".jpg", found.frame.image,
                                [cv2.IMWRITE_JPEG_QUALITY, s.jpeg_quality])
        if not ok:
            p.missing.append(MissingImage(camera=name, role=s.role,
                                          reason="the frame could not be encoded as JPEG"))
            return
        p.images.append(CapturedImage(s.role, jpeg.tobytes(), camera=name,
                                      captured_at=self.timebase.to_utc(found.frame.t_s)))
        self.stats["images"] += 1
        if s.role in ("front", "rear"):
            p.crops.setdefault(s.role, []).extend(
                _roi(f.image, s.roi) for f in _around(cam, t_want + cam.offset_s,
                                                      self.settings.plates.frames))

    def _roi_origin(self, role: str | None) -> tuple[float, float]:
        """The top-left corner of the region the plate of ``role`` was read in, in the
        coordinates of that camera's whole frame (0, 0 without a region)."""
        for cam in self.cameras.values():
            if cam.settings.role == (role or "front") and cam.settings.roi is not None:
                return float(cam.settings.roi[0]), float(cam.settings.roi[1])
        return 0.0, 0.0

    def _attach(self, result: PlateResult) -> None:
        for p in self.pending:
            if p.key == result.key and p.plate is None:
                p.plate, p.plate_at_s = result, time.monotonic()
                return

    def _commit_ready(self, now: float, final: bool = False) -> list[Pass]:
        """Commit every pass whose frames are taken and whose plate is in (or late)."""
        done, waiting = [], []
        for p in self.pending:
            if p.frames_done and p.plate is None and (final or now >= p.plate_deadline_s):
                p.plate = PlateResult(p.key, "unread", reason="not read in time")
                p.plate_at_s = now
            (done if p.frames_done and p.plate is not None else waiting).append(p)
        self.pending = waiting
        for p in done:
            self._commit(p)
        return done

    def _commit(self, p: Pass) -> None:
        """One pass into the outbox (when sending) and to the reporter."""
        plate = p.plate
        assert plate is not None
        self.stats[f"plates_{plate.status}"] += 1
        if self.link is not None:
            try:
                p.sequence = self._put(p, plate)
            except (ZhichaoError, ValueError) as exc:  # never the weighing's end
                self.stats["not_committed"] = self.stats.get("not_committed", 0) + 1
                log.error("lane %s pass not committed: %s", p.vehicle.get("lane"), exc)
        p.committed_at_s = time.monotonic()
        self.stats["committed"] += 1
        if self.on_pass is not None:
            self.on_pass(p)

    def _put(self, p: Pass, plate: PlateResult) -> int | None:
        """The pass as a signed packet into the outbox; its sequence."""
        assert self.link is not None
        return self.link.put(
                p.vehicle, captured_at=p.captured_at, clock_status=p.clock_status,
                clock_uncertainty_ms=p.clock_uncertainty_ms, suspected=p.suspected,
                images=p.images, missing_images=p.missing,
                plate=plate_record(plate, self._roi_origin(plate.image)))

    def status(self) -> dict[str, Any]:
        """What a technician wants to see of a running unit."""
        state = self.timebase.state(time.monotonic())
        return {"clock": state.to_dict(), "clock_fit": self.clock_fit.get_status(),
                "pending": len(self.pending), "plate_backlog": self.plates.backlog,
                "plate_workers_ready": self.plates.ready, **self.stats}


class LagMeter:
    """How late the weighing takes each digitiser frame after it arrived: the measure of
    the loop keeping real time (a loop held up by plates or disks shows here first)."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def add(self, lag_s: float) -> None:
        self.values.append(lag_s)
        if len(self.values) > 100_000:  # a long run keeps its latest stretch
            del self.values[:50_000]

    def summary(self) -> dict[str, float | int]:
        """Frames seen, and the median, 99th percentile and largest lag (s)."""
        if not self.values:
            return {"frames": 0}
        v = np.asarray(self.values)
        return {"frames": int(v.size), "p50_s": round(float(np.percentile(v, 50)), 4),
                "p99_s": round(float(np.percentile(v, 99)), 4),
                "max_s": round(float(v.max()), 4)}


def plate_record(result: PlateResult, origin: tuple[float, float] = (0.0, 0.0)
                 ) -> PlateRecord | None:
    """The packet's plate field: the reading, an unread marker, or None (unreadable). The
    readers see frames cut to the camera's region of interest; ``origin`` (the region's
    top-left corner) puts the box back into the coordinates of the packet's whole image."""
    if result.status == "unreadable":
        return None
    if result.status == "unread":
        return PlateRecord(text="", colour="unknown", confidence=0.0, box=[0.0] * 5,
                           unread=True)
    box = list(result.box)
    if any(box):
        box[0], box[1] = box[0] + origin[0], box[1] + origin[1]
    return PlateRecord(text=result.text, colour=result.colour, confidence=result.confidence,
                       box=box, province_confidence=result.province_confidence,
                       front_rear=result.front_rear,  # type: ignore[arg-type]
                       image=result.image,  # type: ignore[arg-type]
                       votes=result.votes, frames=result.frames)


def _around(cam: Camera | ProcessCamera, t_s: float, n: int) -> list[Any]:
    """The ``n`` frames of the camera's ring nearest to ``t_s``, nearest first (the
    readers stop once enough of them agree)."""
    return sorted(cam.ring.frames(), key=lambda f: abs(f.t_s - t_s))[:n]


def _roi(image: np.ndarray, roi: tuple[int, int, int, int] | None) -> np.ndarray:
    """The region of interest of a frame (a copy: the ring's frames are read-only and the
    copy travels to another process)."""
    if roi is None:
        return np.ascontiguousarray(image)
    x, y, w, h = roi
    return np.ascontiguousarray(image[y:y + h, x:x + w])

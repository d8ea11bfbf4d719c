"""Days of traffic in minutes of run time: a day's trucks, packed into seconds of signal.

Drift shows over months; nobody renders months of signal. A simulated day is instead a
sample of its traffic: ``per_lane`` *slots*, each standing for one time of day (spread
over the 24 hours), each holding one vehicle per lane. The slots follow each other
``slot_s`` seconds apart in the signal, so a day of 100 trucks a lane is 12 minutes of
signal, and a slot has one pavement temperature and one set of channel gains: what the
sensor was at that time of that day (:class:`sim.sensor.SensorState`).

Vehicles are drawn as :func:`sim.traffic.generate_traffic` draws them (the fleet's loads,
speeds and bounce), trucks only by default, mostly driven normally.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta

import numpy as np

from drivers.strips import StripArray
from sim.fleet import FLEET, VehicleClass
from sim.render import Renderer, SensorNoise
from sim.sensor import SENSOR_TYPES, Climate, GainDrift, SensorResponse, SensorState
from sim.traffic import (
    Dynamics,
    TrafficSettings,
    VehicleTruth,
    _draw_driving,
    _draw_dynamics,
    _draw_loads,
)

TRUCKS: tuple[VehicleClass, ...] = tuple(c for c in FLEET if not c.is_car)
"""The fleet without cars: drift tracking and calibration look at trucks."""

DAY_SETTINGS = TrafficSettings(bad_share=0.02)
"""A day's traffic: the usual loads, few badly driven passes."""

SLOT_S = 7.0
"""Seconds of signal per slot. The longest truck at the slowest speed, braking, crosses
the array in under 1.8 s, so even a neighbour waiting for a weaving pass has left by
5 s, and the loop closes every vehicle before the next slot's arrive."""

LEAD_S = 0.5
"""The first front axle of a slot reaches the array this long after the slot starts."""

OUT_OF_LANE = ("weaving", "off_centre")
"""Bad driving that puts wheels on the next lane's strips: such a pass and its
neighbours' are staggered within the slot, not side by side."""

LANE_BOUND = ("straddling", "tailgating")
"""Bad driving a slot cannot hold (two lanes at once; a leader just ahead): redrawn."""


@dataclass
class DayTraffic:
    """One simulated day: its vehicles in slots, and the sensor each of them found."""

    day: int
    date: date
    vehicles: list[VehicleTruth]
    states: dict[int, SensorState]
    slot_s: float
    times: list[datetime]
    temperatures_c: list[float] = field(default_factory=list)
    response: SensorResponse | None = None

    @property
    def duration_s(self) -> float:
        """Seconds of signal the day takes."""
        return len(self.times) * self.slot_s

    def slot(self, t_stream_s: float) -> int:
        """The slot a moment of the signal belongs to."""
        return min(max(math.floor(t_stream_s / self.slot_s), 0), len(self.times) - 1)

    def temperature_at(self, t_stream_s: float) -> float:
        """Pavement temperature (°C) at a moment of the signal: its slot's."""
        return self.temperatures_c[self.slot(t_stream_s)]

    def when(self, vehicle: VehicleTruth) -> datetime:
        """The time of day a vehicle stands for."""
        return self.times[self.slot(vehicle.t0_s)]

    def renderer(self, site: StripArray, seed: int = 0, noise: SensorNoise | None = None
                 ) -> Renderer:
        """The day's signal, with the sensor as it was at each vehicle's time."""
        return Renderer(site, self.vehicles, seed=seed, noise=noise,
                        response=self.response, states=self.states if self.response else None)


def sample_day(site: StripArray, day: int, start: date, per_lane: int, *, seed: int = 0,
               climate: Climate | None = None, drift: GainDrift | None = None,
               response: SensorResponse | None = SENSOR_TYPES["piezo_polymer"],
               fleet: Sequence[VehicleClass] = TRUCKS, settings: TrafficSettings = DAY_SETTINGS,
               slot_s: float = SLOT_S) -> DayTraffic:
    """Day ``day`` after installation (on ``start``): ``per_lane`` vehicles in every lane.

    ``seed`` is the site's: it fixes the sensors' drift (the same for every day) and, with
    ``day``, the day's traffic and times. ``response`` is the sensor type the day's signal
    is drawn with (:meth:`DayTraffic.renderer`; ``None``: the plain renderer). Vehicle ids
    run 0, 1, ... in time order.
    """
    if per_lane < 1 or day < 0:
        raise ValueError(f"a day needs vehicles and a day >= 0: per_lane {per_lane}, day {day}")
    if slot_s < 6.0:
        raise ValueError(f"slot_s {slot_s} is too short: passes of one lane would overlap")
    climate, drift = climate or Climate(), drift or GainDrift()
    rng = np.random.default_rng([seed, 17, day])
    on = start + timedelta(days=day)
    fractions = (np.arange(per_lane) + rng.uniform(0.1, 0.9, per_lane)) / per_lane
    times = [datetime.combine(on, time()) + timedelta(days=float(f)) for f in fractions]
    temps = [climate.pavement_c(t) for t in times]
    gains = [drift.channel_gains(site.n_channels, day + float(f), seed,
                                 channels_per_lane=site.channels_per_lane) for f in fractions]
    shares = np.array([c.share for c in fleet], dtype=float)
    vehicles: list[VehicleTruth] = []
    slot_of: list[int] = []
    for k in range(per_lane):
        drawn = _fill_slot(site, fleet, shares / shares.sum(), settings, rng, t_start=k * slot_s)
        vehicles += drawn
        slot_of += [k] * len(drawn)
    order = sorted(range(len(vehicles)), key=lambda i: vehicles[i].t0_s)
    vehicles = [replace(vehicles[i], vehicle_id=n) for n, i in enumerate(order)]
    states = {n: SensorState(temps[slot_of[i]], gains[slot_of[i]])
              for n, i in enumerate(order)}
    return DayTraffic(day, on, vehicles, states, slot_s, times, temps, response)


def _fill_slot(site: StripArray, fleet: Sequence[VehicleClass], shares: np.ndarray,
               s: TrafficSettings, rng: np.random.Generator, *, t_start: float
               ) -> list[VehicleTruth]:
    """One vehicle per lane in the slot starting at ``t_start``, side by side; a pass
    leaving its lane (at most one a slot; others are driven normally) goes first and its
    neighbours once it has left the array. Every pass ends by ``t_start + 5 s``."""
    drawn = []
    for _ in range(site.lanes):
        cls = fleet[rng.choice(len(fleet), p=shares)]
        driving = _draw_driving(rng, s)
        while driving[0] in LANE_BOUND:
            driving = _draw_driving(rng, s)
        drawn.append((cls, driving))
    wide = [lane for lane, (_, d) in enumerate(drawn) if d[0] in OUT_OF_LANE]
    for lane in wide[1:]:
        drawn[lane] = (drawn[lane][0], _normal(drawn[lane][1]))
    first = wide[0] if wide else None
    placed: dict[int, VehicleTruth] = {}
    for lane in ([first] if first is not None else []) + [
            n for n in range(site.lanes) if n != first]:
        cls, driving = drawn[lane]
        t0 = t_start + LEAD_S + rng.uniform(0.0, 0.5)
        if first is not None and abs(lane - first) == 1:
            t0 = _leaves_at(site, placed[first]) + LEAD_S
        placed[lane] = _vehicle(site, cls, rng, s, lane=lane, t0=t0, driving=driving)
    return [placed[lane] for lane in range(site.lanes)]


def _normal(driving: tuple[str | None, float, float, float]
            ) -> tuple[str | None, float, float, float]:
    """The same draw driven normally: no acceleration, in its lane."""
    return None, 0.0, float(np.clip(driving[2], -0.4, 0.4)), 0.0


def _vehicle(site: StripArray, cls: VehicleClass, rng: np.random.Generator,
             s: TrafficSettings, *, lane: int, t0: float,
             driving: tuple[str | None, float, float, float]) -> VehicleTruth:
    """One vehicle of design ``cls`` drawn as :func:`sim.traffic.generate_traffic` does."""
    bad, accel, offset, lat_speed = driving
    speed = rng.uniform(*cls.speed_kmh) / 3.6
    pos = np.concatenate([[0.0], np.cumsum([rng.uniform(lo, hi) for lo, hi in cls.spacings_m])])
    length = pos[-1] + site.row_positions_m()[-1] + 1.0
    if accel < 0:  # a braking vehicle must still cross the whole array
        accel = max(accel, -0.9 * speed**2 / (2 * length))
    return VehicleTruth(
        vehicle_id=0, lane=lane, name=cls.name, code=cls.code, t0_s=float(t0),
        speed_mps=float(speed), accel_mps2=float(accel), axle_pos_m=pos,
        axle_loads_kg=_draw_loads(cls, rng, s), tyres=cls.tyres,
        tyre_pressure_pa=cls.tyre_pressure_kpa * 1e3 * rng.uniform(0.9, 1.1),
        track_m=cls.track_m, lateral_offset_m=offset, lateral_speed_mps=lat_speed,
        dynamics=_draw_dynamics(cls.n_axles, speed, rng) if s.dynamics else Dynamics(),
        bad=bad, is_car=cls.is_car)


def _leaves_at(site: StripArray, v: VehicleTruth) -> float:
    """When the last axle is a metre past the last row."""
    return float(v.time_at(np.array(v.axle_pos_m[-1] + site.row_positions_m()[-1] + 1.0)))

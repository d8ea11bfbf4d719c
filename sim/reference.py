"""Reference trucks: weighed on a static scale, then driven over the strips again and again.

Calibration (JJG 907, COST 323 "reference vehicles") compares what the strips say with
what a static scale said about the same truck. :class:`ReferenceTruck` is such a truck
as weighed; :func:`reference_runs` drives each one over each lane several times at
several speeds. The static loads are the same every run (nothing was unloaded), but
every run bounces in its own way, so the runs scatter as real ones do.
"""

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from drivers.strips import StripArray
from sim.fleet import FLEET, TYRE_WIDTH_M, VehicleClass
from sim.traffic import VehicleTruth, _draw_dynamics

GAP_S = 3.0
"""Time between one truck's last axle leaving the array and the next truck's front axle
reaching it: passes never overlap, and the loop closes each vehicle before the next."""


class ReferenceTruck(BaseModel):
    """A truck as the static scale weighed it, and as it is built."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(min_length=1, max_length=64)
    code: str = Field(min_length=1, max_length=8, description="axle-type code, e.g. 157")
    static_axle_kg: tuple[float, ...] = Field(min_length=2, max_length=8)
    spacings_m: tuple[float, ...] = Field(min_length=1, max_length=7)
    tyres: tuple[str, ...] = Field(min_length=2, max_length=8)
    tyre_pressure_kpa: float = Field(830.0, gt=100, le=1500)
    track_m: float = Field(1.95, gt=1.0, le=2.6)

    @model_validator(mode="after")
    def _consistent(self) -> "ReferenceTruck":
        n = len(self.static_axle_kg)
        if len(self.tyres) != n or len(self.spacings_m) != n - 1:
            raise ValueError(f"{n} axle loads need {n} tyres and {n - 1} spacings, got "
                             f"{len(self.tyres)} and {len(self.spacings_m)}")
        if any(t not in TYRE_WIDTH_M for t in self.tyres):
            raise ValueError(f"tyres must be among {sorted(TYRE_WIDTH_M)}: {self.tyres}")
        if min(self.static_axle_kg) <= 0 or min(self.spacings_m) <= 0:
            raise ValueError("axle loads and spacings must be positive")
        return self

    @property
    def n_axles(self) -> int:
        """Number of axles."""
        return len(self.static_axle_kg)

    @property
    def gvw_kg(self) -> float:
        """Static gross weight: the sum of the static axle loads."""
        return float(sum(self.static_axle_kg))

    @property
    def axle_pos_m(self) -> np.ndarray:
        """Axle positions behind the front axle, shape ``(n_axles,)``."""
        return np.concatenate([[0.0], np.cumsum(self.spacings_m)])


def _fleet_class(code: str) -> VehicleClass:
    """The fleet's design of axle-type ``code``."""
    return next(c for c in FLEET if c.code == code)


def _from_class(code: str, axle_kg: tuple[float, ...], name: str) -> ReferenceTruck:
    """A reference truck built like the fleet's class: spacings at the middle of its
    ranges, its tyres, pressure and track; ``axle_kg`` as weighed."""
    cls = _fleet_class(code)
    return ReferenceTruck(
        name=name, code=code, static_axle_kg=axle_kg,
        spacings_m=tuple(round((lo + hi) / 2, 2) for lo, hi in cls.spacings_m),
        tyres=cls.tyres, tyre_pressure_kpa=cls.tyre_pressure_kpa, track_m=cls.track_m)


def default_trucks() -> list[ReferenceTruck]:
    """Two loaded reference trucks, as COST 323 asks for (a rigid and an articulated one):
    a 2-axle rigid of 17 t (code 12) and a 6-axle semi-trailer of 47.3 t (code 157),
    both within their limits so that the drive is lawful."""
    return [
        _from_class("12", (6_200.0, 10_800.0), "reference rigid 2-axle"),
        _from_class("157", (6_900.0, 9_100.0, 9_200.0, 7_400.0, 7_300.0, 7_400.0),
                    "reference semi-trailer 6-axle"),
    ]


def _run(truck: ReferenceTruck, rng: np.random.Generator, *, vehicle_id: int, lane: int,
         t0_s: float, speed_kmh: float) -> VehicleTruth:
    """One pass of ``truck``: static loads as weighed, its own bounce, normal driving."""
    speed = speed_kmh / 3.6
    return VehicleTruth(
        vehicle_id=vehicle_id, lane=lane, name=truck.name, code=truck.code, t0_s=t0_s,
        speed_mps=speed, accel_mps2=0.0, axle_pos_m=truck.axle_pos_m,
        axle_loads_kg=np.array(truck.static_axle_kg, dtype=float), tyres=truck.tyres,
        tyre_pressure_pa=truck.tyre_pressure_kpa * 1e3, track_m=truck.track_m,
        lateral_offset_m=float(np.clip(rng.normal(0.0, 0.08), -0.2, 0.2)),
        lateral_speed_mps=0.0, dynamics=_draw_dynamics(truck.n_axles, speed, rng))


def reference_runs(site: StripArray, trucks: Sequence[ReferenceTruck],
                   lanes: Sequence[int] | None = None, runs_per_truck: int = 10,
                   speeds_kmh: Sequence[float] = (40, 50, 60, 70, 80), *, seed: int = 0,
                   gap_s: float = GAP_S) -> list[VehicleTruth]:
    """Each truck driven ``runs_per_truck`` times over each lane (all lanes by default),
    run ``r`` at ``speeds_kmh[r % len(speeds_kmh)]``, one pass after another.

    Returned in time order, ids 0, 1, ... in that order; the first front axle reaches the
    array at 1 s, and each pass starts ``gap_s`` after the previous one has left it.
    """
    lanes = list(range(site.lanes)) if lanes is None else list(lanes)
    if not trucks or not lanes or runs_per_truck < 1 or not speeds_kmh:
        raise ValueError("reference runs need trucks, lanes, runs and speeds")
    if any(not 0 <= lane < site.lanes for lane in lanes):
        raise ValueError(f"lanes {lanes} are not all among the site's {site.lanes}")
    if min(speeds_kmh) <= 0:
        raise ValueError(f"speeds must be positive: {tuple(speeds_kmh)}")
    rng = np.random.default_rng([seed, 21])
    runs: list[VehicleTruth] = []
    t_free = 1.0
    for r in range(runs_per_truck):
        for truck in trucks:
            for lane in lanes:
                speed = float(speeds_kmh[r % len(speeds_kmh)])
                v = _run(truck, rng, vehicle_id=len(runs), lane=lane, t0_s=t_free,
                         speed_kmh=speed)
                runs.append(v)
                leave_m = truck.axle_pos_m[-1] + site.row_positions_m()[-1] + 1.0
                t_free = float(v.time_at(np.array(leave_m))) + gap_s
    return runs


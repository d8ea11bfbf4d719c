"""Traffic for a simulated site: which vehicles pass, when, how loaded, how driven.

:func:`generate_traffic` draws a seeded stream of :class:`VehicleTruth` per lane from the
fleet mix; the renderer in :mod:`sim.render` turns them into strip-sensor samples. Truth
is kept so that benchmarks and tests can score what the signal loop measured.
"""

from dataclasses import dataclass, field, replace

import numpy as np

from drivers.strips import StripArray
from sim.fleet import FLEET, VehicleClass

G_MPS2 = 9.80665

BAD_DRIVING = ("accelerating", "braking", "weaving", "off_centre", "straddling", "tailgating")
"""Kinds of abnormal driving the simulator produces (each a quality flag to be raised)."""


OVERLOAD_BANDS = ((1.0, 1.05, 0.4), (1.05, 1.3, 0.4), (1.3, 1.8, 0.2))
"""Overloaded vehicles: (from, to) × rated mass, and the share of them in each band."""


@dataclass(frozen=True)
class Dynamics:
    """Dynamic wheel load: body bounce (whole vehicle) plus axle hop (per axle)."""

    bounce_hz: float = 0.0
    bounce_amp: float = 0.0
    bounce_phase: np.ndarray = field(default_factory=lambda: np.zeros(0))
    hop_hz: np.ndarray = field(default_factory=lambda: np.zeros(0))
    hop_amp: float = 0.0
    hop_phase: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def factor(self, axle: int, t_s: np.ndarray) -> np.ndarray:
        """Multiplier of the static load of ``axle`` at times ``t_s``."""
        if self.bounce_amp == 0.0 and self.hop_amp == 0.0:
            return np.ones_like(t_s)
        bounce = self.bounce_amp * np.sin(2 * np.pi * self.bounce_hz * t_s
                                          + self.bounce_phase[axle])
        hop = self.hop_amp * np.sin(2 * np.pi * self.hop_hz[axle] * t_s + self.hop_phase[axle])
        return 1.0 + bounce + hop


@dataclass(frozen=True)
class VehicleTruth:
    """What really passed: the reference the measurements are scored against.

    ``t0_s`` is when the front axle's centre is over the first row; ``speed_mps`` the
    speed then, changing at ``accel_mps2``. Positions along the vehicle are metres behind
    the front axle; lateral positions are metres from the lane centre, positive right.
    """

    vehicle_id: int
    lane: int
    name: str
    code: str
    t0_s: float
    speed_mps: float
    accel_mps2: float
    axle_pos_m: np.ndarray
    axle_loads_kg: np.ndarray
    tyres: tuple[str, ...]
    tyre_pressure_pa: float
    track_m: float
    lateral_offset_m: float
    lateral_speed_mps: float
    dynamics: Dynamics
    bad: str | None = None
    is_car: bool = False

    @property
    def n_axles(self) -> int:
        """Number of axles."""
        return len(self.axle_pos_m)

    @property
    def gvw_kg(self) -> float:
        """Static gross vehicle weight."""
        return float(self.axle_loads_kg.sum())

    @property
    def spacings_m(self) -> np.ndarray:
        """Distances between consecutive axles, shape ``(n_axles - 1,)``."""
        return np.diff(self.axle_pos_m)

    def time_at(self, position_m: np.ndarray) -> np.ndarray:
        """When the front axle has travelled ``position_m`` past the first row."""
        a, v = self.accel_mps2, self.speed_mps
        if abs(a) < 1e-9:
            return self.t0_s + position_m / v
        return self.t0_s + (np.sqrt(v * v + 2 * a * position_m) - v) / a

    def speed_at(self, position_m: np.ndarray) -> np.ndarray:
        """Speed when the front axle has travelled ``position_m`` past the first row."""
        return np.sqrt(self.speed_mps**2 + 2 * self.accel_mps2 * position_m)

    def mean_speed_mps(self, site: StripArray) -> float:
        """Speed over the array averaged over the axles: what the loop should measure."""
        mid = site.row_positions_m().mean()
        positions = mid + self.axle_pos_m
        t_first = self.time_at(positions - site.row_positions_m()[-1] / 2)
        t_last = self.time_at(positions + site.row_positions_m()[-1] / 2)
        return float(np.mean(site.row_positions_m()[-1] / (t_last - t_first)))


@dataclass(frozen=True)
class TrafficSettings:
    """How busy, how heavy and how badly driven the simulated road is."""

    flow_per_lane_h: float = 720.0
    overloaded_share: float = 0.30
    empty_share: float = 0.20
    bad_share: float = 0.05
    dynamics: bool = True
    min_gap_m: float = 14.0


def _draw_loads(cls: VehicleClass, rng: np.random.Generator, s: TrafficSettings) -> np.ndarray:
    """Static axle loads: empty, within the rated mass, or overloaded."""
    empty = np.asarray(cls.empty_axle_kg, float) * rng.uniform(0.9, 1.1)
    room = max(cls.rated_kg - empty.sum(), 0.0)
    u = rng.uniform()
    if cls.is_car:
        payload = rng.uniform(0.1, 1.0) * room
    elif u < s.empty_share:
        payload = rng.uniform(0.0, 0.05) * room
    elif u < s.empty_share + s.overloaded_share:
        band = rng.choice(len(OVERLOAD_BANDS), p=[b[2] for b in OVERLOAD_BANDS])
        over = rng.uniform(*OVERLOAD_BANDS[band][:2])
        payload = over * cls.rated_kg - empty.sum()
    else:
        payload = rng.uniform(0.5, 1.0) * room
    share = np.asarray(cls.payload_share) * rng.uniform(0.9, 1.1, cls.n_axles)
    return empty + payload * share / share.sum()


def _draw_dynamics(n_axles: int, speed_mps: float, rng: np.random.Generator) -> Dynamics:
    """Body bounce 1.5-4 Hz and axle hop 8-15 Hz, amplitudes growing with speed."""
    return Dynamics(
        bounce_hz=rng.uniform(1.5, 4.0),
        bounce_amp=0.02 + 0.0015 * speed_mps,
        bounce_phase=rng.uniform(0, 2 * np.pi) + np.linspace(0, rng.uniform(0, np.pi), n_axles),
        hop_hz=rng.uniform(8.0, 15.0, n_axles),
        hop_amp=0.01 + 0.001 * speed_mps,
        hop_phase=rng.uniform(0, 2 * np.pi, n_axles),
    )


def _draw_driving(rng: np.random.Generator, s: TrafficSettings) -> tuple[str | None, float,
                                                                           float, float]:
    """(bad kind, acceleration, lateral offset, lateral speed) of one pass."""
    offset = float(np.clip(rng.normal(0.0, 0.15), -0.4, 0.4))
    if rng.uniform() >= s.bad_share:
        return None, 0.0, offset, 0.0
    bad = str(rng.choice(BAD_DRIVING))
    side = rng.choice([-1.0, 1.0])
    if bad == "accelerating":
        return bad, rng.uniform(1.0, 2.0), offset, 0.0
    if bad == "braking":
        return bad, -rng.uniform(1.5, 3.0), offset, 0.0
    if bad == "weaving":
        return bad, 0.0, offset, side * rng.uniform(0.4, 0.8)
    if bad == "off_centre":
        return bad, 0.0, side * rng.uniform(0.6, 0.85), 0.0
    if bad == "straddling":
        return bad, 0.0, side * rng.uniform(1.3, 1.7), 0.0
    return bad, 0.0, offset, 0.0  # tailgating: the gap is set by the caller


def generate_traffic(
    site: StripArray,
    duration_s: float,
    seed: int = 0,
    settings: TrafficSettings | None = None,
    fleet: tuple[VehicleClass, ...] = FLEET,
) -> list[VehicleTruth]:
    """Draw the vehicles that cross every lane of ``site`` within ``duration_s``.

    Arrivals per lane are Poisson at ``flow_per_lane_h``, kept at least ``min_gap_m``
    apart (last axle of one to front axle of the next) except for tailgaters. Vehicles
    are returned in time order; all of them leave the array before ``duration_s``.

    Examples
    --------
    >>> site = StripArray(lanes=1)
    >>> cars_and_trucks = generate_traffic(site, 60.0, seed=1)
    >>> all(0 < v.t0_s < 60 for v in cars_and_trucks)
    True
    """
    s = settings or TrafficSettings()
    rng = np.random.default_rng(seed)
    shares = np.array([c.share for c in fleet])
    shares = shares / shares.sum()
    vehicles: list[VehicleTruth] = []
    for lane in range(site.lanes):
        t_free = 0.5  # earliest time the next front axle may reach the first row
        leader: VehicleTruth | None = None
        while True:
            t0 = t_free + rng.exponential(3600.0 / s.flow_per_lane_h)
            cls = fleet[rng.choice(len(fleet), p=shares)]
            speed = rng.uniform(*cls.speed_kmh) / 3.6
            bad, accel, offset, lat_speed = _draw_driving(rng, s)
            if bad == "tailgating" and leader is not None:  # 3-6 m behind, at the array
                t0 = float(leader.time_at(np.array(leader.axle_pos_m[-1]
                                                   + rng.uniform(3.0, 6.0))))
            spacings = np.array([rng.uniform(lo, hi) for lo, hi in cls.spacings_m])
            pos = np.concatenate([[0.0], np.cumsum(spacings)])
            length = pos[-1] + site.row_positions_m()[-1] + 1.0
            if accel < 0:  # a braking vehicle must still cross the whole array
                accel = max(accel, -0.9 * speed**2 / (2 * length))
            truth = VehicleTruth(
                vehicle_id=len(vehicles), lane=lane, name=cls.name, code=cls.code,
                t0_s=float(t0), speed_mps=float(speed), accel_mps2=float(accel),
                axle_pos_m=pos, axle_loads_kg=_draw_loads(cls, rng, s), tyres=cls.tyres,
                tyre_pressure_pa=cls.tyre_pressure_kpa * 1e3 * rng.uniform(0.9, 1.1),
                track_m=cls.track_m, lateral_offset_m=offset, lateral_speed_mps=lat_speed,
                dynamics=(_draw_dynamics(cls.n_axles, speed, rng) if s.dynamics
                          else Dynamics()),
                bad=bad, is_car=cls.is_car,
            )
            t_end = float(truth.time_at(np.array(length)))
            if t_end + 1.0 > duration_s:
                break
            vehicles.append(truth)
            leader = truth
            t_free = float(truth.time_at(np.array(pos[-1] + s.min_gap_m)))
    vehicles = _clear_beside_straddlers(vehicles, site, s.min_gap_m)
    vehicles.sort(key=lambda v: v.t0_s)
    return [_renumber(v, i) for i, v in enumerate(vehicles)]


def _occupancy(v: VehicleTruth, site: StripArray, gap_m: float) -> tuple[float, float]:
    """When a vehicle occupies the array, with ``gap_m`` of headway either side."""
    start = float(v.time_at(np.array(0.0))) - gap_m / v.speed_mps
    end_m = v.axle_pos_m[-1] + site.row_positions_m()[-1] + gap_m
    return start, float(v.time_at(np.array(end_m)))


def _lanes_taken(v: VehicleTruth) -> set[int]:
    """The lanes a vehicle occupies: its own, and the next one when straddling."""
    if v.bad != "straddling":
        return {v.lane}
    return {v.lane, v.lane + (1 if v.lateral_offset_m > 0 else -1)}


def _clear_beside_straddlers(vehicles: list[VehicleTruth], site: StripArray, gap_m: float
                             ) -> list[VehicleTruth]:
    """Drop vehicles that would share space with a straddling vehicle.

    A straddling vehicle occupies two lanes; nothing drives beside it in the second,
    and no other straddler crosses into its lanes then. Earlier vehicles keep their place;
    a tailgater whose leader is dropped goes with it (it would tailgate nobody).
    """
    kept: list[tuple[VehicleTruth, set[int], float, float]] = []
    last_in_lane: dict[int, bool] = {}  # was the previous vehicle of the lane kept?
    for v in sorted(vehicles, key=lambda v: v.t0_s):
        lanes, (t0, t1) = _lanes_taken(v), _occupancy(v, site, gap_m)
        clash = any((v.bad == "straddling" or k.bad == "straddling") and lanes & k_lanes
                    and t0 < k1 and k0 < t1 for k, k_lanes, k0, k1 in kept)
        clash |= v.bad == "tailgating" and not last_in_lane.get(v.lane, True)
        last_in_lane[v.lane] = not clash
        if not clash:
            kept.append((v, lanes, t0, t1))
    return [k[0] for k in kept]


def _renumber(v: VehicleTruth, vehicle_id: int) -> VehicleTruth:
    """The same vehicle with a time-ordered id."""
    return replace(v, vehicle_id=vehicle_id)

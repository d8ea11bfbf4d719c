"""Vehicles from axles: split by gaps, measured, classified and flagged.

A lane's pulses are held until the lane has been silent for long enough that no axle of
the same vehicle can still come (``split_gap_m`` at the slowest speed the pulses allow,
at least ``close_after_s``); then that segment becomes axles and the axles vehicles.

Quality flags name what makes a measurement less trustworthy as evidence (JJG 907 accepts
lower accuracy under abnormal driving, so such passes must be marked):

``speed_change``  braking or accelerating over the vehicle's length
``straddling``    an axle's load sits mostly on one half: the vehicle is off the lane
``weaving``       heading off the lane's axis (the wheels of an axle cross the strips at
                  different times), or the left/right split changes between rows
``missing_axle``  an axle one row saw and another did not
``ghost_axle``    an axle too light to be real (``ghost_axle_max_kg``)
``merged``        longer or with more axles than one vehicle can be (or a car with four
                  axles or more): two vehicles merged
``off_speed``     outside the speed range the site is verified for
``saturated``     a channel reached the digitiser's limit: the load is a lower bound
``unknown_code``  the axle groups form no axle-type code
``data_gap``      samples were lost while the vehicle passed
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from drivers.strips import StripArray
from edge.signal.axles import Axles, build_axles, nanmean_rows
from edge.signal.settings import SignalSettings
from edge.signal.tyres import axle_tyres, vehicle_tyres

UNREADABLE_TYRES = frozenset({"straddling", "saturated", "ghost_axle"})
"""Flags under which a wheel's load per contact length says nothing about its tyres."""

AxleCoder = Callable[[Sequence[float], Sequence[str]], str | None]
"""Turns spacings (m) and per-axle tyres into an axle-type code, or None when the code
tables describe no such axle groups."""


@dataclass(frozen=True)
class Vehicle:
    """One vehicle as the roadside measured it."""

    lane: int
    t_s: float                 # front axle over the first row, s from stream start
    speed_mps: float
    axle_loads_kg: np.ndarray  # (n_axles,)
    spacings_m: np.ndarray     # (n_axles - 1,)
    tyres: tuple[str, ...]
    axle_code: str
    flags: frozenset[str] = field(default_factory=frozenset)
    contact_m: np.ndarray = field(default_factory=lambda: np.zeros(0))
    row_loads_kg: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    @property
    def n_axles(self) -> int:
        """Number of axles."""
        return len(self.axle_loads_kg)

    @property
    def gvw_kg(self) -> float:
        """Gross vehicle weight: the sum of the axle loads."""
        return float(self.axle_loads_kg.sum())


def axle_spacings(axles: Axles) -> np.ndarray:
    """Distance from each axle to the next, averaged over the rows that saw both;
    NaN where the next axle is in another segment. Shape ``(n - 1,)``."""
    if axles.n < 2:
        return np.empty(0)
    dt = np.diff(axles.t_s, axis=0)
    v = (axles.speed_mps[1:] + axles.speed_mps[:-1]) / 2
    spacing = nanmean_rows(dt) * v
    return np.where(np.diff(axles.segment) == 0, spacing, np.nan)


def split_vehicles(axles: Axles, spacing_m: np.ndarray, group_threshold_m: float,
                   strip_m: float, settings: SignalSettings) -> list[np.ndarray]:
    """Index arrays of the axles of each vehicle.

    A new vehicle starts with every segment and after every gap longer than
    ``split_gap_m``. Closer vehicles are told apart by two things a vehicle keeps from
    axle to axle: its lateral line (a jump of the left share by more than
    ``lateral_split_share``), and its tyres and loads — trailers run on dual tyres, and
    nothing a car tows outweighs it, so a lone single-tyred axle (not the first of a
    group) more than ``steer_split_m`` behind a dual-tyred axle, or behind one
    ``steer_load_ratio`` times lighter, is the steer axle of a vehicle following closely.
    """
    tyres = np.array(axle_tyres(axles.load_kg, axles.contact_m, strip_m, settings))
    alone = np.append(~(spacing_m < group_threshold_m), True)   # no axle close behind
    steer_next = ((tyres[1:] == "single") & alone[1:]
                  & np.isin(tyres[:-1], ("dual", "wide_base")))
    heavier = axles.load_kg[1:] >= settings.steer_load_ratio * axles.load_kg[:-1]
    steer_next |= (tyres[1:] == "single") & alone[1:] & heavier
    side = nanmean_rows(axles.left_share)
    jump = np.abs(np.diff(side)) > settings.lateral_split_share
    breaks = np.flatnonzero(~(spacing_m <= settings.split_gap_m)
                            | (steer_next & (spacing_m > settings.steer_split_m))
                            | (jump & (spacing_m > group_threshold_m))) + 1
    return np.split(np.arange(axles.n), breaks)


def axle_heading_sin(axles: Axles, settings: SignalSettings) -> tuple[np.ndarray, np.ndarray]:
    """Per axle: the sum over rows of sin(heading), and how many rows gave one.

    Moving sideways, a vehicle crosses the strips at an angle: the wheel on the side it
    moves towards arrives first, by ``track × sin(heading) / speed``. Only passes whose
    load sits evenly on the two halves count (otherwise a half holds parts of both
    wheels).
    """
    sin = -axles.skew_s * axles.speed_mps[:, None] / settings.nominal_track_m
    ok = (np.abs(axles.left_share - 0.5) < 0.2) & ~np.isnan(sin)
    return np.where(ok, sin, 0.0).sum(axis=1), ok.sum(axis=1)


def quality_flags(axles: Axles, starts: np.ndarray, spacing_m: np.ndarray,
                  settings: SignalSettings) -> list[set[str]]:
    """The flags (see module doc) of every vehicle, whose axles begin at ``starts``.

    Vehicles are consecutive runs of axles, so each test is one array operation over all
    axles and one ``reduceat`` over the vehicles.
    """
    s = settings
    n = np.diff(np.append(starts, axles.n))
    ends = starts + n - 1

    def any_of(per_axle: np.ndarray) -> np.ndarray:
        return np.logical_or.reduceat(per_axle, starts)

    share = axles.left_share
    seen = ~np.isnan(share)
    speed = axles.speed_mps
    mean_speed = np.add.reduceat(speed, starts) / n
    sin_sum, sin_n = axle_heading_sin(axles, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        heading = np.arcsin(np.clip(np.add.reduceat(sin_sum, starts)
                                    / np.add.reduceat(sin_n, starts), -1, 1))
    spread = np.where(seen, share, -np.inf).max(axis=1) - np.where(seen, share, np.inf).min(1)
    wheelbase = np.append(0.0, np.cumsum(np.nan_to_num(spacing_m)))
    wheelbase = wheelbase[ends] - wheelbase[starts]
    table = {
        "speed_change": np.abs(speed[ends] - speed[starts]) > s.speed_change_max * mean_speed,
        "straddling": any_of(np.where(seen, np.minimum(share, 1 - share), 1.0).min(axis=1)
                             < s.straddle_share_min),
        "weaving": any_of(spread > s.weave_share_max)
                   | (np.abs(np.nan_to_num(heading)) > s.weave_heading_max_rad),
        "missing_axle": any_of(~seen.all(axis=1)),
        "ghost_axle": any_of(axles.load_kg <= s.ghost_axle_max_kg),
        "merged": (wheelbase > s.max_wheelbase_m) | (n > s.max_axles)
                  | ((axles.load_kg[starts] <= s.light_vehicle_axle_max_kg) & (n >= 4)),
        "off_speed": (mean_speed < s.min_speed_mps) | (mean_speed > s.max_speed_mps),
        "saturated": any_of(axles.saturated),
    }
    raised = np.column_stack(list(table.values()))
    names = np.array(list(table))
    return [set(names[row]) for row in raised]


@dataclass
class VehicleAssembler:
    """Stream stage for the whole site: pulses (areas in N·s) with their lanes in,
    finished vehicles out.

    Pulses are held per lane until the lane has been silent long enough that no axle of
    the same vehicle can still come; every closed segment of every lane is then built
    in one vectorised pass.
    """

    site: StripArray
    settings: SignalSettings
    coder: AxleCoder
    group_threshold_m: float
    _held: np.ndarray | None = None
    _held_lane: np.ndarray | None = None

    def push(self, pulses: np.ndarray, lane: np.ndarray, through_s: float) -> list[Vehicle]:
        """Add new pulses; return the vehicles finished now (by time)."""
        if self._held is not None:
            pulses = np.concatenate([self._held, pulses])
            lane = np.concatenate([self._held_lane, lane])
        if pulses.size == 0:
            self._held = self._held_lane = None
            return []
        order = np.lexsort((pulses["t_c"], lane))
        pulses, lane = pulses[order], lane[order]
        segment = self._segments(pulses, lane)
        seg_end = np.maximum.reduceat(pulses["t_c"], _starts(segment))
        closed_seg = np.flatnonzero(seg_end + self._silence_s(pulses) < through_s)
        closed = np.isin(segment, closed_seg)
        self._held, self._held_lane = pulses[~closed], lane[~closed]
        if not closed.any():
            return []
        return self._vehicles(pulses[closed], segment[closed], lane[closed])

    def flush(self) -> list[Vehicle]:
        """Finish whatever is held (end of the stream, or a gap in the data)."""
        if self._held is None or self._held.size == 0:
            return []
        pulses, lane = self._held, self._held_lane
        self._held = self._held_lane = None
        return self._vehicles(pulses, self._segments(pulses, lane), lane)

    def _silence_s(self, pulses: np.ndarray) -> float:
        """Silence that ends a segment: the split gap at the slowest speed seen.

        Speed is bounded below from the widest pulse: a pulse lasts at most the patch
        plus the strip over the speed, and no patch is longer than 0.6 m.
        """
        slow = self.settings.min_speed_mps
        widest = float((pulses["t_off"] - pulses["t_on"]).max())
        slow = max(slow, (self.site.strip_width_m + 0.05) / max(widest, 1e-6))
        return max(self.settings.close_after_s, self.settings.split_gap_m / slow)

    def _segments(self, pulses: np.ndarray, lane: np.ndarray) -> np.ndarray:
        """Segment number of each pulse (sorted by lane, then time)."""
        silence = self._silence_s(pulses)
        new = np.concatenate([[True], (np.diff(lane) != 0)
                              | (np.diff(pulses["t_c"]) > silence)])
        return np.cumsum(new) - 1

    def _vehicles(self, pulses: np.ndarray, segment: np.ndarray, lane: np.ndarray
                  ) -> list[Vehicle]:
        """Turn closed segments of pulses into vehicles."""
        axles = build_axles(pulses, segment, self.site, self.settings)
        lane_of_segment = dict(zip(segment.tolist(), lane.tolist(), strict=False))
        spacing = axle_spacings(axles)
        groups = [sel for sel in split_vehicles(axles, spacing, self.group_threshold_m,
                                                self.site.strip_width_m, self.settings)
                  if sel.size]
        flags = quality_flags(axles, np.array([g[0] for g in groups]), spacing,
                              self.settings)
        vehicles = [self._vehicle(axles, sel, spacing[sel[:-1]], f,
                                  lane_of_segment[int(axles.segment[sel[0]])])
                    for sel, f in zip(groups, flags, strict=True)]
        return sorted(vehicles, key=lambda v: v.t_s)

    def _vehicle(self, axles: Axles, sel: np.ndarray, spacings: np.ndarray, flags: set[str],
                 lane: int) -> Vehicle:
        """One vehicle from its axles and flags: tyres, code, front-axle time."""
        tyres = vehicle_tyres(axles.load_kg[sel], axles.contact_m[sel], spacings,
                              group_threshold_m=self.group_threshold_m,
                              strip_m=self.site.strip_width_m, settings=self.settings,
                              readable=not flags & UNREADABLE_TYRES)
        code = self.coder(spacings.tolist(), tyres)
        if code is None:  # e.g. a group of four axles: no code describes it
            code = "?"
            flags.add("unknown_code")
        front = axles.t_s[sel[0]] - self.site.row_positions_m() / axles.speed_mps[sel[0]]
        return Vehicle(
            lane=lane, t_s=float(np.nanmean(front)),
            speed_mps=float(axles.speed_mps[sel].mean()), axle_loads_kg=axles.load_kg[sel],
            spacings_m=spacings, tyres=tyres, axle_code=code, flags=frozenset(flags),
            contact_m=axles.contact_m[sel], row_loads_kg=axles.row_load_kg[sel],
        )


def _starts(segment: np.ndarray) -> np.ndarray:
    """Index where each segment begins (segments numbered 0.. in order)."""
    return np.flatnonzero(np.concatenate([[True], np.diff(segment) != 0]))

"""Vehicles from axles: split by gaps, measured, classified and flagged.

A lane's pulses are held until the lane has been silent for long enough that no axle of
the same vehicle can still come (``split_gap_m`` at the lane's own measured speed, see
:mod:`edge.signal.silence`), or, for a vehicle followed closely, until the break after it
is settled; then its pulses become axles and the axles vehicles.

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
from typing import NamedTuple

import numpy as np

from drivers.strips import StripArray
from edge.signal.axles import SPAN_S, Axles, build_axles, nanmean_rows
from edge.signal.settings import SignalSettings
from edge.signal.silence import deadlines_s
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
    temperature_c: float | None = None  # pavement, when the pass was weighed
    calibration_factor: float = 1.0     # the chain's per-vehicle factor, already applied

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

    A lane's pulses form segments, runs with no silence long enough to finish a vehicle
    (:func:`~edge.signal.silence.deadlines_s`: the split gap at the lane's own measured
    speed). A segment is built once its lane has been quiet past its deadline. A segment
    still open may hold vehicles already told apart from the one following them: each
    leading vehicle is released as soon as the break after it can no longer change (its
    follower's first two axles seen by every row) and its own deadline has passed, so
    that a close follower does not hold it back. Every segment is built in one
    vectorised pass.
    """

    site: StripArray
    settings: SignalSettings
    coder: AxleCoder
    group_threshold_m: float
    _held: np.ndarray | None = None
    _held_lane: np.ndarray | None = None

    def push(self, pulses: np.ndarray, lane: np.ndarray, through_s: float | np.ndarray
             ) -> list[Vehicle]:
        """Add new pulses; return the vehicles finished now (by time).

        ``through_s``, for the whole site or per lane ``(lanes,)``: no pulse still to come
        has its centre before this stream time (s).
        """
        if self._held is not None:
            pulses = np.concatenate([self._held, pulses])
            lane = np.concatenate([self._held_lane, lane])
        if pulses.size == 0:
            self._held = self._held_lane = None
            return []
        order = np.lexsort((pulses["t_c"], lane))
        pulses, lane = pulses[order], lane[order]
        through = np.broadcast_to(np.asarray(through_s, float), (self.site.lanes,))[lane]
        deadline = deadlines_s(pulses, self.site, self.settings)
        segment, due = self._segments(pulses, lane, deadline)
        starts = _starts(segment)
        ends = np.append(starts[1:], segment.size) - 1
        closed = due[ends] < through[ends]
        # an open segment of three axles or more may lead with finished vehicles
        leading = ~closed & (ends - starts + 1 >= 3 * self.site.rows)
        built = (closed | leading)[segment]
        if not built.any():
            self._held, self._held_lane = pulses, lane
            return []
        vehicles, done = self._vehicles(pulses[built], segment[built], lane[built],
                                        still_open=_Open(~closed, through[built]))
        taken = np.zeros(pulses.size, bool)
        taken[np.flatnonzero(built)[done]] = True
        self._held, self._held_lane = pulses[~taken], lane[~taken]
        return vehicles

    def flush(self) -> list[Vehicle]:
        """Finish whatever is held (end of the stream, or a gap in the data)."""
        if self._held is None or self._held.size == 0:
            return []
        pulses, lane = self._held, self._held_lane
        self._held = self._held_lane = None
        segment, _ = self._segments(pulses, lane, deadlines_s(pulses, self.site,
                                                              self.settings))
        return self._vehicles(pulses, segment, lane)[0]

    def _segments(self, pulses: np.ndarray, lane: np.ndarray, deadline: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Segment number of each pulse (sorted by lane, then time), and the latest
        deadline of its lane's pulses up to it: a pulse later than that of the pulse
        before it starts a segment."""
        due = np.maximum.accumulate(lane * SPAN_S + deadline) - lane * SPAN_S
        new = np.concatenate([[True], (np.diff(lane) != 0) | (pulses["t_c"][1:] > due[:-1])])
        return np.cumsum(new) - 1, due

    def _vehicles(self, pulses: np.ndarray, segment: np.ndarray, lane: np.ndarray, *,
                  still_open: "_Open | None" = None) -> tuple[list[Vehicle], np.ndarray]:
        """Turn segments of pulses into vehicles: all of a closed segment's, the finished
        leading ones of an open segment's. Also returns which pulses they used up."""
        axles = build_axles(pulses, segment, self.site, self.settings)
        lane_of_segment = dict(zip(segment.tolist(), lane.tolist(), strict=False))
        spacing = axle_spacings(axles)
        groups = [sel for sel in split_vehicles(axles, spacing, self.group_threshold_m,
                                                self.site.strip_width_m, self.settings)
                  if sel.size]
        flags = quality_flags(axles, np.array([g[0] for g in groups], np.int64), spacing,
                              self.settings)
        finished, done = range(len(groups)), np.ones(pulses.size, bool)
        if still_open is not None and still_open.segment.any():
            finished, done = self._finished(axles, groups, pulses, segment, still_open)
        vehicles = [self._vehicle(axles, groups[i], spacing[groups[i][:-1]], flags[i],
                                  lane_of_segment[int(axles.segment[groups[i][0]])])
                    for i in finished]
        return sorted(vehicles, key=lambda v: v.t_s), done

    @staticmethod
    def _finished(axles: Axles, groups: list[np.ndarray], pulses: np.ndarray,
                  segment: np.ndarray, still_open: "_Open") -> tuple[list[int], np.ndarray]:
        """Which groups of axles are finished vehicles, and the pulses they used up.

        In an open segment, a vehicle is finished when a follower in the same segment
        comes after it and the break between them is final: the follower's first two
        axles are seen by every row (the tyres, loads, sides and spacings that decide a
        break are then known, and later axles change none of them). No axle can join it
        any more: a lane's vehicles do not interleave. Its pulses are those before the
        midpoint between its last axle and the follower's first; all of them are in
        (``through`` is past it). Every vehicle before it is finished too.
        """
        open_segment, through = still_open
        t_c = pulses["t_c"]
        complete = ~np.isnan(axles.t_s).any(axis=1)
        done = ~open_segment[segment]
        out = []
        blocked: set[int] = set()
        for i, (g, nxt) in enumerate(zip(groups, [*groups[1:], None], strict=True)):
            seg = int(axles.segment[g[0]])
            if not open_segment[seg]:
                out.append(i)
                continue
            if seg in blocked or nxt is None or int(axles.segment[nxt[0]]) != seg:
                blocked.add(seg)
                continue
            j = nxt[0]
            final = (complete[j] and j + 1 < axles.n and axles.segment[j + 1] == seg
                     and complete[j + 1])
            cut = (np.nanmax(axles.t_s[g[-1]]) + np.nanmin(axles.t_s[j])) / 2
            mine = (segment == seg) & (t_c < cut)
            last = np.flatnonzero(mine)[-1]
            if not (final and cut < through[last]):
                blocked.add(seg)
                continue
            out.append(i)
            done |= mine
        return out, done

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


class _Open(NamedTuple):
    """Segments still open, by segment number; per pulse, how far its lane's pulses are
    complete (s)."""

    segment: np.ndarray
    through: np.ndarray


def _starts(segment: np.ndarray) -> np.ndarray:
    """Index where each segment begins (segments numbered 0.. in order)."""
    return np.flatnonzero(np.concatenate([[True], np.diff(segment) != 0]))

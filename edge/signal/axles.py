"""Axles from pulses: halves paired, rows matched, loads by the area method.

Pure functions over the pulses of many lane segments at once (a segment is a run of one
lane's pulses between silences; it holds one vehicle or a few). Segments are kept apart by
a key ``segment * SPAN_S + t``, so one sort and one ``searchsorted`` serve them all.

Area method: a wheel of load ``W`` crossing a strip of width ``L`` at speed ``v`` gives a
force-time integral ``W * L / v``; with ``C`` newtons per count,
``W = v * C / L * sum(x - b) / fs``. The rows must be closer together than the shortest
axle spacing, so that every axle reaches the next row before the following axle reaches
this one: then rows match in order, whatever the speed.
"""

from dataclasses import dataclass

import numpy as np

from drivers.strips import StripArray
from edge.signal.settings import SignalSettings

G_MPS2 = 9.80665
SPAN_S = 1e9
"""Longer than any stream (s): keys ``group * SPAN_S + t`` of segments or channels never
interleave."""


@dataclass(frozen=True)
class RowPasses:
    """Axle passes over one row: the left and right halves of each axle paired.

    Arrays of shape ``(n,)``, ordered by key: segment, time (s), the right half's time
    minus the left's (s, NaN unless both are seen), left and right force-time (N·s),
    the half-peak width (s), and whether a half was saturated.
    """

    segment: np.ndarray
    t_s: np.ndarray
    skew_s: np.ndarray
    area_left: np.ndarray
    area_right: np.ndarray
    width_s: np.ndarray
    saturated: np.ndarray

    @property
    def key(self) -> np.ndarray:
        """Sort key that keeps segments apart."""
        return self.segment * SPAN_S + self.t_s


@dataclass(frozen=True)
class Axles:
    """Axles of many segments, in segment then time order; ``(n,)`` or ``(n, rows)``."""

    segment: np.ndarray        # (n,)
    t_s: np.ndarray            # (n, rows) when each axle crossed each row, NaN if missed
    speed_mps: np.ndarray      # (n,)
    load_kg: np.ndarray        # (n,) mean over the rows that saw the axle
    row_load_kg: np.ndarray    # (n, rows)
    left_share: np.ndarray     # (n, rows) share of the axle load on the left half
    skew_s: np.ndarray         # (n, rows) right wheel's time minus the left's
    contact_m: np.ndarray      # (n,) contact-patch length, from speed × half-peak width
    saturated: np.ndarray      # (n,)

    @property
    def n(self) -> int:
        """Number of axles."""
        return len(self.speed_mps)


def pair_halves(pulses: np.ndarray, segment: np.ndarray, settings: SignalSettings
                ) -> RowPasses:
    """Group one row's pulses (both halves) into axle passes, segment by segment.

    A pass starts wherever the next pulse is more than ``pair_window_s`` after the
    previous one or in another segment; each half's areas in a pass are summed, so a
    wheel on the boundary between halves, seen by both, counts once in full.
    """
    order = np.lexsort((pulses["t_c"], segment))
    p, seg = pulses[order], segment[order]
    if p.size == 0:
        e = np.empty(0)
        return RowPasses(np.empty(0, np.int64), e, e, e, e, e, np.empty(0, bool))
    starts = np.flatnonzero(np.concatenate(
        [[True], (np.diff(p["t_c"]) > settings.pair_window_s) | (np.diff(seg) != 0)]))
    area = p["area"]
    left = np.where(p["channel"] % 2 == 0, area, 0.0)
    total = np.add.reduceat(area, starts)
    area_left = np.add.reduceat(left, starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        t_left = np.add.reduceat(left * p["t_c"], starts) / area_left
        t_right = np.add.reduceat((area - left) * p["t_c"], starts) / (total - area_left)
    return RowPasses(
        segment=seg[starts],
        t_s=np.add.reduceat(area * p["t_c"], starts) / total,
        skew_s=t_right - t_left,
        area_left=area_left,
        area_right=total - area_left,
        width_s=np.add.reduceat(area * (p["t_off"] - p["t_on"]), starts) / total,
        saturated=np.maximum.reduceat(p["saturated"], starts).astype(bool),
    )


def match_rows(rows: list[RowPasses], site: StripArray, settings: SignalSettings
               ) -> np.ndarray:
    """Index of each axle's pass in each row, ``(n_axles, n_rows)``, -1 where missed.

    Row ``r + 1`` is matched to row ``r`` in order: a pass in the next row belongs to an
    axle if it comes after that axle's pass here, before the next axle's, and within the
    time the slowest allowed speed needs to cover the row spacing. A pass no earlier row
    saw starts an axle of its own (flagged later as missed by those rows). Axles come
    out in segment order, and in time order within a segment.
    """
    max_dt = site.row_spacing_m / settings.min_speed_mps
    index = np.arange(rows[0].t_s.size)[:, None]
    ref = rows[0].key                                # latest known key of each axle
    for r in range(1, len(rows)):
        k_next = rows[r].key
        order = np.argsort(ref, kind="stable")
        sref = ref[order]
        bound = np.append(sref[1:], np.inf)
        j = np.searchsorted(k_next, sref, side="right")
        jc = np.minimum(j, max(k_next.size - 1, 0))
        ok = (j < k_next.size)
        if k_next.size:
            ok &= (k_next[jc] < bound) & (k_next[jc] - sref <= max_dt)
        col = np.full(ref.size, -1)
        col[order[ok]] = j[ok]
        used = np.zeros(k_next.size, bool)
        used[j[ok]] = True
        new = np.flatnonzero(~used)
        index = np.vstack([np.column_stack([index, col]),
                           np.column_stack([np.full((new.size, r), -1), new])])
        seen = col >= 0
        ref = np.concatenate([np.where(seen, k_next[np.maximum(col, 0)] if k_next.size
                                       else ref, ref), k_next[new]])
    first = np.full(index.shape[0], np.inf)
    for r in range(len(rows) - 1, -1, -1):           # the earliest row that saw each axle
        seen = index[:, r] >= 0
        first[seen] = (rows[r].key[index[seen, r]]
                       - r * site.row_spacing_m / settings.max_speed_mps)
    return index[np.argsort(first, kind="stable")]


def _take(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``values[index]`` as float, NaN where ``index`` is -1."""
    out = np.full(index.shape, np.nan)
    ok = index >= 0
    out[ok] = values[index[ok]]
    return out


def nanmean_rows(a: np.ndarray) -> np.ndarray:
    """Mean over the last axis ignoring NaN (NaN where a row has none); cheaper than
    ``np.nanmean`` on small arrays."""
    ok = ~np.isnan(a)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, a, 0.0).sum(axis=-1) / ok.sum(axis=-1)


def axle_speeds(t_s: np.ndarray, site: StripArray) -> np.ndarray:
    """Speed of each axle from a straight-line fit of row position over crossing time.

    Axles seen by fewer than two rows get NaN (the caller fills them from neighbours).
    """
    x = site.row_positions_m()
    ok = ~np.isnan(t_s)
    n_ok = ok.sum(axis=1)
    tm = np.where(ok, t_s, 0.0).sum(axis=1) / np.maximum(n_ok, 1)
    xm = (ok * x).sum(axis=1) / np.maximum(n_ok, 1)
    dt = np.where(ok, t_s - tm[:, None], 0.0)
    dx = np.where(ok, x - xm[:, None], 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        speed = (dt * dx).sum(axis=1) / (dt * dt).sum(axis=1)
    return np.where(n_ok >= 2, speed, np.nan)


def _fill_by_segment(values: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """NaN entries replaced by the median of their segment's other entries."""
    out = values.copy()
    for seg in np.unique(segment[np.isnan(values)]):
        same = (segment == seg) & ~np.isnan(values)
        if same.any():
            out[(segment == seg) & np.isnan(values)] = np.median(values[same])
    return out


def build_axles(pulses: np.ndarray, segment: np.ndarray, site: StripArray,
                settings: SignalSettings) -> Axles:
    """Axles of many lane segments from their pulses, whose areas are force-time (N·s)."""
    row_of = (pulses["channel"] // 2) % site.rows
    rows = [pair_halves(pulses[row_of == r], segment[row_of == r], settings)
            for r in range(site.rows)]
    index = match_rows(rows, site, settings)

    def per_row(field: str) -> np.ndarray:
        return np.stack([_take(getattr(rows[r], field), index[:, r])
                         for r in range(site.rows)], axis=1)

    t_s = per_row("t_s")
    seg = np.nanmax(per_row("segment"), axis=1).astype(np.int64)
    speed = _fill_by_segment(axle_speeds(t_s, site), seg)
    left, right, width = per_row("area_left"), per_row("area_right"), per_row("width_s")
    force_time = left + right                           # N·s per row
    row_load_n = force_time * speed[:, None] / site.strip_width_m
    with np.errstate(invalid="ignore", divide="ignore"):
        left_share = left / force_time
    return Axles(
        segment=seg, t_s=t_s, speed_mps=speed, load_kg=nanmean_rows(row_load_n) / G_MPS2,
        row_load_kg=row_load_n / G_MPS2, left_share=left_share, skew_s=per_row("skew_s"),
        contact_m=speed * nanmean_rows(width),
        saturated=np.nan_to_num(per_row("saturated"), nan=0.0).max(axis=1) > 0,
    )

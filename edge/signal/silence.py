"""When a lane's vehicle is finished: the silence after each pulse, from the lane's own speed.

A vehicle is finished once no axle of it can still arrive: its next axle would be at most
``split_gap_m`` behind the last one, so it would reach the first row within the time that
distance takes at the vehicle's speed. The speed is measured row to row, per pulse: a
wheel's pulse in one row and the same half's pulse in the neighbouring row (rows are
closer than the shortest axle spacing, so the nearest such pulse is the same wheel's, or,
when that one was missed, another axle's further away in time: a lower speed, a longer
silence). The silence allows for braking (:data:`BRAKING_MPS2`, down to
:data:`SLOWEST_SHARE` of the speed), and is never below ``close_after_s``.

A pulse whose wheel has not yet reached the next row is pending: its axle's later
crossings must come first, and its speed is only bounded from its width.

Pure functions over the pulses of all lanes at once (sorted by lane, then time).
"""

import numpy as np

from drivers.strips import StripArray
from edge.signal.axles import SPAN_S
from edge.signal.settings import SignalSettings

BRAKING_MPS2 = 3.0
"""Deceleration a vehicle is allowed between two of its axles (hard braking of a loaded
truck) when the silence that finishes it is sized."""
SLOWEST_SHARE = 0.5
"""... down to this share of the speed measured at its last axle."""


def travel_s(distance_m: float, speed_mps: np.ndarray) -> np.ndarray:
    """Time to cover ``distance_m`` from ``speed_mps``, braking at :data:`BRAKING_MPS2`
    down to :data:`SLOWEST_SHARE` of the speed, then steady.

    Examples
    --------
    >>> [round(float(t), 3) for t in travel_s(10.0, np.array([30.0, 20.0, 3.0]))]
    [0.339, 0.52, 6.417]
    """
    v = np.asarray(speed_mps, float)
    a = BRAKING_MPS2
    v_end = SLOWEST_SHARE * v
    braking_m = (v * v - v_end * v_end) / (2 * a)
    with np.errstate(invalid="ignore"):
        within = (v - np.sqrt(np.maximum(v * v - 2 * a * distance_m, 0.0))) / a
    beyond = (v - v_end) / a + (distance_m - braking_m) / v_end
    return np.where(distance_m <= braking_m, within, beyond)


def pulse_speeds(pulses: np.ndarray, site: StripArray, settings: SignalSettings
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Row-to-row speed of each pulse (m/s, NaN where no neighbouring row has a partner),
    and whether it is pending (a later row has not seen its wheel yet).

    A pulse's partner is the same half's latest pulse in the row before it, or else its
    first pulse in the row after it, within the time the slowest allowed speed needs
    for one row spacing.
    """
    ch = pulses["channel"].astype(np.int64)
    t = pulses["t_c"]
    row = (ch // 2) % site.rows
    n = t.size
    if n == 0:
        return np.empty(0), np.empty(0, bool)
    key = ch * SPAN_S + t
    order = np.argsort(key, kind="stable")
    skey, sch, st = key[order], ch[order], t[order]
    max_dt = site.row_spacing_m / settings.min_speed_mps
    # channel - 2 is the same lane and half in the row before; + 2 in the row after
    j = np.searchsorted(skey, (ch - 2) * SPAN_S + t, side="left") - 1
    jc = np.maximum(j, 0)
    before = t - st[jc]
    ok_before = (row >= 1) & (j >= 0) & (sch[jc] == ch - 2) & (before <= max_dt)
    k = np.searchsorted(skey, (ch + 2) * SPAN_S + t, side="right")
    kc = np.minimum(k, n - 1)
    after = st[kc] - t
    ok_after = (row < site.rows - 1) & (k < n) & (sch[kc] == ch + 2) & (after <= max_dt)
    dt = np.where(ok_before, before, np.where(ok_after, after, np.nan))
    with np.errstate(divide="ignore", invalid="ignore"):
        speed = np.where(dt > 0, site.row_spacing_m / dt, np.nan)
    return speed, (row < site.rows - 1) & ~ok_after


def deadlines_s(pulses: np.ndarray, site: StripArray, settings: SignalSettings) -> np.ndarray:
    """Per pulse, the stream time (s) by which the next axle of its vehicle would have
    reached the first row, were this pulse's axle the vehicle's last.

    Where a pulse has no partner row, its speed is bounded from below by its half-peak
    width (at most the strip width over the speed); a pending pulse first waits for its
    wheel to reach the last row at that speed.
    """
    s = settings
    speed, pending = pulse_speeds(pulses, site, s)
    width = np.maximum(pulses["t_off"] - pulses["t_on"], 1e-6)
    bound = site.strip_width_m / width
    v = np.clip(np.where(np.isnan(speed), bound, speed), s.min_speed_mps, s.max_speed_mps)
    x = site.row_positions_m()
    row = (pulses["channel"].astype(np.int64) // 2) % site.rows
    t = pulses["t_c"]
    front = t - x[row] / v                      # the axle over the first row
    to_last_row = np.where(pending, (x[-1] - x[row]) / v, 0.0)
    return np.maximum.reduce([t + s.close_after_s, front + travel_s(s.split_gap_m, v),
                              t + to_last_row + s.close_after_s])

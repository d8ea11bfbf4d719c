"""Which lane a pulse belongs to, when a wheel runs over the boundary between lanes.

A vehicle off its lane puts one wheel on the neighbouring lane's nearest half-strip.
Judged by channel alone, that lane would see a lone half-axle (a ghost) and this lane
would lose the wheel's load. A boundary pulse is therefore moved to the neighbour when
its own lane shows no partner on the other half at that moment and the neighbour lane
does on its far half: the other wheel of the same axle. When both lanes show a lone
wheel on the two halves beside the boundary at the same moment, the vehicle straddles
the boundary, and both wheels are counted in the lower-numbered lane.
"""

import numpy as np

from drivers.strips import StripArray
from edge.signal.axles import SPAN_S


def _partner_near(key: np.ndarray, channel: np.ndarray, t: np.ndarray, window_s: float
                  ) -> np.ndarray:
    """Does ``channel`` have a pulse within ``window_s`` of ``t``? (element-wise)

    ``key`` is the sorted ``channel * SPAN_S + t_c`` of all pulses: one searchsorted finds,
    for every query, its neighbours on that channel.
    """
    q = channel * SPAN_S + t
    j = np.searchsorted(key, q)
    before = np.abs(key[np.maximum(j - 1, 0)] - q) if key.size else np.full(q.size, np.inf)
    after = np.abs(key[np.minimum(j, key.size - 1)] - q) if key.size else before
    return np.minimum(before, after) <= window_s


def rehome_boundary_pulses(pulses: np.ndarray, site: StripArray, window_s: float
                           ) -> np.ndarray:
    """The pulses with boundary wheels moved to the lane whose axle they belong to.

    A moved pulse takes the channel of the neighbour lane's nearest half in the same row,
    so downstream stages see it as that lane's wheel. ``pulses["area"]`` must already be
    in physical units: channels no longer tell the scale after the move.
    """
    out = pulses.copy()
    if pulses.size == 0 or site.lanes == 1:
        return out
    ch = pulses["channel"].astype(np.int64)
    t = pulses["t_c"]
    key = np.sort(ch * SPAN_S + t)
    lane, half = ch // site.channels_per_lane, ch % 2
    step = np.where(half == 1, 1, -1)                 # towards the neighbour lane
    inside = (lane + step >= 0) & (lane + step < site.lanes)
    shift = step * site.channels_per_lane             # same row and half, next lane
    own_other = ch ^ 1
    far_side = ch + shift
    near_side = (ch ^ 1) + shift
    lone = ~_partner_near(key, own_other, t, window_s)
    far = _partner_near(key, np.where(inside, far_side, -1), t, window_s)
    # Both wheels lone on either side of the boundary: the vehicle straddles it and is
    # counted in the lower-numbered lane, once.
    straddle = (half == 0) & _partner_near(key, np.where(inside, near_side, -1), t, window_s)
    move = inside & lone & (far | straddle)
    out["channel"][move] = near_side[move]
    return out

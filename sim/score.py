"""Score measured vehicles against simulated truth: the accuracy figures of the loop.

Measured vehicles are taken by duck typing (``lane``, ``t_s``, ``n_axles``, ``gvw_kg``,
``speed_mps``, ``spacings_m``, ``axle_code``, ``flags``) so that the simulator stays
independent of the roadside code it checks.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from drivers.strips import StripArray
from sim.traffic import VehicleTruth

MATCH_WINDOW_S = 0.15


@dataclass(frozen=True)
class Score:
    """Accuracy of one run. Errors are measured minus true, in % of true unless in m."""

    vehicles: int
    matched: int
    missed: int
    extra: int
    wrong_axle_count: int
    gvw_error_pct: np.ndarray       # per matched vehicle with the right axle count
    gvw_error_clean_pct: np.ndarray  # ... of those without quality flags
    speed_error_pct: np.ndarray
    spacing_error_m: np.ndarray     # every spacing of those vehicles
    code_right: int

    @property
    def wrong_axle_count_pct(self) -> float:
        """Vehicles missed or counted with a wrong number of axles, % of all."""
        return 100.0 * (self.wrong_axle_count + self.missed) / max(self.vehicles, 1)

    def summary(self) -> dict[str, float]:
        """The figures as plain numbers (benchmark keys)."""
        def stat(a: np.ndarray, f: Any) -> float:
            return float(f(a)) if a.size else float("nan")
        return {
            "vehicles": self.vehicles, "missed": self.missed, "extra": self.extra,
            "wrong_axle_count_pct": self.wrong_axle_count_pct,
            "gvw_error_mean_pct": stat(self.gvw_error_pct, np.mean),
            "gvw_error_std_pct": stat(self.gvw_error_pct, np.std),
            "gvw_error_max_abs_pct": stat(np.abs(self.gvw_error_pct), np.max),
            "gvw_error_clean_mean_pct": stat(self.gvw_error_clean_pct, np.mean),
            "gvw_error_clean_std_pct": stat(self.gvw_error_clean_pct, np.std),
            "speed_error_pct": stat(np.abs(self.speed_error_pct), np.mean),
            "speed_error_max_abs_pct": stat(np.abs(self.speed_error_pct), np.max),
            "spacing_error_m": stat(np.abs(self.spacing_error_m), np.mean),
            "spacing_error_max_m": stat(np.abs(self.spacing_error_m), np.max),
            "axle_code_right_pct": 100.0 * self.code_right / max(self.matched, 1),
        }


def match(truth: Sequence[VehicleTruth], measured: Sequence[Any]) -> list[tuple[int, int]]:
    """Pairs (truth index, measured index), nearest in time, each used once.

    A measured vehicle may sit one lane lower than the truth: a vehicle straddling a
    lane boundary is counted in the lower lane.
    """
    pairs, used = [], set()
    for i, v in enumerate(truth):
        best, best_dt = None, MATCH_WINDOW_S
        for j, m in enumerate(measured):
            if j in used or m.lane not in (v.lane, v.lane - 1):
                continue
            dt = abs(m.t_s - v.t0_s)
            if dt < best_dt:
                best, best_dt = j, dt
        if best is not None:
            used.add(best)
            pairs.append((i, best))
    return pairs


def same_code(true_code: str, measured_code: str, wide_base_digit: str = "9") -> bool:
    """Codes agree; a wide-base tridem may read as a dual one (same limit, no deduction)."""
    return measured_code in (true_code, true_code.replace(wide_base_digit, "7"))


def score(site: StripArray, truth: Sequence[VehicleTruth], measured: Sequence[Any]) -> Score:
    """Compare measured vehicles with the truth that produced them."""
    pairs = match(truth, measured)
    gvw, clean, speed, spacing = [], [], [], []
    wrong = right_code = 0
    for i, j in pairs:
        v, m = truth[i], measured[j]
        if m.n_axles != v.n_axles:
            wrong += 1
            continue
        err = 100.0 * (m.gvw_kg / v.gvw_kg - 1.0)
        gvw.append(err)
        if not m.flags:
            clean.append(err)
        speed.append(100.0 * (m.speed_mps / v.mean_speed_mps(site) - 1.0))
        spacing.extend(np.asarray(m.spacings_m) - v.spacings_m)
        right_code += same_code(v.code, m.axle_code)
    return Score(
        vehicles=len(truth), matched=len(pairs), missed=len(truth) - len(pairs),
        extra=len(measured) - len(pairs), wrong_axle_count=wrong,
        gvw_error_pct=np.array(gvw), gvw_error_clean_pct=np.array(clean),
        speed_error_pct=np.array(speed), spacing_error_m=np.array(spacing),
        code_right=right_code,
    )

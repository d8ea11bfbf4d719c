"""The grade of one vehicle: what was measured, the limit, the tolerance, the excess, the
band, the action and the fine, with every rule that produced them."""

import math
from dataclasses import dataclass, fields, is_dataclass

from overload.applied import AppliedRule


def _plain(value):
    """JSON-ready: integral floats as int, NaN as None, dataclasses and tuples unpacked."""
    if isinstance(value, AppliedRule):
        return value.to_dict()
    if is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return int(value) if value.is_integer() else value
    return value


@dataclass(frozen=True)
class DimensionCheck:
    """One dimension against its limit (over only when strictly greater)."""

    quantity: str
    measured_m: float
    limit_m: float
    over: bool
    rule_id: str


@dataclass(frozen=True)
class Grade:
    """The grade of one vehicle under one benchmark.

    Attributes
    ----------
    axle_code, kind : str
    measured_kg : float
        Gross mass as measured.
    limit_kg : float
        Total-mass limit in force.
    tolerance_policy : str
    accuracy_class : str or None
    tolerance_kg : float
        Part of the measured mass not graded.
    excess_kg : float
        Graded excess: ``max(measured − tolerance − limit, 0)``.
    excess_pct : float
        Graded excess in percent of the limit.
    over : bool
        Over the mass limit (or, when dimensions were given, any dimension limit).
    band : str or None
        Id of the benchmark band the excess falls in.
    action : str
        ``none``, ``education`` (批评教育, no penalty), ``warning`` (警告, a penalty) or
        ``fine``.
    fine_yuan : float or None
        The fine when it is one number; None for no fine or a range.
    fine_min_yuan, fine_max_yuan : float or None
        The fine's range (equal when it is one number; None without a fine).
    rounding : str
        How partial tonnes were counted: floor, ceil or pro_rata.
    benchmark : str
    rules : tuple of AppliedRule
    inferred : bool
        The code is not in the vehicle map; the default for its axle count was taken.
    assumptions : tuple of str
    dimensions : tuple of DimensionCheck
    rules_digest : str
        SHA-256 of the rule tables in force.
    """

    axle_code: str
    kind: str
    measured_kg: float
    limit_kg: float
    tolerance_policy: str
    accuracy_class: str | None
    tolerance_kg: float
    excess_kg: float
    excess_pct: float
    over: bool
    band: str | None
    action: str
    fine_yuan: float | None
    fine_min_yuan: float | None
    fine_max_yuan: float | None
    rounding: str
    benchmark: str
    rules: tuple[AppliedRule, ...]
    inferred: bool
    assumptions: tuple[str, ...]
    rules_digest: str
    dimensions: tuple[DimensionCheck, ...] = ()

    @property
    def graded_excess_kg(self) -> float:
        """The excess that was graded (after tolerance); the same as ``excess_kg``."""
        return self.excess_kg

    def to_dict(self) -> dict:
        """Plain data for JSON; ``graded_excess_kg`` is included beside ``excess_kg``."""
        data = _plain(self)
        data["graded_excess_kg"] = data["excess_kg"]
        return data

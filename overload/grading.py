"""Grade total mass against a discretion benchmark (裁量基准), many vehicles at once.

:func:`grade_many` looks each distinct code up once, then computes tolerance, excess, bands,
rounding and fines as array arithmetic. :func:`grade` is the one-vehicle wrapper over the
same path, adding the facts only one vehicle has (tyres, licence mass, dimensions), so both
give identical results.

The benchmark's bands are generic: edges in kg or as a fraction of the limit; a rate per
``per_kg`` applied to the whole excess or to the part inside the band; a rounding of
partial units (floor, ceil, pro rata); a cap. A new province is a new YAML file.
"""

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from overload.applied import AppliedRule, fmt_num
from overload.dimensions import check_dimensions, dimension_band, dimension_rules
from overload.errors import RuleError
from overload.limits import Limit, vehicle_limit
from overload.results import Grade
from overload.rulebook import RuleBook
from overload.tables import Bound, CapYuan, MassBand, TolerancePolicy, ZeroFine
from overload.tolerance import PERCENT, class_key, tolerance_kg

ROUNDINGS = ("floor", "ceil", "pro_rata")
# Units are rounded after this many decimals first, so 3.0000000000004 t is 3 t, not 4.
_GUARD_DECIMALS = 9
_FEN_DECIMALS = 2  # yuan to the fen


@dataclass(frozen=True, eq=False)
class GradeTable:
    """Grades of many vehicles as arrays (shape (n,) each); ``row(i)`` gives one Grade.

    ``band`` is ``""`` and ``fine_yuan`` NaN where there is none. ``action`` is ``none``,
    ``education`` (批评教育, no penalty), ``warning`` (警告, a penalty) or ``fine``: the band's
    action, or the benchmark's ``zero_fine`` row where a fine band's fine rounds to 0.
    """

    axle_code: np.ndarray
    measured_kg: np.ndarray
    limit_kg: np.ndarray
    tolerance_kg: np.ndarray
    excess_kg: np.ndarray
    excess_pct: np.ndarray
    over: np.ndarray
    band: np.ndarray
    action: np.ndarray
    fine_yuan: np.ndarray
    inferred: np.ndarray
    benchmark: str
    tolerance_policy: str
    accuracy_class: str | None
    rounding: str
    rules_digest: str
    _limits: tuple[Limit, ...]
    _inverse: np.ndarray
    _bands: tuple[MassBand, ...]
    _band_parts_kg: np.ndarray
    _band_units: np.ndarray
    _band_fines_yuan: np.ndarray
    _cap: CapYuan
    _cap_binds: np.ndarray
    _zero_fine: np.ndarray
    _zero_fine_rule: ZeroFine
    _policy: TolerancePolicy

    def __len__(self) -> int:
        return len(self.measured_kg)

    def row(self, i: int) -> Grade:
        """The grade of vehicle ``i`` as a :class:`Grade`."""
        limit = self._limits[self._inverse[i]]
        fine = float(self.fine_yuan[i])
        has_fine = not np.isnan(fine)
        return Grade(
            axle_code=str(self.axle_code[i]),
            kind=limit.kind,
            measured_kg=float(self.measured_kg[i]),
            limit_kg=float(self.limit_kg[i]),
            tolerance_policy=self.tolerance_policy,
            accuracy_class=self.accuracy_class,
            tolerance_kg=float(self.tolerance_kg[i]),
            excess_kg=float(self.excess_kg[i]),
            excess_pct=float(self.excess_pct[i]),
            over=bool(self.over[i]),
            band=str(self.band[i]) or None,
            action=str(self.action[i]),
            fine_yuan=fine if has_fine else None,
            fine_min_yuan=fine if has_fine else None,
            fine_max_yuan=fine if has_fine else None,
            rounding=self.rounding,
            benchmark=self.benchmark,
            rules=(*limit.rules, *self._row_rules(i)),
            inferred=bool(self.inferred[i]),
            assumptions=limit.assumptions,
            rules_digest=self.rules_digest,
        )

    def _row_rules(self, i: int) -> list[AppliedRule]:
        """The tolerance policy, the band the excess lies in, each fined band, the cap."""
        cited = [AppliedRule.of(self._policy, (
            f"tolerance {fmt_num(round(float(self.tolerance_kg[i]), _FEN_DECIMALS))} kg "
            f"({self._policy.kind})"))]
        for b, band in enumerate(self._bands):
            details = []
            if self.band[i] == band.id:
                details.append(
                    f"excess {fmt_num(round(float(self.excess_kg[i]), _FEN_DECIMALS))} kg "
                    f"({self.excess_pct[i]:.1f} % of the limit) lies in this band")
            if band.action == "fine" and self._band_parts_kg[b, i] > 0:
                details.append(
                    f"{fmt_num(round(float(self._band_parts_kg[b, i]), _FEN_DECIMALS))} kg → "
                    f"{fmt_num(float(self._band_units[b, i]))} × {fmt_num(band.per_kg or 0)} kg "
                    f"({self.rounding}) × {fmt_num(band.rate_yuan or 0)} yuan = "
                    f"{fmt_num(float(self._band_fines_yuan[b, i]))} yuan")
            if details:
                cited.append(AppliedRule.of(band, "; ".join(details)))
        if self._zero_fine[i]:
            rule = self._zero_fine_rule
            cited.append(AppliedRule.of(rule, f"the fine rounds to 0 yuan: {rule.action}"))
        if self._cap_binds[i]:
            capped = f"fine capped at {fmt_num(self._cap.cap_yuan)} yuan"
            cited.append(AppliedRule.of(self._cap, capped))
        return cited


def _edge(bound: Bound | None, limit_kg: np.ndarray) -> np.ndarray:
    """A band edge in kg for every vehicle."""
    if bound is None:
        return np.full_like(limit_kg, np.inf)
    if bound.kg is not None:
        return np.full_like(limit_kg, bound.kg)
    return limit_kg * bound.fraction_of_limit


def _round_units(units: np.ndarray, rounding: str) -> np.ndarray:
    units = np.round(units, _GUARD_DECIMALS)
    if rounding == "floor":
        return np.floor(units)
    if rounding == "ceil":
        return np.ceil(units)
    return units


def _mass_fines(
    bands: Sequence[MassBand], excess: np.ndarray, over: np.ndarray, limit: np.ndarray,
    rounding: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per band (shape (B, n)): is the excess inside, the kg fined, the units, the yuan."""
    lo = np.stack([_edge(b.above, limit) for b in bands])
    hi = np.stack([_edge(b.up_to, limit) for b in bands])
    inside = over & (excess > lo) & (excess <= hi)
    band_part = np.array([b.applies_to == "band_part" for b in bands])[:, None]
    fined = np.array([b.action == "fine" for b in bands])[:, None]
    parts = np.where(band_part, np.clip(excess - lo, 0.0, hi - lo), np.where(inside, excess, 0.0))
    parts = np.where(fined, parts, 0.0)
    per_kg = np.array([b.per_kg or 1.0 for b in bands])[:, None]
    rate = np.array([b.rate_yuan or 0.0 for b in bands])[:, None]
    units = _round_units(parts / per_kg, rounding)
    return inside, parts, units, rate * units


def _codes_array(codes: Sequence[str] | np.ndarray) -> np.ndarray:
    return np.char.strip(np.asarray(codes).astype(str))


def _gross_array(gross_kg, n: int) -> np.ndarray:
    try:
        gross = np.asarray(gross_kg, dtype=float)
    except (TypeError, ValueError):
        raise RuleError("gross masses must be numbers of kg") from None
    if gross.shape != (n,):
        raise RuleError(f"gross_kg has shape {gross.shape} but there are {n} axle codes")
    bad = np.flatnonzero(~(np.isfinite(gross) & (gross >= 0)))
    if bad.size:
        raise RuleError(
            f"gross mass of vehicle {bad[0]} must be a finite number of kg, 0 or more "
            f"(got {gross[bad[0]]!r})"
        )
    return gross


def _pick_rounding(rounding: str | None, default: str) -> str:
    if rounding is None:
        return default
    if rounding not in ROUNDINGS:
        raise RuleError(f"rounding must be one of {', '.join(ROUNDINGS)} (got {rounding!r})")
    return rounding


def _grade_arrays(
    limits: Sequence[Limit], inverse: np.ndarray, codes: np.ndarray, gross: np.ndarray,
    rules: RuleBook, *, benchmark: str, tolerance: str, accuracy_class, rounding: str | None,
) -> GradeTable:
    """The shared arithmetic of :func:`grade_many` and :func:`grade`."""
    bench = rules.benchmark(benchmark)
    policy = rules.tolerance_policy(tolerance)
    how = _pick_rounding(rounding, bench.mass.rounding)
    limit = np.array([lim.limit_kg for lim in limits], dtype=float)[inverse]
    tol = tolerance_kg(policy, accuracy_class, gross, limit)
    over = gross - tol > limit
    excess = np.where(over, gross - tol - limit, 0.0)
    bands = tuple(bench.mass.bands)
    inside, parts, units, fines = _mass_fines(bands, excess, over, limit, how)
    raw = fines.sum(axis=0)
    cap = bench.mass.cap
    fine = np.round(np.minimum(raw, cap.cap_yuan), _FEN_DECIMALS)
    where = np.argmax(inside, axis=0)
    band_action = np.array([b.action for b in bands])[where]
    zero_fine = over & (band_action == "fine") & ~(fine > 0)
    action = np.where(~over, "none", np.where(zero_fine, bench.mass.zero_fine.action,
                                              band_action))
    return GradeTable(
        axle_code=codes,
        measured_kg=gross,
        limit_kg=limit,
        tolerance_kg=tol,
        excess_kg=excess,
        excess_pct=PERCENT * excess / limit,
        over=over,
        band=np.where(over, np.array([b.id for b in bands])[where], ""),
        action=action,
        fine_yuan=np.where(action == "fine", fine, np.nan),
        inferred=np.array([lim.inferred for lim in limits], dtype=bool)[inverse],
        benchmark=bench.id,
        tolerance_policy=policy.id,
        accuracy_class=class_key(accuracy_class) if accuracy_class is not None else None,
        rounding=how,
        rules_digest=rules.digest,
        _limits=tuple(limits),
        _inverse=inverse,
        _bands=bands,
        _band_parts_kg=parts,
        _band_units=units,
        _band_fines_yuan=fines,
        _cap=cap,
        _cap_binds=raw > cap.cap_yuan,
        _zero_fine=zero_fine,
        _zero_fine_rule=bench.mass.zero_fine,
        _policy=policy,
    )


def grade_many(
    codes: Sequence[str] | np.ndarray,
    gross_kg: Sequence[float] | np.ndarray,
    rules: RuleBook,
    *,
    benchmark: str = "national",
    tolerance: str = "none",
    accuracy_class: float | str | None = None,
    rounding: str | None = None,
    tyres: Sequence[Sequence[str] | None] | None = None,
) -> GradeTable:
    """Grade many vehicles at once.

    Parameters
    ----------
    codes : sequence of str, shape (n,)
        Axle codes; each distinct code is looked up once.
    gross_kg : array_like of float, shape (n,)
        Measured gross masses, kg.
    rules : RuleBook
    benchmark : str
        A benchmark id (file stem under ``benchmarks/``).
    tolerance : str
        A tolerance policy id of ``tolerance.yaml``.
    accuracy_class : float or str, optional
        Device accuracy class, for ``mpe`` policies.
    rounding : str, optional
        floor | ceil | pro_rata; default: the benchmark's.
    tyres : sequence of (sequence of str or None), shape (n,), optional
        Measured tyres per axle of each vehicle (``"single"``, ``"wide_base"``,
        ``"dual"``), or None where unknown. Wide-base tyres are exempt from the
        single-tyre deduction that their digit alone would bring. Each distinct pair of
        code and tyres is looked up once.

    Returns
    -------
    GradeTable

    Examples
    --------
    >>> from overload import load_rules
    >>> table = grade_many(["157", "12", "157"], [55400, 18500, 49000], load_rules())
    >>> table.action.tolist(), table.fine_yuan.tolist()[0]
    (['fine', 'warning', 'none'], 3000.0)
    """
    code_arr = _codes_array(codes)
    if code_arr.ndim != 1:
        raise RuleError(f"codes must be one-dimensional (got shape {code_arr.shape})")
    gross = _gross_array(gross_kg, len(code_arr))
    if tyres is None:
        unique, inverse = np.unique(code_arr, return_inverse=True)
        limits = [vehicle_limit(str(code), rules) for code in unique]
    else:
        if len(tyres) != len(code_arr):
            raise RuleError(f"tyres are given for {len(tyres)} vehicles but there are "
                            f"{len(code_arr)} axle codes")
        keys = [(str(c), None if t is None else tuple(t))
                for c, t in zip(code_arr, tyres, strict=True)]
        index: dict[tuple, int] = {}
        inverse = np.array([index.setdefault(k, len(index)) for k in keys], dtype=np.intp)
        limits = [vehicle_limit(code, rules, tyres=t) for code, t in index]
    return _grade_arrays(limits, inverse.reshape(-1), code_arr, gross, rules,
                         benchmark=benchmark, tolerance=tolerance,
                         accuracy_class=accuracy_class, rounding=rounding)


def _check_gross(gross_kg) -> float:
    try:
        value = float(gross_kg)
    except (TypeError, ValueError):
        raise RuleError(f"gross mass must be a number of kg (got {gross_kg!r})") from None
    if not (np.isfinite(value) and value >= 0):
        raise RuleError(f"gross mass must be a finite number of kg, 0 or more (got {gross_kg!r})")
    return value


def _add_dimensions(
    result: Grade, rules: RuleBook, benchmark: str, dims: dict[str, float | None]
) -> Grade:
    """Add the dimension checks and, when over, the dimension fine range."""
    checks = check_dimensions(rules, **dims)
    bench = rules.benchmark(benchmark)
    band = dimension_band(checks, bench, rules)
    if band is None:
        return replace(result, dimensions=checks)
    mass_fine = result.fine_yuan or 0.0
    cap = bench.total_cap.cap_yuan
    low = min(mass_fine + band.fine_min_yuan, cap)
    high = min(mass_fine + band.fine_max_yuan, cap)
    cited = dimension_rules(checks, band, rules, bench)
    if mass_fine + band.fine_max_yuan > cap:
        capped = f"all fines together capped at {fmt_num(cap)} yuan"
        cited.append(AppliedRule.of(bench.total_cap, capped))
    return replace(
        result, dimensions=checks, over=True, action="fine", fine_min_yuan=low,
        fine_max_yuan=high, fine_yuan=low if low == high else None,
        rules=(*result.rules, *cited),
    )


def grade(
    code: str,
    gross_kg: float,
    rules: RuleBook,
    *,
    benchmark: str = "national",
    tolerance: str = "none",
    accuracy_class: float | str | None = None,
    rounding: str | None = None,
    height_m: float | None = None,
    width_m: float | None = None,
    length_m: float | None = None,
    licence_mass_kg: float | None = None,
    air_suspension: bool = False,
    tyres: Sequence[str] | None = None,
    group_spacings_m: Sequence[float | None] | None = None,
    kind: str | None = None,
) -> Grade:
    """Grade one vehicle: limit, tolerance, excess, band, action, fine, and their rules.

    Parameters are those of :func:`grade_many` for one vehicle, plus the facts of
    :func:`~overload.limits.vehicle_limit` (tyres, licence mass, air suspension, group
    spacings, kind from the register) and the measured dimensions in metres.

    Returns
    -------
    Grade

    Examples
    --------
    >>> from overload import load_rules
    >>> rules = load_rules()
    >>> g = grade("157", 55400, rules)
    >>> g.limit_kg, g.excess_kg, g.action, g.fine_yuan
    (49000.0, 6400.0, 'fine', 3000.0)
    >>> grade("157", 55400, rules, rounding="pro_rata").fine_yuan
    3200.0
    >>> grade("12", 25000, rules, benchmark="zhejiang").fine_yuan
    900.0
    """
    gross = _check_gross(gross_kg)
    limit = vehicle_limit(code, rules, tyres=tyres, licence_mass_kg=licence_mass_kg,
                          air_suspension=air_suspension, group_spacings_m=group_spacings_m,
                          kind=kind)
    table = _grade_arrays([limit], np.zeros(1, dtype=int), np.array([limit.code]),
                          np.array([gross]), rules, benchmark=benchmark, tolerance=tolerance,
                          accuracy_class=accuracy_class, rounding=rounding)
    result = table.row(0)
    dims = {"height_m": height_m, "width_m": width_m, "length_m": length_m}
    if any(v is not None for v in dims.values()):
        result = _add_dimensions(result, rules, benchmark, dims)
    return result

"""GB 1589-2016 axle and axle-group limits: recorded as evidence, never graded.

The same limits give the "sum of axle limits" cap on the total limit (limits.py). When a
group's spacing is unknown, the band most favourable to the party is taken and the choice
is recorded.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

from overload.codes import (
    AxleCode,
    AxleGroup,
    check_tyres,
    drive_axles,
    parse_axle_code,
    vehicle_for,
)
from overload.errors import RuleError
from overload.rulebook import RuleBook
from overload.tables import Rule, SpacingBand


@dataclass(frozen=True)
class GroupLimit:
    """The limit of one axle group and how it was found."""

    group: AxleGroup
    limit_kg: float
    rule: Rule
    spacing_m: float | None
    assumption: str | None


@dataclass(frozen=True)
class AxleCheck:
    """One group's measured load against its GB 1589 limit.

    Attributes
    ----------
    group : int
        Group number, 1 at the front.
    digit : str
    axles : int
    load_kg : float
        Sum of the group's axle loads.
    limit_kg : float
    over : bool
        ``load_kg > limit_kg``; recorded, never graded.
    rule_id : str
    source : str
        The rule's source, cited in one line.
    spacing_m : float or None
        The spacing that picked the band (None for single axles or when unknown).
    assumption : str or None
        What was assumed (unknown spacing → most favourable band).
    """

    group: int
    digit: str
    axles: int
    load_kg: float
    limit_kg: float
    over: bool
    rule_id: str
    source: str
    spacing_m: float | None
    assumption: str | None

    def to_dict(self) -> dict:
        """Plain data for JSON."""
        return dict(self.__dict__)


def _single_limit(tyre: str, drive: bool, rules: RuleBook) -> Rule:
    for row in rules.axle_limits.single:
        if row.tyres == tyre and (row.drive is None or row.drive == drive):
            return row
    raise RuleError(
        f"axle_limits.yaml: no single-axle row for tyres {tyre!r}, drive {drive} "
        "(add one under 'single')"
    )


def _band_limit(band: SpacingBand, air: bool) -> float:
    if air and band.air_suspension_drive_limit_kg is not None:
        return band.air_suspension_drive_limit_kg
    return band.limit_kg


def group_limit(
    group: AxleGroup,
    tyres: Sequence[str],
    driven: Sequence[bool],
    spacing_m: float | None,
    rules: RuleBook,
    *,
    air_suspension: bool = False,
) -> GroupLimit:
    """The GB 1589 limit of one group.

    ``tyres`` and ``driven`` are per axle of the group. An air-suspended drive group with
    dual tyres on every axle takes the air-suspension value where the band has one.
    """
    if group.axles == 1:
        row = _single_limit(tyres[0], driven[0], rules)
        return GroupLimit(group, row.limit_kg, row, None, None)
    bands = rules.axle_limits.tandem if group.axles == 2 else rules.axle_limits.tridem
    air = air_suspension and any(driven) and all(t == "dual" for t in tyres)
    if spacing_m is None:
        best = max(bands, key=lambda b: _band_limit(b, air))
        note = (
            f"group {group.number} (digit {group.digit}): spacing unknown, took band "
            f"{best.spacing_m} m ({_band_limit(best, air):g} kg), the most favourable to the party"
        )
        return GroupLimit(group, _band_limit(best, air), best, None, note)
    for band in bands:
        if band.spacing_m.contains(spacing_m):
            return GroupLimit(group, _band_limit(band, air), band, spacing_m, None)
    raise RuleError(f"axle_limits.yaml: no band holds spacing {spacing_m:g} m")


def group_spacing(spacings: Sequence[float], rules: RuleBook) -> float:
    """One spacing for a group from its adjacent spacings, by the table's uneven rule."""
    return max(spacings) if rules.axle_limits.uneven_spacing == "max" else min(spacings)


def group_limits(
    parsed: AxleCode,
    tyres: Sequence[str],
    driven: frozenset[int],
    group_spacings_m: Sequence[float | None] | None,
    rules: RuleBook,
    *,
    air_suspension: bool = False,
) -> list[GroupLimit]:
    """The limit of every group of a vehicle; ``group_spacings_m`` has one entry per group."""
    if group_spacings_m is not None and len(group_spacings_m) != len(parsed.groups):
        raise RuleError(
            f"group_spacings_m lists {len(group_spacings_m)} groups but code "
            f"{parsed.code!r} has {len(parsed.groups)}"
        )
    out = []
    for group in parsed.groups:
        axes = range(group.first_axle, group.first_axle + group.axles)
        spacing = group_spacings_m[group.number - 1] if group_spacings_m is not None else None
        out.append(
            group_limit(group, [tyres[i] for i in axes], [i in driven for i in axes], spacing,
                        rules, air_suspension=air_suspension)
        )
    return out


def _check_loads(axle_loads_kg: Sequence[float], spacings_m, parsed: AxleCode) -> None:
    if len(axle_loads_kg) != parsed.axles:
        raise RuleError(
            f"axle_loads_kg lists {len(axle_loads_kg)} axles but code {parsed.code!r} has "
            f"{parsed.axles}"
        )
    for i, load in enumerate(axle_loads_kg, start=1):
        if not (isinstance(load, int | float) and math.isfinite(load) and load >= 0):
            raise RuleError(f"load of axle {i} must be a number of kg, 0 or more (got {load!r})")
    if spacings_m is not None and len(spacings_m) != parsed.axles - 1:
        raise RuleError(
            f"spacings_m lists {len(spacings_m)} spacings but code {parsed.code!r} has "
            f"{parsed.axles} axles ({parsed.axles - 1} spacings)"
        )


def check_axle_loads(
    code: str,
    axle_loads_kg: Sequence[float],
    spacings_m: Sequence[float] | None,
    rules: RuleBook,
    *,
    air_suspension: bool = False,
) -> list[AxleCheck]:
    """Check each axle group's load against GB 1589-2016 Table 3 (recorded, not graded).

    Parameters
    ----------
    code : str
        Axle code, e.g. ``"157"``.
    axle_loads_kg : sequence of float, shape (n,)
        Load of each axle, front to back, kg.
    spacings_m : sequence of float, shape (n - 1,), or None
        Spacing between consecutive axles, metres; None → most favourable band per group.
    rules : RuleBook

    Returns
    -------
    list of AxleCheck, one per group

    Examples
    --------
    >>> from overload import load_rules
    >>> rules = load_rules()
    >>> checks = check_axle_loads("157", [6500, 9000, 9200, 8000, 8000, 8000],
    ...                           [3.4, 1.35, 7.0, 1.31, 1.31], rules)
    >>> [(c.load_kg, c.limit_kg, c.over) for c in checks]
    [(6500.0, 7000.0, False), (18200.0, 18000.0, True), (24000.0, 24000.0, False)]
    """
    parsed = parse_axle_code(code, rules)
    _check_loads(axle_loads_kg, spacings_m, parsed)
    tyres = check_tyres(parsed, None)
    driven = drive_axles(parsed, vehicle_for(parsed, rules), tyres)
    per_group = None
    if spacings_m is not None:
        per_group = [
            group_spacing(spacings_m[g.first_axle : g.first_axle + g.axles - 1], rules)
            if g.axles > 1 else None
            for g in parsed.groups
        ]
    limits = group_limits(parsed, tyres, driven, per_group, rules, air_suspension=air_suspension)
    checks = []
    for lim in limits:
        g = lim.group
        load = float(sum(axle_loads_kg[g.first_axle : g.first_axle + g.axles]))
        checks.append(
            AxleCheck(g.number, g.digit, g.axles, load, lim.limit_kg, load > lim.limit_kg,
                      lim.rule.id, lim.rule.source.cite(), lim.spacing_m, lim.assumption)
        )
    return checks

"""The total-mass limit of one vehicle (超限认定), and every rule that shaped it.

Order of application, each step cited: the base limit for the vehicle kind and axle count;
the air-suspension raise; one deduction per non-drive single-tyred axle of a group or
trailer; the licence-mass cap; the sum-of-axle-limits cap. Caps are minima, so their order
does not change the number.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

from overload.applied import AppliedRule, fmt_num
from overload.axles import GroupLimit, group_limits
from overload.codes import AxleCode, Vehicle, check_tyres, drive_axles, parse_axle_code, vehicle_for
from overload.errors import RuleError
from overload.rulebook import RuleBook, find_limit
from overload.tables import AirSuspension

KINDS = ("truck", "combination")


@dataclass(frozen=True)
class Limit:
    """A vehicle's total-mass limit.

    Attributes
    ----------
    code : str
    kind : str
        truck | combination.
    axles : int
    limit_kg : float
        The limit in force; over only when strictly greater.
    base_limit_kg : float
        The limit for the kind and axle count before adjustments and caps.
    inferred : bool
        True when the code is not in the vehicle map and the default was taken.
    rules : tuple of AppliedRule
        Every rule that shaped the limit, in order of application.
    assumptions : tuple of str
        What was assumed for missing facts (spacings, kind).
    """

    code: str
    kind: str
    axles: int
    limit_kg: float
    base_limit_kg: float
    inferred: bool
    rules: tuple[AppliedRule, ...]
    assumptions: tuple[str, ...]


def _resolve(parsed: AxleCode, kind: str | None, rules: RuleBook) -> tuple[Vehicle, str | None]:
    """The vehicle of the map, or with the register's kind when it is given."""
    vehicle = vehicle_for(parsed, rules)
    if kind is None or kind == vehicle.kind:
        return vehicle, None
    if kind not in KINDS:
        raise RuleError(f"vehicle kind must be one of {', '.join(KINDS)} (got {kind!r})")
    row = find_limit(rules.limits.mass_limits, kind, parsed.axles, vehicle.single_drive_axle)
    if row is None:
        raise RuleError(
            f"limits.yaml has no total-mass limit for a {kind} with {parsed.axles} axles")
    registered = Vehicle(kind, row.id, vehicle.drive_groups, vehicle.trailer_groups,
                         vehicle.single_drive_axle, False, vehicle.rule, vehicle.description)
    return registered, (
        f"kind {kind!r} from the vehicle register, not {vehicle.kind!r} from the code")


def _air(
    base_id: str, parsed: AxleCode, vehicle: Vehicle, spacings, rules: RuleBook
) -> tuple[AirSuspension, str | None] | None:
    """The air-suspension rule for this limit, if any, and its spacing assumption."""
    for rule in rules.limits.air_suspension:
        if base_id not in rule.applies_to:
            continue
        if rule.min_trailer_tandem_spacing_m is None:
            return rule, None
        tandems = [g for g in parsed.groups if g.number in vehicle.trailer_groups and g.axles == 2]
        known = [spacings[g.number - 1] for g in tandems if spacings and spacings[g.number - 1]]
        if not tandems or any(s < rule.min_trailer_tandem_spacing_m for s in known):
            continue
        if len(known) < len(tandems):
            return rule, (f"trailer tandem spacing unknown, assumed at least "
                          f"{rule.min_trailer_tandem_spacing_m:g} m for {rule.id}")
        return rule, None
    return None


def _deductions(
    parsed: AxleCode, vehicle: Vehicle, tyres: Sequence[str], driven: frozenset[int],
    exempt_drive_groups: bool = False,
) -> tuple[list[int], list[int]]:
    """Axles (1-based) that are single-tyred, not driven, and in a group or on a trailer:
    those deducted, and those exempt as the tag axle of a drive group (when the limit row
    is one of the table's ``tag_axle_exemption.limits``)."""
    found: list[int] = []
    exempt: list[int] = []
    for group in parsed.groups:
        for i in range(group.first_axle, group.first_axle + group.axles):
            in_group_or_trailer = group.axles > 1 or group.number in vehicle.trailer_groups
            if tyres[i] == "single" and i not in driven and in_group_or_trailer:
                tag = exempt_drive_groups and group.number in vehicle.drive_groups
                (exempt if tag else found).append(i + 1)
    return found, exempt


def _tag_exempt(base_id: str, rules: RuleBook) -> bool:
    """Whether the table exempts a drive group's tag axle under the limit row ``base_id``."""
    rule = rules.limits.tag_axle_exemption
    return rule is not None and base_id in rule.limits


def _check_spacings(parsed: AxleCode, group_spacings_m) -> None:
    if group_spacings_m is None:
        return
    if len(group_spacings_m) != len(parsed.groups):
        raise RuleError(
            f"group_spacings_m lists {len(group_spacings_m)} groups but code {parsed.code!r} "
            f"has {len(parsed.groups)}")
    for group, spacing in zip(parsed.groups, group_spacings_m, strict=True):
        if spacing is not None and not (isinstance(spacing, int | float)
                                        and math.isfinite(spacing) and spacing > 0):
            raise RuleError(f"spacing of group {group.number} must be a number of metres above "
                            f"0 or None (got {spacing!r})")


def _axle_sum(groups: list[GroupLimit]) -> tuple[float, str]:
    total = sum(g.limit_kg for g in groups)
    parts = " + ".join(f"{fmt_num(g.limit_kg)} ({g.rule.id})" for g in groups)
    return total, parts


def vehicle_limit(
    code: str,
    rules: RuleBook,
    *,
    tyres: Sequence[str] | None = None,
    licence_mass_kg: float | None = None,
    air_suspension: bool = False,
    group_spacings_m: Sequence[float | None] | None = None,
    kind: str | None = None,
) -> Limit:
    """The total-mass limit of a vehicle with this axle code, with the rules that set it.

    Parameters
    ----------
    code : str
        Axle code, e.g. ``"157"``.
    rules : RuleBook
    tyres : sequence of str, optional
        Per axle ``"single"``, ``"wide_base"`` or ``"dual"``; refines the digits (wide-base
        tyres are exempt from the single-tyre deduction). Default: what the digits say.
    licence_mass_kg : float, optional
        Total mass on the vehicle licence (行驶证); caps the limit where the table says so.
    air_suspension : bool
        The register says the drive axles are dual-tyred and air-suspended.
    group_spacings_m : sequence of (float or None), optional
        One spacing per group (None for single axles or unknown), metres.
    kind : str, optional
        ``truck`` or ``combination`` from the vehicle register; wins over the code map.

    Returns
    -------
    Limit

    Examples
    --------
    >>> from overload import load_rules
    >>> rules = load_rules()
    >>> vehicle_limit("157", rules).limit_kg
    49000.0
    >>> vehicle_limit("12", rules, licence_mass_kg=16000).limit_kg
    16000.0
    >>> [r.id for r in vehicle_limit("156", rules).rules][-1]
    'limit.single-tyre-deduction'
    """
    parsed = parse_axle_code(code, rules)
    _check_spacings(parsed, group_spacings_m)
    vehicle, kind_note = _resolve(parsed, kind, rules)
    axle_tyres = check_tyres(parsed, tyres)
    driven = drive_axles(parsed, vehicle, axle_tyres)
    base = rules.mass_limit(vehicle.limit_id)
    limit = base.limit_kg
    assumptions = [kind_note] if kind_note else []
    applied = [
        AppliedRule.of(vehicle.rule, f"code {parsed.code}: {vehicle.description}"
                       + (" (inferred: code not in the vehicle map)" if vehicle.inferred else "")),
        AppliedRule.of(base, f"{base.description}: {fmt_num(limit)} kg"),
    ]
    if air_suspension:
        found = _air(base.id, parsed, vehicle, group_spacings_m, rules)
        if found is not None:
            rule, note = found
            limit = limit + rule.add_kg if rule.add_kg is not None else rule.limit_kg
            applied.append(AppliedRule.of(rule, f"air suspension: limit {fmt_num(limit)} kg"))
            assumptions += [note] if note else []
    deducted, exempt = _deductions(parsed, vehicle, axle_tyres, driven,
                                   _tag_exempt(base.id, rules))
    if exempt:
        rule = rules.limits.tag_axle_exemption
        applied.append(AppliedRule.of(rule, (
            f"axle(s) {', '.join(map(str, exempt))}: single-tyred non-drive axle of the "
            f"tractor's drive group, not deducted: {base.id} already sets the limit for a "
            f"single drive axle ({fmt_num(limit)} kg)")))
    if deducted:
        rule = rules.limits.single_tyre_deduction
        limit -= rule.deduct_kg_per_axle * len(deducted)
        axles = ", ".join(map(str, deducted))
        applied.append(AppliedRule.of(rule, (
            f"axle(s) {axles}: single tyres on a non-drive axle of a group or trailer, "
            f"−{fmt_num(rule.deduct_kg_per_axle)} kg each → {fmt_num(limit)} kg")))
    cap = rules.limits.licence_mass_cap
    if base.licence_mass_caps and licence_mass_kg is not None and cap.enabled:
        if not licence_mass_kg > 0:
            raise RuleError(f"licence mass must be above 0 kg (got {licence_mass_kg!r})")
        if licence_mass_kg < limit:
            limit = float(licence_mass_kg)
            applied.append(AppliedRule.of(cap, f"licence mass {fmt_num(limit)} kg caps the limit"))
    cap = rules.limits.axle_sum_cap
    if cap.enabled:
        groups = group_limits(parsed, axle_tyres, driven, group_spacings_m, rules,
                              air_suspension=air_suspension)
        total, parts = _axle_sum(groups)
        if total < limit:
            limit = total
            applied.append(AppliedRule.of(cap, f"sum of axle limits {parts} = {fmt_num(total)} kg"))
            assumptions += [g.assumption for g in groups if g.assumption]
    return Limit(parsed.code, vehicle.kind, parsed.axles, float(limit), base.limit_kg,
                 vehicle.inferred, tuple(applied), tuple(assumptions))

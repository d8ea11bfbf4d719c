"""Axle-type codes (轴型): parse a code into groups, build a code from measured axles, and
find the vehicle a code stands for.

The digit meanings, the vendor digits, the grouping threshold and the code → vehicle map
are all in ``config/rules/axle_codes.yaml``; this module only reads them.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

from overload.errors import RuleError
from overload.rulebook import RuleBook
from overload.tables import DefaultVehicle, Rule

TYRES = ("single", "wide_base", "dual")


@dataclass(frozen=True)
class AxleGroup:
    """One axle group of a code.

    Attributes
    ----------
    number : int
        Position of the group, 1 at the front.
    digit : str
        The code digit.
    axles : int
        Axles in the group (1 single, 2 tandem, 3 tridem).
    tyres : str
        single | dual | mixed | wide_base, as the digit table says.
    axle_tyres : tuple of str
        Tyres of each axle, front to back (for mixed groups, the table's assumption).
    first_axle : int
        Index (0-based) of the group's first axle in the vehicle.
    """

    number: int
    digit: str
    axles: int
    tyres: str
    axle_tyres: tuple[str, ...]
    first_axle: int


@dataclass(frozen=True)
class AxleCode:
    """A parsed axle code: its groups front to back and the total axle count."""

    code: str
    groups: tuple[AxleGroup, ...]

    @property
    def axles(self) -> int:
        """Total number of axles."""
        return sum(group.axles for group in self.groups)

    def axle_tyres(self) -> tuple[str, ...]:
        """Tyres of every axle, front to back, as the digits imply."""
        return tuple(t for group in self.groups for t in group.axle_tyres)


@dataclass(frozen=True)
class Vehicle:
    """What a code stands for: from the vehicle map (listed) or the defaults (inferred)."""

    kind: str
    limit_id: str
    drive_groups: frozenset[int]
    trailer_groups: frozenset[int]
    single_drive_axle: bool
    inferred: bool
    rule: Rule
    description: str


def _runs(digits: Sequence[str]) -> str:
    """``['1','2','3','5']`` → ``'1-3, 5'``: the allowed digits, short."""
    values = sorted(int(d) for d in digits)
    parts, start = [], 0
    for i in range(1, len(values) + 1):
        if i == len(values) or values[i] != values[i - 1] + 1:
            lo, hi = values[start], values[i - 1]
            parts.append(f"{lo}-{hi}" if hi - lo >= 2 else ", ".join(map(str, values[start:i])))
            start = i
    return ", ".join(parts)


def allowed_digits(rules: RuleBook) -> str:
    """The allowed digits in words, for error messages."""
    vendor = rules.axle_codes.vendors[rules.vendor].table
    text = _runs(list(rules.axle_codes.digits.table))
    if vendor:
        text += f", and {_runs(list(vendor))} as set by the vendor table {rules.vendor!r}"
    return text


def parse_axle_code(code: str, rules: RuleBook) -> AxleCode:
    """Split an axle code into its groups using the digit table in force.

    Parameters
    ----------
    code : str
        One digit per axle group, front to back, e.g. ``"157"``.
    rules : RuleBook

    Returns
    -------
    AxleCode

    Raises
    ------
    RuleError
        Naming the first digit that is not an axle-group digit, and the allowed ones.

    Examples
    --------
    >>> from overload import load_rules
    >>> parsed = parse_axle_code("157", load_rules())
    >>> parsed.axles, [g.axles for g in parsed.groups]
    (6, [1, 2, 3])
    """
    text = str(code).strip()
    if not text:
        raise RuleError(f"axle code is empty (allowed digits: {allowed_digits(rules)})")
    groups, first = [], 0
    for position, char in enumerate(text, start=1):
        digit = rules.digits.get(char)
        if digit is None:
            raise RuleError(
                f"unknown axle code {text!r}: digit {char!r} at position {position} is not an "
                f"axle-group digit (allowed: {allowed_digits(rules)})"
            )
        groups.append(
            AxleGroup(position, char, digit.axles, digit.tyres, digit.tyres_per_axle(), first)
        )
        first += digit.axles
    return AxleCode(text, tuple(groups))


def _tyre_class(tyres: Sequence[str]) -> str:
    """single (wide-base counts as single), dual or mixed."""
    kinds = {"dual" if t == "dual" else "single" for t in tyres}
    return kinds.pop() if len(kinds) == 1 else "mixed"


def digit_for_group(tyres: Sequence[str], rules: RuleBook) -> str:
    """The digit for one group with these per-axle tyres.

    An exact match of the tyres wins (three wide-base axles → the vendor's wide-base tridem
    digit); otherwise wide-base counts as single and the group's class (single, dual, mixed)
    picks the digit.
    """
    n = len(tyres)
    exact = [k for k, d in rules.digits.items()
             if d.axles == n and sorted(d.tyres_per_axle()) == sorted(tyres)]
    by_class = [k for k, d in rules.digits.items()
                if d.axles == n and d.tyres == _tyre_class(tyres)]
    for found in (exact, by_class):
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise RuleError(
                f"axle_codes.yaml: digits {', '.join(sorted(found))} all describe a group of "
                f"{n} axles with tyres {', '.join(tyres)} (vendor {rules.vendor!r}); "
                "make them distinct"
            )
    raise RuleError(
        f"no axle-group digit for a group of {n} axles with tyres {', '.join(tyres)} "
        f"(vendor {rules.vendor!r}; allowed digits: {allowed_digits(rules)})"
    )


def _check_axles_input(spacings_m: Sequence[float], tyres: Sequence[str]) -> None:
    if len(tyres) == 0:
        raise RuleError("axle_code_from_axles: no axles given (tyres is empty)")
    if len(spacings_m) != len(tyres) - 1:
        raise RuleError(
            f"axle_code_from_axles: {len(tyres)} axles need {len(tyres) - 1} spacings "
            f"(got {len(spacings_m)})"
        )
    for i, tyre in enumerate(tyres, start=1):
        if tyre not in TYRES:
            raise RuleError(f"tyres of axle {i} must be one of {', '.join(TYRES)} (got {tyre!r})")
    for i, spacing in enumerate(spacings_m, start=1):
        if not (isinstance(spacing, int | float) and math.isfinite(spacing) and spacing > 0):
            raise RuleError(
                f"spacing between axles {i} and {i + 1} must be a number of metres above 0 "
                f"(got {spacing!r})"
            )


def axle_code_from_axles(
    spacings_m: Sequence[float], tyres: Sequence[str], rules: RuleBook
) -> str:
    """Build the axle code of a measured vehicle.

    Axles closer than ``rules.group_threshold_m`` form one group; each group's digit comes
    from its axle count and tyres through the digit table in force.

    Parameters
    ----------
    spacings_m : sequence of float, shape (n - 1,)
        Distance between consecutive axles, front to back, metres.
    tyres : sequence of str, shape (n,)
        Per axle: ``"single"``, ``"wide_base"`` or ``"dual"``.
    rules : RuleBook

    Returns
    -------
    str
        The code, e.g. ``"157"``.

    Raises
    ------
    RuleError
        On inconsistent lengths, bad values, or a group of more axles than any digit covers.

    Examples
    --------
    >>> from overload import load_rules
    >>> rules = load_rules()
    >>> axle_code_from_axles([3.4, 1.35, 7.0, 1.31, 1.31],
    ...                      ["single", "dual", "dual", "dual", "dual", "dual"], rules)
    '157'
    >>> axle_code_from_axles([3.6, 7.5, 1.31, 1.31],
    ...                      ["single", "dual", "wide_base", "wide_base", "wide_base"], rules)
    '129'
    """
    _check_axles_input(spacings_m, tyres)
    largest = max(d.axles for d in rules.digits.values())
    groups: list[list[int]] = [[0]]
    for i, spacing in enumerate(spacings_m, start=1):
        if spacing < rules.group_threshold_m:
            groups[-1].append(i)
        else:
            groups.append([i])
    digits = []
    for group in groups:
        if len(group) > largest:
            inner = ", ".join(f"{spacings_m[i - 1]:g}" for i in group[1:])
            raise RuleError(
                f"axles {group[0] + 1}-{group[-1] + 1} form a group of {len(group)} axles "
                f"(spacings {inner} m, all below the group threshold "
                f"{rules.group_threshold_m:g} m); no axle-group digit covers more than "
                f"{largest} axles"
            )
        digits.append(digit_for_group([tyres[i] for i in group], rules))
    return "".join(digits)


def _listed(parsed: AxleCode, rules: RuleBook) -> Vehicle | None:
    vehicles = rules.axle_codes.vehicles
    for entry in vehicles.codes:
        if entry.code == parsed.code and (entry.vendors is None or rules.vendor in entry.vendors):
            return Vehicle(
                kind=entry.kind,
                limit_id=entry.limit,
                drive_groups=frozenset(entry.drive_groups),
                trailer_groups=frozenset(entry.trailer_groups),
                single_drive_axle=entry.single_drive_axle,
                inferred=False,
                rule=vehicles,
                description=entry.description,
            )
    return None


def _default(parsed: AxleCode, rules: RuleBook) -> DefaultVehicle:
    rows = rules.axle_codes.defaults
    for row in rows:
        if row.axles == parsed.axles or (row.and_more and parsed.axles > row.axles):
            return row
    counts = ", ".join(f"{r.axles}{'+' if r.and_more else ''}" for r in rows)
    raise RuleError(
        f"axle code {parsed.code!r} has {parsed.axles} axle(s); axle_codes.yaml has no vehicle "
        f"for that count (defaults cover: {counts})"
    )


def vehicle_for(parsed: AxleCode, rules: RuleBook) -> Vehicle:
    """The vehicle a code stands for: the listed entry, else the default for its axle count.

    Examples
    --------
    >>> from overload import load_rules
    >>> rules = load_rules()
    >>> vehicle_for(parse_axle_code("1127", rules), rules).limit_id
    'limit.combination.6.single-drive'
    >>> vehicle_for(parse_axle_code("1175", rules), rules).inferred
    True
    """
    listed = _listed(parsed, rules)
    if listed is not None:
        return listed
    row = _default(parsed, rules)
    return Vehicle(
        kind=row.kind,
        limit_id=row.limit,
        drive_groups=frozenset(g for g in row.drive_groups if g <= len(parsed.groups)),
        trailer_groups=frozenset(g for g in row.trailer_groups if g <= len(parsed.groups)),
        single_drive_axle=row.single_drive_axle,
        inferred=True,
        rule=row,
        description=f"unlisted {parsed.axles}-axle code, taken as a {row.kind}",
    )


def drive_axles(parsed: AxleCode, vehicle: Vehicle, tyres: Sequence[str]) -> frozenset[int]:
    """Indices (0-based) of the driven axles.

    All axles of the drive groups, or with a single drive axle only one: in a mixed group
    the dual-tyred axle (a drive axle is dual-tyred far more often than not, and a
    non-drive single-tyred axle is what the deduction counts).
    """
    members = [
        i
        for group in parsed.groups
        if group.number in vehicle.drive_groups
        for i in range(group.first_axle, group.first_axle + group.axles)
    ]
    if not vehicle.single_drive_axle or not members:
        return frozenset(members)
    duals = [i for i in members if tyres[i] == "dual"]
    return frozenset([(duals or members)[0]])


def tyre_from_width(section_width_mm: float, *, drive: bool, rules: RuleBook) -> str:
    """``wide_base`` when a single tyre is at least as wide as the table's threshold for its
    axle (drive or not), else ``single``.

    Examples
    --------
    >>> from overload import load_rules
    >>> rules = load_rules()
    >>> [tyre_from_width(435, drive=drive, rules=rules) for drive in (False, True)]
    ['wide_base', 'single']
    """
    if not (isinstance(section_width_mm, int | float) and math.isfinite(section_width_mm)
            and section_width_mm > 0):
        raise RuleError(f"tyre section width must be a number of mm above 0 "
                        f"(got {section_width_mm!r})")
    wide = rules.limits.wide_base_tyre
    floor_mm = wide.min_section_width_mm_drive if drive else wide.min_section_width_mm_non_drive
    return "wide_base" if section_width_mm >= floor_mm else "single"


def check_tyres(parsed: AxleCode, tyres: Sequence[str] | None) -> tuple[str, ...]:
    """Per-axle tyres: given ones checked against the code's digits, else the digits' own.

    Given tyres may refine a digit (a wide-base tyre where the digit says single) but must
    not contradict it (dual where the digit says single).
    """
    if tyres is None:
        return parsed.axle_tyres()
    if len(tyres) != parsed.axles:
        raise RuleError(
            f"tyres lists {len(tyres)} axles but code {parsed.code!r} has {parsed.axles}"
        )
    for i, tyre in enumerate(tyres, start=1):
        if tyre not in TYRES:
            raise RuleError(f"tyres of axle {i} must be one of {', '.join(TYRES)} (got {tyre!r})")
    for group in parsed.groups:
        given = tyres[group.first_axle : group.first_axle + group.axles]
        implied = ["dual" if t == "dual" else "single" for t in group.axle_tyres]
        if sorted("dual" if t == "dual" else "single" for t in given) != sorted(implied):
            raise RuleError(
                f"tyres {', '.join(given)} of group {group.number} contradict digit "
                f"{group.digit!r} of code {parsed.code!r} ({', '.join(group.axle_tyres)})"
            )
    return tuple(tyres)

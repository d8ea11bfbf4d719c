"""The rule tables as pydantic models: one model per YAML file under ``config/rules/``.

Every model forbids unknown keys, so a typo in a table stops loading instead of being
ignored. The models hold only structure and consistency checks; every legal number is in
the YAML, each row with an ``id`` and a ``source``.
"""

import math
import re
from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Tyre = Literal["single", "wide_base", "dual"]
Kind = Literal["truck", "combination"]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
RuleId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$")]
DIGIT_PATTERN = r"^[0-9]$"
SATURDAY = 6  # ISO weekday: Saturday and Sunday (7) are rest days unless worked


class Frozen(BaseModel):
    """Base of every table model: immutable, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(Frozen):
    """Where a rule comes from: act, article and (optionally) clause."""

    act: str
    article: str
    clause: str | None = None

    def cite(self) -> str:
        """The source as one line, e.g. ``浙江省公路条例（2020） 第五十三条 第一款第（二）项``."""
        return " ".join(part for part in (self.act, self.article, self.clause) if part)


class Sourced(Frozen):
    """A section with a source; ``verify: true`` (unconfirmed value) requires a note."""

    source: Source
    verify: bool = False
    note: str | None = None

    @model_validator(mode="after")
    def _verify_needs_note(self) -> "Sourced":
        if self.verify and not self.note:
            raise ValueError("'verify: true' needs a 'note' saying what is unconfirmed")
        return self


class Rule(Sourced):
    """A row the grade can cite: an ``id`` unique across all tables, plus its source."""

    id: RuleId
    description: str | None = None


# --- limits.yaml -------------------------------------------------------------------------


class MassLimit(Rule):
    """A total-mass limit for one kind of vehicle and axle count."""

    kind: Kind
    axles: Annotated[int, Field(ge=2)]
    and_more: bool = False
    single_drive_axle: bool = False
    limit_kg: Positive
    licence_mass_caps: bool = False


class SingleTyreDeduction(Rule):
    """The deduction per non-drive single-tyred axle of a group or trailer."""

    deduct_kg_per_axle: NonNegative


class TagAxleExemption(Rule):
    """Where these limit rows apply, a single-tyred non-drive axle in the tractor's drive
    group (the tag or pusher axle beside a single drive axle) is not deducted: the row's
    limit is already the one for that axle arrangement."""

    limits: list[RuleId] = Field(min_length=1)


class WideBaseTyre(Rule):
    """The section widths from which a single tyre counts as wide-base."""

    min_section_width_mm_non_drive: Positive
    min_section_width_mm_drive: Positive


class AirSuspension(Rule):
    """A raised limit for air-suspended dual-tyre drive axles: ``add_kg`` or ``limit_kg``."""

    applies_to: list[RuleId] = Field(min_length=1)
    add_kg: NonNegative | None = None
    limit_kg: Positive | None = None
    min_trailer_tandem_spacing_m: Positive | None = None

    @model_validator(mode="after")
    def _one_effect(self) -> "AirSuspension":
        if (self.add_kg is None) == (self.limit_kg is None):
            raise ValueError(f"rule '{self.id}' needs exactly one of 'add_kg' or 'limit_kg'")
        return self


class Cap(Rule):
    """A cap on the total limit (licence mass, sum of axle limits)."""

    enabled: bool = True


class DimensionLimit(Rule):
    """A height, width or length limit; over only when strictly greater."""

    quantity: Literal["height", "width", "length"]
    limit_m: Positive


class LimitsTable(Frozen):
    """``limits.yaml``: total-mass limits, their adjustments and the dimension limits."""

    title: str
    mass_limits: list[MassLimit] = Field(min_length=1)
    single_tyre_deduction: SingleTyreDeduction
    tag_axle_exemption: TagAxleExemption | None = None
    wide_base_tyre: WideBaseTyre
    air_suspension: list[AirSuspension] = []
    licence_mass_cap: Cap
    axle_sum_cap: Cap
    dimensions: list[DimensionLimit]

    @model_validator(mode="after")
    def _consistent(self) -> "LimitsTable":
        keys = [(m.kind, m.axles, m.single_drive_axle) for m in self.mass_limits]
        for i, key in enumerate(keys):
            if key in keys[:i]:
                raise ValueError(
                    f"mass_limits.{i} ('{self.mass_limits[i].id}') repeats kind {key[0]}, "
                    f"{key[1]} axles, single_drive_axle {key[2]}"
                )
        known = {m.id for m in self.mass_limits}
        for rule in self.air_suspension:
            for ref in rule.applies_to:
                if ref not in known:
                    raise ValueError(
                        f"rule '{rule.id}' applies_to unknown limit '{ref}' "
                        f"(known: {', '.join(sorted(known))})"
                    )
        exempt = self.tag_axle_exemption.limits if self.tag_axle_exemption else []
        for ref in exempt:
            if ref not in known:
                raise ValueError(
                    f"tag_axle_exemption.limits names unknown limit '{ref}' "
                    f"(known: {', '.join(sorted(known))})"
                )
        quantities = sorted(d.quantity for d in self.dimensions)
        if quantities != ["height", "length", "width"]:
            raise ValueError(
                f"dimensions must list height, width and length once each (got {quantities})"
            )
        return self


# --- axle_limits.yaml --------------------------------------------------------------------

_INTERVAL = re.compile(r"^\s*([\[(])\s*([0-9.]+)\s*,\s*([0-9.]+|inf)\s*([\])])\s*$")


class Interval(Frozen):
    """A spacing interval in metres, parsed from notation like ``"[1.0, 1.3)"``."""

    lo: float
    hi: float
    lo_closed: bool
    hi_closed: bool

    @classmethod
    def parse(cls, text: str) -> "Interval":
        """Parse ``[a, b)``, ``(a, b]``, ``[a, inf)`` ...; raise ValueError otherwise."""
        match = _INTERVAL.match(text)
        if not match:
            raise ValueError(
                f"must be an interval like '[1.0, 1.3)' or '(1.4, inf)' (got {text!r})")
        left, lo, hi, right = match.groups()
        interval = cls(lo=float(lo), hi=float(hi), lo_closed=left == "[", hi_closed=right == "]")
        if interval.hi <= interval.lo or (math.isinf(interval.hi) and interval.hi_closed):
            raise ValueError(f"is an empty or unbounded-closed interval (got {text!r})")
        return interval

    def contains(self, x: float) -> bool:
        """Whether ``x`` lies in the interval."""
        above = x >= self.lo if self.lo_closed else x > self.lo
        below = x <= self.hi if self.hi_closed else x < self.hi
        return above and below

    def __str__(self) -> str:
        left, right = "[" if self.lo_closed else "(", "]" if self.hi_closed else ")"
        return f"{left}{self.lo:g}, {self.hi:g}{right}"


class SingleAxleLimit(Rule):
    """A single-axle limit by tyres and, when it matters, by drive."""

    tyres: Tyre
    drive: bool | None = None
    limit_kg: Positive


class SpacingBand(Rule):
    """An axle-group limit for a band of spacing between adjacent axles."""

    spacing_m: Interval
    limit_kg: Positive
    air_suspension_drive_limit_kg: Positive | None = None

    @field_validator("spacing_m", mode="before")
    @classmethod
    def _parse(cls, value: object) -> object:
        return Interval.parse(value) if isinstance(value, str) else value


def _check_bands(bands: list[SpacingBand], name: str) -> None:
    """Bands must run from 0 to infinity without gap or overlap."""
    if not bands:
        raise ValueError(f"'{name}' needs at least one band")
    if bands[0].spacing_m.lo != 0 or not bands[0].spacing_m.lo_closed:
        raise ValueError(f"{name}.0 must start at '[0, ...' (got {bands[0].spacing_m})")
    for i in range(1, len(bands)):
        prev, cur = bands[i - 1].spacing_m, bands[i].spacing_m
        if cur.lo != prev.hi or cur.lo_closed == prev.hi_closed:
            raise ValueError(
                f"{name}.{i} must start where {name}.{i - 1} ends, without gap or overlap "
                f"(got {prev} then {cur})"
            )
    if not math.isinf(bands[-1].spacing_m.hi):
        raise ValueError(f"the last band of '{name}' must end at inf (got {bands[-1].spacing_m})")


class AxleLimitsTable(Frozen):
    """``axle_limits.yaml``: GB 1589-2016 Table 3 axle and group limits."""

    title: str
    uneven_spacing: Literal["max", "min"]
    single: list[SingleAxleLimit] = Field(min_length=1)
    tandem: list[SpacingBand]
    tridem: list[SpacingBand]

    @model_validator(mode="after")
    def _bands(self) -> "AxleLimitsTable":
        _check_bands(self.tandem, "tandem")
        _check_bands(self.tridem, "tridem")
        return self


# --- axle_codes.yaml ---------------------------------------------------------------------


class Digit(Frozen):
    """What one axle-group digit stands for."""

    axles: Annotated[int, Field(ge=1, le=3)]
    tyres: Literal["single", "dual", "mixed", "wide_base"]
    axle_tyres: list[Tyre] | None = None
    description: str

    @model_validator(mode="after")
    def _tyres(self) -> "Digit":
        if self.tyres == "mixed":
            if self.axle_tyres is None or len(set(self.axle_tyres)) < 2:
                raise ValueError("'mixed' tyres need 'axle_tyres' listing at least two kinds")
        elif self.axle_tyres is not None and set(self.axle_tyres) != {self.tyres}:
            raise ValueError(f"axle_tyres {self.axle_tyres} contradict tyres '{self.tyres}'")
        if self.axle_tyres is not None and len(self.axle_tyres) != self.axles:
            raise ValueError(
                f"axle_tyres lists {len(self.axle_tyres)} axles but axles is {self.axles}"
            )
        return self

    def tyres_per_axle(self) -> tuple[str, ...]:
        """The tyres of each axle of the group, front to back."""
        if self.axle_tyres is not None:
            return tuple(self.axle_tyres)
        return (self.tyres,) * self.axles


DigitKey = Annotated[str, Field(pattern=DIGIT_PATTERN)]


class DigitTable(Sourced):
    """A table of digits with its source."""

    table: dict[DigitKey, Digit] = Field(min_length=1)


class GroupThreshold(Rule):
    """Axles closer than ``threshold_m`` form one group."""

    threshold_m: Positive


class VehicleEntry(Frozen):
    """One listed axle code: kind, axle count, drive and trailer groups, limit id."""

    code: Annotated[str, Field(pattern=r"^[0-9]+$")]
    kind: Kind
    axles: Annotated[int, Field(ge=1)]
    drive_groups: list[Annotated[int, Field(ge=1)]] = Field(min_length=1)
    trailer_groups: list[Annotated[int, Field(ge=1)]] = []
    single_drive_axle: bool = False
    limit: RuleId
    vendors: list[str] | None = None
    description: str
    note: str | None = None


class VehicleMap(Rule):
    """The code → vehicle map, one rule with a list of codes."""

    codes: list[VehicleEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> "VehicleMap":
        seen: set[str] = set()
        for i, entry in enumerate(self.codes):
            if entry.code in seen:
                raise ValueError(f"codes.{i}: code '{entry.code}' is listed twice")
            seen.add(entry.code)
        return self


class DefaultVehicle(Rule):
    """The assumed vehicle for an unlisted code with a given axle count."""

    axles: Annotated[int, Field(ge=1)]
    and_more: bool = False
    kind: Kind
    limit: RuleId
    drive_groups: list[Annotated[int, Field(ge=1)]] = Field(min_length=1)
    trailer_groups: list[Annotated[int, Field(ge=1)]] = []
    single_drive_axle: bool = False


class AxleCodesTable(Frozen):
    """``axle_codes.yaml``: digits, vendor digits, group threshold, vehicle map, defaults."""

    title: str
    group_threshold: GroupThreshold
    digits: DigitTable
    vendors: dict[str, DigitTable] = Field(min_length=1)
    vehicles: VehicleMap
    defaults: list[DefaultVehicle] = Field(min_length=1)

    @model_validator(mode="after")
    def _vendor_digits_new(self) -> "AxleCodesTable":
        for name, vendor in self.vendors.items():
            clash = sorted(set(vendor.table) & set(self.digits.table))
            if clash:
                raise ValueError(
                    f"vendor '{name}' redefines standard digit(s) {', '.join(clash)}; "
                    "a vendor table may only add digits"
                )
        return self


# --- tolerance.yaml ----------------------------------------------------------------------


class TolerancePolicy(Rule):
    """A tolerance policy: none, a percentage of the limit, or the device's MPE."""

    kind: Literal["none", "percent", "mpe"]
    percent_of_limit: NonNegative | None = None
    mpe_percent_of_measured: dict[str, NonNegative] | None = None

    @model_validator(mode="after")
    def _fields_for_kind(self) -> "TolerancePolicy":
        wants = {"percent": "percent_of_limit", "mpe": "mpe_percent_of_measured"}
        for kind, field in wants.items():
            present = getattr(self, field) is not None
            if present != (self.kind == kind):
                verb = "needs" if self.kind == kind else "must not have"
                raise ValueError(f"policy '{self.id}' of kind '{self.kind}' {verb} '{field}'")
        return self


class ToleranceTable(Frozen):
    """``tolerance.yaml``."""

    title: str
    policies: list[TolerancePolicy] = Field(min_length=1)


# --- enforcement.yaml --------------------------------------------------------------------


class Days(Rule):
    """A number of calendar days."""

    value: Annotated[int, Field(ge=0)]
    unit: Literal["days"]


class LookBack(Days):
    """A look-back window of calendar days: at least one."""

    value: Annotated[int, Field(ge=1)]


class WorkingDays(Rule):
    """A number of working days (Monday to Friday)."""

    value: Annotated[int, Field(ge=0)]
    unit: Literal["working_days"]


class Times(Rule):
    """A count of acts."""

    value: Annotated[int, Field(ge=0)]
    unit: Literal["times"]


class EnforcementTable(Frozen):
    """``enforcement.yaml``: the numbers of procedure the center applies."""

    title: str
    notice_lead: Days
    repeat_window: LookBack
    repeat_more_than: Times
    report_within: WorkingDays


# --- benchmarks/*.yaml -------------------------------------------------------------------


class Bound(Frozen):
    """A band edge: a mass in kg, or a fraction of the limit."""

    kg: NonNegative | None = None
    fraction_of_limit: NonNegative | None = None

    @model_validator(mode="after")
    def _one(self) -> "Bound":
        if (self.kg is None) == (self.fraction_of_limit is None):
            raise ValueError("a band edge needs exactly one of 'kg' or 'fraction_of_limit'")
        return self

    @property
    def unit(self) -> str:
        """``kg`` or ``fraction_of_limit``."""
        return "kg" if self.kg is not None else "fraction_of_limit"

    @property
    def value(self) -> float:
        """The edge's number in its unit."""
        return self.kg if self.kg is not None else self.fraction_of_limit  # type: ignore[return-value]


Action = Literal["none", "education", "warning", "fine"]
"""Grade actions: ``none`` (not over), ``education`` (批评教育, no penalty), ``warning`` (警告,
a penalty: 行政处罚法 Art. 9(一)), ``fine``."""


class MassBand(Rule):
    """A band of graded excess (``above`` < excess <= ``up_to``) and what it brings."""

    above: Bound
    up_to: Bound | None = None
    action: Literal["education", "warning", "fine"]
    applies_to: Literal["whole_excess", "band_part"] | None = None
    rate_yuan: NonNegative | None = None
    per_kg: Positive | None = None

    @model_validator(mode="after")
    def _fine_fields(self) -> "MassBand":
        fields = ("applies_to", "rate_yuan", "per_kg")
        present = [getattr(self, f) is not None for f in fields]
        if self.action == "fine" and not all(present):
            raise ValueError(f"band '{self.id}' with action 'fine' needs {', '.join(fields)}")
        if self.action != "fine" and any(present):
            raise ValueError(
                f"band '{self.id}' with action '{self.action}' must not set {fields}")
        return self


class ZeroFine(Rule):
    """What a fine band whose fine rounds to 0 yuan brings instead (a fine of 0 is none).

    The answer differs by benchmark (a 警告 is a penalty only a scale that has it may give),
    so it is a row with its source, not a choice of the code.
    """

    action: Literal["education", "warning"]


class CapYuan(Rule):
    """A ceiling on a fine."""

    cap_yuan: NonNegative


class MassScale(Frozen):
    """The mass part of a benchmark: bands, rounding of partial tonnes, cap."""

    rounding: Literal["floor", "ceil", "pro_rata"]
    rounding_note: str | None = None
    bands: list[MassBand] = Field(min_length=1)
    zero_fine: ZeroFine
    cap: CapYuan

    @model_validator(mode="after")
    def _contiguous(self) -> "MassScale":
        units = {b.above.unit for b in self.bands} | {b.up_to.unit for b in self.bands if b.up_to}
        if len(units) != 1:
            raise ValueError(f"all band edges must use one unit (got {sorted(units)})")
        if self.bands[0].above.value != 0:
            raise ValueError(f"bands.0 must start above 0 (got {self.bands[0].above.value})")
        for i in range(1, len(self.bands)):
            prev = self.bands[i - 1].up_to
            if prev is None or self.bands[i].above.value != prev.value:
                raise ValueError(f"bands.{i} must start where bands.{i - 1} ends")
            if self.bands[i].above.value <= self.bands[i - 1].above.value:
                raise ValueError(f"bands.{i} must lie above bands.{i - 1}")
        if self.bands[-1].up_to is not None:
            raise ValueError("the last band must have no 'up_to' (it runs on without end)")
        return self


class DimensionBounds(Frozen):
    """Upper ends of a dimension band."""

    height_m: Positive
    width_m: Positive
    length_m: Positive


class DimensionBand(Rule):
    """A dimension fine range, for vehicles within ``up_to`` on every dimension."""

    up_to: DimensionBounds | None = None
    fine_min_yuan: NonNegative
    fine_max_yuan: NonNegative

    @model_validator(mode="after")
    def _range(self) -> "DimensionBand":
        if self.fine_max_yuan < self.fine_min_yuan:
            raise ValueError(f"band '{self.id}': fine_max_yuan is below fine_min_yuan")
        return self


class DimensionScale(Frozen):
    """Dimension bands from the smallest to the largest; the last has no ``up_to``."""

    bands: list[DimensionBand] = Field(min_length=1)

    @model_validator(mode="after")
    def _last_open(self) -> "DimensionScale":
        if self.bands[-1].up_to is not None or any(b.up_to is None for b in self.bands[:-1]):
            raise ValueError("only the last dimension band, and it alone, has no 'up_to'")
        return self


class DimensionsFrom(Rule):
    """Dimensions graded by another benchmark's scale, with the legal path that leads there.

    ``source`` is the provision that sets the liability (e.g. 公路安全保护条例 Art. 64);
    ``via`` the provincial provision that defers to it (e.g. 浙江省公路条例 Art. 51).
    """

    benchmark: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")]
    via: Source | None = None


class Benchmark(Frozen):
    """``benchmarks/<id>.yaml``: one province's (or the national) discretion benchmark."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")]
    title: str
    mass: MassScale
    dimensions: DimensionScale | None = None
    dimensions_from: DimensionsFrom | None = None
    total_cap: CapYuan

    @model_validator(mode="after")
    def _dimensions(self) -> "Benchmark":
        if (self.dimensions is None) == (self.dimensions_from is None):
            raise ValueError("a benchmark needs exactly one of 'dimensions' or 'dimensions_from'")
        return self


# --- calendar/<year>.yaml ----------------------------------------------------------------


class HolidayPeriod(Frozen):
    """One holiday period: every day from ``from`` to ``to`` (both included) is a rest day."""

    name: str
    start: date = Field(alias="from")
    to: date

    @model_validator(mode="after")
    def _ordered(self) -> "HolidayPeriod":
        if self.to < self.start:
            raise ValueError(f"holiday {self.name!r} ends ({self.to}) before it starts "
                             f"({self.start})")
        return self


class CalendarYear(Sourced):
    """``calendar/<year>.yaml``: one year's holiday periods and adjusted working days
    (调休上班), from the State Council General Office's notice for that year."""

    year: Annotated[int, Field(ge=1949)]
    holidays: list[HolidayPeriod] = Field(min_length=1)
    working_days: list[date] = []

    @model_validator(mode="after")
    def _consistent(self) -> "CalendarYear":
        for i, period in enumerate(self.holidays):
            if period.start.year != self.year or period.to.year != self.year:
                raise ValueError(f"holidays.{i} ({period.name}) lies outside {self.year}")
        for day in self.working_days:
            if day.year != self.year:
                raise ValueError(f"working day {day} lies outside {self.year}")
            if day.isoweekday() < SATURDAY:
                raise ValueError(f"working day {day} is a weekday already: list only the "
                                 "Saturdays and Sundays worked (调休上班)")
            if any(p.start <= day <= p.to for p in self.holidays):
                raise ValueError(f"working day {day} lies inside a holiday period")
        return self


# --- procedure.yaml and procedure/<id>.yaml ----------------------------------------------

StepName = Literal["review", "approve", "notify", "defence", "legal_review", "decide",
                   "serve", "pay", "close", "reject"]
STEP_NAMES: tuple[str, ...] = StepName.__args__  # type: ignore[attr-defined]
DeadlineKey = Literal["defence_window", "hearing_request", "decide_within", "serve_within",
                      "pay_within", "limitation", "reminder_after", "public_notice",
                      "review_within"]
REQUIRED_DEADLINES: tuple[str, ...] = tuple(
    k for k in DeadlineKey.__args__ if k != "review_within")  # type: ignore[attr-defined]
State = Literal["awaiting_review", "reviewed", "approved", "notified", "heard",
                "legally_reviewed", "decided", "served", "paid", "closed", "rejected"]
STATES: tuple[str, ...] = State.__args__  # type: ignore[attr-defined]
"""The case states (Case.status) every step moves between."""
PeriodUnit = Literal["days", "working_days", "months", "years"]


class Step(Frozen):
    """One step of the procedure: the states it may start from, the state it leads to, its
    sources, and whether an enforcement officer must take it."""

    description: str
    from_states: tuple[State, ...] = Field(min_length=1)
    only_without_penalty: tuple[State, ...] = ()
    to: State
    officer: bool
    sources: tuple[Source, ...] = Field(min_length=1)
    verify: bool = False
    note: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "Step":
        if self.verify and not self.note:
            raise ValueError("'verify: true' needs a 'note' saying what is unconfirmed")
        stray = [s for s in self.only_without_penalty if s not in self.from_states]
        if stray:
            raise ValueError(f"only_without_penalty names {stray}, not among from_states")
        if self.to in self.from_states:
            raise ValueError(f"a step may not lead from {self.to!r} to itself")
        return self

    @property
    def source(self) -> Source:
        """The first (main) source."""
        return self.sources[0]

    def cite(self) -> str:
        """Every source, separated by "；"."""
        return "；".join(s.cite() for s in self.sources)


class Deadline(Rule):
    """A period: ``value`` ``unit`` from ``counted_from`` (words), start not counted.

    ``roll_over`` false keeps a last day that is a rest day (a limitation period);
    ``guidance`` marks practice guidance that is not law.
    """

    value: Annotated[int, Field(ge=0)]
    unit: PeriodUnit
    counted_from: str
    roll_over: bool = True
    guidance: bool = False


class Counting(Rule):
    """How a period's last day moves past rest days: ``rest_day`` (any non-working day) or
    ``holiday`` (holiday periods only)."""

    roll_over_on: Literal["rest_day", "holiday"]


class LateSurcharge(Rule):
    """Art. 72(一): a percentage of the fine per day late, at most ``max_times_fine`` × fine."""

    percent_per_day: NonNegative
    max_times_fine: NonNegative


class LegalReview(Rule):
    """When 法制审核 is required (Art. 58): after a hearing, on a revoked certificate, or from
    a fine amount (None: never by amount)."""

    after_hearing: bool
    revokes_certificate: bool
    fine_at_least_yuan: NonNegative | None = None


class Hearing(Rule):
    """The 较大数额罚款 of Art. 63(一) by kind of party, and whether a revocation gives one."""

    person_fine_at_least_yuan: NonNegative
    company_fine_at_least_yuan: NonNegative
    revokes_certificate: bool


class FirstViolation(Rule):
    """首违不罚 (Art. 33 ¶1): which grades are minor (their action, or optionally an excess
    at most ``max_excess_pct`` of the limit), whether a commitment (告知承诺) is needed, and
    ``reminder_after``: the deadline key whose period sets the follow-up reminder."""

    minor_actions: tuple[Literal["education", "warning", "fine"], ...] = Field(min_length=1)
    max_excess_pct: NonNegative | None = None
    needs_commitment: bool
    reminder_after: DeadlineKey

    def is_minor(self, action: str, excess_pct: float | None = None) -> bool:
        """Whether a grade with this action (and graded excess, percent of the limit) is
        minor: its action is listed, or the table's excess bound holds it."""
        if action in self.minor_actions:
            return True
        bound = self.max_excess_pct
        return bound is not None and excess_pct is not None and excess_pct <= bound


class AppealRoute(Rule):
    """A route to challenge a decision (复议, 诉讼) and its period."""

    name: str
    value: Annotated[int, Field(ge=1)]
    unit: PeriodUnit
    counted_from: str


class ProcedureTable(Frozen):
    """``procedure.yaml``: the national procedure, every section present."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")]
    title: str
    steps: dict[StepName, Step]
    deadlines: dict[DeadlineKey, Deadline]
    counting: Counting
    late_surcharge: LateSurcharge
    legal_review: LegalReview
    hearing: Hearing
    first_violation: FirstViolation
    reject_reasons: dict[Annotated[str, Field(pattern=r"^[a-z][a-z_]*$")], str] = Field(
        min_length=1)
    no_heavier_after_defence: Source
    appeal_routes: tuple[AppealRoute, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _complete(self) -> "ProcedureTable":
        missing = [s for s in STEP_NAMES if s not in self.steps]
        if missing:
            raise ValueError(f"steps lacks {', '.join(missing)}")
        missing = [k for k in REQUIRED_DEADLINES if k not in self.deadlines]
        if missing:
            raise ValueError(f"deadlines lacks {', '.join(missing)}")
        if self.first_violation.reminder_after not in self.deadlines:
            raise ValueError(f"first_violation.reminder_after names deadline "
                             f"{self.first_violation.reminder_after!r}, which is not listed")
        return self


class ProcedureOverride(Frozen):
    """``procedure/<id>.yaml``: a province's changes; only the keys given replace the
    national ones (steps, deadlines and reject reasons by key, other sections whole)."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")]
    title: str
    steps: dict[StepName, Step] = {}
    deadlines: dict[DeadlineKey, Deadline] = {}
    counting: Counting | None = None
    late_surcharge: LateSurcharge | None = None
    legal_review: LegalReview | None = None
    hearing: Hearing | None = None
    first_violation: FirstViolation | None = None
    reject_reasons: dict[Annotated[str, Field(pattern=r"^[a-z][a-z_]*$")], str] = {}
    no_heavier_after_defence: Source | None = None
    appeal_routes: tuple[AppealRoute, ...] | None = None

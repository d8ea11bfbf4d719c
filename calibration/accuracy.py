"""Accuracy classes of a weigh-in-motion unit: COST 323, OIML R134 / JJG 907, ASTM E1318.

A fine rests on a weight, so a unit must show which class it weighs in. COST 323 says it
in statistics: a class gives a tolerance ±δ per criterion (gross weight, group of axles,
single axle, axle of a group), and a test of n vehicles passes if, with 95 % confidence, a
share π0 of *all* errors lies within ±δ. π0 is lower for a test that spans more vehicles,
speeds and seasons (plans r1, r2, R1, R2; environments I, II, III) and for few samples.
This module computes, as the COST 323 workbook does:

- π0 = 2·Φ(k/f_env − t(0.975; n−1)/√n) − 1, k by plan and f_env by environment;
- π(δ) = 1 − T(n−1).sf((δ−m)/s − t/√n) − T(n−1).sf((δ+m)/s − t/√n), the share of
  errors within ±δ that a sample of mean m and standard deviation s (in %) warrants;
- d_min, the smallest δ with π(δ) = π0, and the smallest class whose δ is at least d_min
  (d_min/0.8 at initial verification, whose tolerances are 0.8 × the class's).

Every number of the standards is in ``config/rules/accuracy.yaml`` with its source; this
module reads it once. OIML R134 / JJG 907 (maximum permissible error by class) and ASTM
E1318 (tolerance by system type) are tables to look up: :func:`mpe_percent`,
:func:`astm_tolerance`.
"""

import csv
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import optimize, stats

from zhichao.errors import ConfigError
from zhichao.resources import rules_dir
from zhichao.settings import decode, load_model

RULES_FILE = "accuracy.yaml"
CRITERIA = ("gvw", "group", "single", "group_axle")
"""COST 323's weight criteria, in the order they are reported."""
PLANS = ("r1", "r2", "R1", "R2")
ENVIRONMENTS = ("I", "II", "III")

MAX_FILE_BYTES = 10_000_000
"""An errors file larger than this is refused: a test of a few hundred passes is a few kB."""
MAX_ROWS = 100_000
"""Data rows read from an errors file at most."""
MAX_ERROR_PCT = 1000.0
"""An error beyond ±1000 % is a wrong column or unit, not a weighing."""
MAX_LISTED = 20
"""Refused lines named in one error message at most."""
PCT = 100.0
"""Shares (π0, π) are reported in percent, as COST 323's tables give them."""


class AccuracyError(ConfigError, ValueError):
    """The errors given cannot be assessed (too few, no spread, unknown criterion, plan...).
    A ``ConfigError`` so that the command line reports it in one line (exit status 2)."""


# The tables -----------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Positive = Annotated[float, Field(gt=0)]


class Source(_Model):
    act: str = Field(min_length=1)
    article: str = ""
    clause: str = ""


class CostClass(_Model):
    """One COST 323 class: its name, value (the gvw tolerance) and δ per criterion, %."""

    name: str = Field(pattern=r"^[A-D]\+?$")
    value: Positive
    gvw: Positive
    group: Positive
    single: Positive
    group_axle: Positive


class Linear(_Model):
    factor: Positive
    offset: float = 0.0


class ClassE(_Model):
    """Class E(v) beyond the last table class: δ = factor · v + offset per criterion."""

    name: str = "E"
    first_value: Positive
    step: Positive
    delta: dict[str, Linear]
    source: Source
    verify: bool = False
    note: str = ""


class Confidence(_Model):
    t_quantile: float = Field(gt=0.5, lt=1)
    source: Source
    verify: bool = False
    note: str = ""


class Plan(_Model):
    k: Positive
    description: str = ""


class Environment(_Model):
    f: Positive
    description: str = ""


class Initial(_Model):
    factor: float = Field(gt=0, le=1)
    source: Source
    verify: bool = False


class Cost323(_Model):
    source: Source
    criteria: dict[str, str]
    classes: list[CostClass] = Field(min_length=1)
    classes_verify: bool = False
    classes_note: str = ""
    class_e: ClassE
    confidence: Confidence
    plans: dict[str, Plan]
    plans_source: Source
    environments: dict[str, Environment]
    environments_source: Source
    initial_verification: Initial

    @model_validator(mode="after")
    def _consistent(self) -> "Cost323":
        """Every criterion has a class E formula, and classes tighten nothing as they go."""
        if set(self.criteria) != set(CRITERIA) or set(self.class_e.delta) != set(CRITERIA):
            raise ValueError(f"criteria and class_e.delta must name exactly {', '.join(CRITERIA)}")
        if set(self.plans) != set(PLANS) or set(self.environments) != set(ENVIRONMENTS):
            raise ValueError(f"plans must be {', '.join(PLANS)} and environments "
                             f"{', '.join(ENVIRONMENTS)}")
        for lower, upper in zip(self.classes, self.classes[1:], strict=False):
            if any(getattr(upper, c) <= getattr(lower, c) for c in ("value", *CRITERIA)):
                raise ValueError(f"class {upper.name} must be wider than {lower.name} in every "
                                 "criterion")
        last = self.classes[-1]
        for c in CRITERIA:
            if _linear(self.class_e.delta[c], self.class_e.first_value) <= getattr(last, c):
                raise ValueError(f"class E's {c} tolerance must be wider than {last.name}'s")
        return self


class MpeRow(_Model):
    class_: str = Field(alias="class", min_length=1)
    initial: Positive
    in_service: Positive


class OimlR134(_Model):
    source: Source
    verify: bool = False
    note: str = ""
    vehicle: list[MpeRow]
    axle: list[MpeRow]


class AstmType(_Model):
    type: str = Field(pattern=r"^(I|II|III|IV)$")
    wheel: Positive | None
    axle: Positive | None
    group: Positive | None
    gvw: Positive | None
    speed_kmh: Positive
    axle_spacing_m: Positive
    verify: bool = False
    note: str = ""


class AstmE1318(_Model):
    source: Source
    note: str = ""
    types: list[AstmType]
    speed_spacing_verify: bool = False


class AccuracyTables(_Model):
    title: str
    cost323: Cost323
    oiml_r134: OimlR134
    astm_e1318: AstmE1318


@cache
def load_tables(folder: Path | None = None) -> AccuracyTables:
    """The accuracy tables of ``folder`` (default: the rules shipped with zhichao), read
    once per folder: a file that is wrong raises ConfigError naming the key."""
    path = Path(folder if folder is not None else rules_dir()) / RULES_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: accuracy table is missing")
    return load_model(path, AccuracyTables)


def _linear(rule: Linear, value: float) -> float:
    return rule.factor * value + rule.offset


# The statistics of COST 323 ------------------------------------------------------------


def _t_term(n: int, tables: Cost323) -> float:
    """t(0.975; n−1)/√n: how far the sample's mean may be from the true one, in stds."""
    return float(stats.t.ppf(tables.confidence.t_quantile, n - 1)) / math.sqrt(n)


def pi0(n: int, plan: str = "r2", env: str = "I", folder: Path | None = None) -> float:
    """The minimum share (%) of errors that must lie within ±δ, for a test of ``n``
    values run under ``plan`` in environment ``env``; ≤ 0 when n is too small for the plan.

    >>> round(pi0(10, "r2", "I"), 2)
    90.0
    """
    tables = load_tables(folder).cost323
    _check_plan(plan, env, tables)
    u = tables.plans[plan].k / tables.environments[env].f - _t_term(n, tables)
    return (2.0 * float(stats.norm.cdf(u)) - 1.0) * PCT


def pi_within(delta: float, mean: float, std: float, n: int,
              folder: Path | None = None) -> float:
    """The share (%) of errors within ±``delta`` that a sample of ``n`` errors with this
    ``mean`` and ``std`` (all in %) warrants at 95 % confidence (it may be negative for a
    δ far below the spread: no share is warranted then)."""
    c = _t_term(n, load_tables(folder).cost323)
    upper = float(stats.t.sf((delta - mean) / std - c, n - 1))
    lower = float(stats.t.sf((delta + mean) / std - c, n - 1))
    return (1.0 - upper - lower) * PCT


def d_min(mean: float, std: float, n: int, target_pi0: float,
          folder: Path | None = None) -> float:
    """The smallest tolerance δ (%) with π(δ) = ``target_pi0`` (%). π grows with δ, is
    below 0 at δ = 0 and tends to 100 %, so the root is unique; found by Brent's method."""
    def gap(delta: float) -> float:
        return pi_within(delta, mean, std, n, folder) - target_pi0

    high = abs(mean) + 10.0 * std
    while gap(high) < 0:
        high *= 2.0
    return float(optimize.brentq(gap, 0.0, high, xtol=1e-10, rtol=1e-12))


def _check_plan(plan: str, env: str, tables: Cost323) -> None:
    if plan not in tables.plans:
        raise AccuracyError(f"test plan must be one of {', '.join(PLANS)} (got {plan!r})")
    if env not in tables.environments:
        raise AccuracyError(f"environment must be one of {', '.join(ENVIRONMENTS)} "
                            f"(got {env!r})")


def _fewest(plan: str, env: str, folder: Path | None) -> int:
    """The fewest values for which π0 > 0 under this plan and environment."""
    return next(n for n in range(2, 10_000) if pi0(n, plan, env, folder) > 0)


# Classes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostClassRef:
    """A COST 323 class as named in the output: ``B+(7)``, ``E(35)``."""

    letter: str
    value: float

    @property
    def name(self) -> str:
        return f"{self.letter}({self.value:g})"


def delta_of(cls: CostClassRef, criterion: str, folder: Path | None = None) -> float:
    """The class's tolerance δ (%) for ``criterion``, as the table (or class E) sets it."""
    tables = load_tables(folder).cost323
    for row in tables.classes:
        if row.name == cls.letter:
            return float(getattr(row, criterion))
    return _linear(tables.class_e.delta[criterion], cls.value)


def class_for(needed: float, criterion: str, folder: Path | None = None) -> CostClassRef:
    """The tightest class whose δ for ``criterion`` is at least ``needed`` (%)."""
    tables = load_tables(folder).cost323
    for row in tables.classes:
        if getattr(row, criterion) >= needed:
            return CostClassRef(row.name, row.value)
    e = tables.class_e
    rule = e.delta[criterion]
    steps = math.ceil(((needed - rule.offset) / rule.factor) / e.step - 1e-9)
    value = max(e.first_value, steps * e.step)
    while _linear(rule, value) < needed - 1e-9:  # guard against rounding of the division
        value += e.step
    return CostClassRef(e.name, value)


def parse_class(text: str, folder: Path | None = None) -> CostClassRef:
    """``"B+(7)"``, ``"B+"``, ``"E(35)"`` or ``"E"`` (its first value) as a class."""
    tables = load_tables(folder).cost323
    match = re.fullmatch(r"\s*([A-E]\+?)\s*(?:\(\s*(\d+(?:\.\d+)?)\s*\))?\s*", text)
    names = [f"{r.name}({r.value:g})" for r in tables.classes] + [f"{tables.class_e.name}(v)"]
    wrong = AccuracyError(f"class must be one of {', '.join(names)} (got {text!r})")
    if not match:
        raise wrong
    letter, value = match.group(1), match.group(2)
    for row in tables.classes:
        if row.name == letter:
            if value is not None and float(value) != row.value:
                raise wrong
            return CostClassRef(row.name, row.value)
    if letter != tables.class_e.name:
        raise wrong
    v = float(value) if value is not None else tables.class_e.first_value
    e = tables.class_e
    if v < e.first_value or not math.isclose((v - e.first_value) / e.step,
                                             round((v - e.first_value) / e.step)):
        raise AccuracyError(f"class {letter}({v:g}): v must be {e.first_value:g}, "
                            f"{e.first_value + e.step:g}, ... (got {text!r})")
    return CostClassRef(e.name, v)


# Assessment ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CriterionResult:
    """One criterion of a test: its sample, the confidence it must reach, the tolerance that
    reaches it, its own class, and the check at the class the unit is assessed in."""

    criterion: str
    n: int
    mean: float
    std: float
    pi0: float
    d_min: float
    class_value: float
    delta: float
    pi: float
    accepted: bool
    class_name: str = ""
    at_class: str = ""
    initial: bool = False

    def to_dict(self) -> dict:
        """The numbers, all in % (mean, std, d_min, δ, π0, π)."""
        return {"n": self.n, "mean": self.mean, "std": self.std, "pi0": self.pi0,
                "d_min": self.d_min, "class": self.class_name,
                "class_value": self.class_value, "at_class": self.at_class,
                "delta": self.delta, "pi": self.pi, "accepted": self.accepted}

    def explain(self) -> str:
        """One sentence a technician can check by hand."""
        what = load_tables().cost323.criteria.get(self.criterion, self.criterion)
        tolerance = "0.8 × the class's tolerance (initial verification)" if self.initial \
            else "the class's tolerance"
        verdict = "accepted" if self.accepted else "not accepted"
        sign = "≥" if self.accepted else "<"
        return (f"{what} ({self.criterion}): {self.n} errors, mean {self.mean:+.2f} %, "
                f"std {self.std:.2f} %; at least π0 = {self.pi0:.1f} % of all errors must lie "
                f"within ±δ, and the smallest δ this sample warrants that for is "
                f"d_min = {self.d_min:.2f} %, so this criterion alone is class "
                f"{self.class_name}; at class {self.at_class} δ = ±{self.delta:g} % "
                f"({tolerance}), π = {self.pi:.1f} % {sign} π0: {verdict}.")


@dataclass(frozen=True)
class AccuracyResult:
    """A test assessed: each criterion, and the class the unit as a whole is in (the widest
    of the criteria's own classes). ``wanted``: the class asked for, if any, at which each
    criterion's δ, π and acceptance are given instead."""

    plan: str
    env: str
    initial: bool
    criteria: tuple[CriterionResult, ...]
    class_name: str
    class_value: float
    wanted: str | None = None
    descriptions: tuple[str, str] = field(default=("", ""), compare=False)

    @property
    def accepted(self) -> bool:
        """Every criterion is accepted at the class assessed (wanted, else the one found)."""
        return all(c.accepted for c in self.criteria)

    def to_dict(self) -> dict:
        return {"plan": self.plan, "env": self.env, "initial": self.initial,
                "class": self.class_name, "class_value": self.class_value,
                "wanted": self.wanted, "accepted": self.accepted,
                "criteria": {c.criterion: c.to_dict() for c in self.criteria}}

    def explain(self) -> list[str]:
        """The test conditions, one sentence per criterion, and the verdict."""
        kind = "initial verification (tolerances × 0.8)" if self.initial else "in service"
        lines = [f"Test plan {self.plan} ({self.descriptions[0]}), environment {self.env} "
                 f"({self.descriptions[1]}), {kind}."]
        lines += [c.explain() for c in self.criteria]
        lines.append(f"The unit is COST 323 class {self.class_name}: the widest class any "
                     "criterion needs.")
        if self.wanted is not None:
            verdict = "meets" if self.accepted else "does not meet"
            lines.append(f"It {verdict} the class asked for, {self.wanted}.")
        return lines


def _sample(criterion: str, values: Sequence[float]) -> tuple[int, float, float]:
    """n, mean and sample std (ddof = 1, as Excel's STDEV) of one criterion's errors."""
    if criterion not in CRITERIA:
        raise AccuracyError(f"criterion must be one of {', '.join(CRITERIA)} "
                            f"(got {criterion!r})")
    data = np.asarray(list(values), dtype=float)
    if data.size < 2:
        raise AccuracyError(f"criterion {criterion}: at least 2 errors are needed for a "
                            f"standard deviation (got {data.size})")
    if not np.all(np.isfinite(data)):
        raise AccuracyError(f"criterion {criterion}: every error must be a finite number")
    std = float(np.std(data, ddof=1))
    if not std > 0:
        raise AccuracyError(f"criterion {criterion}: the {data.size} errors are all equal "
                            f"({data[0]:g} %); COST 323's statistics need a spread")
    return int(data.size), float(np.mean(data)), std


def assess(errors: Mapping[str, Sequence[float]], plan: str = "r2", env: str = "I",
           initial: bool = False, wanted_class: str | None = None, *,
           folder: Path | None = None) -> AccuracyResult:
    """Assess relative errors (%, (measured − static)/static) by criterion as COST 323
    does: each criterion's d_min and own class; the unit's class is the widest of them.
    Each criterion's δ, π and acceptance are then given at that class, or at
    ``wanted_class`` if asked."""
    tables = load_tables(folder).cost323
    _check_plan(plan, env, tables)
    if not errors:
        raise AccuracyError("no errors to assess: give at least one criterion of "
                            + ", ".join(CRITERIA))
    unknown = sorted(set(errors) - set(CRITERIA))
    if unknown:
        raise AccuracyError(f"criterion must be one of {', '.join(CRITERIA)} "
                            f"(got {', '.join(map(repr, unknown))})")
    scale = tables.initial_verification.factor if initial else 1.0
    found = []
    for criterion in (c for c in CRITERIA if c in errors):
        n, mean, std = _sample(criterion, errors[criterion])
        p0 = pi0(n, plan, env, folder)
        if p0 <= 0:
            raise AccuracyError(
                f"criterion {criterion}: {n} errors are too few for plan {plan}, environment "
                f"{env} (π0 would be {p0:.1f} %); at least {_fewest(plan, env, folder)} "
                "are needed")
        dm = d_min(mean, std, n, p0, folder)
        found.append((criterion, n, mean, std, p0, dm, class_for(dm / scale, criterion, folder)))
    unit = max((own for *_, own in found), key=lambda c: c.value)
    at = parse_class(wanted_class, folder) if wanted_class is not None else unit
    results = []
    for criterion, n, mean, std, p0, dm, own in found:
        delta = delta_of(at, criterion, folder) * scale
        pi = pi_within(delta, mean, std, n, folder)
        results.append(CriterionResult(
            criterion=criterion, n=n, mean=mean, std=std, pi0=p0, d_min=dm,
            class_value=own.value, delta=delta, pi=pi, accepted=pi >= p0 - 1e-9,
            class_name=own.name, at_class=at.name, initial=initial))
    return AccuracyResult(
        plan=plan, env=env, initial=initial, criteria=tuple(results), class_name=unit.name,
        class_value=unit.value, wanted=at.name if wanted_class is not None else None,
        descriptions=(tables.plans[plan].description, tables.environments[env].description))


# Reading a test's errors ----------------------------------------------------------------


def _row_error(fields: list[str], columns: dict[str, int], width: int
               ) -> tuple[str, float] | str:
    """A row's (criterion, error) or what is wrong with it."""
    if len(fields) != width:
        hint = " (a decimal comma? write 1.2, not 1,2)" if len(fields) > width else ""
        return f"{len(fields)} field(s), expected {width} as in the header{hint}"
    criterion = fields[columns["criterion"]].strip()
    text = fields[columns["error_pct"]].strip()
    if criterion not in CRITERIA:
        return f"criterion {criterion!r} is not one of {', '.join(CRITERIA)}"
    try:
        value = float(text)
    except ValueError:
        return f"error_pct {text!r} is not a number"
    if not math.isfinite(value):
        return f"error_pct {text!r} is not a finite number"
    if abs(value) > MAX_ERROR_PCT:
        return (f"error_pct {value:g} is beyond ±{MAX_ERROR_PCT:g} % "
                "(a wrong column or unit?)")
    return criterion, value


def _fields(line: str) -> list[str] | str:
    """One line's fields, or why the csv module refuses the line."""
    try:
        return next(csv.reader([line]), [])
    except csv.Error as exc:
        return f"not a CSV row: {exc}"


def _header(line: str, source: str, number: int) -> tuple[dict[str, int], int]:
    """The columns' positions and the number of fields a row must have."""
    fields = _fields(line)
    names = [name.strip().lower() for name in fields] if isinstance(fields, list) else []
    missing = [c for c in ("criterion", "error_pct") if c not in names]
    if missing:
        raise ConfigError(f"{source}: line {number}: the header must name the columns "
                          f"criterion,error_pct (got {line.strip()[:80]!r})")
    return {c: names.index(c) for c in ("criterion", "error_pct")}, len(names)


def _text(path: Path) -> str:
    """The file's text, refusing one too large to be a test's errors."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") \
            from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_FILE_BYTES // 1_000_000} MB; an errors "
                          "file of a test is a few kB")
    return decode(data, str(path))


def read_errors_csv(path: Path | str, refused: list[str] | None = None
                    ) -> dict[str, list[float]]:
    """The errors of a test by criterion, from a CSV file with the header
    ``criterion,error_pct`` (UTF-8, with or without BOM, or GBK as Excel saves it).

    A bad row is refused and the others read on: each refusal is appended to ``refused``
    as ``"line N: what is wrong"``. A file with no usable row raises ConfigError naming the
    refused lines; so do a wrong header, too many rows and a file too large.
    """
    path = Path(path)
    lines = _text(path).splitlines()
    errors: dict[str, list[float]] = {}
    bad: list[str] = []
    columns: dict[str, int] | None = None
    width = 0
    rows = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if columns is None:
            columns, width = _header(line, str(path), number)
            continue
        rows += 1
        if rows > MAX_ROWS:
            raise ConfigError(f"{path}: more than {MAX_ROWS} rows; a test has far fewer")
        fields = _fields(line)
        row = _row_error(fields, columns, width) if isinstance(fields, list) else fields
        if isinstance(row, str):
            bad.append(f"line {number}: {row}")
        else:
            errors.setdefault(row[0], []).append(row[1])
    if refused is not None:
        refused.extend(bad)
    if not errors:
        why = "it is empty" if columns is None else (
            "no rows after the header" if not bad else "every row was refused: "
            + "; ".join(bad[:MAX_LISTED]) + (" ..." if len(bad) > MAX_LISTED else ""))
        raise ConfigError(f"{path}: no usable error in the file: {why}")
    return errors


# OIML R134 / JJG 907 and ASTM E1318 ------------------------------------------------------


def mpe_percent(class_name: str, initial: bool, kind: str = "vehicle",
                folder: Path | None = None) -> float:
    """The maximum permissible error (± % of the measured value) of an OIML R134 / JJG 907
    class: ``kind`` "vehicle" (classes 0.2 ... 10, vehicle mass) or "axle" (classes A ... F,
    single-axle and axle-group load); at initial verification or in service."""
    table = load_tables(folder).oiml_r134
    if kind not in ("vehicle", "axle"):
        raise AccuracyError(f"kind must be 'vehicle' or 'axle' (got {kind!r})")
    rows = table.vehicle if kind == "vehicle" else table.axle
    for row in rows:
        if row.class_ == str(class_name).strip():
            return row.initial if initial else row.in_service
    raise AccuracyError(f"{kind} accuracy class must be one of "
                        f"{', '.join(r.class_ for r in rows)} (got {class_name!r})")


ASTM_CRITERIA = ("wheel", "axle", "group", "gvw", "speed_kmh", "axle_spacing_m")


def astm_tolerance(type_: str, criterion: str, folder: Path | None = None) -> float:
    """ASTM E1318-09's tolerance for 95 % conformity of a WIM system type (I–IV): ± % for
    wheel, axle, group and gvw; ± km/h for speed_kmh; ± m for axle_spacing_m."""
    table = load_tables(folder).astm_e1318
    if criterion not in ASTM_CRITERIA:
        raise AccuracyError(f"ASTM E1318 criterion must be one of {', '.join(ASTM_CRITERIA)} "
                            f"(got {criterion!r})")
    for row in table.types:
        if row.type == type_:
            value = getattr(row, criterion)
            if value is None:
                raise AccuracyError(f"ASTM E1318 Type {type_} sets no {criterion} tolerance")
            return float(value)
    raise AccuracyError(f"ASTM E1318 type must be one of "
                        f"{', '.join(r.type for r in table.types)} (got {type_!r})")

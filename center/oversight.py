"""Oversight of devices (国发〔2024〕5号: abnormal capture counts or fine totals trigger a
review): which devices' cases or fines per 1 000 vehicles weighed stand far above those of
comparable devices.

The rule and its numbers are data (``config/rules/oversight.yaml``, or the same file in
the center's own rules folder): who is comparable (every other active device), the rates
judged, the base (per 1 000 vehicles), the ratio to the others' median above which a
device is flagged, the fewest vehicles for a rate to count, the fewest comparable devices,
and the period. The document sets none of these numbers: each row says so (``verify``).

Counting is a few grouped queries over the period (:func:`read_counts`: vehicles weighed
are stored packets per device; captures over the limit; cases opened, by the device of
their evidence capture, rejected ones left out; fines decided); judging is a pure
function of those counts (:func:`judge`), so its worked examples need no database.
"""

import statistics
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from center.china_time import CST
from center.ingest_models import StoredPacket
from center.law_models import Capture, Case, DeviceRecord
from center.registry import is_latest
from overload.tables import Frozen, Positive, RuleId, Sourced
from zhichao.errors import ZhichaoError
from zhichao.resources import rules_dir
from zhichao.settings import load_model

FILE = "oversight.yaml"
"""The table's file name in a rules folder."""
STATISTICS = ("captures_over", "cases", "fines_yuan")
"""The counts a rate can be made of (each divided by the vehicles weighed)."""


class OversightError(ZhichaoError):
    """The oversight table cannot be read, or a period asked for is out of bounds."""


class _Row(Sourced):
    id: RuleId
    description: str | None = None
    unit: str | None = None


class Comparable(_Row):
    value: Literal["all_active"]


class Statistics(_Row):
    value: list[Literal["captures_over", "cases", "fines_yuan"]] = Field(min_length=1)


class Number(_Row):
    value: Positive


class Count(_Row):
    value: int = Field(ge=1, le=100_000_000)


class Days(_Row):
    value: int = Field(ge=1, le=3660)


class OversightTable(Frozen):
    """``oversight.yaml``: the rule of oversight, each number with its source."""

    title: str
    comparable: Comparable
    statistics: Statistics
    per_vehicles: Count
    ratio: Number
    min_vehicles: Count
    min_peers: Count
    period: Days

    def sources(self) -> list[dict]:
        """Every row with its value and source, for the page to cite."""
        rows = (self.comparable, self.statistics, self.per_vehicles, self.ratio,
                self.min_vehicles, self.min_peers, self.period)
        return [{"id": r.id, "value": r.value, "unit": r.unit, "description": r.description,
                 "source": r.source.cite(), "verify": r.verify, "note": r.note}
                for r in rows]


def load_table(folder: Path | None = None) -> OversightTable:
    """The oversight table of a rules folder (default: the shipped one); OversightError
    naming the file and the key when it is missing or wrong."""
    path = (folder or rules_dir()) / FILE
    if not path.is_file():
        raise OversightError(f"{FILE}: the oversight table is missing from the rules folder")
    return load_model(path, OversightTable, error=OversightError)


@dataclass(frozen=True)
class Counts:
    """One device's counts in the period."""

    vehicles: int = 0
    captures_over: int = 0
    cases: int = 0
    fines_yuan: float = 0.0


@dataclass(frozen=True)
class Judgement:
    """One device: its counts, its rates, whether it was judged, flagged, and why."""

    device_id: str
    active: bool
    counts: Counts
    rates: dict[str, float | None]
    medians: dict[str, float | None] = field(default_factory=dict)
    judged: bool = False
    flagged: bool = False
    reasons: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """Plain data for the page and its JSON twin."""
        return {"device_id": self.device_id, "active": self.active,
                "vehicles": self.counts.vehicles, "captures_over": self.counts.captures_over,
                "cases": self.counts.cases, "fines_yuan": self.counts.fines_yuan,
                "rates": self.rates, "medians": self.medians, "judged": self.judged,
                "flagged": self.flagged, "reasons": list(self.reasons)}


def _rates(c: Counts, per: int) -> dict[str, float | None]:
    """Each count per ``per`` vehicles (None without a vehicle weighed)."""
    if c.vehicles <= 0:
        return {s: None for s in STATISTICS}
    return {s: getattr(c, s) * per / c.vehicles for s in STATISTICS}


def judge(counts: dict[str, Counts], active: set[str], table: OversightTable
          ) -> list[Judgement]:
    """Judge every device of ``counts`` (and every active device, with zero counts):
    a device that weighed at least ``min_vehicles`` and is active is compared, rate by
    rate, with the median of the others so judged; flagged when a rate is above
    ``ratio`` times that median. Too few vehicles, too few comparable devices, or a median
    of zero (no ratio can be taken) leave it unjudged on that count, and say so. Flagged
    devices first, then by device id."""
    per = table.per_vehicles.value
    every = {d: counts.get(d, Counts()) for d in set(counts) | active}
    rates = {d: _rates(c, per) for d, c in every.items()}
    pool = {d for d, c in every.items() if d in active and c.vehicles >= table.min_vehicles.value}
    out = []
    for device, c in every.items():
        out.append(_one(device, c, rates=rates, pool=pool, active=device in active,
                        table=table))
    return sorted(out, key=lambda j: (not j.flagged, j.device_id))


def _one(device: str, c: Counts, *, rates: dict[str, dict[str, float | None]],
         pool: set[str], active: bool, table: OversightTable) -> Judgement:
    """The judgement of one device against the pool of comparable devices."""
    mine, k = rates[device], table.ratio.value
    if not active:
        return Judgement(device, active, c, mine, reasons=("not active: not compared",))
    if device not in pool:
        return Judgement(device, active, c, mine, reasons=(
            f"{c.vehicles} vehicles weighed, fewer than {table.min_vehicles.value}: "
            "rate not judged",))
    peers = pool - {device}
    if len(peers) < table.min_peers.value:
        return Judgement(device, active, c, mine, reasons=(
            f"{len(peers)} comparable devices, fewer than {table.min_peers.value}: "
            "not judged",))
    medians, reasons, flagged = {}, [], False
    for name in table.statistics.value:
        median = statistics.median(rates[p][name] for p in peers)
        medians[name] = median
        if median <= 0:
            reasons.append(f"{name}: the others' median is 0, no ratio taken")
        elif mine[name] > k * median:
            flagged = True
            reasons.append(f"{name} {mine[name]:.2f} per {table.per_vehicles.value} "
                           f"vehicles is {mine[name] / median:.1f} × the others' median "
                           f"{median:.2f} (above {k:g} ×: {table.ratio.id})")
    return Judgement(device, active, c, mine, medians, True, flagged, tuple(reasons))


# --- counting ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Period:
    """CST calendar days ``first`` … ``last``, both included, and their UTC bounds."""

    first: date
    last: date

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(), CST).astimezone(UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), time(), CST).astimezone(UTC)


def period_ending(last: date, table: OversightTable) -> Period:
    """The table's period ending on the CST day ``last``."""
    return Period(last - timedelta(days=table.period.value - 1), last)


def read_counts(session: Session, period: Period) -> tuple[dict[str, Counts], set[str]]:
    """Every device's counts in the period (four grouped queries) and the devices whose
    latest registry version is active."""
    lo, hi = period.start, period.end
    vehicles = dict(session.execute(
        select(StoredPacket.device_id, func.count()).where(
            StoredPacket.captured_at >= lo, StoredPacket.captured_at < hi)
        .group_by(StoredPacket.device_id)).all())
    over = dict(session.execute(
        select(Capture.device_id, func.count()).where(
            Capture.over, Capture.captured_at >= lo, Capture.captured_at < hi)
        .group_by(Capture.device_id)).all())
    cases = dict(session.execute(
        select(Capture.device_id, func.count(Case.id)).join(
            Capture, Capture.id == Case.best_capture_id).where(
            Case.first_at >= lo, Case.first_at < hi, Case.status != "rejected")
        .group_by(Capture.device_id)).all())
    fines = dict(session.execute(
        select(Capture.device_id, func.coalesce(func.sum(Case.decision_fine_yuan), 0.0))
        .join(Capture, Capture.id == Case.best_capture_id).where(
            Case.decided_at >= lo, Case.decided_at < hi, Case.decision_fine_yuan.is_not(None))
        .group_by(Capture.device_id)).all())
    active = set(session.scalars(select(DeviceRecord.device_id).where(
        is_latest(), DeviceRecord.active)))
    devices = set(vehicles) | set(over) | set(cases) | set(fines)
    counts = {d: Counts(int(vehicles.get(d, 0)), int(over.get(d, 0)), int(cases.get(d, 0)),
                        float(fines.get(d, 0.0))) for d in devices}
    return counts, active


def oversee(session: Session, last: date, folder: Path | None = None
            ) -> tuple[OversightTable, Period, list[Judgement]]:
    """The table, the period ending on ``last`` (CST) and every device judged."""
    table = load_table(folder)
    period = period_ending(last, table)
    counts, active = read_counts(session, period)
    return table, period, judge(counts, active, table)

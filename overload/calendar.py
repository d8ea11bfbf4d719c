"""Working days and the end of a period, counted as Chinese administrative law counts them.

The holiday lists are data (``config/rules/calendar/<year>.yaml``, one file per year, each
citing the State Council General Office's notice for that year). Everything here but
:func:`load_calendar` is date arithmetic without I/O.

How a period is counted (the rules themselves are cited in ``procedure.yaml``, ``counting``):

- the starting day is not counted: a period of n days from day d ends on d + n;
- ``working_days``: the n-th working day after the start (行政处罚法 Art. 85: that law's
  "二日 三日 五日 七日" are working days, 不含法定节假日);
- ``months`` and ``years``: the same-numbered day of the month n months (years) later, or
  the month's last day when it has no such day;
- a period in days, months or years whose last day is a rest day ends on the next working
  day (when the deadline rolls over at all: a limitation period does not).

A year with no list is still counted, Saturdays and Sundays as its only rest days, but the
result is marked provisional with a note naming the missing year.
"""

import calendar as _gregorian
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from overload.errors import RuleError
from overload.tables import SATURDAY, CalendarYear

Unit = Literal["days", "working_days", "months", "years"]
RollOver = Literal["rest_day", "holiday", "none"]
UNITS: tuple[str, ...] = ("days", "working_days", "months", "years")
CALENDAR_FOLDER = "calendar"
_DAY = timedelta(days=1)
_MONTHS_A_YEAR = 12


@dataclass(frozen=True)
class Calendar:
    """Holiday periods and adjusted working days of the years with a list.

    Attributes
    ----------
    years : Mapping[int, CalendarYear]
        The tables read, by year.
    holidays : Mapping[date, str]
        Every day of a holiday period, with the holiday's name.
    worked : frozenset of date
        Saturdays and Sundays worked (调休上班).
    """

    years: Mapping[int, CalendarYear]
    holidays: Mapping[date, str]
    worked: frozenset[date]

    @classmethod
    def of(cls, years: Iterable[CalendarYear]) -> "Calendar":
        """A calendar from year tables (a repeated year: RuleError)."""
        by_year: dict[int, CalendarYear] = {}
        holidays: dict[date, str] = {}
        worked: set[date] = set()
        for table in years:
            if table.year in by_year:
                raise RuleError(f"calendar year {table.year} is listed twice")
            by_year[table.year] = table
            for period in table.holidays:
                day = period.start
                while day <= period.to:
                    holidays[day] = period.name
                    day += _DAY
            worked.update(table.working_days)
        return cls(MappingProxyType(by_year), MappingProxyType(holidays), frozenset(worked))

    def known(self, year: int) -> bool:
        """Whether the year has a holiday list."""
        return year in self.years


@dataclass(frozen=True)
class Reckoning:
    """The end of a period: the last day, whether it rests on a missing year's list, and
    how it was counted in words (for a notice or a decision)."""

    date: date
    provisional: bool
    note: str


def is_holiday(day: date, calendar: Calendar) -> bool:
    """Whether ``day`` lies in a listed holiday period (法定节假日 and the days moved to it).

    >>> from overload.rulebook import load_rules
    >>> cal = load_rules().calendar
    >>> is_holiday(date(2026, 10, 2), cal), is_holiday(date(2026, 10, 10), cal)
    (True, False)
    """
    return day in calendar.holidays


def is_working_day(day: date, calendar: Calendar) -> bool:
    """Whether ``day`` is a working day: not in a holiday period, and Monday to Friday
    unless it is a listed adjusted working day (调休上班).

    >>> from overload.rulebook import load_rules
    >>> cal = load_rules().calendar
    >>> [is_working_day(date(2026, 2, d), cal) for d in (13, 14, 15, 24)]
    [True, True, False, True]
    """
    if day in calendar.holidays:
        return False
    return day in calendar.worked or day.isoweekday() < SATURDAY


def add_months(day: date, months: int) -> date:
    """The same-numbered day ``months`` later, or that month's last day when it has none.

    >>> add_months(date(2026, 8, 31), 6), add_months(date(2024, 2, 29), 24)
    (datetime.date(2027, 2, 28), datetime.date(2026, 2, 28))
    """
    index = day.year * _MONTHS_A_YEAR + day.month - 1 + months
    year, month = divmod(index, _MONTHS_A_YEAR)
    last = _gregorian.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


def _rests(day: date, calendar: Calendar, roll_over: RollOver) -> bool:
    if roll_over == "none":
        return False
    if roll_over == "holiday":
        return is_holiday(day, calendar)
    return not is_working_day(day, calendar)


def _missing(years: Iterable[int], calendar: Calendar) -> list[int]:
    return sorted({y for y in years if not calendar.known(y)})


def period_end(
    start: date, value: int, unit: Unit, calendar: Calendar, *,
    roll_over: RollOver = "rest_day",
) -> Reckoning:
    """The last day of a period of ``value`` ``unit`` from ``start`` (start not counted).

    Parameters
    ----------
    start : date
        The day the period runs from (receipt, filing, the act...); not counted.
    value : int
        Length of the period, 0 or more.
    unit : str
        days | working_days | months | years.
    calendar : Calendar
    roll_over : str
        For days, months and years: ``rest_day`` (a last day that is not a working day
        moves to the next working day), ``holiday`` (only a holiday-period day moves it) or
        ``none``. Working days always end on a working day.

    Returns
    -------
    Reckoning

    Examples
    --------
    >>> from overload.rulebook import load_rules
    >>> cal = load_rules().calendar
    >>> period_end(date(2026, 9, 17), 15, "days", cal).date   # 2 Oct, 国庆节 → 8 Oct
    datetime.date(2026, 10, 8)
    >>> period_end(date(2026, 2, 11), 7, "working_days", cal).date  # 14 Feb worked
    datetime.date(2026, 2, 27)
    >>> period_end(date(2024, 10, 1), 2, "years", cal, roll_over="none").date
    datetime.date(2026, 10, 1)
    >>> r = period_end(date(2026, 12, 20), 15, "days", cal)
    >>> r.date, r.provisional
    (datetime.date(2027, 1, 4), True)
    """
    if unit not in UNITS:
        raise RuleError(f"unit must be one of {', '.join(UNITS)} (got {unit!r})")
    if not isinstance(value, int) or value < 0:
        raise RuleError(f"a period must be a whole number 0 or more (got {value!r})")
    seen: list[int] = []  # years whose rest days decided the result
    if unit == "working_days":
        day, counted = start, 0
        while counted < value:
            day += _DAY
            seen.append(day.year)
            counted += is_working_day(day, calendar)
        how = f"{value} working days after {start} (the start not counted): {day}"
        return _reckoning(day, how, seen, calendar)
    if unit == "days":
        nominal = start + timedelta(days=value)
    else:
        nominal = add_months(start, value * (_MONTHS_A_YEAR if unit == "years" else 1))
    how = f"{value} {unit} from {start} (the start not counted): {nominal}"
    day = nominal
    if roll_over != "none":
        seen.append(day.year)
    while _rests(day, calendar, roll_over):
        day += _DAY
        seen.append(day.year)
    if day != nominal:
        name = calendar.holidays.get(nominal, "a weekend")
        how += f", a rest day ({name}), so the next working day {day}"
    return _reckoning(day, how, seen, calendar)


def _reckoning(day: date, how: str, seen: list[int], calendar: Calendar) -> Reckoning:
    missing = _missing(seen, calendar)
    if not missing:
        return Reckoning(day, False, how)
    years = ", ".join(map(str, missing))
    files = ", ".join(f"{CALENDAR_FOLDER}/{y}.yaml" for y in missing)
    return Reckoning(day, True, f"{how}; provisional: no holiday list for {years} ({files}), "
                                "Saturdays and Sundays taken as the only rest days")


def load_calendar(root: Path, load: Callable, display: Callable = str) -> Calendar:
    """Read ``<root>/calendar/<year>.yaml`` (each file's ``year`` must match its name) with
    ``load(path, model)``; no folder gives an empty calendar (every date provisional)."""
    folder = root / CALENDAR_FOLDER
    tables = []
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        table: CalendarYear = load(path, CalendarYear)
        if str(table.year) != path.stem:
            raise RuleError(f"{display(path)}: option 'year' must match the file name "
                            f"{path.stem!r} (got {table.year})")
        tables.append(table)
    return Calendar.of(tables)

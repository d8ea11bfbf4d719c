"""The calendar as data and periods counted the way Chinese administrative law counts them:
the start not counted, Art. 85's working days, months to the same-numbered day, a last day
on a rest day moved to the next working day; one worked example per kind over a holiday."""

from datetime import date
from pathlib import Path

import pytest

from overload import RuleError, load_rules
from overload.calendar import Calendar, add_months, is_holiday, is_working_day, period_end


@pytest.fixture(scope="module")
def cal(rules) -> Calendar:
    return rules.calendar


def edit(folder: Path, name: str, old: str, new: str) -> None:
    path = folder / name
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {name}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def load_error(folder: Path) -> str:
    with pytest.raises(RuleError) as err:
        load_rules(folder)
    return str(err.value)


# --- the lists -----------------------------------------------------------------------------


def test_years_listed_with_their_source(cal):
    assert sorted(cal.years) == [2024, 2025, 2026]
    notice = cal.years[2026].source
    assert notice.act == "国务院办公厅关于2026年部分节假日安排的通知"
    assert cal.years[2026].verify and cal.years[2026].note


@pytest.mark.parametrize(("day", "working"), [
    (date(2026, 2, 13), True),    # Friday before 春节
    (date(2026, 2, 14), True),    # Saturday, 调休上班
    (date(2026, 2, 16), False),   # 除夕, a Monday in the holiday
    (date(2026, 2, 23), False),   # Monday, last day of 春节
    (date(2026, 2, 28), True),    # Saturday, 调休上班
    (date(2026, 3, 7), False),    # an ordinary Saturday
    (date(2026, 10, 5), False),   # Monday inside 国庆节
    (date(2026, 10, 10), True),   # Saturday, 调休上班
    (date(2025, 10, 8), False),   # 国庆节、中秋节 2025, eight days
    (date(2025, 9, 28), True),    # Sunday, 调休上班
    (date(2027, 1, 1), True),     # no list for 2027: a Friday counts as working
])
def test_is_working_day(cal, day, working):
    assert is_working_day(day, cal) is working


def test_is_holiday_is_the_holiday_period_only(cal):
    assert is_holiday(date(2026, 10, 3), cal)
    assert not is_holiday(date(2026, 3, 7), cal)   # a weekend is a rest day, not a holiday


def test_add_months_same_numbered_day_or_the_months_last():
    assert add_months(date(2026, 4, 5), 6) == date(2026, 10, 5)
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2024, 2, 29), 24) == date(2026, 2, 28)
    assert add_months(date(2026, 11, 30), 3) == date(2027, 2, 28)


# --- one worked example per kind ----------------------------------------------------------


def test_days_ending_in_national_day_2026_move_to_the_next_working_day(cal):
    # 15 days from 17 Sep 2026 (not counted): 2 Oct, inside 国庆节 (1–7 Oct) → Thu 8 Oct.
    end = period_end(date(2026, 9, 17), 15, "days", cal)
    assert (end.date, end.provisional) == (date(2026, 10, 8), False)
    assert "2026-10-02, a rest day (国庆节), so the next working day 2026-10-08" in end.note


def test_days_start_not_counted_and_weekend_end_moves(cal):
    assert period_end(date(2026, 3, 2), 1, "days", cal).date == date(2026, 3, 3)
    assert period_end(date(2026, 3, 2), 0, "days", cal).date == date(2026, 3, 2)
    # Fri 6 Mar + 1 = Sat 7 Mar, a rest day → Mon 9 Mar; moved only past holidays: Sat.
    assert period_end(date(2026, 3, 6), 1, "days", cal).date == date(2026, 3, 9)
    assert period_end(date(2026, 3, 6), 1, "days", cal, roll_over="holiday").date == \
        date(2026, 3, 7)
    assert period_end(date(2026, 9, 17), 15, "days", cal, roll_over="holiday").date == \
        date(2026, 10, 8)


def test_seven_working_days_across_spring_festival_2026(cal):
    # From Wed 11 Feb: 12, 13, Sat 14 (调休上班), [15–23 春节], 24, 25, 26, 27 → Fri 27 Feb.
    end = period_end(date(2026, 2, 11), 7, "working_days", cal)
    assert (end.date, end.provisional) == (date(2026, 2, 27), False)
    assert end.note == "7 working days after 2026-02-11 (the start not counted): 2026-02-27"


def test_the_adjusted_saturday_is_what_makes_it_the_27th(rules_copy):
    # Without 14 Feb as a working day the seventh working day is Sat 28 Feb (调休上班).
    edit(rules_copy, "calendar/2026.yaml", "2026-02-14, ", "")
    edited = load_rules(rules_copy).calendar
    assert period_end(date(2026, 2, 11), 7, "working_days", edited).date == date(2026, 2, 28)


def test_five_working_days_across_national_day_2025(cal):
    # From Fri 26 Sep 2025: Sun 28 (调休上班), 29, 30, [1–8 Oct], 9, 10 → Fri 10 Oct.
    assert period_end(date(2025, 9, 26), 5, "working_days", cal).date == date(2025, 10, 10)


def test_months_ending_in_a_holiday_move(cal):
    # 6 months from 5 Apr 2026: 5 Oct, inside 国庆节 → 8 Oct.
    end = period_end(date(2026, 4, 5), 6, "months", cal)
    assert end.date == date(2026, 10, 8)
    assert "6 months from 2026-04-05" in end.note


def test_years_same_numbered_day_and_a_limitation_that_does_not_move(cal):
    # 2 years from 29 Feb 2024 → 28 Feb 2026, a Saturday but 调休上班: a working day.
    assert period_end(date(2024, 2, 29), 2, "years", cal).date == date(2026, 2, 28)
    # 2 years from 1 Oct 2024 → 1 Oct 2026: moved to 8 Oct, unless it does not roll over.
    assert period_end(date(2024, 10, 1), 2, "years", cal).date == date(2026, 10, 8)
    kept = period_end(date(2024, 10, 1), 2, "years", cal, roll_over="none")
    assert (kept.date, kept.provisional) == (date(2026, 10, 1), False)


def test_a_year_without_a_list_is_counted_but_provisional(cal):
    end = period_end(date(2026, 12, 20), 15, "days", cal)
    assert (end.date, end.provisional) == (date(2027, 1, 4), True)
    assert "no holiday list for 2027 (calendar/2027.yaml)" in end.note
    inside = period_end(date(2026, 12, 1), 5, "working_days", cal)
    assert (inside.date, inside.provisional) == (date(2026, 12, 8), False)
    across = period_end(date(2026, 12, 28), 5, "working_days", cal)
    assert (across.date, across.provisional) == (date(2027, 1, 4), True)


def test_bad_unit_and_value(cal):
    with pytest.raises(RuleError, match="unit must be one of days, working_days"):
        period_end(date(2026, 1, 5), 3, "weeks", cal)
    with pytest.raises(RuleError, match="whole number 0 or more"):
        period_end(date(2026, 1, 5), -1, "days", cal)


# --- broken lists fail loudly, naming file and key ----------------------------------------


def test_year_must_match_the_file(rules_copy):
    folder = rules_copy / "calendar"
    (folder / "2023.yaml").write_text((folder / "2025.yaml").read_text(encoding="utf-8"),
                                      encoding="utf-8")
    error = load_error(rules_copy)
    assert "calendar/2023.yaml: option 'year' must match the file name '2023'" in error
    edit(rules_copy, "calendar/2023.yaml", "year: 2025", "year: 2023")
    assert "calendar/2023.yaml: holidays.0 (元旦) lies outside 2023" in load_error(rules_copy)


def test_a_listed_working_day_must_be_a_weekend_day(rules_copy):
    edit(rules_copy, "calendar/2026.yaml", "2026-01-04", "2026-01-05")
    assert "calendar/2026.yaml" in load_error(rules_copy)
    assert "working day 2026-01-05 is a weekday already" in load_error(rules_copy)


def test_a_working_day_inside_a_holiday_and_a_backwards_period(rules_copy):
    edit(rules_copy, "calendar/2026.yaml", "2026-02-14", "2026-02-21")
    assert "working day 2026-02-21 lies inside a holiday period" in load_error(rules_copy)
    edit(rules_copy, "calendar/2026.yaml", "2026-02-21", "2026-02-14")
    edit(rules_copy, "calendar/2026.yaml", "to: 2026-02-23", "to: 2026-02-13")
    error = load_error(rules_copy)
    assert "calendar/2026.yaml" in error and "holiday '春节' ends (2026-02-13) before" in error


def test_an_unknown_key_is_refused(rules_copy):
    edit(rules_copy, "calendar/2024.yaml", "working_days:", "workdays:")
    error = load_error(rules_copy)
    assert "calendar/2024.yaml: option 'workdays' is not a known option" in error


def test_the_calendar_is_in_the_digest(rules, rules_copy):
    edit(rules_copy, "calendar/2026.yaml", "2026-10-10", "2026-10-11")
    assert load_rules(rules_copy).digest != rules.digest

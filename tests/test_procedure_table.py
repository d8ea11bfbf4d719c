"""The procedure as data: the national table and Zhejiang's overrides, the deadlines
counted over holidays, the late surcharge, legal review, hearing right, 首违不罚, appeal
routes, and broken files refused with the file and the key."""

from datetime import date
from pathlib import Path

import pytest

from overload import RuleError, load_rules


def edit(folder: Path, name: str, old: str, new: str) -> None:
    path = folder / name
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {name}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def load_error(folder: Path) -> str:
    with pytest.raises(RuleError) as err:
        load_rules(folder)
    return str(err.value)


@pytest.fixture(scope="module")
def national(rules):
    return rules.procedure("national")


@pytest.fixture(scope="module")
def zhejiang(rules):
    return rules.procedure("zhejiang")


# --- steps and states ------------------------------------------------------------------------


def test_steps_follow_the_states_of_the_contract(national):
    moves = {name: (step.from_states, step.to) for name, step in national.steps.items()}
    assert moves == {
        "review": (("awaiting_review",), "reviewed"),
        "approve": (("reviewed",), "approved"),
        "notify": (("approved",), "notified"),
        "defence": (("notified",), "heard"),
        "legal_review": (("heard",), "legally_reviewed"),
        "decide": (("heard", "legally_reviewed"), "decided"),
        "serve": (("decided",), "served"),
        "pay": (("served",), "paid"),
        "close": (("paid", "served"), "closed"),
        "reject": (("awaiting_review", "reviewed", "approved", "notified", "heard",
                    "legally_reviewed"), "rejected"),
    }


def test_close_from_served_only_without_a_penalty(national):
    assert national.step_allowed("close", "paid")
    assert national.step_allowed("close", "served", penalty=False)
    assert not national.step_allowed("close", "served", penalty=True)
    assert not national.step_allowed("decide", "notified")


def test_steps_cite_their_sources_and_say_who_takes_them(national):
    assert national.steps["approve"].source.article == "第四十二条"
    assert national.steps["notify"].cite() == (
        "中华人民共和国行政处罚法（2021） 第四十四条；中华人民共和国行政处罚法（2021） 第四十五条 "
        "第一款；中华人民共和国行政处罚法（2021） 第六十三条 第一款")
    assert national.steps["review"].officer and not national.steps["legal_review"].officer


# --- deadlines and overrides ---------------------------------------------------------------


def test_national_deadlines(national):
    d = national.deadlines
    got = {k: (v.value, v.unit, v.source.article) for k, v in d.items()}
    assert got == {
        "defence_window": (5, "working_days", "第六十四条"),
        "hearing_request": (5, "working_days", "第六十四条"),
        "decide_within": (90, "days", "第六十条"),
        "serve_within": (7, "working_days", "第六十一条"),
        "pay_within": (15, "days", "第六十七条"),
        "limitation": (2, "years", "第三十六条"),
        "reminder_after": (30, "days", "第三十三条"),
        "public_notice": (30, "days", "第九十五条"),
        "review_within": (5, "days", "§5"),
    }
    assert d["defence_window"].verify and d["reminder_after"].verify
    assert d["review_within"].guidance and not d["pay_within"].guidance
    assert not d["hearing_request"].verify and not d["limitation"].roll_over


def test_zhejiang_replaces_only_the_keys_it_gives(national, zhejiang):
    window = zhejiang.deadlines["defence_window"]
    assert (window.value, window.unit, window.source.cite()) == (
        15, "days", "浙江省公路条例（2020） 第四十条 第三款")
    for key in ("hearing_request", "decide_within", "serve_within", "pay_within", "limitation"):
        assert zhejiang.deadlines[key] == national.deadlines[key]
    assert zhejiang.steps == national.steps
    assert zhejiang.hearing_rule.person_fine_at_least_yuan == 5000
    assert zhejiang.late_surcharge_rule == national.late_surcharge_rule
    assert zhejiang.files["deadlines.defence_window"].endswith("procedure/zhejiang.yaml")
    assert zhejiang.files["hearing"].endswith("procedure/zhejiang.yaml")
    assert zhejiang.files["late_surcharge"].endswith("procedure.yaml")


def test_defence_window_over_national_day_2026(national, zhejiang):
    # Notice received Thu 17 Sep 2026. Zhejiang: 15 days → 2 Oct (国庆节) → 8 Oct.
    # National: 5 working days → Wed 23 Sep.
    due = zhejiang.due("defence_window", date(2026, 9, 17))
    assert (due.date, due.provisional) == (date(2026, 10, 8), False)
    assert due.deadline.id == "procedure.zhejiang.defence-window"
    assert "国庆节" in due.note
    assert national.due("defence_window", date(2026, 9, 17)).date == date(2026, 9, 23)


@pytest.mark.parametrize(("key", "start", "end"), [
    ("hearing_request", date(2026, 9, 29), date(2026, 10, 12)),  # 30 Sep, 8, 9, Sat 10, 12
    ("serve_within", date(2026, 9, 29), date(2026, 10, 14)),     # 7 working days
    ("pay_within", date(2026, 9, 20), date(2026, 10, 8)),        # 5 Oct (国庆节) → 8 Oct
    ("decide_within", date(2025, 11, 19), date(2026, 2, 24)),    # 17 Feb (春节) → 24 Feb
    ("reminder_after", date(2026, 1, 1), date(2026, 2, 2)),      # 31 Jan, a Saturday → 2 Feb
    ("limitation", date(2024, 10, 1), date(2026, 10, 1)),        # does not move
])
def test_each_deadline_kind_over_a_holiday(national, key, start, end):
    assert national.due(key, start).date == end


def test_decide_within_ending_in_spring_festival(national):
    # Filed 19 Nov 2025: 90 days → 17 Feb 2026 (春节, 初一) → next working day Tue 24 Feb.
    due = national.due("decide_within", date(2025, 11, 19))
    assert due.date == date(2026, 2, 24)
    assert "2026-02-17, a rest day (春节)" in due.note


def test_a_deadline_in_a_year_without_a_list_is_provisional(national):
    due = national.due("decide_within", date(2026, 11, 1))
    assert (due.date, due.provisional) == (date(2027, 2, 1), True)
    assert "no holiday list for 2027" in due.note


def test_unknown_deadline_names_the_known_ones(national):
    with pytest.raises(RuleError, match=r"no deadline 'appeal' \(known: defence_window"):
        national.due("appeal", date(2026, 1, 5))


# --- money and conditions ------------------------------------------------------------------


def test_late_surcharge_three_percent_a_day_capped_at_the_fine(national):
    assert national.late_surcharge(2000, 0) == 0
    assert national.late_surcharge(2000, 1) == 60
    assert national.late_surcharge(1500, 7) == 315
    assert national.late_surcharge(2000, 33) == 1980
    assert national.late_surcharge(2000, 34) == 2000
    assert national.late_surcharge_rule.source.cite() == \
        "中华人民共和国行政处罚法（2021） 第七十二条 第一款第（一）项"
    with pytest.raises(RuleError):
        national.late_surcharge(2000, -1)


def test_late_surcharge_rate_is_data(rules_copy):
    edit(rules_copy, "procedure.yaml", "percent_per_day: 3", "percent_per_day: 2")
    assert load_rules(rules_copy).procedure("zhejiang").late_surcharge(1000, 5) == 100


def test_legal_review_needed(national):
    need, why = national.legal_review_needed(500, hearing_held=True, revokes_certificate=False)
    assert need and "第五十八条" in why and "hearing" in why
    need, why = national.legal_review_needed(500, hearing_held=False, revokes_certificate=True)
    assert need and "revokes a certificate" in why
    need, why = national.legal_review_needed(10000, hearing_held=False,
                                             revokes_certificate=False)
    assert need and "reaches 10000 yuan" in why
    need, why = national.legal_review_needed(9999, hearing_held=False,
                                             revokes_certificate=False)
    assert not need and "procedure.legal-review" in why


def test_hearing_right_by_party_and_province(national, zhejiang):
    assert national.hearing_right(10000, "person")
    assert not national.hearing_right(9999, "person")
    assert not national.hearing_right(30000, "company")
    assert national.hearing_right(100, "company", revokes_certificate=True)
    assert zhejiang.hearing_right(5000, "person") and not zhejiang.hearing_right(4999, "person")
    assert zhejiang.hearing_right(50000, "company")
    with pytest.raises(RuleError, match="person or company"):
        national.hearing_right(100, "driver")


def test_first_violation_appeals_rejects_and_art_45(national):
    first = national.first_violation
    assert first.minor_actions == ("education", "warning") and first.needs_commitment
    assert first.is_minor("warning") and not first.is_minor("fine", 1.0)
    assert first.reminder_after == "reminder_after" and first.source.article == "第三十三条"
    routes = {r.name: (r.value, r.unit, r.verify) for r in national.appeal_routes}
    assert routes == {"行政复议": (60, "days", True), "行政诉讼": (6, "months", True)}
    assert set(national.reject_reasons) == {"plate_misread", "not_evidential",
                                            "device_not_legal", "duplicate", "exempt_vehicle",
                                            "measurement_doubtful", "other"}
    assert national.no_heavier_after_defence.cite() == \
        "中华人民共和国行政处罚法（2021） 第四十五条 第二款"


def test_procedure_rows_are_cited_rules(rules):
    assert rules.rules["procedure.pay-within"].source.article == "第六十七条"
    assert rules.rules["procedure.zhejiang.defence-window"].verify


# --- names and broken files ----------------------------------------------------------------


def test_unknown_name_is_an_error_naming_the_file_looked_for(rules):
    with pytest.raises(RuleError, match=r"no procedure 'hubei': .*procedure/hubei\.yaml not "
                                        r"found \(known: national, zhejiang\)"):
        rules.procedure("hubei")


def test_a_province_benchmark_without_a_procedure_file_does_not_fall_back(rules_copy):
    text = (rules_copy / "benchmarks/zhejiang.yaml").read_text(encoding="utf-8")
    text = text.replace("id: zhejiang", "id: hubei").replace("zhejiang.", "hubei.")
    (rules_copy / "benchmarks/hubei.yaml").write_text(text, encoding="utf-8")
    edited = load_rules(rules_copy)
    assert "hubei" in edited.benchmarks
    with pytest.raises(RuleError, match=r"procedure/hubei\.yaml not found"):
        edited.procedure("hubei")


def test_no_national_table(rules_copy):
    (rules_copy / "procedure.yaml").unlink()
    edited = load_rules(rules_copy)
    with pytest.raises(RuleError, match=r"procedure\.yaml: procedure table is missing"):
        edited.procedure("national")


def test_a_bad_override_value_names_file_and_key(rules_copy):
    edit(rules_copy, "procedure/zhejiang.yaml", "unit: days", "unit: weeks")
    error = load_error(rules_copy)
    assert "procedure/zhejiang.yaml: option 'deadlines.defence_window.unit'" in error


def test_an_unknown_override_key_names_file_and_key(rules_copy):
    edit(rules_copy, "procedure/zhejiang.yaml", "deadlines:\n  defence_window:",
         "deadlines:\n  defense_window:")
    error = load_error(rules_copy)
    assert "procedure/zhejiang.yaml: option 'deadlines.defense_window" in error


def test_a_national_table_missing_a_step_names_file_and_key(rules_copy):
    edit(rules_copy, "procedure.yaml", "  serve:\n", "  served:\n")
    error = load_error(rules_copy)
    assert "procedure.yaml: option 'steps.served" in error


def test_a_step_to_an_unknown_state(rules_copy):
    edit(rules_copy, "procedure.yaml", "to: paid", "to: settled")
    error = load_error(rules_copy)
    assert "procedure.yaml: option 'steps.pay.to'" in error


def test_merged_override_is_checked_naming_the_override(rules_copy):
    text = (rules_copy / "procedure.yaml").read_text(encoding="utf-8")
    start = text.index("  review_within:")
    (rules_copy / "procedure.yaml").write_text(
        text[:start] + text[text.index("# --- how periods"):], encoding="utf-8")
    path = rules_copy / "procedure/zhejiang.yaml"
    first = (rules_copy / "procedure.yaml").read_text(encoding="utf-8")
    block = first[first.index("first_violation:"):first.index("# --- reasons")]
    path.write_text(path.read_text(encoding="utf-8") + "\n" + block.replace(
        "procedure.first-violation", "procedure.zhejiang.first-violation").replace(
        "reminder_after: reminder_after", "reminder_after: review_within"), encoding="utf-8")
    error = load_error(rules_copy)
    assert "procedure/zhejiang.yaml: merged with" in error
    assert "first_violation.reminder_after names deadline 'review_within'" in error


def test_a_minor_excess_bound_is_data(rules_copy):
    edit(rules_copy, "procedure.yaml", "  needs_commitment: true\n",
         "  max_excess_pct: 5\n  needs_commitment: true\n")
    first = load_rules(rules_copy).procedure("national").first_violation
    assert first.is_minor("fine", 4.9) and first.is_minor("fine", 5)
    assert not first.is_minor("fine", 5.1) and not first.is_minor("fine")


def test_override_id_must_match_file_and_rule_ids_stay_unique(rules_copy):
    edit(rules_copy, "procedure/zhejiang.yaml", "id: zhejiang", "id: zj")
    assert "procedure/zhejiang.yaml: option 'id' must match the file name" in \
        load_error(rules_copy)
    edit(rules_copy, "procedure/zhejiang.yaml", "id: zj", "id: zhejiang")
    edit(rules_copy, "procedure/zhejiang.yaml", "procedure.zhejiang.hearing",
         "procedure.hearing")
    assert "rule id 'procedure.hearing' is already used" in load_error(rules_copy)


def test_verify_needs_a_note_in_a_step(rules_copy):
    edit(rules_copy, "procedure.yaml", "    to: closed\n", "    to: closed\n    verify: true\n")
    assert "procedure.yaml" in load_error(rules_copy)
    assert "'verify: true' needs a 'note'" in load_error(rules_copy)


def test_the_procedure_is_in_the_digest(rules, rules_copy):
    edit(rules_copy, "procedure/zhejiang.yaml", "value: 15", "value: 16")
    edited = load_rules(rules_copy)
    assert edited.digest != rules.digest
    assert edited.procedure("zhejiang").deadlines["defence_window"].value == 16

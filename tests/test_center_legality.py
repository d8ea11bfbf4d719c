"""Is a capture evidence: each check of the registry at the capture time, and of the pass."""

import ast
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
from center_factory import T0, make_packet, registry_row

import center
from center.legality import evidential, local_day
from center.settings import MOVED_TO_RULES, LawSettings
from overload import load_rules

LAW = dict(abnormal_driving=("straddling", "speed_change", "weaving", "off_speed"),
           faulty_measurement=("missing_axle",), trusted_clocks=("synced", "holdover"))
NOTICE = load_rules().enforcement.notice_lead


@dataclass
class Stop:
    starts: date
    ends: date | None
    reason: str


def verdict(record=None, suspensions=(), packet=None, lead=None, at=T0):
    notice = NOTICE if lead is None else NOTICE.model_copy(update={"value": lead})
    return evidential(record if record is not None else registry_row(), suspensions, at,
                      notice, packet=packet or make_packet(captured_at=at), device_id="D1",
                      **LAW)


def failed(v):
    return {c.id for c in v.checks if not c.ok}


def test_a_good_device_and_pass_is_evidence_and_every_check_is_listed():
    v = verdict()
    assert v.evidential and v.reasons == []
    assert [c.id for c in v.checks] == ["registered", "active", "review", "certificate",
                                        "signs", "notice", "enforcement", "suspension",
                                        "driving", "measurement", "plate", "images", "clock",
                                        "calibration"]
    assert all(c.source for c in v.checks)


def test_unknown_device():
    v = evidential(None, (), T0, NOTICE, device_id="D9")
    assert not v.evidential
    assert v.reasons == ["device D9 is not in the registry (行政处罚法（2021） 第四十一条 第一款)"]


def test_capture_day_is_the_day_in_china():
    late_evening_utc = T0.replace(hour=17)  # 01:00 the next day in China
    assert local_day(late_evening_utc) == date(2026, 6, 2)


@pytest.mark.parametrize(("change", "check", "words"), [
    ({"active": False}, "active", "marked inactive"),
    ({"review_date": date(2026, 6, 2)}, "review", "review passed 2026-06-02 is after"),
    ({"review_date": None}, "review", "no date in the registry"),
    ({"certificate_valid_to": date(2026, 5, 31)}, "certificate",
     "JD-2026-001 expired on 2026-05-31, before the capture on 2026-06-01"),
    ({"certificate_valid_from": date(2026, 6, 2), "certificate_valid_to": date(2027, 6, 1)},
     "certificate", "valid from 2026-06-02"),
    ({"certificate_number": None}, "certificate", "no number"),
    ({"signs_installed": date(2026, 6, 5)}, "signs", "signs installed 2026-06-05 is after"),
    ({"notice_date": None}, "notice", "none in the registry"),
    ({"enforcement_start": date(2026, 7, 1)}, "enforcement", "enforcement start 2026-07-01"),
])
def test_each_registry_check_fails_alone_with_its_reason(change, check, words):
    v = verdict(registry_row(**change))
    assert not v.evidential
    assert failed(v) == {check}
    (reason,) = v.reasons
    assert words in reason


def test_certificate_valid_on_its_last_day():
    assert verdict(registry_row(certificate_valid_to=date(2026, 6, 1))).evidential


def test_notice_exactly_the_lead_time_before_enforcement_is_enough_one_day_less_is_not():
    start = date(2026, 3, 1)
    assert NOTICE.value == 15
    assert verdict(registry_row(notice_date=start - timedelta(days=15))).evidential
    v = verdict(registry_row(notice_date=start - timedelta(days=14)))
    assert failed(v) == {"notice"}
    assert v.reasons[0].startswith(
        "public notice 2026-02-15 (浙交〔2026〕1号) was 14 days before the start of "
        "enforcement on 2026-03-01; 15 are required (enforcement.notice-lead)")
    assert "浙江省公路条例（2020） 第三十八条 第一款" in v.reasons[0]


def test_a_notice_late_for_the_start_of_enforcement_stays_late():
    """Art. 38 asks for the notice before the device is put to use: months of use later,
    a notice given 10 days before the start is still 5 days short."""
    record = registry_row(notice_date=date(2026, 2, 19))
    assert (local_day(T0) - record.notice_date).days > 90
    assert failed(verdict(record)) == {"notice"}


def test_without_a_start_date_the_notice_is_measured_to_the_capture():
    v = verdict(registry_row(notice_date=local_day(T0) - timedelta(days=20),
                             enforcement_start=None))
    assert failed(v) == {"enforcement"}


def test_the_notice_check_cites_the_rule_row_and_its_verify_mark():
    row = NOTICE.model_copy(update={"source": NOTICE.source.model_copy(
        update={"act": "某省公路条例", "article": "第九条", "clause": None}), "verify": True})
    v = evidential(registry_row(notice_date=None), (), T0, row, device_id="D1")
    assert v.reasons[0].endswith("某省公路条例 第九条 [verify])")


def test_notice_lead_time_is_the_rule_rows_value():
    record = registry_row(notice_date=date(2026, 3, 1) - timedelta(days=10))
    assert not verdict(record, lead=15).evidential
    assert verdict(record, lead=10).evidential
    assert verdict(record, lead=0).evidential


def test_suspension_covering_the_day_both_ends_included():
    for stop in (Stop(date(2026, 5, 30), date(2026, 6, 1), "repair"),
                 Stop(date(2026, 6, 1), None, "flood")):
        v = verdict(suspensions=[stop])
        assert failed(v) == {"suspension"}
        assert stop.reason in v.reasons[0]
    assert verdict(suspensions=[Stop(date(2026, 5, 1), date(2026, 5, 31), "x")]).evidential


@pytest.mark.parametrize(("packet", "check", "words"), [
    (make_packet(flags=("straddling",)), "driving", "abnormal driving flagged: straddling"),
    (make_packet(flags=("speed_change", "weaving")), "driving", "speed_change, weaving"),
    (make_packet(flags=("missing_axle",)), "measurement", "measurement flagged: missing_axle"),
    (make_packet(plate=None), "plate", "no readable plate"),
    (make_packet(plate="  "), "plate", "no readable plate"),
    (make_packet(images=0), "images", "no images of the pass"),
    (make_packet(clock="free_running"), "clock", "device clock free_running"),
])
def test_each_pass_check_fails_alone_with_its_reason(packet, check, words):
    v = verdict(packet=packet)
    assert failed(v) == {check}
    assert words in v.reasons[0]


def test_flags_that_are_not_abnormal_driving_do_not_count():
    assert verdict(packet=make_packet(flags=("unknown_code_x",))).evidential


def test_plate_confidence_floor():
    packet = make_packet(confidence=0.4)
    v = evidential(registry_row(), (), T0, NOTICE, packet=packet, min_plate_confidence=0.5,
                   **LAW)
    assert failed(v) == {"plate"}
    assert "0.40, below the floor 0.5" in v.reasons[0]


def test_several_failures_give_every_reason():
    v = verdict(registry_row(active=False, signs_installed=None),
                packet=make_packet(flags=("off_speed",), plate=None))
    assert failed(v) == {"active", "signs", "driving", "plate"}
    assert len(v.reasons) == 4


def test_the_center_holds_no_number_of_the_enforcement_table():
    table = load_rules().enforcement
    numbers = {row.value for row in (table.notice_lead, table.repeat_window,
                                     table.repeat_more_than, table.report_within)}
    assert not set(MOVED_TO_RULES) & set(LawSettings.model_fields)
    offenders = []
    for name in ("legality", "cases", "export", "settings"):
        path = Path(center.__file__).parent / f"{name}.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and type(node.value) is int \
                    and node.value in numbers:
                offenders.append(f"{path.name}:{node.lineno}: {node.value}")
    assert offenders == []


@dataclass
class Version:
    """A stored registry row: registry_row's facts with its version and first day."""

    record: object
    version: int
    effective_from: date

    def __getattr__(self, name):
        return getattr(self.record, name)


def test_the_registered_check_names_the_version_in_force():
    v = verdict(Version(registry_row(), 3, date(2026, 5, 1)))
    assert v.evidential
    assert v.checks[0].text == "device D1 is in the registry (version 3, in force from " \
        "2026-05-01)"
    assert verdict().checks[0].text == "device D1 is in the registry"  # a file's row


def test_a_capture_before_the_first_version_is_not_registered_that_day():
    v = evidential(None, (), T0, NOTICE, device_id="D1", first_from=date(2026, 7, 1))
    assert not v.evidential
    assert v.reasons == ["device D1 has no registry row in force on 2026-06-01: its first "
                         "version is in force from 2026-07-01 (行政处罚法（2021） 第四十一条 "
                         "第一款)"]

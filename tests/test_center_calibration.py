"""The calibration a pass was weighed with, from the unit to the staff's page: the packet
carries the stage chain (schema 1.2), the center takes a capture as evidence only when
the chain's verification certificate covered the capture's day in China (计量法 Arts. 9
and 25), and the case and capture pages show the chain in force; older packets (1.1, no
chain) still read and verify but are not evidence; hostile chains are refused."""

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from center_factory import (
    LEGACY_CALIBRATION,
    T0,
    chain_record,
    make_chain,
    make_packet,
    registry_row,
)
from sqlalchemy import insert
from sqlalchemy.orm import Session
from web_factory import WebCenter, log_in, web_center

from calibration.chain import ChannelGain
from center.cases import process_packets
from center.ingest_models import StoredPacket
from center.legality import evidential
from edge.evidence_link import EvidenceLink
from edge.packets import calibration_record
from edge.settings import EdgeSettings, EvidenceSettings
from evidence.keys import make_keys
from evidence.packet import (
    MAX_STAGES,
    Packet,
    PacketError,
    canonical_bytes,
    decode_packet,
    packet_hash,
)
from evidence.signing import SignedPacket, new_signing_key, verify
from overload import load_rules
from zhichao.errors import ConfigError

NOTICE = load_rules().enforcement.notice_lead
LAW = dict(abnormal_driving=("straddling",), faulty_measurement=("missing_axle",),
           trusted_clocks=("synced", "holdover"))


def judge(packet: Packet):
    return evidential(registry_row(), (), packet.captured_at, NOTICE, packet=packet,
                      device_id="D1", **LAW)


def calibration_check(verdict):
    (check,) = [c for c in verdict.checks if c.id == "calibration"]
    return check


# --- the record a unit writes ------------------------------------------------------------

def test_the_record_carries_every_stage_its_digest_and_its_certificate():
    chain = make_chain()
    record = calibration_record(chain)
    assert record.chain_digest == chain.digest() and record.has_chain
    assert record.factor_set is None and record.version == "2026-01"
    assert (record.certificate, record.certificate_valid_from,
            record.certificate_valid_to) == ("JD-2026-001", date(2026, 1, 15), date(2027, 1, 14))
    assert [s.kind for s in record.stages] == ["channel_gain", "speed_factor",
                                               "temperature_curve"]
    gain, speed, temp = record.stages
    assert gain.factors == chain.stages[0].factors and gain.points == []
    assert speed.points == [40, 60, 80] and temp.points == [0, 20, 40]
    assert gain.approved_by == "王工" and gain.uncertainty_pct == 0.4
    assert gain.approved_at is not None and gain.approved_at.tzinfo is not None
    packet = make_packet(calibration=record)
    assert decode_packet(canonical_bytes(packet)).calibration == record


def test_a_chain_without_certificate_gives_an_empty_number_and_no_dates():
    record = calibration_record(make_chain(certificate=False))
    assert record.certificate == "" and record.certificate_valid_from is None
    assert record.has_chain


def _evidence_settings(folder: Path, device_id: str = "D1") -> EdgeSettings:
    make_keys(folder / "keys", "edge")
    make_keys(folder / "keys", "center", curve_only=True)
    return EdgeSettings(device_id=device_id, evidence=EvidenceSettings(
        outbox=Path("outbox.db"), endpoints=["tcp://127.0.0.1:1"], certificate="JD-OLD"))


VEHICLE = {"lane": 1, "speed_mps": 16.0, "axle_loads_kg": [7000.0, 9000.0],
           "spacings_m": [4.0], "tyres": [], "axle_code": "12", "flags": []}


@pytest.mark.parametrize("with_chain", [True, False])
def test_the_units_link_puts_the_chain_in_every_packet_or_the_older_record(tmp_path,
                                                                           with_chain):
    settings = _evidence_settings(tmp_path)
    chain = make_chain() if with_chain else None
    link = EvidenceLink(settings, tmp_path, load_rules(), chain=chain)
    try:
        sequence = link.put(VEHICLE, captured_at=T0, clock_status="synced", suspected=False)
        [(_, signed)] = link.outbox.get([sequence])
    finally:
        link.outbox.close()
    cal = decode_packet(signed.meta).calibration
    if with_chain:
        assert cal == calibration_record(chain)
    else:
        assert (cal.factor_set, cal.certificate, cal.has_chain) == ("settings", "JD-OLD",
                                                                    False)


def test_the_link_refuses_another_units_chain(tmp_path):
    settings = _evidence_settings(tmp_path, device_id="D7")
    with pytest.raises(ConfigError, match="of device D1, this unit is D7"):
        EvidenceLink(settings, tmp_path, load_rules(), chain=make_chain())


# --- the check ------------------------------------------------------------------------------

def test_a_chain_whose_certificate_covers_the_day_passes():
    v = judge(make_packet(calibration=chain_record()))
    assert v.evidential
    check = calibration_check(v)
    assert check.ok
    assert check.text.startswith("calibration chain 2026-01 (")
    assert "3 stages) under verification certificate JD-2026-001 valid 2026-01-15 to " \
           "2027-01-14, covering the capture on 2026-06-01" in check.text


@pytest.mark.parametrize(("valid_from", "valid_to", "words"), [
    (date(2026, 1, 12), date(2026, 5, 31),
     "its verification certificate JD-2026-001 expired on 2026-05-31, before the capture "
     "on 2026-06-01"),
    (date(2026, 6, 2), date(2027, 6, 1),
     "its verification certificate JD-2026-001 is valid from 2026-06-02, after the "
     "capture on 2026-06-01"),
])
def test_a_certificate_not_covering_the_day_is_not_evidence(valid_from, valid_to, words):
    record = chain_record(make_chain(valid_from=valid_from, valid_to=valid_to))
    v = judge(make_packet(calibration=record))
    assert not v.evidential
    assert [c.id for c in v.checks if not c.ok] == ["calibration"]
    (reason,) = v.reasons
    assert words in reason
    assert "计量法 第九条 第一款" in reason and "计量法 第二十五条" in reason


def test_a_chain_applied_after_its_verification_is_not_evidence():
    """The unit adjusted after the institute verified it is not the unit verified."""
    chain = make_chain(valid_from=date(2026, 1, 10))
    later = chain.model_copy(update={"applied_at": datetime(2026, 1, 12, 3, tzinfo=UTC)})
    v = judge(make_packet(calibration=chain_record(later)))
    assert not v.evidential
    assert "was applied on 2026-01-12, after its verification certificate JD-2026-001 of " \
           "2026-01-10: the unit was adjusted after it was verified" in v.reasons[0]
    same_day = chain.model_copy(update={"applied_at": datetime(2026, 1, 10, 3, tzinfo=UTC)})
    assert judge(make_packet(calibration=chain_record(same_day))).evidential


def test_the_certificates_last_day_is_the_day_in_china():
    record = chain_record(make_chain(valid_to=date(2026, 6, 1)))
    assert judge(make_packet(calibration=record)).evidential
    late = T0.replace(hour=17)  # 01:00 on 2026-06-02 in China
    v = judge(make_packet(calibration=record, captured_at=late))
    assert "expired on 2026-06-01, before the capture on 2026-06-02" in v.reasons[0]


def test_no_chain_or_no_certificate_is_not_evidence():
    v = judge(make_packet(calibration=LEGACY_CALIBRATION))
    assert not v.evidential
    assert v.reasons[0].startswith("no calibration stage chain in the packet (factor set "
                                   "'settings'): which calibration weighed the pass is not "
                                   "shown (计量法 第九条")
    v = judge(make_packet(calibration=chain_record(make_chain(certificate=False))))
    assert "no verification certificate with a number and validity dates" in v.reasons[0]


def test_a_chain_under_another_certificate_than_the_registrys_is_named():
    record = chain_record(make_chain(number="JD-2026-777"))
    check = calibration_check(judge(make_packet(calibration=record)))
    assert check.ok and check.text.endswith("; the registry names certificate JD-2026-001")


def test_a_chain_of_no_stages_under_a_certificate_is_a_device_verified_as_it_is():
    chain = make_chain().model_copy(update={"stages": []})
    check = calibration_check(judge(make_packet(calibration=calibration_record(chain))))
    assert check.ok and ", 0 stages)" in check.text


# --- older packets ----------------------------------------------------------------------------

def _as_1_1(packet: Packet) -> bytes:
    """The bytes a 1.1 unit wrote for ``packet``: no chain fields, a factor set."""
    data = json.loads(canonical_bytes(packet))
    data["schema"] = "zhichao.evidence/1.1"
    data["calibration"] = {"version": "2025-10", "factor_set": "settings",
                           "certificate": "JD-2026-001"}
    return json.dumps(data, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def test_a_1_1_packet_reads_verifies_and_is_judged_without_a_chain():
    key = new_signing_key()
    meta = _as_1_1(make_packet(images=0))
    packet = verify(SignedPacket(meta, key.sign(meta)), key.public_key())
    assert packet.schema_ == "zhichao.evidence/1.1"
    cal = packet.calibration
    assert (cal.version, cal.factor_set, cal.has_chain, cal.stages) == ("2025-10", "settings",
                                                                        False, [])
    check = calibration_check(judge(packet))
    assert not check.ok and "factor set 'settings'" in check.text


# --- hostile chains ---------------------------------------------------------------------------

def _with_calibration(change) -> bytes:
    data = json.loads(canonical_bytes(make_packet()))
    change(data["calibration"])
    return json.dumps(data, ensure_ascii=False).encode()


def _stage(cal):
    return cal["stages"][0]


HOSTILE = {
    "too many stages": lambda c: c.update(stages=[c["stages"][0]] * (MAX_STAGES + 1)),
    "too many factors": lambda c: _stage(c).update(factors=[1.0] * 257),
    "factor out of range": lambda c: _stage(c).update(factors=[1.0, 7.5]),
    "factor zero": lambda c: _stage(c).update(factors=[0.0]),
    "no factors": lambda c: _stage(c).update(factors=[]),
    "points not matching": lambda c: c["stages"][1].update(points=[40.0, 60.0]),
    "point beyond 250": lambda c: c["stages"][1].update(points=[40.0, 60.0, 9e9]),
    "huge fitted_from": lambda c: _stage(c).update(fitted_from="x" * 100_000),
    "huge version": lambda c: c.update(version="v" * 65),
    "huge certificate": lambda c: c.update(certificate="JD" * 101),
    "kind with markup": lambda c: _stage(c).update(kind="<script>"),
    "uncertainty negative": lambda c: _stage(c).update(uncertainty_pct=-1),
    "digest not hex": lambda c: c.update(chain_digest="z" * 64),
    "naive approval time": lambda c: _stage(c).update(approved_at="2026-01-12T03:00:00"),
    "unknown field": lambda c: c.update(extra="x"),
    "stages not a list": lambda c: c.update(stages={"kind": "channel_gain"}),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_chains_are_refused_by_the_schema(name):
    with pytest.raises(PacketError) as caught:
        decode_packet(_with_calibration(HOSTILE[name]))
    assert caught.value.kind in ("field", "too_large")


def test_nan_and_infinite_factors_are_refused_before_the_schema():
    for token in (b"NaN", b"Infinity", b"-Infinity"):
        meta = _with_calibration(lambda c: _stage(c).update(factors=[1.0, 1.0])) \
            .replace(b"[1.0,1.0]", b"[1.0," + token + b"]").replace(b"[1.0, 1.0]",
                                                                      b"[1.0, " + token + b"]")
        assert token in meta
        with pytest.raises(PacketError, match=r"not UTF-8 JSON"):
            decode_packet(meta)


# --- the center and its pages ------------------------------------------------------------------

@pytest.fixture
def center(center_db_url: str, tmp_path: Path) -> WebCenter:
    return web_center(center_db_url, tmp_path)


def _capture(center: WebCenter, packet: Packet) -> tuple[int, object]:
    """Store a packet as the receiver would and judge it; its capture id and result."""
    meta = canonical_bytes(packet)
    with Session(center.engine) as s, s.begin():
        packet_id = s.execute(insert(StoredPacket).values(
            device_id="D1", sequence=packet.sequence, hash=packet_hash(meta),
            previous_hash=packet.previous_hash, captured_at=packet.captured_at, lane=1,
            suspected_overload=True, meta=meta, signature=b"s", received_at=T0)
            .returning(StoredPacket.id)).scalar_one()
        [result] = process_packets(s, [(packet_id, packet)], center.settings, plates={})
    return result.capture_id, result


def test_the_case_page_and_its_twin_show_the_chain_in_force(center: WebCenter) -> None:
    log_in(center.client, "ZF002")
    case_id = center.cases[0]
    page = center.client.get(f"/staff/cases/{case_id}")
    assert page.status_code == 200
    text = page.text
    chain = make_chain(valid_from=date(2024, 1, 1), valid_to=date(2027, 12, 31))
    digest = chain.digest()
    assert "计量标定 Calibration in force" in text
    assert "<strong>2026-01</strong>" in text and digest[:12] in text
    assert "JD-2026-001" in text and "2024-01-01 – 2027-12-31" in text
    for row in ("<td>channel_gain</td><td>g-2026-01</td><td>8 × 0.9700–1.0300</td>",
                "<td>speed_factor</td><td>v-2026-01</td><td>3 × 0.9850–1.0100 "
                "<small>at 40.0–80.0 km/h</small></td>",
                "<td>temperature_curve</td><td>t-2026-01</td><td>3 × 0.9900–1.0150 "
                "<small>at 0.0–40.0 °C</small></td>"):
        assert row in text
    assert "± 0.40 %" in text and "王工" in text and "2 reference trucks x 10 runs" in text
    twin = center.client.get(f"/staff/cases/{case_id}.json").json()
    cal = twin["captures"][0]["calibration"]
    assert cal["digest"] == digest and cal["version"] == "2026-01" and cal["has_chain"]
    assert (cal["certificate"], cal["certificate_valid_from"],
            cal["certificate_valid_to"]) == ("JD-2026-001", "2024-01-01", "2027-12-31")
    assert [s["kind"] for s in cal["stages"]] == ["channel_gain", "speed_factor",
                                                  "temperature_curve"]
    assert cal["stages"][0]["count"] == 8 and cal["stages"][0]["approved_by"] == "王工"
    check = [c for c in twin["captures"][0]["checks"] if c["id"] == "calibration"]
    assert check[0]["ok"] and "JD-2026-001" in check[0]["text"]
    assert "the registry names" not in check[0]["text"]


def test_an_expired_certificate_is_no_case_and_the_capture_says_why(center: WebCenter):
    record = chain_record(make_chain(valid_from=date(2025, 6, 1), valid_to=date(2026, 5, 31)))
    capture_id, result = _capture(center, make_packet(sequence=20, plate="浙A12345",
                                                      captured_at=T0 + timedelta(days=30),
                                                      calibration=record))
    assert not result.evidential and result.case_id is None
    assert any("JD-2026-001 expired on 2026-05-31, before the capture on 2026-07-01" in r
               for r in result.reasons)
    log_in(center.client, "ZF002")
    page = center.client.get(f"/staff/captures/{capture_id}")
    assert page.status_code == 200
    assert "非证据 not evidential" in page.text
    assert "JD-2026-001 expired on 2026-05-31" in page.text
    assert "2025-06-01 – 2026-05-31" in page.text
    twin = center.client.get(f"/staff/captures/{capture_id}.json").json()
    assert twin["capture"]["calibration"]["certificate_valid_to"] == "2026-05-31"


def test_a_capture_without_a_chain_is_no_case_and_its_page_says_so(center: WebCenter):
    capture_id, result = _capture(center, make_packet(sequence=21, calibration=LEGACY_CALIBRATION,
                                                      captured_at=T0 + timedelta(days=31)))
    assert not result.evidential and result.case_id is None
    log_in(center.client, "ZF002")
    page = center.client.get(f"/staff/captures/{capture_id}")
    assert "无标定链 no calibration stage chain" in page.text
    assert "factor set settings" in page.text


def test_text_from_the_packet_is_escaped_on_the_page(center: WebCenter):
    chain = make_chain()
    stage = chain.stages[0].model_copy(update={"fitted_from": "<script>alert(1)</script>",
                                               "approved_by": "<b>x</b>"})
    assert isinstance(stage, ChannelGain)
    chain = chain.model_copy(update={"stages": [stage], "version": '"><img src=x>'})
    capture_id, _ = _capture(center, make_packet(sequence=22, calibration=calibration_record(
        chain), captured_at=T0 + timedelta(days=32)))
    log_in(center.client, "ZF002")
    text = center.client.get(f"/staff/captures/{capture_id}").text
    assert "<script>alert(1)" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<b>x</b>" not in text and '"><img src=x>' not in text

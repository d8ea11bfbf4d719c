"""Is a capture evidence? The device's record at the capture time, and the pass itself.

行政处罚法 (2021) Art. 41 lets an authority fine on the records of an electronic device
only when the device passed legal and technical review, meets its standard, is signed and
its location was published; an unreviewed or failing record is not evidence. 国发〔2024〕5号
adds: a device never verified, overdue or failing verification must not be used. So every
capture is checked against the registry as it stood on the capture's day, and against what
the pass itself shows (flags of abnormal driving, a readable plate, images, a trusted
clock, and the calibration it was weighed with: a stage chain whose verification
certificate covers the day, 计量法 Arts. 9 and 25). Each check gives one sentence and its
source, passed or not: a capture that fails any is kept as data, marked "not evidence"
with every reason. The notice lead time is a row of the rule tables (``enforcement.yaml``),
given with its source.

Registry dates are calendar days in China Standard Time (UTC+8, no daylight saving): a
certificate "valid to 2026-05-31" covers that whole local day. The registry keeps every
version of a device (:mod:`center.registry`); the caller gives the version in force on the
capture's day (:func:`center.registry.device_on`), and the "registered" check names it, so
an old capture shows the certificate of its day after a renewal. Pure functions: no
database, no clock.
"""

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any, Protocol

from center.china_time import day_of as local_day
from evidence.packet import Packet, PlateRecord
from overload.plates import PlateGrammar, load_plate_grammar
from overload.tables import Days

"""China Standard Time: the calendar the registry's dates are written in."""

ART41 = "行政处罚法（2021） 第四十一条 第一款"
ART41_RECORDS = "行政处罚法（2021） 第四十一条 第二款"
METROLOGY_ART9 = "计量法 第九条 第一款"
GUOFA_2024_5 = "国务院关于进一步规范和监督罚款设定与实施的指导意见（国发〔2024〕5号）"
SOURCES = {
    "registered": ART41,
    "active": f"{ART41}; {GUOFA_2024_5}",
    "review": f"{ART41} (法制和技术审核); {GUOFA_2024_5}",
    "certificate": f"计量法 第九条; {GUOFA_2024_5}; 浙江省公路条例 第四十条",
    "signs": f"{ART41} (标志明显); {GUOFA_2024_5}",
    "notice": f"{ART41} (设置地点应当向社会公布)",
    "enforcement": f"{GUOFA_2024_5} (启用前公布); 浙江省公路条例 第三十八条",
    "suspension": f"{ART41}; {GUOFA_2024_5}",
    "driving": f"JJG 907-2006 (accuracy class under normal driving) [verify]; "
               f"浙江省公路条例 第三十九条; {ART41_RECORDS}",
    "measurement": ART41_RECORDS,
    "plate": f"{ART41_RECORDS} (记录违法事实应当真实、清晰、完整、准确)",
    "images": ART41_RECORDS,
    "clock": ART41_RECORDS,
    "calibration": f"{METROLOGY_ART9} (未按照规定申请检定或者检定不合格的，不得使用) "
                   f"[whether WIM is in the compulsory catalogue: verify]; "
                   f"计量法 第二十五条 (继续使用的，责令停止使用); "
                   f"浙江省公路条例 第四十条 第一款 (经计量检定合格的…设备); "
                   f"JJG 907-2006 (subsequent verification after adjustment) [verify]",
}


class RegistryRecord(Protocol):
    """What legality reads of a device's registry record (a row, or an imported row)."""

    device_id: str
    review_date: date | None
    certificate_number: str | None
    certificate_valid_from: date | None
    certificate_valid_to: date | None
    signs_installed: date | None
    notice_date: date | None
    notice_document: str | None
    enforcement_start: date | None
    active: bool


class Suspension(Protocol):
    """A period of calendar days (both included; ``ends`` None = open) of no evidence."""

    starts: date
    ends: date | None
    reason: str


@dataclass(frozen=True)
class Check:
    """One legality check: its id, whether it passed, what it found, and its source."""

    id: str
    ok: bool
    text: str
    source: str

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON columns and output."""
        return asdict(self)


@dataclass(frozen=True)
class Legality:
    """The verdict on one capture: evidence or not, with every check made."""

    evidential: bool
    checks: tuple[Check, ...]

    @property
    def reasons(self) -> list[str]:
        """Why it is not evidence: each failed check in words, with its source."""
        return [f"{c.text} ({c.source})" for c in self.checks if not c.ok]


def _check(check_id: str, ok: bool, text: str, rule: Days | None = None) -> Check:
    source = SOURCES[check_id]
    if rule is not None:
        source += f"; {rule.source.cite()}" + (" [verify]" if rule.verify else "")
    return Check(check_id, ok, text, source)


def _dated(check_id: str, what: str, when: date | None, day: date) -> Check:
    """A check that ``what`` happened on or before the capture's day."""
    if when is None:
        return _check(check_id, False, f"{what}: no date in the registry")
    if when > day:
        return _check(check_id, False, f"{what} {when} is after the capture on {day}")
    return _check(check_id, True, f"{what} {when}, on or before the capture on {day}")


def _certificate(record: RegistryRecord, day: date) -> Check:
    """The verification certificate covers the capture's day."""
    number = record.certificate_number or ""
    start, end = record.certificate_valid_from, record.certificate_valid_to
    if not number or start is None or end is None:
        return _check("certificate", False, "verification certificate: no number or no "
                      "validity dates in the registry")
    if day < start:
        return _check("certificate", False, f"verification certificate {number} is valid "
                      f"from {start}, after the capture on {day}")
    if day > end:
        return _check("certificate", False, f"verification certificate {number} expired "
                      f"on {end}, before the capture on {day}")
    return _check("certificate", True, f"verification certificate {number} valid "
                  f"{start} to {end}, covering the capture on {day}")


def _calibration(packet: Packet, registry_certificate: str | None = None) -> Check:
    """The pass was weighed with a calibration stage chain whose verification certificate
    covers the capture's day in China. A device adjusted after its verification is not
    the device verified, so the certificate that counts is the one the chain names, not
    only the registry's; a packet that names no chain (schema 1.1 and older, or a unit
    weighing with factors from its settings) cannot show which numbers weighed it. A chain
    under another number than the registry's (``registry_certificate``) is said in words
    for staff to look into: the registry may not have been brought up to date after a
    verification."""
    cal, day = packet.calibration, local_day(packet.captured_at)
    if not cal.has_chain:
        legacy = f" (factor set {cal.factor_set!r})" if cal.factor_set else ""
        return _check("calibration", False, f"no calibration stage chain in the packet"
                      f"{legacy}: which calibration weighed the pass is not shown")
    chain = f"calibration chain {cal.version} ({cal.chain_digest[:12]}, " \
            f"{len(cal.stages)} stage{'s' if len(cal.stages) != 1 else ''})"
    number, start, end = cal.certificate, cal.certificate_valid_from, cal.certificate_valid_to
    if not number or start is None or end is None:
        return _check("calibration", False, f"{chain}: no verification certificate with "
                      "a number and validity dates")
    if cal.applied_at is not None and local_day(cal.applied_at) > start:
        return _check("calibration", False, f"{chain} was applied on "
                      f"{local_day(cal.applied_at)}, after its verification certificate "
                      f"{number} of {start}: the unit was adjusted after it was verified")
    if day < start:
        return _check("calibration", False, f"{chain}: its verification certificate "
                      f"{number} is valid from {start}, after the capture on {day}")
    if day > end:
        return _check("calibration", False, f"{chain}: its verification certificate "
                      f"{number} expired on {end}, before the capture on {day}")
    other = (f"; the registry names certificate {registry_certificate}"
             if registry_certificate and registry_certificate != number else "")
    return _check("calibration", True, f"{chain} under verification certificate {number} "
                  f"valid {start} to {end}, covering the capture on {day}{other}")


def _notice(record: RegistryRecord, day: date, lead: Days) -> Check:
    """The location was published at least ``lead.value`` days before the device was put
    to use (浙江省公路条例 Art. 38: "启用…应当至少提前十五日向社会公告"), so before its
    enforcement start; without a start in the registry (which fails its own check), before
    the capture's day."""
    when = record.notice_date
    doc = f" ({record.notice_document})" if record.notice_document else ""
    if when is None:
        return _check("notice", False, "public notice of the location: none in the registry",
                      lead)
    start = record.enforcement_start
    before = ((start or day) - when).days
    what = f"the start of enforcement on {start}" if start else "the capture"
    return _check("notice", before >= lead.value, f"public notice {when}{doc} was {before} "
                  f"days before {what}; {lead.value} are required ({lead.id})", lead)


def _suspension(suspensions: Iterable[Suspension], day: date) -> Check:
    """No suspension covers the capture's day."""
    for s in suspensions:
        if s.starts <= day and (s.ends is None or day <= s.ends):
            until = f"to {s.ends}" if s.ends is not None else "with no end"
            return _check("suspension", False, f"device suspended from {s.starts} {until} "
                          f"({s.reason}), covering the capture on {day}")
    return _check("suspension", True, f"no suspension covers the capture on {day}")


def _in_force(record: RegistryRecord) -> str:
    """Which version of the device judged the capture, when the record is a stored one."""
    version = getattr(record, "version", None)
    if version is None:
        return ""
    return f" (version {version}, in force from {getattr(record, 'effective_from', '?')})"


def device_checks(record: RegistryRecord | None, suspensions: Iterable[Suspension],
                  captured_at: datetime, notice_lead: Days,
                  device_id: str = "", *, first_from: date | None = None) -> list[Check]:
    """Every check of the device's registry record in force on the capture's day;
    ``notice_lead`` is the rule row of the notice lead time
    (``rules.enforcement.notice_lead``). ``first_from``: with no record, the day the
    device's first version is in force from, when it has one (the capture is earlier)."""
    day = local_day(captured_at)
    if record is None and first_from is not None:
        return [_check("registered", False, f"device {device_id} has no registry row in force "
                       f"on {day}: its first version is in force from {first_from}")]
    if record is None:
        return [_check("registered", False, f"device {device_id} is not in the registry")]
    return [
        _check("registered", True, f"device {record.device_id} is in the registry"
               f"{_in_force(record)}"),
        _check("active", record.active, "device is active in the registry" if record.active
               else "device is marked inactive in the registry"),
        _dated("review", "legal and technical review passed", record.review_date, day),
        _certificate(record, day),
        _dated("signs", "signs installed", record.signs_installed, day),
        _notice(record, day, notice_lead),
        _dated("enforcement", "enforcement start", record.enforcement_start, day),
        _suspension(suspensions, day),
    ]


@dataclass(frozen=True)
class PlateFacts:
    """A plate to judge: the record (None: none read), who read it, why there is none
    (``note``), and the texts read on the rear images (for the words of a conflict)."""

    record: PlateRecord | None
    read_by: str = "the roadside unit"
    note: str | None = None
    rear: tuple[str, ...] = ()


def pass_checks(packet: Packet, *, abnormal_driving: Sequence[str],
                faulty_measurement: Sequence[str], trusted_clocks: Sequence[str],
                min_plate_confidence: float = 0.0, min_province_confidence: float = 0.0,
                plate: PlateFacts | None = None,
                grammar: PlateGrammar | None = None,
                registry_certificate: str | None = None) -> list[Check]:
    """Every check of what the pass itself shows: driving, measurement, plate, images,
    clock, calibration. ``plate``: the plate to judge when not the packet's own (the
    center's reading of a plate the unit left unread); ``grammar``: GA 36 as the center's
    tables say; ``registry_certificate``: the registry's certificate number, to name when
    the chain's differs."""
    flags = set(packet.vehicle.flags)
    driving = sorted(flags & set(abnormal_driving))
    faulty = sorted(flags & set(faulty_measurement))
    return [
        _check("driving", not driving, f"abnormal driving flagged: {', '.join(driving)}"
               if driving else "no abnormal driving flagged"),
        _check("measurement", not faulty, f"measurement flagged: {', '.join(faulty)}"
               if faulty else "no measurement fault flagged"),
        plate_check(plate or PlateFacts(packet.plate), grammar or load_plate_grammar(),
                    min_plate_confidence, min_province_confidence),
        _check("images", bool(packet.images), f"{len(packet.images)} images" if packet.images
               else "no images of the pass"),
        _check("clock", packet.clock_status in trusted_clocks,
               f"device clock {packet.clock_status}" + (
                   "" if packet.clock_status in trusted_clocks
                   else f"; trusted are {', '.join(trusted_clocks)}")),
        _calibration(packet, registry_certificate),
    ]


def grammar_fits(text: str, colour: str, grammar: PlateGrammar) -> bool:
    """Whether a GA 36 template of this colour accepts the text; a colour the camera could
    not see ("unknown": an infrared frame) allows every template.

    Examples
    --------
    >>> g = load_plate_grammar()
    >>> grammar_fits("浙A12345", "yellow", g), grammar_fits("浙A12345", "green", g)
    (True, False)
    >>> grammar_fits("=HYPERLINK(", "unknown", g)
    False
    """
    if colour == "unknown":
        return grammar.is_plate(text)
    return any(t.accepts(text) and colour in t.colours for t in grammar.templates)


def plate_check(facts: PlateFacts, grammar: PlateGrammar, min_confidence: float,
                min_province: float) -> Check:
    """The plate is evidence (记录违法事实应当真实、清晰、完整、准确) only when it was read,
    is a plate under GA 36 for its colour, was read surely enough (the whole text and its
    province character) and the front and rear plates do not disagree."""
    plate = facts.record
    failure = _plate_failure(facts, grammar, min_confidence, min_province)
    if failure is not None or plate is None:
        return _check("plate", False, failure or "no readable plate")
    side = f"; front and rear {plate.front_rear}" if plate.front_rear else ""
    return _check("plate", True, f"plate {plate.text} ({plate.colour}) read by {facts.read_by} "
                  f"with confidence {plate.confidence:.2f}{side}")


def _plate_failure(facts: PlateFacts, grammar: PlateGrammar, floor: float,
                   province_floor: float) -> str | None:
    """What is wrong with the plate, in plain words, or None."""
    plate = facts.record
    if plate is None or not plate.text.strip():
        note = facts.note or ("the roadside unit left it unread" if plate is not None
                              and plate.unread else None)
        return "no readable plate" + (f": {note}" if note else "")
    text, colour = plate.text, plate.colour
    if not grammar_fits(text, colour, grammar):
        return (f"plate text {text!r} read as {colour!r} fits no GA 36 plate of that "
                "colour: not a plate")
    if plate.confidence < floor:
        return (f"plate {text} read with confidence {plate.confidence:.2f}, below the "
                f"floor {floor}")
    province = plate.province_confidence
    if province is not None and province < province_floor:
        return (f"province {text[0]} of plate {text} read with confidence {province:.3f}, "
                f"below the floor {province_floor}")
    if plate.front_rear == "conflict":
        others = [r for r in facts.rear if r != text]
        if others:
            return f"front plate {text} and rear plate {' / '.join(others)} disagree"
        return f"front plate {text} and the rear plate disagree (as the roadside unit read)"
    return None


def evidential(record: RegistryRecord | None, suspensions: Iterable[Suspension],
               captured_at: datetime, notice_lead: Days, *,
               packet: Packet | None = None, device_id: str = "",
               abnormal_driving: Sequence[str] = (), faulty_measurement: Sequence[str] = (),
               trusted_clocks: Sequence[str] = ("synced", "holdover"),
               min_plate_confidence: float = 0.0, min_province_confidence: float = 0.0,
               plate: PlateFacts | None = None,
               grammar: PlateGrammar | None = None,
               first_from: date | None = None) -> Legality:
    """The verdict on one capture: the device's checks (``record``: its row in force on
    the capture's day; ``first_from``: see :func:`device_checks`), then (given the packet)
    the pass's own; evidence only when every one passes. ``plate`` replaces the packet's
    own plate (the center's reading of an unread one)."""
    checks = device_checks(record, suspensions, captured_at, notice_lead, device_id,
                           first_from=first_from)
    if packet is not None:
        checks += pass_checks(packet, abnormal_driving=abnormal_driving,
                              faulty_measurement=faulty_measurement,
                              trusted_clocks=trusted_clocks,
                              min_plate_confidence=min_plate_confidence,
                              min_province_confidence=min_province_confidence,
                              plate=plate, grammar=grammar,
                              registry_certificate=getattr(record, "certificate_number",
                                                           None))
    return Legality(all(c.ok for c in checks), tuple(checks))

"""From a case in the store to the facts of its documents (:mod:`center.documents`), and
those facts to and from JSON, so a stored document can be rendered again from what it
was rendered from and compared byte for byte.

Everything a document says comes from the store or the tables: the capture's grade and
each rule it applied, the device as it stood on the capture day, the packet's image
hashes, the procedure table's deadlines and appeal routes, the words of
``documents.yaml`` (credit repair, compliance advice, public service).
"""

import dataclasses
import functools
import hashlib
import re
import types
import typing
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from center import documents as d
from center.cases import PACKETS
from center.china_time import CST
from center.law_models import Capture, Case, CaseCapture
from center.procedure_models import CaseDocument, CaseProcedure, CaseStep, Delivery
from center.registry import device_on
from center.staff import get_officer
from evidence.packet import PacketError, decode_packet
from overload.tables import Source
from zhichao.errors import ConfigError
from zhichao.resources import rules_dir

IMAGE_ROLES = {"front": "车辆前部照片", "rear": "车辆尾部照片", "side": "车辆侧面照片",
               "plate": "号牌特写照片", "overview": "全景照片"}


# --- the words of documents.yaml -------------------------------------------------------

class _Words(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CreditWords(_Words):
    basis: str = Field(max_length=500)
    platform: str = Field(max_length=200)
    publication: str = Field(max_length=500)
    how_to_apply: str = Field(max_length=500)
    conditions: tuple[str, ...] = ()
    source: Source
    verify: bool = False
    note: str = ""


class ComplianceWords(_Words):
    advice: tuple[str, ...]
    consequences: tuple[str, ...] = ()
    source: Source


class ServiceWords(_Words):
    basis: str = Field(max_length=500)
    deemed_served: str = Field(max_length=500)
    where_to_collect: str = Field(max_length=500)
    source: Source
    verify: bool = False
    note: str = ""


class DocumentWords(_Words):
    """The table ``documents.yaml``."""

    title: str
    defence_how: str = Field(max_length=500)
    defence_how_source: Source
    credit_repair: CreditWords
    compliance_advice: ComplianceWords
    public_service: ServiceWords


@functools.cache
def document_words(folder: Path | None) -> DocumentWords:
    """The words of the documents: ``documents.yaml`` of the rules folder (or the shipped
    one); ConfigError naming the file and the key when it does not validate."""
    path = (folder or rules_dir()) / "documents.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return DocumentWords.model_validate(data)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (yaml.YAMLError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from None


# --- facts of one case ---------------------------------------------------------------------

def _local(t) -> str:
    t = t.astimezone(CST)
    return f"{t.year}年{t.month}月{t.day}日 {t.hour:02d}时{t.minute:02d}分{t.second:02d}秒"


def _evidence(session: Session, capture: Capture) -> tuple[d.EvidenceItem, ...]:
    """The weighing record and each image of the evidence capture, by their hashes."""
    items = []
    row = session.execute(select(PACKETS.c.meta).where(PACKETS.c.id == capture.packet_id)) \
        .first() if capture.packet_id is not None else None
    if row is not None:
        meta = bytes(row.meta)
        items.append(d.EvidenceItem("电子数据（称重检测记录）", hashlib.sha256(meta).hexdigest(),
                                    f"设备 {capture.device_id} 第 {capture.sequence} 号记录，"
                                    "经设备签名验证"))
        try:
            packet = decode_packet(meta)
        except PacketError:
            packet = None
        for image in packet.images if packet else []:
            items.append(d.EvidenceItem("视听资料（照片）", image.sha256,
                                        IMAGE_ROLES.get(image.role, image.role)))
    return tuple(items)


def _grade_basis(capture: Capture, desk) -> d.Basis:
    grade = capture.grade or {}
    rules = grade.get("rules", [])
    articles = tuple(dict.fromkeys(r["cite"] for r in rules if r.get("cite")))
    benchmark = desk.rules.benchmark(grade.get("benchmark", desk.law.benchmark))
    band = next((b for b in benchmark.mass.bands if b.id == grade.get("band")), None)
    return d.Basis(articles=articles, benchmark_title=benchmark.title,
                   band_id=grade.get("band") or "",
                   band_description=band.description if band else "",
                   rule_lines=tuple(f"{_rule_words(r, grade)}（{r['cite']}）" for r in rules))


COLOURS = {"yellow": "黄色", "blue": "蓝色", "green": "绿色", "yellow-green": "黄绿色",
           "white": "白色", "black": "黑色"}
KINDS = {"truck": "货车", "combination": "汽车列车"}
ROUNDING = {"floor": "不足{per}千克的部分不计", "ceil": "不足{per}千克的部分按{per}千克计",
            "pro_rata": "不足{per}千克的部分按比例计"}
_FINE = re.compile(r"(?P<part>[\d ]+) kg → (?P<n>[\d ]+) × (?P<per>[\d ]+) kg "
                   r"\((?P<rounding>\w+)\) × (?P<rate>[\d ]+) yuan = (?P<fine>[\d ]+) yuan")


def _n(text: str) -> str:
    return text.replace(" ", "")


def _rule_words(rule: dict, grade: dict) -> str:
    """One rule the grade applied, in the words of a decision (说理式): what it set and, for
    a band, how the fine was counted. The grade's own detail is the fallback."""
    rid = rule["id"]
    if rid.startswith("axle-code"):
        return (f"车辆轴型{grade.get('axle_code')}，属{KINDS.get(grade.get('kind'), '')}"
                + ("（轴型未列明，按轴数推定）" if grade.get("inferred") else ""))
    if rid.startswith("limit."):
        return f"适用最高限值{_int(grade.get('limit_kg'))}千克"
    if rid == grade.get("tolerance_policy"):
        return f"扣除允许误差{_int(grade.get('tolerance_kg'))}千克"
    fine = _FINE.search(rule["detail"])
    parts = []
    if rid == grade.get("band"):
        parts.append(f"扣除允许误差后超限{_int(grade.get('excess_kg'))}千克，超限率"
                     f"{float(grade.get('excess_pct') or 0):.1f}%，属本档")
    if fine:
        per = _n(fine["per"])
        parts.append(f"本档计罚部分{_n(fine['part'])}千克，每{per}千克罚款{_n(fine['rate'])}元，"
                     + ROUNDING.get(fine["rounding"], "").format(per=per)
                     + f"，计{_n(fine['n'])}个{per}千克，罚款{_n(fine['fine'])}元")
    return "；".join(parts) or rule["detail"]


def _int(value: object) -> str:
    return f"{round(float(value or 0))}"


def _outcome(case: Case, rec: CaseProcedure, capture: Capture, kind: str,
             no_penalty_words: str) -> d.Outcome:
    grade = capture.grade or {}
    lines = tuple(_rule_words(r, grade) for r in grade.get("rules", []))
    if kind == "no_penalty_decision" or rec.decision_kind == "no_penalty":
        return d.Outcome("no_penalty", 0.0, lines, no_penalty_words)
    if kind in ("decision", "credit_repair", "compliance_advice"):
        fine = case.decision_fine_yuan or 0.0
    else:
        fine = case.fine_yuan or 0.0
    action = case.action if case.action in ("warning", "education") else "fine"
    if action == "fine" and fine <= 0:
        action = "warning"
    return d.Outcome(action, fine if action == "fine" else 0.0, lines)


def _officers(session: Session, case_id: int, steps: tuple[str, ...],
              given: tuple | None) -> tuple[d.Officer, d.Officer]:
    """The two officers who sign: ``given`` (the deciding pair), or those of ``steps``."""
    if given is not None:
        pair = [d.Officer(o.name, o.credential_number) for o in given]
    else:
        rows = session.scalars(select(CaseStep).where(
            CaseStep.case_id == case_id, CaseStep.step.in_(steps),
            CaseStep.officer_id.is_not(None)).order_by(CaseStep.id)).all()
        pair = []
        for r in rows:
            officer = get_officer(session, r.officer_id, on=None, check=False)
            if officer.credential_number not in [p.credential for p in pair]:
                pair.append(d.Officer(officer.name, r.credential or ""))
    return tuple(pair[:2])  # DocumentFacts refuses fewer than two


def _route(route, authority) -> d.AppealRoute:
    unit = {"days": "日", "working_days": "个工作日", "months": "个月", "years": "年"}
    number = _chinese_number(route.value)
    body = authority.review_body if "复议" in route.name else authority.court
    verb = route.name if route.name.startswith(("申请", "提起", "依法")) else \
        ("申请" if "复议" in route.name else "提起") + route.name
    return d.AppealRoute(verb, f"{route.counted_from}{number}{unit[route.unit]}内", body)


def _chinese_number(n: int) -> str:
    digits = "零一二三四五六七八九"
    if n < 10:
        return digits[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return ("" if tens == 1 else digits[tens]) + "十" + (digits[ones] if ones else "")
    return str(n)


def document_facts(session: Session, case: Case, rec: CaseProcedure, kind: str, desk, *,
                   officers: tuple | None = None,
                   lookup_code: str | None = None) -> d.DocumentFacts:
    """The facts of one document of the case, on the desk's day; ``lookup_code`` (the
    owner's online look-up code) goes on a notice only."""
    capture = session.get(Capture, case.best_capture_id)
    day = capture.captured_at.astimezone(CST).date()
    device = device_on(session, capture.device_id, day)
    words = document_words(desk.law.rules_folder)
    proc, a = desk.procedure, desk.authority
    others = session.scalars(select(Capture).join(
        CaseCapture, CaseCapture.capture_id == Capture.id).where(
        CaseCapture.case_id == case.id, Capture.id != capture.id)
        .order_by(Capture.captured_at)).all()
    grade = capture.grade or {}
    steps = ("decide",) if kind in DECIDED else ("review", "approve")
    facts = d.DocumentFacts(
        number=rec.number, on=desk.today,
        authority=d.Authority(a.name, a.address, a.payment, a.payment_account, a.review_body,
                              a.court, a.website or ""),
        party=d.Party(rec.party_kind, rec.party_name, rec.party_id_number or "（未登记）",
                      rec.party_address or "（未登记）"),
        vehicle=d.Vehicle(case.plate, COLOURS.get(case.plate_colour or "", "未识别"),
                          KINDS.get(rec.vehicle_kind or grade.get("kind", ""), "货车"),
                          capture.axle_code or ""),
        facts=d.Facts(
            captured_at=_local(capture.captured_at),
            road=device.road if device else "", stake=device.stake if device else "",
            direction=device.direction if device else "", device_id=capture.device_id,
            gross_kg=round(capture.gross_kg), limit_kg=round(capture.limit_kg or 0),
            tolerance_kg=round(capture.tolerance_kg or 0),
            excess_kg=round(capture.excess_kg or 0),
            excess_percent=round(float(grade.get("excess_pct") or 0.0), 1),
            other_captures=tuple(f"{_local(o.captured_at)} 设备 {o.device_id}，总质量 "
                                 f"{round(o.gross_kg)} 千克" for o in others)),
        evidence=_evidence(session, capture),
        basis=_grade_basis(capture, desk),
        outcome=_outcome(case, rec, capture, kind, _no_penalty_words(rec, case, desk)),
        rights=d.Rights(
            defence_days=proc.deadlines["defence_window"].value,
            defence_until=rec.defence_until or desk.today,
            hearing=rec.hearing_right,
            hearing_request_days=proc.deadlines["hearing_request"].value,
            defence_how=words.defence_how),
        payment=d.Payment(proc.deadlines["pay_within"].value, a.payment,
                          _surcharge_words(proc.late_surcharge_rule)),
        appeals=tuple(_route(r, a) for r in proc.appeal_routes),
        officers=_officers(session, case.id, steps, officers),
        defence=_defence(rec),
        commitment=_commitment(rec, desk) if rec.decision_reason == "first_violation" else None,
        credit=_credit(words) if kind == "credit_repair" else None,
        compliance=d.ComplianceAdvice(words.compliance_advice.advice,
                                      words.compliance_advice.consequences)
        if kind == "compliance_advice" else None,
        service=_service(session, case, rec, words) if kind == "public_notice" else None,
        lookup_code=lookup_code if kind == "notice" else None)
    return facts


def _surcharge_words(rule) -> str:
    """Art. 72(一) in the words of a decision, with the table's numbers."""
    cap = "罚款数额" if rule.max_times_fine == 1 else f"罚款数额的{rule.max_times_fine:g}倍"
    return (f"到期不缴纳罚款的，每日按罚款数额的百分之{_chinese_number(int(rule.percent_per_day))}"
            f"加处罚款，加处罚款的数额不得超出{cap}（{rule.source.cite()}）")


DECIDED = ("decision", "no_penalty_decision", "credit_repair", "compliance_advice")


def _no_penalty_words(rec: CaseProcedure, case: Case, desk) -> str:
    """Why no penalty, with its source: 首违不罚 (行政处罚法 Art. 33 ¶1) or the benchmark's
    批评教育 band."""
    if rec.decision_reason == "first_violation":
        return ("初次违法且危害后果轻微并及时改正，当事人已作出承诺（首违不罚，"
                f"{desk.procedure.first_violation.source.cite()}）")
    return "超限幅度在裁量基准批评教育档内，予以批评教育，不予处罚"


def _defence(rec: CaseProcedure) -> d.Defence | None:
    if rec.defence is None:
        return None
    return d.Defence(rec.defence, "网上执法服务平台", rec.defence_on, rec.defence_text or "",
                     rec.defence_answer or "")


def _commitment(rec: CaseProcedure, desk) -> d.Commitment:
    return d.Commitment(rec.commitment or "", rec.decided_on or desk.today,
                        rec.reminder_on or desk.today)


def _credit(words: DocumentWords) -> d.CreditRepair:
    c = words.credit_repair
    return d.CreditRepair(c.basis, c.platform, c.publication, c.how_to_apply, c.conditions)


def _service(session: Session, case: Case, rec: CaseProcedure,
             words: DocumentWords) -> d.PublicService:
    served = session.scalars(select(CaseDocument).where(
        CaseDocument.case_id == case.id, CaseDocument.kind != "public_notice")
        .order_by(CaseDocument.id.desc()).limit(1)).first()
    attempts = session.scalars(select(Delivery).where(Delivery.case_id == case.id)
                               .order_by(Delivery.id)).all()
    s = words.public_service
    return d.PublicService(
        served_title=d.KINDS.get(served.kind, "") if served else "",
        served_number=rec.number,
        attempts=tuple(f"{a.channel}：{a.detail}" for a in attempts if not a.ok),
        basis=f"{s.basis}（{s.source.cite()}）", deemed_served=s.deemed_served,
        where_to_collect=s.where_to_collect,
        served_kind="notice" if served is None or served.kind == "notice" else "decision")


# --- facts to JSON and back ---------------------------------------------------------------

def facts_to_json(facts: d.DocumentFacts) -> dict[str, Any]:
    """The facts as JSON-ready data (dates as ISO text)."""
    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, date):
            return v.isoformat()
        return v
    return plain(facts)


def facts_from_json(data: dict[str, Any]) -> d.DocumentFacts:
    """The facts back from :func:`facts_to_json`'s data, typed as the dataclasses say."""
    return _build(d.DocumentFacts, data)


def _build(kind: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        inner = [k for k in typing.get_args(kind) if k is not type(None)]
        return _build(inner[0], value)
    if dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        return kind(**{f.name: _build(hints[f.name], value[f.name])
                       for f in dataclasses.fields(kind) if f.name in value})
    if origin is tuple:
        args = typing.get_args(kind)
        item = args[0]
        return tuple(_build(item, v) for v in value)
    if kind is date:
        return date.fromisoformat(value)
    if kind is int and isinstance(value, float):
        return int(value)
    return value


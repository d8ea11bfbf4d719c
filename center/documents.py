"""The procedure's documents: plain facts in, HTML and a reproducible PDF out.

The procedure fills a :class:`DocumentFacts` from its tables (the case, the registers, the
grade and the rule tables) and :func:`render` turns it into one of the documents of
行政处罚法 (2021): the notice before a decision (告知, Arts. 44, 45, 63), the record of the
party's defence, the decision with everything Art. 59 lists, the decision of no penalty
(Art. 33 ¶1 with a commitment, or a 批评教育 band), for companies the two documents served
with the decision (三书同达: 信用修复告知书, 合规建议书), and public service (公告送达) when a
notice could not be delivered.

Every number a statute sets (days to state a defence, to pay, to appeal; the late
surcharge; the credit periods) arrives in the facts as the procedure read it from its
tables; the templates hold only the words that tie them together and the articles of
行政处罚法 that require each part. The templates are Jinja2 with autoescaping, so a plate or
a name is always text. WeasyPrint renders the PDF with the CJK font found by fontconfig
("WenQuanYi Zen Hei"), fetches nothing (the style sheet is inside the HTML, and any URL is
refused), and is given a creation date and file identifier derived from the facts, so the
same facts give the same bytes.
"""

import contextlib
import hashlib
import math
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Literal

import jinja2
from weasyprint import HTML
from weasyprint.urls import FatalURLFetchingError, URLFetcher

from zhichao.errors import ZhichaoError

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates" / "documents"

#: Each kind of document, its template and its title.
KINDS: dict[str, str] = {
    "notice": "违法行为通知书",
    "defence_record": "陈述申辩记录",
    "decision": "行政处罚决定书",
    "no_penalty_decision": "不予行政处罚决定书",
    "credit_repair": "信用修复告知书",
    "compliance_advice": "合规建议书",
    "public_notice": "公告送达书",
}


class DocumentError(ZhichaoError, ValueError):
    """A document was asked for that the facts cannot support (or of an unknown kind)."""


@dataclass(frozen=True)
class Authority:
    """The deciding authority and where its decisions are paid and challenged."""

    name: str
    address: str
    payment_place: str  # the bank or electronic payment system designated (Art. 67)
    payment_account: str  # account words as printed: 户名、账号 or the payment code
    review_body: str  # 行政复议机关
    court: str  # the people's court for 行政诉讼
    website: str = ""  # the public pages' address, where a party looks a case up


@dataclass(frozen=True)
class Party:
    """The party (当事人): the vehicle's owner, a person or a company."""

    kind: Literal["person", "company"]
    name: str
    id_number: str  # 居民身份证号码 for a person, 统一社会信用代码 for a company
    address: str

    def __post_init__(self) -> None:
        """Refuse a kind the documents cannot address (他人 or 单位)."""
        if self.kind not in ("person", "company"):
            raise DocumentError(f"Party kind must be person or company (got {self.kind!r})")


@dataclass(frozen=True)
class Vehicle:
    """The vehicle as the register and the capture show it."""

    plate: str
    plate_colour: str
    kind: str
    axle_code: str


@dataclass(frozen=True)
class Facts:
    """What was measured, where and when (the facts of Art. 59(二))."""

    captured_at: str  # local China time as text, e.g. 2026年11月2日 14时05分31秒
    road: str
    stake: str
    direction: str
    device_id: str
    gross_kg: int
    limit_kg: int
    tolerance_kg: int
    excess_kg: int
    excess_percent: float
    other_captures: tuple[str, ...] = ()  # captures of the same trip, attached


@dataclass(frozen=True)
class EvidenceItem:
    """One piece of evidence, named by the hash of its stored bytes."""

    kind: str  # e.g. 电子数据（称重记录）, 视听资料（车辆照片）
    sha256: str
    description: str


@dataclass(frozen=True)
class Basis:
    """The law applied: the articles, the benchmark and its band, each rule line."""

    articles: tuple[str, ...]
    benchmark_title: str
    band_id: str
    band_description: str
    rule_lines: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """The proposed or decided outcome and the reasoning that led to it (说理式)."""

    action: Literal["fine", "warning", "education", "no_penalty"]
    fine_yuan: float = 0.0
    reasoning: tuple[str, ...] = ()
    no_penalty_reason: str = ""

    def __post_init__(self) -> None:
        """Refuse an action outside the grade's vocabulary, or a fine that is not one."""
        if self.action not in ("fine", "warning", "education", "no_penalty"):
            raise DocumentError(
                f"Outcome action must be fine, warning, education or no_penalty "
                f"(got {self.action!r})"
            )
        if self.action == "fine" and not self.fine_yuan > 0:
            raise DocumentError(f"Outcome fine must be above 0 yuan (got {self.fine_yuan!r})")
        if self.action != "fine" and self.fine_yuan != 0:
            raise DocumentError(
                f"Outcome {self.action} carries no fine (got {self.fine_yuan!r} yuan)"
            )


@dataclass(frozen=True)
class Rights:
    """The party's rights before a decision: defence (Art. 45), hearing (Arts. 63, 64)."""

    defence_days: int
    defence_until: date
    hearing: bool
    hearing_request_days: int = 0
    defence_how: str = ""  # how to state a defence, e.g. the online service and the desk


@dataclass(frozen=True)
class Payment:
    """How and by when a fine is paid (Art. 67) and what lateness costs (Art. 72(一))."""

    within_days: int
    where: str
    late_surcharge: str


@dataclass(frozen=True)
class AppealRoute:
    """One route to challenge the decision: ``within`` ``body`` ``name`` reads as a sentence.

    For example within 自收到本决定书之日起六十日内, body 浙江省交通运输厅, name 申请行政复议.
    """

    name: str
    within: str
    body: str


@dataclass(frozen=True)
class Officer:
    """An enforcement officer and the number of the credential shown (Art. 42)."""

    name: str
    credential: str


@dataclass(frozen=True)
class Defence:
    """What became of the right to state a defence, and the authority's answer (Art. 45)."""

    status: Literal["received", "waived", "lapsed"]
    channel: str
    on: date
    statement: str = ""
    answer: str = ""
    not_heavier: bool = True  # the outcome is not heavier because of the defence

    def __post_init__(self) -> None:
        """Refuse an unknown status, and an outcome made heavier by a defence (Art. 45)."""
        if self.status not in ("received", "waived", "lapsed"):
            raise DocumentError(
                f"Defence status must be received, waived or lapsed (got {self.status!r})"
            )
        if not self.not_heavier:
            raise DocumentError(
                "Defence: the outcome may not be heavier because of a defence "
                "(行政处罚法 Art. 45 ¶2; got not_heavier=False)"
            )


@dataclass(frozen=True)
class Commitment:
    """首违不罚 (Art. 33 ¶1): the party's commitment, the correction and the reminder."""

    text: str
    correct_by: date
    reminder_on: date


@dataclass(frozen=True)
class CreditRepair:
    """Words of the 信用修复告知书: where the decision is published and how to repair."""

    basis: str
    platform: str
    publication: str  # the publication period(s) as the table words them
    how_to_apply: str
    conditions: tuple[str, ...] = ()


@dataclass(frozen=True)
class ComplianceAdvice:
    """Words of the 合规建议书: what the company should do, and why it matters."""

    advice: tuple[str, ...]
    consequences: tuple[str, ...] = ()  # e.g. Art. 66's repeat consequences, cited


@dataclass(frozen=True)
class PublicService:
    """公告送达: the document served by publication, the failed attempts and the law."""

    served_title: str
    served_number: str
    attempts: tuple[str, ...]
    basis: str
    deemed_served: str  # when service is deemed done, as the table words it
    where_to_collect: str
    served_kind: str = "notice"  # the kind served: a notice proposes, a decision decides


@dataclass(frozen=True)
class DocumentFacts:
    """Everything any document of one case needs, as plain data."""

    number: str  # 文书编号
    on: date  # the document's date (local)
    authority: Authority
    party: Party
    vehicle: Vehicle
    facts: Facts
    evidence: tuple[EvidenceItem, ...]
    basis: Basis
    outcome: Outcome
    rights: Rights
    payment: Payment
    appeals: tuple[AppealRoute, ...]
    officers: tuple[Officer, Officer]
    defence: Defence | None = None
    commitment: Commitment | None = None
    credit: CreditRepair | None = None
    compliance: ComplianceAdvice | None = None
    service: PublicService | None = None
    lookup_code: str | None = None
    """The code with which the party looks the case up online (a notice only: it is the
    party's, so a public notice never carries it)."""

    def __post_init__(self) -> None:
        """Two different officers sign every document (行政处罚法 Art. 42)."""
        if len(self.officers) != 2 or self.officers[0].credential == self.officers[1].credential:
            raise DocumentError(
                "DocumentFacts needs two officers with different credential numbers "
                f"(行政处罚法 Art. 42; got {[o.credential for o in self.officers]})"
            )


@dataclass(frozen=True)
class Rendered:
    """One rendered document: its HTML, its PDF and the SHA-256 of the PDF (hex)."""

    kind: str
    html: str
    pdf: bytes = field(repr=False)
    sha256: str


_DIGITS = "零壹贰叁肆伍陆柒捌玖"
_SMALL_UNITS = ("", "拾", "佰", "仟")
_SECTION_UNITS = ("", "万", "亿")
_MAX_YUAN = 10**8


def yuan_in_words(amount: float) -> str:
    """The amount in capital numerals as finance writes it (大写金额).

    One 零 stands for each run of zeros before a non-zero digit; 拾 at the head is written
    壹拾; 整 follows 元 when there are no 角 or 分; amounts are in whole 分.

    Examples
    --------
    >>> yuan_in_words(12500)
    '壹万贰仟伍佰元整'
    >>> yuan_in_words(30000)
    '叁万元整'
    >>> yuan_in_words(1005.5)
    '壹仟零伍元伍角'
    >>> yuan_in_words(0)
    '零元整'
    >>> yuan_in_words(100500)
    '壹拾万零伍佰元整'
    >>> yuan_in_words(10010000)
    '壹仟零壹万元整'
    >>> yuan_in_words(1000.05)
    '壹仟元零伍分'
    >>> yuan_in_words(0.35)
    '叁角伍分'
    >>> yuan_in_words(10**8)
    '壹亿元整'
    >>> yuan_in_words(-1)
    Traceback (most recent call last):
    ...
    center.documents.DocumentError: Amount in words must be between 0 and 100000000 yuan (got -1)
    """
    fen = _whole_fen(amount)
    whole, jiao, cents = fen // 100, fen // 10 % 10, fen % 10
    if fen == 0:
        return "零元整"
    words = _integer_words(whole) + "元" if whole else ""
    if jiao == 0 and cents == 0:
        return words + "整"
    if jiao:
        words += _DIGITS[jiao] + "角"
    elif whole:
        words += "零"
    if cents:
        words += _DIGITS[cents] + "分"
    return words


def _whole_fen(amount: float) -> int:
    """The amount in 分, refusing what no document may print (negative, inf, > 1 亿, 0.001)."""
    if isinstance(amount, bool) or not isinstance(amount, int | float | Decimal):
        raise DocumentError(f"Amount in words must be a number (got {amount!r})")
    if not math.isfinite(amount) or amount < 0 or amount > _MAX_YUAN:
        raise DocumentError(
            f"Amount in words must be between 0 and {_MAX_YUAN} yuan (got {amount!r})"
        )
    exact = Decimal(str(amount))
    fen = (exact * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    if abs(exact * 100 - fen) > Decimal("0.0001"):
        raise DocumentError(f"Amount in words must be in whole fen (got {amount!r})")
    return int(fen)


def _integer_words(number: int) -> str:
    """A positive whole number below 10^9 in capital numerals, with 万 and 亿 sections."""
    digits = str(number)
    out: list[str] = []
    zero_pending = False
    for index, char in enumerate(digits):
        position = len(digits) - 1 - index
        digit = int(char)
        if digit == 0:
            zero_pending = True
        else:
            if zero_pending and out:
                out.append("零")
            zero_pending = False
            out.append(_DIGITS[digit] + _SMALL_UNITS[position % 4])
        if position % 4 == 0 and position > 0 and (number // 10**position) % 10**4:
            out.append(_SECTION_UNITS[position // 4])
    return "".join(out)


def _cn_date(day: date) -> str:
    """A date as documents print it: 2026年12月5日."""
    return f"{day.year}年{day.month}月{day.day}日"


def _yuan(amount: float) -> str:
    """A yuan amount in figures: whole yuan without decimals, else two decimals."""
    return str(int(amount)) if float(amount).is_integer() else f"{amount:.2f}"


def _masked_id(id_number: str) -> str:
    """A person's ID number as a public notice prints it: first 6 and last 4 digits."""
    if len(id_number) <= 10:
        return "*" * len(id_number)
    return id_number[:6] + "*" * (len(id_number) - 10) + id_number[-4:]


class LocalOnlyFetcher(URLFetcher):
    """A URL fetcher that fetches nothing: the documents carry their style inside.

    Any URL reaching it (an image, a style sheet, a font) stops the rendering, so a
    template change that would fetch from the network or the disk fails loudly.
    """

    def fetch(self, url: str, headers: dict | None = None) -> None:
        """Refuse every URL."""
        raise FatalURLFetchingError(f"documents fetch no resources (refused {url!r})")


def _environment() -> jinja2.Environment:
    """The Jinja2 environment over the shipped templates, autoescaping everything."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    filters: dict[str, Callable] = {
        "cn_date": _cn_date,
        "yuan": _yuan,
        "yuan_words": yuan_in_words,
        "masked_id": _masked_id,
    }
    env.filters.update(filters)
    return env


_ENV = _environment()


def _check(kind: str, facts: DocumentFacts) -> None:
    """Refuse a document the facts cannot support, naming what is missing."""
    action = facts.outcome.action
    needs: dict[str, tuple[bool, str]] = {
        "defence_record": (facts.defence is not None, "a defence (received, waived or lapsed)"),
        "decision": (action in ("fine", "warning"), "an outcome of fine or warning"),
        "no_penalty_decision": (
            action in ("education", "no_penalty"),
            "an outcome of education or no_penalty",
        ),
        "credit_repair": (
            facts.party.kind == "company" and facts.credit is not None,
            "a company party and credit repair words",
        ),
        "compliance_advice": (
            facts.party.kind == "company" and facts.compliance is not None,
            "a company party and compliance advice",
        ),
        "public_notice": (facts.service is not None, "public service facts"),
    }
    ok, what = needs.get(kind, (True, ""))
    if not ok:
        raise DocumentError(
            f"Document {kind} for case document {facts.number} needs {what} "
            f"(got action {action!r}, party {facts.party.kind!r})"
        )
    if kind in ("decision", "no_penalty_decision") and not facts.appeals:
        raise DocumentError(
            f"Document {kind} {facts.number} needs the routes of 复议 and 诉讼 "
            "(行政处罚法 Art. 59(五); got none)"
        )


def render_html(kind: str, facts: DocumentFacts) -> str:
    """The document's HTML, with its style sheet inside; refuses an unknown kind."""
    if kind not in KINDS:
        raise DocumentError(f"Unknown document kind {kind!r}; the kinds are: {', '.join(KINDS)}")
    _check(kind, facts)
    template = _ENV.get_template(f"{kind}.html")
    return template.render(f=facts, kind=kind, title=KINDS[kind])


_CLOCK_LOCK = threading.Lock()


@contextlib.contextmanager
def _font_clock(day: date) -> Iterator[None]:
    """Pin the clock the font subsetter stamps into each embedded font to ``day``.

    Without HarfBuzz's subsetter WeasyPrint subsets fonts with fontTools, which writes the
    time of saving into the font's ``head`` table unless SOURCE_DATE_EPOCH is set (the
    reproducible-builds convention). The variable is process-wide, so it is set under a
    lock and restored after.
    """
    epoch = str(int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()))
    with _CLOCK_LOCK:
        before = os.environ.get("SOURCE_DATE_EPOCH")
        os.environ["SOURCE_DATE_EPOCH"] = epoch
        try:
            yield
        finally:
            if before is None:
                del os.environ["SOURCE_DATE_EPOCH"]
            else:
                os.environ["SOURCE_DATE_EPOCH"] = before


def render(kind: str, facts: DocumentFacts) -> Rendered:
    """Render one document to HTML and PDF; the same facts always give the same bytes.

    The PDF's creation date is the document's date (from the HTML's ``dcterms.created``),
    its file identifier the first 16 bytes of the HTML's SHA-256 (hex), and the embedded
    fonts are stamped with the document's date, so nothing depends on the clock or on
    chance.
    """
    html = render_html(kind, facts)
    identifier = hashlib.sha256(html.encode("utf-8")).hexdigest()[:32].encode("ascii")
    document = HTML(
        string=html, base_url=TEMPLATES_DIR.as_uri() + "/", url_fetcher=LocalOnlyFetcher()
    )
    with _font_clock(facts.on):
        pdf = document.write_pdf(pdf_identifier=identifier)
    return Rendered(kind=kind, html=html, pdf=pdf, sha256=hashlib.sha256(pdf).hexdigest())

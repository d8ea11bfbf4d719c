"""The procedure's documents rendered for real: WeasyPrint PDFs read back with pdftotext.

Two cases: a national one (a person, 5-axle combination, Order 62 Art. 43 fine band) and a
Zhejiang one (a company, 6-axle combination, 浙江省公路条例 Art. 53(三)). Every kind is
rendered; the decision's text holds the plate, the articles, the band, the amount in
words and the appeal routes; the same facts give the same bytes, in this process and in
another one with a different hash seed; markup in the facts stays text.
"""

import dataclasses
import doctest
import hashlib
import os
import re
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
from weasyprint import HTML
from weasyprint.urls import FatalURLFetchingError

import center.documents
from center.documents import (
    KINDS,
    AppealRoute,
    Authority,
    Basis,
    Commitment,
    ComplianceAdvice,
    CreditRepair,
    Defence,
    DocumentError,
    DocumentFacts,
    EvidenceItem,
    Facts,
    LocalOnlyFetcher,
    Officer,
    Outcome,
    Party,
    Payment,
    PublicService,
    Rendered,
    Rights,
    Vehicle,
    render,
    render_html,
    yuan_in_words,
)

PDFTOTEXT = "/usr/bin/pdftotext"
REPO = Path(__file__).resolve().parent.parent
# One document renders in well under a second on a laptop; the bound leaves room for CI.
SECONDS_PER_DOCUMENT = 6.0

APPEALS = (
    AppealRoute("申请行政复议", "自收到本决定书之日起六十日内", "示例市人民政府"),
    AppealRoute("提起行政诉讼", "自收到本决定书之日起六个月内", "示例市东城区人民法院"),
)
OFFICERS = (Officer("王明", "33010012345"), Officer("李华", "33010067890"))
LATE = (
    "本机关可以每日按罚款数额的百分之三加处罚款，加处罚款的数额不得超出罚款的数额"
    "（《中华人民共和国行政处罚法》第七十二条第一款第（一）项）。"
)


def national_person() -> DocumentFacts:
    """A national case: 49 800 kg on a 43 000 kg 5-axle combination, 3 000 yuan."""
    return DocumentFacts(
        number="示交罚〔2026〕第0101号",
        on=date(2026, 11, 20),
        authority=Authority(
            name="示例市交通运输局",
            address="示例市东城区建设路1号",
            payment_place="中国工商银行示例市分行各营业网点或者非税收入电子缴款系统",
            payment_account="执收单位编码 101001，缴款码见本决定书背面",
            review_body="示例市人民政府",
            court="示例市东城区人民法院",
        ),
        party=Party("person", "张三", "410102198001011234", "河南省郑州市中原区桐柏路8号"),
        vehicle=Vehicle("豫A12345", "黄色", "重型半挂牵引车（汽车列车）", "127"),
        facts=Facts(
            captured_at="2026年11月2日 14时05分31秒",
            road="G30连霍高速",
            stake="K612+300",
            direction="往西安方向",
            device_id="WIM-HN-0031",
            gross_kg=49800,
            limit_kg=43000,
            tolerance_kg=0,
            excess_kg=6800,
            excess_percent=15.81,
            other_captures=("2026年11月2日 15时12分08秒 G30连霍高速K688+100 49 650千克",),
        ),
        evidence=(
            EvidenceItem("电子数据（称重记录）", "ab" * 32, "动态称重检测数据及设备检定证书"),
            EvidenceItem("视听资料（车辆照片）", "cd" * 32, "车头、车尾及侧面照片"),
        ),
        basis=Basis(
            articles=(
                "《公路安全保护条例》第三十三条第一款",
                "《公路安全保护条例》第六十四条",
                "《超限运输车辆行驶公路管理规定》第四十三条第一款第（二）项",
            ),
            benchmark_title="全国 — 超限运输车辆行驶公路管理规定 第四十三条",
            band_id="national.mass.fine",
            band_description="超限1000千克以上，每超1000千克罚款500元",
            rule_lines=("最高限值：五轴汽车列车（轴型127）43000千克",),
        ),
        outcome=Outcome(
            action="fine",
            fine_yuan=3000,
            reasoning=(
                "超限6800千克，超过1000千克，适用罚款档次；",
                "不足1000千克的部分不计（向下取整），计6个1000千克，每个500元；",
                "6 × 500 = 3000元，未超过30000元上限。",
            ),
        ),
        rights=Rights(
            defence_days=3,
            defence_until=date(2026, 11, 9),
            hearing=False,
            defence_how="交通运输部门非现场执法平台或者本机关执法窗口",
        ),
        payment=Payment(15, "指定的银行或者电子支付系统", LATE),
        appeals=APPEALS,
        officers=OFFICERS,
        defence=Defence(
            "received",
            "非现场执法平台",
            date(2026, 11, 8),
            statement="车辆当天装载的是钢材，磅单显示未超载。",
            answer="磅单称量地点与检测地点间未卸货，检测设备在检定有效期内，申辩理由不成立，不予采纳。",
        ),
        service=PublicService(
            served_title="违法行为通知书",
            served_number="示交告〔2026〕第0101号",
            attempts=("2026年11月3日 短信送达失败：号码停机", "2026年11月5日 邮寄退回：查无此人"),
            basis="《中华人民共和国民事诉讼法》关于公告送达的规定",
            deemed_served="自公告发布之日起经过三十日，即视为送达。",
            where_to_collect="示例市交通运输局执法窗口（东城区建设路1号）",
        ),
    )


def zhejiang_company() -> DocumentFacts:
    """A Zhejiang case: 80 000 kg on a 49 000 kg 6-axle combination, 7 200 yuan."""
    base = national_person()
    return dataclasses.replace(
        base,
        number="浙示交罚〔2026〕第0207号",
        authority=dataclasses.replace(
            base.authority, name="示例市综合行政执法局", review_body="示例市人民政府"
        ),
        party=Party(
            "company", "示例物流有限公司", "91330100MA2XXXXX0Q", "浙江省杭州市西湖区文三路9号"
        ),
        vehicle=Vehicle("浙A·D5678", "黄色", "重型半挂牵引车（汽车列车）", "1157"),
        facts=dataclasses.replace(
            base.facts,
            road="G60沪昆高速",
            stake="K150+800",
            device_id="WIM-ZJ-0007",
            gross_kg=80000,
            limit_kg=49000,
            excess_kg=31000,
            excess_percent=63.27,
            other_captures=(),
        ),
        basis=Basis(
            articles=(
                "《浙江省公路条例》第三十四条第一款",
                "《浙江省公路条例》第五十三条第一款第（三）项",
            ),
            benchmark_title="浙江省 — 浙江省公路条例 第五十三条",
            band_id="zhejiang.mass.above-50pct",
            band_description="超过最高限值百分之五十的部分每吨五百元，百分之二十至五十的部分每吨三百元",
            rule_lines=(
                "百分之二十至百分之五十的部分：14700千克，计14吨 × 300元 = 4200元",
                "超过百分之五十的部分：6500千克，计6吨 × 500元 = 3000元",
            ),
        ),
        outcome=Outcome(
            action="fine",
            fine_yuan=7200,
            reasoning=("4200元 + 3000元 = 7200元，未超过30000元上限。",),
        ),
        rights=Rights(
            defence_days=15,
            defence_until=date(2026, 11, 18),
            hearing=True,
            hearing_request_days=5,
        ),
        defence=Defence("waived", "执法窗口书面声明", date(2026, 11, 6)),
        credit=CreditRepair(
            basis="《失信行为纠正后的信用信息修复管理办法（试行）》",
            platform="“信用中国”网站",
            publication="最短公示期为三个月，最长公示期为一年。",
            how_to_apply="最短公示期满后，通过“信用中国”网站在线提出信用修复申请。",
            conditions=("已履行行政处罚决定规定的义务", "已主动消除有关不良影响"),
        ),
        compliance=ComplianceAdvice(
            advice=(
                "建立货物装载源头管理制度，按车辆核定载质量装载。",
                "对驾驶人开展超限运输法规培训。",
            ),
            consequences=(
                "一年内违法超限运输超过3次的货运车辆，吊销其车辆营运证"
                "（《公路安全保护条例》第六十六条）。",
            ),
        ),
    )


CASES = {"national": national_person, "zhejiang": zhejiang_company}


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    """The PDF's text as pdftotext reads it, with all white space removed (CJK wraps)."""
    path = tmp_path / "document.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(
        [PDFTOTEXT, "-enc", "UTF-8", str(path), "-"],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout.decode("utf-8")
    return re.sub(r"\s+", "", out)


def facts_for(kind: str, case: str) -> DocumentFacts:
    """The case's facts, changed where a kind needs another outcome."""
    facts = CASES[case]()
    if kind == "no_penalty_decision":
        facts = no_penalty(facts)
    return facts


def no_penalty(facts: DocumentFacts) -> DocumentFacts:
    """首违不罚 with a commitment (national) or a 批评教育 band (Zhejiang)."""
    if facts.party.kind == "person":
        return dataclasses.replace(
            facts,
            basis=dataclasses.replace(
                facts.basis, articles=("《中华人民共和国行政处罚法》第三十三条第一款",)
            ),
            outcome=Outcome(
                "no_penalty",
                reasoning=("该车辆此前无超限违法记录，属初次违法；危害后果轻微并已及时改正。",),
                no_penalty_reason="初次违法且危害后果轻微并及时改正。",
            ),
            commitment=Commitment(
                "本人承诺今后严格按照核定载质量装载，不再超限运输。",
                correct_by=date(2026, 11, 30),
                reminder_on=date(2026, 12, 15),
            ),
        )
    return dataclasses.replace(
        facts,
        facts=dataclasses.replace(
            facts.facts, gross_kg=55000, excess_kg=6000, excess_percent=12.24
        ),
        basis=dataclasses.replace(
            facts.basis,
            articles=("《浙江省公路条例》第五十三条第一款第（一）项",),
            band_id="zhejiang.mass.education",
            band_description="车货总质量未超过最高限值百分之二十，给予批评教育，可以不予处罚",
        ),
        outcome=Outcome("education", reasoning=("超限率12.24%，未超过百分之二十。",)),
    )


@pytest.fixture(scope="module")
def rendered() -> dict[tuple[str, str], tuple[Rendered, float]]:
    """Every kind of both cases, rendered once, with the seconds each took."""
    out = {}
    for case in CASES:
        for kind in KINDS:
            if kind in ("credit_repair", "compliance_advice") and case != "zhejiang":
                continue
            start = time.perf_counter()
            out[(kind, case)] = (render(kind, facts_for(kind, case)), time.perf_counter() - start)
    return out


def test_every_kind_renders_a_pdf_in_bounded_time(rendered) -> None:
    """Each document is a PDF whose hash is recorded, within the time bound."""
    assert {kind for kind, _ in rendered} == set(KINDS)
    for (kind, case), (doc, seconds) in rendered.items():
        assert doc.kind == kind
        assert doc.pdf.startswith(b"%PDF-"), (kind, case)
        assert doc.sha256 == hashlib.sha256(doc.pdf).hexdigest()
        assert seconds < SECONDS_PER_DOCUMENT, (kind, case, seconds)


@pytest.mark.parametrize("case", ["national", "zhejiang"])
def test_decision_text_holds_all_of_art_59(rendered, case, tmp_path) -> None:
    """pdftotext of the decision: plate, articles, band, amount in words, routes, authority."""
    facts = CASES[case]()
    text = pdf_text(rendered[("decision", case)][0].pdf, tmp_path)
    words = yuan_in_words(facts.outcome.fine_yuan)
    expected = [
        facts.party.name,
        facts.party.address,
        facts.vehicle.plate,
        *facts.basis.articles,
        facts.basis.band_id,
        facts.basis.benchmark_title.replace(" ", ""),
        words,
        *[line.replace(" ", "") for line in facts.outcome.reasoning],
        f"{facts.payment.within_days}日内",
        facts.authority.payment_place,
        "第七十二条第一款第（一）项",
        facts.authority.name,
        "2026年11月20日",
        *(facts.officers[0].credential, facts.officers[1].credential),
        *(e.sha256 for e in facts.evidence),
    ]
    for route in facts.appeals:
        expected.append(f"{route.within}向{route.body}{route.name}")
    for item in expected:
        assert item.replace(" ", "") in text, item
    assert {"national": "叁仟元整", "zhejiang": "柒仟贰佰元整"}[case] in text


def test_notice_states_the_rights_and_deadlines(rendered, tmp_path) -> None:
    """The notice: proposed outcome, defence days and date; a hearing only where due."""
    national = pdf_text(rendered[("notice", "national")][0].pdf, tmp_path)
    zhejiang = pdf_text(rendered[("notice", "zhejiang")][0].pdf, tmp_path)
    assert "拟给予罚款人民币3000元（大写：叁仟元整）" in national
    assert "3日内（2026年11月9日前）" in national
    assert "第四十四条、第四十五条" in national
    assert "要求听证" not in national
    assert "15日内（2026年11月18日前）" in zhejiang
    assert "有权要求听证，应当在本机关告知后5日内提出" in zhejiang
    assert "national.mass.fine" in national and "zhejiang.mass.above-50pct" in zhejiang


def test_defence_record_and_art_45(rendered, tmp_path) -> None:
    """The record holds the statement and the answer; both say no heavier outcome."""
    text = pdf_text(rendered[("defence_record", "national")][0].pdf, tmp_path)
    assert "车辆当天装载的是钢材" in text and "不予采纳" in text
    assert "不因当事人陈述、申辩而给予更重的处罚" in text
    waived = pdf_text(rendered[("defence_record", "zhejiang")][0].pdf, tmp_path)
    assert "明确放弃陈述、申辩权利" in waived
    with pytest.raises(DocumentError, match=r"Art\. 45"):
        Defence("received", "平台", date(2026, 11, 8), not_heavier=False)


def test_no_penalty_decisions(rendered, tmp_path) -> None:
    """首违不罚 carries the commitment and reminder; the 批评教育 band no fine."""
    first = pdf_text(rendered[("no_penalty_decision", "national")][0].pdf, tmp_path)
    assert "决定不予行政处罚" in first and "第三十三条第一款" in first
    assert "本人承诺今后严格按照核定载质量装载" in first
    assert "2026年11月30日前改正" in first and "2026年12月15日进行回访提醒" in first
    education = pdf_text(rendered[("no_penalty_decision", "zhejiang")][0].pdf, tmp_path)
    assert "决定对当事人予以批评教育，不予行政处罚" in education
    assert "zhejiang.mass.education" in education and "罚款人民币" not in education


def test_company_documents_served_with_the_decision(rendered, tmp_path) -> None:
    """三书同达: credit repair and compliance advice name the company and the decision."""
    credit = pdf_text(rendered[("credit_repair", "zhejiang")][0].pdf, tmp_path)
    advice = pdf_text(rendered[("compliance_advice", "zhejiang")][0].pdf, tmp_path)
    for text in (credit, advice):
        assert "示例物流有限公司" in text and "浙A·D5678" in text
        assert "浙示交罚〔2026〕第0207号" in text
    assert "最短公示期为三个月" in credit and "已履行行政处罚决定规定的义务" in credit
    assert "建立货物装载源头管理制度" in advice and "第六十六条" in advice
    with pytest.raises(DocumentError, match="company"):
        render_html("credit_repair", national_person())


def test_public_notice_masks_a_persons_id(rendered, tmp_path) -> None:
    """公告送达: the failed attempts, the deemed service, and the ID number masked."""
    text = pdf_text(rendered[("public_notice", "national")][0].pdf, tmp_path)
    assert "短信送达失败" in text and "即视为送达" in text
    assert "410102********1234" in text and "410102198001011234" not in text
    assert "张三" in text and "豫A12345" in text
    assert "拟给予罚款人民币3000元" in text and "享有陈述、申辩的权利" in text
    facts = national_person()
    assert facts.service is not None
    decided = dataclasses.replace(
        facts,
        service=dataclasses.replace(
            facts.service, served_kind="decision", served_title="行政处罚决定书"
        ),
    )
    html = render_html("public_notice", decided)
    assert "本机关决定给予罚款人民币3000元" in html and "拟给予" not in html
    assert "示例市人民政府申请行政复议" in html and "陈述、申辩的权利" not in html


def test_same_facts_same_bytes(rendered, monkeypatch) -> None:
    """Rendering again gives the same PDF bytes; other facts give other bytes.

    The font clock is pinned only while rendering: a SOURCE_DATE_EPOCH of the site's is
    back in place afterwards.
    """
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    again = render("decision", zhejiang_company())
    assert os.environ["SOURCE_DATE_EPOCH"] == "86400"
    first = rendered[("decision", "zhejiang")][0]
    assert again.pdf == first.pdf and again.sha256 == first.sha256
    other = render("decision", dataclasses.replace(zhejiang_company(), on=date(2026, 11, 21)))
    assert other.sha256 != first.sha256


def test_pdf_dates_are_the_documents_date(rendered, tmp_path) -> None:
    """The PDF's creation and modification dates are the document's date, not the clock."""
    path = tmp_path / "decision.pdf"
    path.write_bytes(rendered[("decision", "zhejiang")][0].pdf)
    info = subprocess.run(
        ["/usr/bin/pdfinfo", "-isodates", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
        text=True,
    ).stdout
    assert re.search(r"^CreationDate:\s+2026-11-20T00:00:00", info, re.M), info
    assert re.search(r"^ModDate:\s+2026-11-20T00:00:00", info, re.M), info
    assert "Author:          示例市综合行政执法局" in info


def test_same_bytes_in_another_process(rendered) -> None:
    """A fresh interpreter with another hash seed renders the same bytes."""
    code = (
        "import sys; sys.path.insert(0, 'tests');"
        "from test_documents import zhejiang_company;"
        "from center.documents import render;"
        "print(render('decision', zhejiang_company()).sha256)"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
        text=True,
    ).stdout.strip()
    assert out == rendered[("decision", "zhejiang")][0].sha256


def test_markup_in_facts_stays_text(tmp_path) -> None:
    """A plate or a name with markup is escaped in the HTML and printed as text."""
    facts = national_person()
    facts = dataclasses.replace(
        facts,
        party=dataclasses.replace(facts.party, name="<script>alert(1)</script>"),
        vehicle=dataclasses.replace(facts.vehicle, plate='豫A<b>1"&'),
    )
    doc = render("decision", facts)
    assert "<script>" not in doc.html and "<b>" not in doc.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in doc.html
    assert "豫A&lt;b&gt;1&#34;&amp;" in doc.html
    text = pdf_text(doc.pdf, tmp_path)
    assert "<script>alert(1)</script>" in text and '豫A<b>1"&' in text


def test_refused_documents() -> None:
    """Unknown kinds, a decision without a penalty, missing routes: each refused."""
    with pytest.raises(ValueError, match="notice, defence_record, decision"):
        render("summons", national_person())
    with pytest.raises(DocumentError, match="fine or warning"):
        render_html("decision", no_penalty(national_person()))
    with pytest.raises(DocumentError, match="education or no_penalty"):
        render_html("no_penalty_decision", national_person())
    with pytest.raises(DocumentError, match="复议"):
        render_html("decision", dataclasses.replace(national_person(), appeals=()))
    with pytest.raises(DocumentError, match="defence"):
        render_html("defence_record", dataclasses.replace(national_person(), defence=None))
    with pytest.raises(DocumentError, match=r"Art\. 42"):
        dataclasses.replace(national_person(), officers=(OFFICERS[0], OFFICERS[0]))
    with pytest.raises(DocumentError, match="above 0"):
        Outcome("fine", 0)
    with pytest.raises(DocumentError, match="carries no fine"):
        Outcome("warning", 500)
    with pytest.raises(DocumentError, match="person or company"):
        Party("driver", "x", "y", "z")  # type: ignore[arg-type]


def test_nothing_is_fetched() -> None:
    """A template or fact that points at a URL stops the rendering instead of fetching."""
    html = '<html><body><img src="http://127.0.0.1:9/x.png">图</body></html>'
    with pytest.raises(FatalURLFetchingError, match="refused"):
        HTML(string=html, url_fetcher=LocalOnlyFetcher()).write_pdf()


@pytest.mark.parametrize(
    ("amount", "words"),
    [
        (12500, "壹万贰仟伍佰元整"),
        (30000, "叁万元整"),
        (1005.5, "壹仟零伍元伍角"),
        (0, "零元整"),
        (10, "壹拾元整"),
        (15, "壹拾伍元整"),
        (1409.5, "壹仟肆佰零玖元伍角"),
        (6007.14, "陆仟零柒元壹角肆分"),
        (1680.32, "壹仟陆佰捌拾元叁角贰分"),
        (10.05, "壹拾元零伍分"),
        (0.05, "伍分"),
        (0.5, "伍角"),
        (100000, "壹拾万元整"),
        (1000005, "壹佰万零伍元整"),
        (20000500, "贰仟万零伍佰元整"),
        (99999999.99, "玖仟玖佰玖拾玖万玖仟玖佰玖拾玖元玖角玖分"),
        (10**8, "壹亿元整"),
        (0.1 + 0.2, "叁角"),
    ],
)
def test_yuan_in_words(amount, words) -> None:
    """Finance's capital numerals, zeros in the middle written once."""
    assert yuan_in_words(amount) == words


@pytest.mark.parametrize(
    "amount", [-0.01, float("nan"), float("inf"), 10**8 + 0.01, 1.001, "12", True]
)
def test_yuan_in_words_refuses(amount) -> None:
    """Negative, non-finite, above 10^8, fractions of a fen and non-numbers are refused."""
    with pytest.raises(ValueError, match="Amount in words"):
        yuan_in_words(amount)


def test_docstring_examples_run() -> None:
    """The Examples of center.documents (pytest collects only tests/)."""
    result = doctest.testmod(center.documents, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted >= 10

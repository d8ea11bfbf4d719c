"""The tables of the procedure after review (built by migration ``0005_procedure``): each
step taken on a case and by whom, the case's procedure record (party, proposal, defence,
decision, service, payment and their deadlines), the documents rendered for it, and every
attempt to deliver one.

Dates a party is told (a deadline, the day of service) are calendar days in China
Standard Time; moments are UTC.
"""

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Date, Float, ForeignKey, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from center.db import Base
from center.law_models import BigId, UtcTime


class CaseStep(Base):
    """One step of the procedure taken on a case: which, when, by which officer."""

    __tablename__ = "case_steps"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(BigId, ForeignKey("cases.id"), index=True)
    step: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UtcTime)
    officer_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    credential: Mapped[str | None] = mapped_column(String(64), nullable=True)
    actor: Mapped[str] = mapped_column(String(128))
    outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")


class CaseProcedure(Base):
    """Where a case stands in the procedure, once filed (立案) by the approving officer."""

    __tablename__ = "case_procedure"

    case_id: Mapped[int] = mapped_column(BigId, ForeignKey("cases.id"), primary_key=True)
    procedure: Mapped[str] = mapped_column(String(32), doc="procedure table: national, ...")
    number: Mapped[str] = mapped_column(String(64), doc="文书编号 of the case's documents")
    filed_on: Mapped[date] = mapped_column(Date, doc="立案: the day the review was approved")
    decide_by: Mapped[date] = mapped_column(Date, index=True, doc="行政处罚法 Art. 60")
    limitation_on: Mapped[date] = mapped_column(Date, doc="Art. 36, from the act")
    party_kind: Mapped[str] = mapped_column(String(8), doc="person or company")
    party_name: Mapped[str] = mapped_column(String(128))
    party_id_number: Mapped[str | None] = mapped_column(String(64), nullable=True)
    party_address: Mapped[str | None] = mapped_column(Text, nullable=True)
    party_phone: Mapped[str | None] = mapped_column(String(32), nullable=True)
    party_email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    party_consent: Mapped[bool] = mapped_column(
        Boolean, default=False, doc="the party agreed, signed, to service by e-mail or SMS "
        "(行政处罚法 Art. 61 ¶2)")
    vehicle_kind: Mapped[str | None] = mapped_column(String(32), nullable=True)
    transport_certificate: Mapped[str | None] = mapped_column(String(64), nullable=True)
    driver: Mapped[str | None] = mapped_column(String(128), nullable=True)
    source_unit: Mapped[str | None] = mapped_column(String(256), nullable=True)
    loading_slip: Mapped[str | None] = mapped_column(String(128), nullable=True)
    proposed_action: Mapped[str | None] = mapped_column(String(16), nullable=True)
    proposed_fine_yuan: Mapped[float | None] = mapped_column(Float, nullable=True)
    notified_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    public_notice: Mapped[bool] = mapped_column(Boolean, default=False,
                                                doc="served by public notice (公告送达)")
    defence_until: Mapped[date | None] = mapped_column(Date, nullable=True)
    hearing_right: Mapped[bool] = mapped_column(Boolean, default=False)
    hearing_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    defence: Mapped[str | None] = mapped_column(String(16), nullable=True,
                                                doc="received, waived or lapsed")
    defence_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    defence_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    defence_answer: Mapped[str | None] = mapped_column(Text, nullable=True)
    legal_review_required: Mapped[bool] = mapped_column(Boolean, default=False)
    legal_review_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    decision_kind: Mapped[str | None] = mapped_column(String(16), nullable=True,
                                                      doc="penalty or no_penalty")
    decision_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    decided_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    commitment: Mapped[str | None] = mapped_column(Text, nullable=True)
    reminder_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    serve_by: Mapped[date | None] = mapped_column(Date, nullable=True)
    served_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    pay_by: Mapped[date | None] = mapped_column(Date, nullable=True)
    paid_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    paid_yuan: Mapped[float | None] = mapped_column(Float, nullable=True)
    surcharge_yuan: Mapped[float | None] = mapped_column(Float, nullable=True)
    reject_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)


class CaseDocument(Base):
    """A document rendered for a case: the facts it was rendered from, its HTML and PDF,
    and the PDF's SHA-256 (rendering the facts again gives the same bytes)."""

    __tablename__ = "case_documents"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(BigId, ForeignKey("cases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UtcTime)
    sha256: Mapped[str] = mapped_column(String(64))
    facts: Mapped[dict[str, Any]] = mapped_column(JSON)
    html: Mapped[str] = mapped_column(Text)
    pdf: Mapped[bytes] = mapped_column(LargeBinary)


class Delivery(Base):
    """One attempt to deliver a document to the party: channel, address, outcome."""

    __tablename__ = "case_deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(BigId, ForeignKey("cases.id"), index=True)
    document_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("case_documents.id"),
                                                    nullable=True)
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(Text)
    ok: Mapped[bool] = mapped_column(Boolean)
    detail: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcTime)

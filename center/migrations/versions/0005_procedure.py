"""The procedure after review: steps, the case's procedure record, documents, deliveries;
the audit log becomes a hash chain (the entries already there are chained in id order).

Revision ID: 0005_procedure
Revises: 0004_registers
"""

import sqlalchemy as sa
from alembic import op

from center.audit import GENESIS, entry_hash

revision = "0005_procedure"
down_revision = "0004_registers"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)


def _steps() -> None:
    op.create_table(
        "case_steps",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("case_id", BIG_ID, sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("step", sa.String(16), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("officer_id", sa.String(32), nullable=True),
        sa.Column("credential", sa.String(64), nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=True),
        sa.Column("note", sa.Text, nullable=False),
    )
    op.create_index("ix_case_steps_case_id", "case_steps", ["case_id"])


def _procedure() -> None:
    dates = ("notified_on", "defence_until", "defence_on", "decided_on", "reminder_on",
             "serve_by", "served_on", "pay_by", "paid_on")
    texts = ("party_address", "defence_text", "defence_answer", "legal_review_reason",
             "commitment")
    op.create_table(
        "case_procedure",
        sa.Column("case_id", BIG_ID, sa.ForeignKey("cases.id"), primary_key=True),
        sa.Column("procedure", sa.String(32), nullable=False),
        sa.Column("number", sa.String(64), nullable=False),
        sa.Column("filed_on", sa.Date, nullable=False),
        sa.Column("decide_by", sa.Date, nullable=False),
        sa.Column("limitation_on", sa.Date, nullable=False),
        sa.Column("party_kind", sa.String(8), nullable=False),
        sa.Column("party_name", sa.String(128), nullable=False),
        sa.Column("party_id_number", sa.String(64), nullable=True),
        sa.Column("party_phone", sa.String(32), nullable=True),
        sa.Column("party_email", sa.String(254), nullable=True),
        sa.Column("vehicle_kind", sa.String(32), nullable=True),
        sa.Column("transport_certificate", sa.String(64), nullable=True),
        sa.Column("driver", sa.String(128), nullable=True),
        sa.Column("source_unit", sa.String(256), nullable=True),
        sa.Column("loading_slip", sa.String(128), nullable=True),
        sa.Column("proposed_action", sa.String(16), nullable=True),
        sa.Column("proposed_fine_yuan", sa.Float, nullable=True),
        sa.Column("party_consent", sa.Boolean, nullable=False),
        sa.Column("public_notice", sa.Boolean, nullable=False),
        sa.Column("hearing_right", sa.Boolean, nullable=False),
        sa.Column("hearing_requested", sa.Boolean, nullable=False),
        sa.Column("defence", sa.String(16), nullable=True),
        sa.Column("legal_review_required", sa.Boolean, nullable=False),
        sa.Column("decision_kind", sa.String(16), nullable=True),
        sa.Column("decision_reason", sa.String(32), nullable=True),
        sa.Column("paid_yuan", sa.Float, nullable=True),
        sa.Column("surcharge_yuan", sa.Float, nullable=True),
        sa.Column("reject_reason", sa.String(32), nullable=True),
        *(sa.Column(name, sa.Date, nullable=True) for name in dates),
        *(sa.Column(name, sa.Text, nullable=True) for name in texts),
    )
    op.create_index("ix_case_procedure_decide_by", "case_procedure", ["decide_by"])


def _documents() -> None:
    op.create_table(
        "case_documents",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("case_id", BIG_ID, sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("facts", sa.JSON, nullable=False),
        sa.Column("html", sa.Text, nullable=False),
        sa.Column("pdf", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_case_documents_case_id", "case_documents", ["case_id"])
    op.create_table(
        "case_deliveries",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("case_id", BIG_ID, sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("document_id", BIG_ID, sa.ForeignKey("case_documents.id"), nullable=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("address", sa.Text, nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("at", TIME, nullable=False),
    )
    op.create_index("ix_case_deliveries_case_id", "case_deliveries", ["case_id"])


def _chain() -> None:
    """Hash columns on the audit log, and the entries already there chained in id order."""
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("prev_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("entry_hash", sa.String(64), nullable=True))
    log = sa.table("audit_log", sa.column("id", BIG_ID), sa.column("at", TIME),
                   sa.column("actor", sa.String), sa.column("case_id", BIG_ID),
                   sa.column("action", sa.String), sa.column("detail", sa.Text),
                   sa.column("prev_hash", sa.String), sa.column("entry_hash", sa.String))
    bind = op.get_bind()
    prev = GENESIS
    for row in bind.execute(sa.select(log).order_by(log.c.id)).all():
        h = entry_hash(prev, at=row.at, actor=row.actor, case_id=row.case_id,
                       action=row.action, detail=row.detail)
        bind.execute(log.update().where(log.c.id == row.id).values(prev_hash=prev,
                                                                   entry_hash=h))
        prev = h


def upgrade() -> None:
    _steps()
    _procedure()
    _documents()
    _chain()


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("entry_hash")
        batch.drop_column("prev_hash")
    op.drop_table("case_deliveries")
    op.drop_table("case_documents")
    op.drop_table("case_procedure")
    op.drop_table("case_steps")

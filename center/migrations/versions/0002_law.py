"""The law: device registry and suspensions, captures, cases, case captures, audit log.

Revision ID: 0002_law
Revises: 0001_ingest
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_law"
down_revision = "0001_ingest"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)


def _registry() -> None:
    op.create_table(
        "device_records",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("road", sa.String(128), nullable=False),
        sa.Column("stake", sa.String(64), nullable=False),
        sa.Column("direction", sa.String(64), nullable=False),
        sa.Column("latitude", sa.Float, nullable=False),
        sa.Column("longitude", sa.Float, nullable=False),
        sa.Column("review_date", sa.Date, nullable=True),
        sa.Column("certificate_number", sa.String(128), nullable=True),
        sa.Column("accuracy_class", sa.String(16), nullable=True),
        sa.Column("certificate_valid_from", sa.Date, nullable=True),
        sa.Column("certificate_valid_to", sa.Date, nullable=True),
        sa.Column("signs_installed", sa.Date, nullable=True),
        sa.Column("notice_date", sa.Date, nullable=True),
        sa.Column("notice_document", sa.String(256), nullable=True),
        sa.Column("notice_url", sa.Text, nullable=True),
        sa.Column("enforcement_start", sa.Date, nullable=True),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.UniqueConstraint("device_id", name="uq_device_records_device_id"),
    )
    op.create_table(
        "device_suspensions",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("starts", sa.Date, nullable=False),
        sa.Column("ends", sa.Date, nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_index("ix_device_suspensions_device_id", "device_suspensions", ["device_id"])


def _captures() -> None:
    op.create_table(
        "captures",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("packet_id", sa.BigInteger, nullable=True),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("captured_at", TIME, nullable=False),
        sa.Column("plate", sa.String(32), nullable=True),
        sa.Column("plate_colour", sa.String(16), nullable=True),
        sa.Column("plate_confidence", sa.Float, nullable=True),
        sa.Column("gross_kg", sa.Float, nullable=False),
        sa.Column("axle_code", sa.String(16), nullable=True),
        sa.Column("limit_kg", sa.Float, nullable=True),
        sa.Column("tolerance_kg", sa.Float, nullable=True),
        sa.Column("excess_kg", sa.Float, nullable=True),
        sa.Column("over", sa.Boolean, nullable=False),
        sa.Column("action", sa.String(16), nullable=True),
        sa.Column("fine_yuan", sa.Float, nullable=True),
        sa.Column("grade", sa.JSON, nullable=True),
        sa.Column("grade_error", sa.Text, nullable=True),
        sa.Column("evidential", sa.Boolean, nullable=False),
        sa.Column("checks", sa.JSON, nullable=False),
        sa.Column("processed_at", TIME, nullable=False),
        sa.UniqueConstraint("device_id", "sequence", name="uq_captures_device_seq"),
    )
    op.create_index("ix_captures_packet_id", "captures", ["packet_id"])
    op.create_index("ix_captures_captured_at", "captures", ["captured_at"])
    op.create_index("ix_captures_plate", "captures", ["plate"])


def _cases() -> None:
    op.create_table(
        "cases",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("plate", sa.String(32), nullable=False),
        sa.Column("plate_colour", sa.String(16), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("first_at", TIME, nullable=False),
        sa.Column("last_at", TIME, nullable=False),
        sa.Column("best_capture_id", BIG_ID, sa.ForeignKey("captures.id"), nullable=False),
        sa.Column("first_violation", sa.Boolean, nullable=False),
        sa.Column("captures_12m", sa.Integer, nullable=False),
        sa.Column("cases_12m", sa.Integer, nullable=False),
        sa.Column("repeat_over_limit", sa.Boolean, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("fine_yuan", sa.Float, nullable=True),
        sa.Column("decided_by", sa.String(128), nullable=True),
        sa.Column("decided_at", TIME, nullable=True),
        sa.Column("decision", sa.Text, nullable=True),
        sa.Column("decision_fine_yuan", sa.Float, nullable=True),
        sa.Column("closed_at", TIME, nullable=True),
    )
    op.create_index("ix_cases_plate", "cases", ["plate"])
    op.create_index("ix_cases_status", "cases", ["status"])
    op.create_table(
        "case_captures",
        sa.Column("case_id", BIG_ID, sa.ForeignKey("cases.id"), primary_key=True),
        sa.Column("capture_id", BIG_ID, sa.ForeignKey("captures.id"), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.UniqueConstraint("capture_id", name="uq_case_captures_capture_id"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("at", TIME, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("case_id", BIG_ID, sa.ForeignKey("cases.id"), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_case_id", "audit_log", ["case_id"])


def upgrade() -> None:
    _registry()
    _captures()
    _cases()


def downgrade() -> None:
    for table in ("audit_log", "case_captures", "cases", "captures", "device_suspensions",
                  "device_records"):
        op.drop_table(table)

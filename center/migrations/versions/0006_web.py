"""The web pages' tables: staff passwords and sessions, the owner's look-up code,
statements with attachments, plates keyed in by staff; and the review queue's index on
cases (state, then age), so a page of the queue is read in order from the index.

Revision ID: 0006_web
Revises: 0005_procedure
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_web"
down_revision = "0005_procedure"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "staff_passwords",
        sa.Column("officer_id", sa.String(32), primary_key=True),
        sa.Column("hash", sa.String(256), nullable=False),
        sa.Column("set_at", TIME, nullable=False),
    )
    op.create_table(
        "web_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("officer_id", sa.String(32), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("expires_at", TIME, nullable=False),
    )
    op.create_index("ix_web_sessions_officer_id", "web_sessions", ["officer_id"])
    op.create_table(
        "case_access",
        sa.Column("case_id", BIG_ID, sa.ForeignKey("cases.id"), primary_key=True),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
    )
    op.create_table(
        "owner_statements",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("case_id", BIG_ID, sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("submitted_at", TIME, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )
    op.create_index("ix_owner_statements_case_id", "owner_statements", ["case_id"])
    op.create_table(
        "owner_attachments",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("statement_id", BIG_ID, sa.ForeignKey("owner_statements.id"),
                  nullable=False),
        sa.Column("stored_name", sa.String(80), nullable=False),
        sa.Column("original_name", sa.String(255), nullable=False),
        sa.Column("media_type", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
    )
    op.create_index("ix_owner_attachments_statement_id", "owner_attachments",
                    ["statement_id"])
    op.create_table(
        "plate_entries",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("capture_id", BIG_ID, sa.ForeignKey("captures.id"), nullable=False),
        sa.Column("plate", sa.String(32), nullable=False),
        sa.Column("colour", sa.String(16), nullable=False),
        sa.Column("officer_id", sa.String(32), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("previous", sa.String(32), nullable=True),
    )
    op.create_index("ix_plate_entries_capture_id", "plate_entries", ["capture_id"])
    op.create_index("ix_cases_queue", "cases", ["status", "first_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_cases_queue", table_name="cases")
    for name in ("plate_entries", "owner_attachments", "owner_statements", "case_access",
                 "web_sessions", "staff_passwords"):
        op.drop_table(name)

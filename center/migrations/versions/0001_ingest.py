"""Ingestion: devices, packets, images, packet_images, sequence_gaps, refusals.

Revision ID: 0001_ingest
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_ingest"
down_revision = None
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("sign_public_key", sa.Text, nullable=False),
        sa.Column("curve_public_key", sa.String(40), nullable=False, unique=True),
        sa.Column("enrolled_at", TIME, nullable=False),
    )
    op.create_table(
        "packets",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(64), sa.ForeignKey("devices.device_id"),
                  nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("previous_hash", sa.String(64), nullable=False),
        sa.Column("captured_at", TIME, nullable=False),
        sa.Column("lane", sa.Integer, nullable=False),
        sa.Column("suspected_overload", sa.Boolean, nullable=False),
        sa.Column("meta", sa.LargeBinary, nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
        sa.Column("received_at", TIME, nullable=False),
        sa.Column("chain_ok", sa.Boolean, nullable=True),
        sa.UniqueConstraint("device_id", "sequence", name="uq_packets_device_seq"),
    )
    op.create_index("ix_packets_captured_at", "packets", ["captured_at"])
    op.create_table(
        "images",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("media_type", sa.String(32), nullable=False),
    )
    op.create_table(
        "packet_images",
        sa.Column("packet_id", BIG_ID, sa.ForeignKey("packets.id"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("sha256", sa.String(64), sa.ForeignKey("images.sha256"), nullable=False),
    )
    op.create_index("ix_packet_images_sha256", "packet_images", ["sha256"])
    op.create_table(
        "sequence_gaps",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("first_missing", sa.BigInteger, nullable=False),
        sa.Column("last_missing", sa.BigInteger, nullable=False),
        sa.Column("found_at", TIME, nullable=False),
        sa.Column("closed_at", TIME, nullable=True),
    )
    op.create_index("ix_sequence_gaps_device_id", "sequence_gaps", ["device_id"])
    op.create_table(
        "refusals",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("at", TIME, nullable=False),
        sa.Column("peer", sa.String(64), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=True),
        sa.Column("sequence", sa.BigInteger, nullable=True),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_refusals_at", "refusals", ["at"])


def downgrade() -> None:
    for index, table in (("ix_refusals_at", "refusals"),
                         ("ix_sequence_gaps_device_id", "sequence_gaps"),
                         ("ix_packet_images_sha256", "packet_images"),
                         ("ix_packets_captured_at", "packets")):
        op.drop_index(index, table_name=table)
    for table in ("refusals", "sequence_gaps", "packet_images", "images", "packets",
                  "devices"):
        op.drop_table(table)

"""Device keys beyond the current ones: a unit's keys retired by a rotation (accepted
until a moment) and keys revoked (refused from then on, with the reason).

Revision ID: 0007_device_keys
Revises: 0006_web
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_device_keys"
down_revision = "0006_web"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "device_keys",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(64), sa.ForeignKey("devices.device_id"),
                  nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("accepted_until", TIME, nullable=True),
        sa.Column("revoked_at", TIME, nullable=True),
        sa.Column("revoked_reason", sa.Text, nullable=True),
        sa.Column("changed_at", TIME, nullable=False),
        sa.UniqueConstraint("device_id", "kind", "fingerprint", name="uq_device_keys_key"),
    )
    op.create_index("ix_device_keys_device_id", "device_keys", ["device_id"])


def downgrade() -> None:
    op.drop_index("ix_device_keys_device_id", "device_keys")
    op.drop_table("device_keys")

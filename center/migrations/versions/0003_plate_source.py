"""Captures: where the plate came from (edge or center), its province confidence and the
front/rear comparison (evidence schema 1.1).

Revision ID: 0003_plate_source
Revises: 0002_law
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_plate_source"
down_revision = "0002_law"
branch_labels = None
depends_on = None

COLUMNS = (("plate_source", sa.String(8)), ("plate_province_confidence", sa.Float),
           ("plate_front_rear", sa.String(16)))


def upgrade() -> None:
    with op.batch_alter_table("captures") as batch:
        for name, kind in COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("captures") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)

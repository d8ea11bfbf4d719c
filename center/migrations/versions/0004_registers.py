"""The registers: vehicles and staff; the device registry keeps every version of a device.

Revision ID: 0004_registers
Revises: 0003_plate_source

Each existing device row becomes its device's version 1, in force from 2000-01-01 (the
registry's earliest date, ``center.registry.EARLIEST_DATE``), not from its review date.
Before this revision a device had one row, and every capture was judged by it whatever
its day; in force from the earliest day, the row judges every past capture exactly as it
was judged. The row's own dates (review, certificate, signs, notice, enforcement start)
still decide each check against the capture's day: a capture before the review fails
"review passed … is after the capture", which is the truth, where a version starting at
the review date would say "not in the registry", which is not.
"""

from datetime import date

import sqlalchemy as sa
from alembic import op

revision = "0004_registers"
down_revision = "0003_plate_source"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)
SENTINEL = date(2000, 1, 1)
"""The day version 1 of an existing device is in force from (see above)."""


def _device_history() -> None:
    with op.batch_alter_table("device_records") as batch:
        batch.add_column(sa.Column("version", sa.Integer, nullable=True))
        batch.add_column(sa.Column("effective_from", sa.Date, nullable=True))
    records = sa.table("device_records", sa.column("version", sa.Integer),
                       sa.column("effective_from", sa.Date))
    op.execute(records.update().values(version=1, effective_from=SENTINEL))
    with op.batch_alter_table("device_records") as batch:
        batch.alter_column("version", existing_type=sa.Integer, nullable=False)
        batch.alter_column("effective_from", existing_type=sa.Date, nullable=False)
        batch.drop_constraint("uq_device_records_device_id", type_="unique")
        batch.create_unique_constraint("uq_device_records_device_version",
                                       ["device_id", "version"])


def _vehicles() -> None:
    op.create_table(
        "vehicles",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("plate", sa.String(32), nullable=False),
        sa.Column("plate_colour", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=True),
        sa.Column("licence_mass_kg", sa.Float, nullable=True),
        sa.Column("air_suspension", sa.Boolean, nullable=False),
        sa.Column("axle_code", sa.String(16), nullable=True),
        sa.Column("owner_kind", sa.String(8), nullable=False),
        sa.Column("owner_name", sa.String(128), nullable=False),
        sa.Column("owner_id_number", sa.String(32), nullable=True),
        sa.Column("address", sa.String(256), nullable=True),
        sa.Column("phone", sa.String(32), nullable=True),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("transport_certificate", sa.String(64), nullable=True),
        sa.Column("updated_at", TIME, nullable=False),
        sa.UniqueConstraint("plate", "plate_colour", name="uq_vehicles_plate"),
    )


def _staff() -> None:
    op.create_table(
        "staff",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("officer_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("credential_number", sa.String(32), nullable=True),
        sa.Column("roles", sa.JSON, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("valid_from", sa.Date, nullable=True),
        sa.Column("valid_to", sa.Date, nullable=True),
        sa.Column("updated_at", TIME, nullable=False),
        sa.UniqueConstraint("officer_id", name="uq_staff_officer_id"),
    )


def upgrade() -> None:
    _device_history()
    _vehicles()
    _staff()


def downgrade() -> None:
    """Back to one row per device: the latest version of each is kept."""
    op.drop_table("staff")
    op.drop_table("vehicles")
    op.execute("DELETE FROM device_records WHERE EXISTS (SELECT 1 FROM device_records AS later"
               " WHERE later.device_id = device_records.device_id"
               " AND later.version > device_records.version)")
    with op.batch_alter_table("device_records") as batch:
        batch.drop_constraint("uq_device_records_device_version", type_="unique")
        batch.create_unique_constraint("uq_device_records_device_id", ["device_id"])
        batch.drop_column("effective_from")
        batch.drop_column("version")

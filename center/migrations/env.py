"""Alembic's entry point: migrations run on the connection :func:`center.db.upgrade` gives."""

from alembic import context

from center.db import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()

"""Alembic's environment, configured by ``MetadataStore.migrate()``: it passes the connection to migrate on.

No alembic.ini: the store builds the config in code, with ``config.attributes["connection"]`` set, so the
upgrade runs on the store's own connection, inside the transaction (and, on PostgreSQL, the advisory lock) the
store holds.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from audiencehub.metadata.tables import metadata

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("audiencehub runs its migrations through MetadataStore.migrate(), which passes a connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    compare_type=True,
    # SQLite alters a table by copying it: ALTER COLUMN and constraint changes need batch mode there.
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()

"""Alembic's entry point: migrate the connection that ``migrations.upgrade`` passes in.

Run from the ``alembic`` command line instead, it connects to ``NBEDGE_CENTRAL_DATABASE_URL``.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection, create_engine

from cloud_sync.central.tables import metadata


def _migrate(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    given: Connection | None = context.config.attributes.get("connection")
    if given is not None:
        _migrate(given)
        return
    url = os.environ.get("NBEDGE_CENTRAL_DATABASE_URL", "sqlite:///central.db")
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            _migrate(connection)
    finally:
        engine.dispose()


_main()

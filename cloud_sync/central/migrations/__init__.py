"""Schema migrations of the central database (Alembic), run by ``db.init_db``, not by a CLI.

``upgrade(engine)`` brings a database to the latest revision. It holds a PostgreSQL advisory lock
while it works, so several API processes starting at once on a fresh database take turns. A
database created by the first release (``create_all``, no ``alembic_version`` table) is stamped
with the first revision, which is exactly that schema, then upgraded.

To write a new migration after changing ``tables.py``, from the repository's root::

    alembic -c cloud_sync/central/migrations/alembic.ini revision --autogenerate -m "what"

(against a database at the previous head; ``NBEDGE_CENTRAL_DATABASE_URL`` names it). SQLite
needs batch mode to alter tables, which ``env.py`` turns on for it.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, func, inspect, select

SCRIPT_LOCATION = Path(__file__).parent
BASELINE = "0001"
"""The revision whose schema the first release created with ``create_all``."""
MIGRATION_LOCK_KEY = 0x6E6265646765  # "nbedge": one advisory lock key for schema changes


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database of ``engine`` to ``revision`` in one transaction (PostgreSQL)."""
    config = alembic_config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
        config.attributes["connection"] = conn
        tables = set(inspect(conn).get_table_names())
        if "alembic_version" not in tables and "summaries" in tables:
            command.stamp(config, BASELINE)
        command.upgrade(config, revision)

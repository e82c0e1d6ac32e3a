"""The per-site lock that orders the commits of a site's cursor values (why: ``db``'s docstring).

``lock_site(conn, site_id)`` holds it until ``conn``'s transaction ends. Take it first in every
transaction that draws a cursor value of a site: ingest, the central API's own alert events,
commands issued, applied or expired.
"""

from __future__ import annotations

from sqlalchemy import Connection, func, select, update

from cloud_sync.central.tables import sites


def lock_site(conn: Connection, site_id: str) -> None:
    """Hold, until ``conn``'s transaction ends, the lock that orders a site's cursor commits.

    PostgreSQL: a transaction-scoped advisory lock on the site. SQLite, which serialises writers
    by itself: a write to the site's row, so that the transaction holds the database's write
    lock from its first statement on and never reads a snapshot another writer then changes.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(site_id))))
    else:
        conn.execute(update(sites).where(sites.c.site_id == site_id).values(name=sites.c.name))

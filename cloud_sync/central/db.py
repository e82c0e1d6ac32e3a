"""The central API's storage: engine, schema upgrades and queries, in SQLAlchemy Core (no ORM).

SQLite (WAL, busy timeout) by default, PostgreSQL (``postgresql+psycopg://``) in production. The
tables are in ``tables``; ``init_db`` brings a database to the latest schema with the Alembic
migrations of ``migrations/``.

Why a feed's cursor never skips nor repeats, while any number of API processes ingest
-------------------------------------------------------------------------------------
A feed returns a site's rows with ``seq > after`` in ``seq`` order, and the platform's next
``after`` is the last ``seq`` it got. That is safe only if no row of the site with a smaller
``seq`` can become visible after a reader has seen a larger one. ``seq`` comes from a sequence
(PostgreSQL) or the single-writer rowid (SQLite):

- SQLite has one writer at a time: ``seq`` values are assigned and committed in the same order.
- PostgreSQL hands out sequence values to concurrent transactions, which may commit in any
  order: T1 takes 7, T2 takes 8, T2 commits, a reader sees 8 and moves its cursor to 8, then T1
  commits 7, which that reader never sees. So ``store_batch`` first takes a transaction-scoped
  advisory lock on the site (``pg_advisory_xact_lock(hashtext(site_id))``) and only then draws
  ``seq`` values. Two ingest transactions of one site therefore run one after the other: the
  second draws its values after the first has committed, so they are larger, and PostgreSQL
  releases a transaction's locks only after its commit is visible to new snapshots. Hence, for
  any snapshot, the visible rows of a site are exactly those with ``seq`` up to some value (plus
  gaps that no commit will ever fill: values drawn by rolled-back inserts or skipped duplicates).
  A reader that has seen ``seq = n`` of a site has seen every row of that site with ``seq < n``
  that will ever exist.

The lock is per site (different sites still ingest in parallel; a hash collision only makes two
sites wait for each other) and held for one batch's insert, a few milliseconds. It holds across
processes and hosts because it lives in the database.

One forecast per gateway, series and start hour, the newest issued
------------------------------------------------------------------
A gateway that restarts within the hour forecasts that hour again and sends the replacement with a
new ``record_id``; a retry resends a record with the same ``record_id``; records may arrive in any
order. ``_store_forecast`` keeps exactly one row per ``(gateway_id, series, start)``, the one with
the newest ``issued_at`` (the one held on a tie): it deletes the row held for that hour if it was
issued earlier, then inserts the new one unless a row holds its ``record_id`` or its hour
(``ON CONFLICT DO NOTHING`` on either unique constraint). A record held, or issued no later than
the one held, counts as a duplicate, so a retry, even of a record replaced since, changes nothing.
The two statements are safe against a concurrent ingest of the same gateway: on PostgreSQL the
site lock above already orders them, on SQLite the ``DELETE`` takes the database's write lock.
A replacement is a new row with a new ``seq``: the feed shows it after the cursor of a reader that
had the replaced one, which keeps ``(gateway_id, series, start)`` and takes the newest.

Alert records fold each alert's state in the same transaction (``alert_store``); command
results set commands' states (``commands``). Every transaction that draws a cursor value takes
the site's lock first (``locks.lock_site``), so the guarantee above holds for those lists too.

Nothing here raises ``HTTPException``: the routes translate.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Engine,
    Table,
    create_engine,
    delete,
    event,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, make_url

from cloud_sync.central import alert_store, migrations
from cloud_sync.central.commands import apply_results
from cloud_sync.central.locks import lock_site
from cloud_sync.central.tables import (
    access_events,
    alert_events,
    claim_codes,
    command_results,
    evictions,
    forecasts,
    gateways,
    metadata,
    record_tables,
    sites,
    summaries,
)
from cloud_sync.central.upsert import insert_skipping
from cloud_sync.schemas import (
    AlertEventRecord,
    AlertRecord,
    CommandResultRecord,
    IngestBatch,
    IngestResult,
    Record,
)

__all__ = [
    "GatewayIdentity",
    "StoredBatch",
    "access_events",
    "alert_events",
    "claim_codes",
    "evictions",
    "forecasts",
    "gateways",
    "hash_token",
    "init_db",
    "lock_site",
    "make_engine",
    "metadata",
    "sites",
    "store_batch",
    "summaries",
]

SQLITE_BUSY_TIMEOUT_MS = 5000


@dataclass(frozen=True, slots=True)
class GatewayIdentity:
    """Who a gateway token belongs to."""

    gateway_id: str
    site_id: str


def hash_token(token: str) -> str:
    """The stored form of a gateway token: SHA-256, hex. Tokens are random, so no salt is needed."""
    return hashlib.sha256(token.encode()).hexdigest()


def set_gateway_token(
    conn: Connection, site_id: str, gateway_id: str, token: str, now: datetime
) -> str | None:
    """Register ``gateway_id`` in ``site_id`` with ``token``, or rotate the token of a gateway
    already there. Returns the other site when the gateway belongs to one (nothing changes)."""
    current = conn.execute(
        select(gateways.c.site_id).where(gateways.c.gateway_id == gateway_id)
    ).first()
    if current is None:
        conn.execute(
            gateways.insert().values(
                gateway_id=gateway_id,
                site_id=site_id,
                token_hash=hash_token(token),
                created_at=now,
            )
        )
    elif current.site_id != site_id:
        return str(current.site_id)
    else:
        conn.execute(
            update(gateways)
            .where(gateways.c.gateway_id == gateway_id)
            .values(token_hash=hash_token(token))
        )
    return None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def make_engine(database_url: str) -> Engine:
    """A sync engine for ``database_url``; SQLite files get WAL, a busy timeout and foreign keys."""
    url = make_url(database_url)
    engine = create_engine(url, pool_pre_ping=True)
    if url.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def init_db(engine: Engine) -> None:
    """Bring the database to the latest schema (Alembic migrations). Idempotent.

    Safe to call from several processes at once on PostgreSQL (they take turns on a lock). A
    database made by the first release, before migrations, is recognised and upgraded.
    """
    migrations.upgrade(engine)


def ping(engine: Engine) -> None:
    """Raise ``sqlalchemy.exc.SQLAlchemyError`` unless the database answers."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def gateway_for_token(engine: Engine, token: str) -> GatewayIdentity | None:
    """The gateway a token belongs to, or ``None`` for an unknown token."""
    with engine.connect() as conn:
        row = conn.execute(
            select(gateways.c.gateway_id, gateways.c.site_id).where(
                gateways.c.token_hash == hash_token(token)
            )
        ).first()
    return None if row is None else GatewayIdentity(row.gateway_id, row.site_id)


def site_exists(engine: Engine, site_id: str) -> bool:
    with engine.connect() as conn:
        found = conn.execute(select(sites.c.site_id).where(sites.c.site_id == site_id)).first()
    return found is not None


def _insert_ignoring_duplicates(
    conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]
) -> int:
    """Insert ``rows`` but those whose (gateway_id, record_id) exists; return how many were new."""
    if not rows:
        return 0
    stmt = insert_skipping(conn, table, ["gateway_id", "record_id"])
    # RETURNING names exactly the rows inserted, whatever a driver's executemany rowcount says;
    # SQLAlchemy sends the rows as multi-row INSERTs ("insertmanyvalues").
    return len(conn.execute(stmt.returning(table.c.seq), list(rows)).all())


def _store_forecast(conn: Connection, row: Mapping[str, Any]) -> bool:
    """Store one forecast row unless its record or a forecast of its hour issued no later is
    held; True when stored (see the module's docstring)."""
    conn.execute(
        delete(forecasts).where(
            forecasts.c.gateway_id == row["gateway_id"],
            forecasts.c.series == row["series"],
            forecasts.c.start == row["start"],
            forecasts.c.issued_at < row["issued_at"],
        )
    )
    stmt = insert_skipping(conn, forecasts).values(dict(row)).returning(forecasts.c.seq)
    return conn.execute(stmt).first() is not None


def origin_row(record: Record, batch: IngestBatch, now: datetime) -> dict[str, Any]:
    """The columns every record row has: its id, origin and time contract."""
    return {
        "record_id": record.record_id,
        "site_id": batch.site_id,
        "gateway_id": batch.gateway_id,
        "wall_time": record.time.wall_time,
        "boot_id": record.time.boot_id,
        "monotonic_ns": record.time.monotonic_ns,
        "clock_synced": record.time.clock_synced,
        "received_at": now,
    }


def record_row(record: Record, batch: IngestBatch, now: datetime) -> dict[str, Any]:
    """The row of one record: origin, time contract, and its body flattened into columns."""
    match record:
        case AlertRecord():
            return alert_store.legacy_row(record, origin_row(record, batch, now))
        case AlertEventRecord():
            return alert_store.event_row(record, origin_row(record, batch, now))
        case _:
            return origin_row(record, batch, now) | record.body.model_dump()


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """What storing a batch did: the answer for the gateway, and the commands whose state its
    results changed, counted by ``(action, result)``."""

    result: IngestResult
    commands: Counter[tuple[str, str]] = field(default_factory=Counter)


_GENERIC = ("summary", "eviction", "access")
"""Kinds stored as they come, one row per record."""


def insert_batch(conn: Connection, batch: IngestBatch, now: datetime | None = None) -> StoredBatch:
    """Insert a batch's new records within ``conn``'s transaction, after locking its site."""
    now = now or datetime.now(UTC)
    rows: dict[str, list[dict[str, Any]]] = {kind: [] for kind in record_tables}
    results: list[CommandResultRecord] = []
    for record in batch.records:
        # Both kinds of alert records go to one table, in the batch's order.
        kind = "alert" if record.kind == "alert_event" else record.kind
        rows[kind].append(record_row(record, batch, now))
        if isinstance(record, CommandResultRecord):
            results.append(record)
    lock_site(conn, batch.site_id)
    accepted = sum(
        _insert_ignoring_duplicates(conn, record_tables[kind], rows[kind]) for kind in _GENERIC
    )
    accepted += sum(_store_forecast(conn, row) for row in rows["forecast"])  # in the batch's order
    accepted += alert_store.store_events(conn, batch.gateway_id, rows["alert"], now)
    accepted += _insert_ignoring_duplicates(conn, command_results, rows["command_result"])
    changed = apply_results(conn, batch.site_id, batch.gateway_id, results, now)
    return StoredBatch(
        IngestResult(accepted=accepted, duplicates=len(batch.records) - accepted), changed
    )


def store_batch(engine: Engine, batch: IngestBatch, now: datetime | None = None) -> StoredBatch:
    """Store a validated, authorised batch in one transaction; records already held are counted."""
    with engine.begin() as conn:
        return insert_batch(conn, batch, now)


def summaries_after(engine: Engine, site_id: str, after: int, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` summaries of a site with ``seq > after``, in ``seq`` order."""
    return _page(engine, summaries, site_id, after, limit)


def alert_events_after(
    engine: Engine, site_id: str, after: int, limit: int
) -> list[dict[str, Any]]:
    """Up to ``limit`` alert events (every kind, legacy records too) of a site after ``after``."""
    return alert_store.events_after(engine, site_id, after, limit)


def evictions_after(engine: Engine, site_id: str, after: int, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` eviction reports of a site with ``seq > after``, in ``seq`` order."""
    return _page(engine, evictions, site_id, after, limit)


def access_events_after(
    engine: Engine, site_id: str, after: int, limit: int
) -> list[dict[str, Any]]:
    """Up to ``limit`` access events (doors and gates) of a site with ``seq > after``."""
    return _page(engine, access_events, site_id, after, limit)


def forecasts_after(engine: Engine, site_id: str, after: int, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` demand forecasts of a site with ``seq > after``, in ``seq`` order (a
    forecast replaced since is not among them: its replacement comes later)."""
    return _page(engine, forecasts, site_id, after, limit)


def _page(
    engine: Engine, table: Table, site_id: str, after: int, limit: int
) -> list[dict[str, Any]]:
    stmt = (
        select(table)
        .where(table.c.site_id == site_id, table.c.seq > after)
        .order_by(table.c.seq)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(stmt).mappings()]


def active_alerts(engine: Engine, site_id: str) -> list[dict[str, Any]]:
    """The latest event of each alert of a site whose condition is active.

    The condition is the alert's current state's (``alert_states``), folded from all its events
    whatever order they came in: a legacy clear delivered before its raise still ends it.
    """
    return alert_store.active(engine, site_id)

"""The central API's storage: tables, engine and queries, in SQLAlchemy Core (no ORM).

SQLite (WAL, busy timeout) by default, PostgreSQL in production. ``summaries`` and
``alert_events`` each carry an autoincrement ``seq``, the pull cursor of the platform's feeds.

Why the cursor never skips on SQLite: SQLite has one writer at a time, so ``seq`` values are
assigned and committed in the same order, and a reader never sees ``seq = n + 1`` before ``n``.
On PostgreSQL, concurrent transactions can commit sequence values out of order; the feeds there
need a visibility horizon (e.g. only rows older than the oldest running transaction) - to do
with the PostgreSQL work.

Nothing here raises ``HTTPException``: the routes translate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Double,
    Engine,
    ForeignKey,
    Index,
    Insert,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    exists,
    func,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.types import TypeDecorator

from cloud_sync.schemas import AlertRecord, IngestBatch, IngestResult, SummaryRecord

SQLITE_BUSY_TIMEOUT_MS = 5000


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored in UTC; read back aware (SQLite itself keeps no time zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("refusing to store a naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# BIGINT on PostgreSQL; SQLite autoincrements only an INTEGER PRIMARY KEY.
_Seq = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

sites = Table(
    "sites",
    metadata,
    Column("site_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

gateways = Table(
    "gateways",
    metadata,
    Column("gateway_id", String(64), primary_key=True),
    Column("site_id", String(64), ForeignKey("sites.site_id"), nullable=False, index=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
)


def _record_columns() -> list[Column[Any]]:
    """Columns shared by every stored record: cursor, identity, origin and the time contract."""
    return [
        Column("seq", _Seq, primary_key=True, autoincrement=True),
        Column("record_id", String(128), nullable=False),
        Column("site_id", String(64), ForeignKey("sites.site_id"), nullable=False),
        Column("gateway_id", String(64), ForeignKey("gateways.gateway_id"), nullable=False),
        Column("wall_time", UTCDateTime(), nullable=False),
        Column("boot_id", String(64), nullable=False),
        Column("monotonic_ns", BigInteger(), nullable=False),
        Column("clock_synced", Boolean(), nullable=False),
        Column("received_at", UTCDateTime(), nullable=False),
    ]


# A record id is unique per gateway: a gateway cannot pre-empt (and so hide) another's records.
summaries = Table(
    "summaries",
    metadata,
    *_record_columns(),
    Column("device", String(64), nullable=False),
    Column("point", String(64), nullable=False),
    Column("unit", String(16), nullable=False),
    Column("period_start", UTCDateTime(), nullable=False),
    Column("period_end", UTCDateTime(), nullable=False),
    Column("count", BigInteger(), nullable=False),
    Column("min", Double(), nullable=False),
    Column("max", Double(), nullable=False),
    Column("mean", Double(), nullable=False),
    Column("last", Double(), nullable=False),
    UniqueConstraint("gateway_id", "record_id", name="uq_summaries_record"),
    Index("ix_summaries_site_seq", "site_id", "seq"),
    sqlite_autoincrement=True,  # never reuse a seq, even after rows are deleted
)

alert_events = Table(
    "alert_events",
    metadata,
    *_record_columns(),
    Column("alert_id", String(64), nullable=False),
    Column("rule", String(64), nullable=False),
    Column("device", String(64), nullable=False),
    Column("point", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("message", Text(), nullable=False),
    Column("value", Double(), nullable=False),
    Column("raised_at", UTCDateTime(), nullable=False),
    Column("cleared_at", UTCDateTime(), nullable=True),
    UniqueConstraint("gateway_id", "record_id", name="uq_alert_events_record"),
    Index("ix_alert_events_site_seq", "site_id", "seq"),
    Index("ix_alert_events_alert", "gateway_id", "alert_id", "state"),
    sqlite_autoincrement=True,
)


@dataclass(frozen=True, slots=True)
class GatewayIdentity:
    """Who a gateway token belongs to."""

    gateway_id: str
    site_id: str


def hash_token(token: str) -> str:
    """The stored form of a gateway token: SHA-256, hex. Tokens are random, so no salt is needed."""
    return hashlib.sha256(token.encode()).hexdigest()


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
    """Create missing tables. Idempotent. Schema migrations (Alembic) replace this later."""
    metadata.create_all(engine)


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
    stmt: Insert
    match conn.dialect.name:
        case "sqlite":
            stmt = sqlite.insert(table).on_conflict_do_nothing(
                index_elements=["gateway_id", "record_id"]
            )
        case "postgresql":
            stmt = postgresql.insert(table).on_conflict_do_nothing(
                index_elements=["gateway_id", "record_id"]
            )
        case other:
            raise NotImplementedError(f"no ON CONFLICT DO NOTHING for the {other} dialect")
    # executemany: the DB-API sums the rows each statement changed; skipped rows change none.
    return int(conn.execute(stmt, list(rows)).rowcount)


def _time_columns(
    record: SummaryRecord | AlertRecord, batch: IngestBatch, now: datetime
) -> dict[str, Any]:
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


def store_batch(engine: Engine, batch: IngestBatch) -> IngestResult:
    """Store a validated, authorised batch in one transaction; records already held are counted."""
    now = datetime.now(UTC)
    summary_rows: list[dict[str, Any]] = []
    alert_rows: list[dict[str, Any]] = []
    for record in batch.records:
        row = _time_columns(record, batch, now) | record.body.model_dump()
        (summary_rows if isinstance(record, SummaryRecord) else alert_rows).append(row)
    with engine.begin() as conn:
        accepted = _insert_ignoring_duplicates(conn, summaries, summary_rows)
        accepted += _insert_ignoring_duplicates(conn, alert_events, alert_rows)
    return IngestResult(accepted=accepted, duplicates=len(batch.records) - accepted)


def summaries_after(engine: Engine, site_id: str, after: int, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` summaries of a site with ``seq > after``, in ``seq`` order."""
    return _page(engine, summaries, site_id, after, limit)


def alert_events_after(
    engine: Engine, site_id: str, after: int, limit: int
) -> list[dict[str, Any]]:
    """Up to ``limit`` alert events (raised and cleared) of a site with ``seq > after``."""
    return _page(engine, alert_events, site_id, after, limit)


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
    """The latest "raised" event of each alert of a site that has no "cleared" event.

    An ``alert_id`` names one occurrence, and "cleared" ends it. Checking for any cleared event,
    rather than taking the latest event by ``seq``, stays right when a gateway delivers the clear
    before the raise (priorities, retries).
    """
    raised = alert_events.alias("raised")
    cleared = alert_events.alias("cleared")
    latest_raised = (
        select(func.max(raised.c.seq).label("seq"))
        .where(raised.c.site_id == site_id, raised.c.state == "raised")
        .group_by(raised.c.gateway_id, raised.c.alert_id)
        .subquery()
    )
    stmt = (
        select(alert_events)
        .join(latest_raised, alert_events.c.seq == latest_raised.c.seq)
        .where(
            ~exists().where(
                cleared.c.gateway_id == alert_events.c.gateway_id,
                cleared.c.alert_id == alert_events.c.alert_id,
                cleared.c.state == "cleared",
            )
        )
        .order_by(alert_events.c.seq)
    )
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(stmt).mappings()]

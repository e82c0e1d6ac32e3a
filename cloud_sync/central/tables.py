"""The central database's tables (SQLAlchemy Core): the schema the migrations build.

``migrations/`` creates and alters these tables; a test checks that a migrated database matches
this metadata exactly, on SQLite and on PostgreSQL. Change both together: edit a table here, then
add a migration (``alembic revision --autogenerate``, see ``migrations/README``).

Record tables (``summaries``, ``alert_events``, ``evictions``, ``access_events``,
``forecasts``) each carry an autoincrement ``seq``, the pull cursor of the platform's feeds, and
are unique on ``(gateway_id, record_id)``; ``forecasts`` is also unique on ``(gateway_id, series,
start)``: one row per forecast hour, the newest issued (``db``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

__all__ = [
    "UTCDateTime",
    "access_events",
    "alert_events",
    "claim_codes",
    "evictions",
    "forecasts",
    "gateways",
    "metadata",
    "record_tables",
    "sites",
    "summaries",
]


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
Seq = BigInteger().with_variant(Integer(), "sqlite")

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

# A one-time code an operator hands to an installer; the gateway exchanges it for its token.
# Only the SHA-256 of the normalised code is kept. ``used_at`` is set once, when it is redeemed.
claim_codes = Table(
    "claim_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("site_id", String(64), ForeignKey("sites.site_id"), nullable=False),
    Column("gateway_id", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("used_at", UTCDateTime(), nullable=True),
)


def _record_columns() -> list[Column[Any]]:
    """Columns shared by every stored record: cursor, identity, origin and the time contract."""
    return [
        Column("seq", Seq, primary_key=True, autoincrement=True),
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
    Column("delta", Double(), nullable=True),  # counters only: the consumption in the period
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

# What a gateway dropped from its outbox before it could sync it (disk quota): reported, never
# silent, and pulled by the platform as a feed like the others.
evictions = Table(
    "evictions",
    metadata,
    *_record_columns(),
    Column("evicted", String(16), nullable=False),
    Column("count", BigInteger(), nullable=False),
    Column("oldest", UTCDateTime(), nullable=False),
    Column("newest", UTCDateTime(), nullable=False),
    Column("reason", String(16), nullable=False),
    UniqueConstraint("gateway_id", "record_id", name="uq_evictions_record"),
    Index("ix_evictions_site_seq", "site_id", "seq"),
    sqlite_autoincrement=True,
)

# Events of doors and gates. ``credential_ref`` is pseudonymous (a keyed hash made on the gateway).
access_events = Table(
    "access_events",
    metadata,
    *_record_columns(),
    Column("device", String(64), nullable=False),
    Column("event", String(16), nullable=False),
    Column("credential_ref", String(64), nullable=True),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("detail", Text(), nullable=True),
    UniqueConstraint("gateway_id", "record_id", name="uq_access_events_record"),
    Index("ix_access_events_site_seq", "site_id", "seq"),
    sqlite_autoincrement=True,
)

# Demand forecasts: the energy (kWh) of each of the 24 hours from ``start``. One row per gateway,
# series and start: a later forecast of the same hour replaces the row (``db``), with a new ``seq``.
forecasts = Table(
    "forecasts",
    metadata,
    *_record_columns(),
    Column("series", String(64), nullable=False),
    Column("issued_at", UTCDateTime(), nullable=False),
    Column("start", UTCDateTime(), nullable=False),
    Column("hours", JSON(), nullable=False),  # a list of 24 floats
    Column("model", String(200), nullable=False),
    Column("capacity_kwh", Double(), nullable=True),
    UniqueConstraint("gateway_id", "record_id", name="uq_forecasts_record"),
    UniqueConstraint("gateway_id", "series", "start", name="uq_forecasts_series_start"),
    Index("ix_forecasts_site_seq", "site_id", "seq"),
    sqlite_autoincrement=True,
)

record_tables: dict[str, Table] = {
    "summary": summaries,
    "alert": alert_events,
    "eviction": evictions,
    "access": access_events,
    "forecast": forecasts,
}
"""The table that stores each wire record ``kind``."""

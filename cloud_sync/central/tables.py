"""The central database's tables (SQLAlchemy Core): the schema the migrations build.

``migrations/`` creates and alters these tables; a test checks that a migrated database matches
this metadata exactly, on SQLite and on PostgreSQL. Change both together: edit a table here, then
add a migration (``alembic revision --autogenerate``, see ``migrations/README``).

Record tables (``summaries``, ``alert_events``, ``evictions``, ``access_events``,
``forecasts``, ``command_results``) each carry an autoincrement ``seq``, the pull cursor of the
platform's feeds, and are unique on ``(gateway_id, record_id)``; ``forecasts`` is also unique on
``(gateway_id, series, start)``: one row per forecast hour, the newest issued (``db``), and
``alert_events`` on ``(gateway_id, event_id)``. ``alert_states`` holds each alert's current
state, folded from its events (``lifecycle``); ``commands`` the platform's commands to gateways.
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
    "alert_states",
    "claim_codes",
    "command_results",
    "commands",
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
    # When the gateway last posted or pulled (written at most every 30 s), and the gateway_silent
    # alert raised while it is silent (None otherwise): raised and cleared once (``silence``).
    Column("last_contact_at", UTCDateTime(), nullable=True),
    Column("silent_alert_id", String(64), nullable=True),
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

# Alert events: the legacy ``alert`` records (raised, cleared) and the ``alert_event`` records
# (every step of an alert's life) in one feed. ``rule``, ``state``, ``message`` and ``cleared_at``
# are the legacy view, filled for every row: ``rule`` is the code, ``state`` the condition in the
# legacy words (raised: active), ``message`` the English text, ``cleared_at`` set on a cleared
# event. The columns after ``cleared_at`` came with alert events (revision 0005): nullable so that
# adding them rebuilds no table; the code sets ``n``, ``event``, ``human_state``, ``at``, ``via``
# and ``level`` on every row and the migration filled them for older ones. ``n`` orders an alert's
# events: the gateway's number of the event (``event_id = <alert_id>.<n>``), legacy raised -2 and
# cleared -1 (``lifecycle``).
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
    Column("event_id", String(128), nullable=True),
    Column("n", BigInteger(), nullable=True),
    Column("event", String(16), nullable=True),
    Column("human_state", String(16), nullable=True),
    Column("at", UTCDateTime(), nullable=True),
    Column("via", String(16), nullable=True),
    Column("by", String(64), nullable=True),
    Column("note", Text(), nullable=True),
    Column("outcome", String(16), nullable=True),
    Column("level", Integer(), nullable=True),
    Column("audience", String(64), nullable=True),
    Column("params", JSON(), nullable=True),
    Column("text_zh_hans", Text(), nullable=True),
    Column("command_id", String(64), nullable=True),
    UniqueConstraint("gateway_id", "record_id", name="uq_alert_events_record"),
    Index("ix_alert_events_site_seq", "site_id", "seq"),
    Index("ix_alert_events_alert", "gateway_id", "alert_id", "state"),
    # A unique index, not a constraint: SQLite adds it without rebuilding the table.
    Index("uq_alert_events_event", "gateway_id", "event_id", unique=True),
    sqlite_autoincrement=True,
)

# Each alert's current state, folded from all its events in the transaction that stores one
# (``lifecycle.fold``). ``seq`` is the ``alert_events.seq`` of the alert's event stored last: the
# cursor of ``/alerts/current`` (a change moves the alert to the end).
alert_states = Table(
    "alert_states",
    metadata,
    Column("gateway_id", String(64), ForeignKey("gateways.gateway_id"), primary_key=True),
    Column("alert_id", String(64), primary_key=True),
    Column("site_id", String(64), ForeignKey("sites.site_id"), nullable=False),
    Column("seq", BigInteger(), nullable=False),
    Column("code", String(64), nullable=False),
    Column("device", String(64), nullable=False),
    Column("point", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("condition", String(16), nullable=False),
    Column("human_state", String(16), nullable=False),
    Column("level", Integer(), nullable=False),
    Column("value", Double(), nullable=False),
    Column("params", JSON(), nullable=False),
    Column("text_en", Text(), nullable=False),
    Column("text_zh_hans", Text(), nullable=True),
    Column("raised_at", UTCDateTime(), nullable=False),
    Column("cleared_at", UTCDateTime(), nullable=True),
    Column("acknowledged_at", UTCDateTime(), nullable=True),
    Column("acknowledged_by", String(64), nullable=True),
    Column("acknowledged_note", Text(), nullable=True),
    Column("resolved_at", UTCDateTime(), nullable=True),
    Column("resolved_by", String(64), nullable=True),
    Column("resolved_note", Text(), nullable=True),
    Column("outcome", String(16), nullable=True),
    Column("last_event", String(16), nullable=False),
    Column("last_event_id", String(128), nullable=True),
    Column("last_event_at", UTCDateTime(), nullable=False),
    Column("events", Integer(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("site_id", "seq", name="uq_alert_states_site_seq"),
    Index("ix_alert_states_site_state", "site_id", "human_state"),
)

# The platform's commands to a gateway (acknowledge or resolve an alert). ``seq`` is the order of
# issue; ``changed_seq`` the cursor of ``/commands``, drawn anew (per site, under the site's
# lock) at each change of state: issued, applied, refused, expired (``commands``).
commands = Table(
    "commands",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("command_id", String(64), nullable=False),
    Column("site_id", String(64), ForeignKey("sites.site_id"), nullable=False),
    Column("gateway_id", String(64), ForeignKey("gateways.gateway_id"), nullable=False),
    Column("alert_id", String(64), nullable=False),
    Column("action", String(16), nullable=False),
    Column("by", String(64), nullable=False),
    Column("note", Text(), nullable=True),
    Column("outcome", String(16), nullable=True),
    Column("issued_at", UTCDateTime(), nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", Text(), nullable=True),
    Column("event_id", String(128), nullable=True),
    Column("result_at", UTCDateTime(), nullable=True),
    Column("changed_at", UTCDateTime(), nullable=False),
    Column("changed_seq", BigInteger(), nullable=False),
    UniqueConstraint("command_id", name="uq_commands_command_id"),
    UniqueConstraint("site_id", "changed_seq", name="uq_commands_site_changed_seq"),
    Index("ix_commands_gateway_state", "gateway_id", "state", "seq"),
    Index("ix_commands_state_issued", "state", "issued_at"),  # what is due to expire
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

# A gateway's answers to commands, kept as they came; ``commands`` holds their effect.
command_results = Table(
    "command_results",
    metadata,
    *_record_columns(),
    Column("command_id", String(64), nullable=False),
    Column("result", String(16), nullable=False),
    Column("reason", Text(), nullable=True),
    Column("event_id", String(128), nullable=True),
    Column("at", UTCDateTime(), nullable=False),
    UniqueConstraint("gateway_id", "record_id", name="uq_command_results_record"),
    Index("ix_command_results_site_seq", "site_id", "seq"),
    sqlite_autoincrement=True,
)

record_tables: dict[str, Table] = {
    "summary": summaries,
    "alert": alert_events,
    "eviction": evictions,
    "access": access_events,
    "forecast": forecasts,
    "alert_event": alert_events,
    "command_result": command_results,
}
"""The table that stores each wire record ``kind``."""

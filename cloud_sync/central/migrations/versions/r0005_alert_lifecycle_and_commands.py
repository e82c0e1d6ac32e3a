"""Alerts people act on: alert events with their human state, each alert's current state, the
platform's commands and the gateways' results, and each gateway's last contact.

Columns are added, never changed, so no table is rebuilt on SQLite. Rows of legacy ``alert``
records get what they imply (raised: active and new; cleared: cleared and resolved ``auto``),
and every alert already held gets its current state.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from cloud_sync.central.migrations.versions.r0001_skeleton import Time, record_columns

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEGACY_RAISED_N = -2
LEGACY_CLEARED_N = -1
_CHUNK = 500


def _event_columns() -> list[sa.Column[Any]]:
    """The columns alert events add (new objects each time: a column joins one table only)."""
    return [
        sa.Column("event_id", sa.String(128), nullable=True),
        sa.Column("n", sa.BigInteger(), nullable=True),
        sa.Column("event", sa.String(16), nullable=True),
        sa.Column("human_state", sa.String(16), nullable=True),
        sa.Column("at", Time, nullable=True),
        sa.Column("via", sa.String(16), nullable=True),
        sa.Column("by", sa.String(64), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("level", sa.Integer(), nullable=True),
        sa.Column("audience", sa.String(64), nullable=True),
        sa.Column("params", sa.JSON(), nullable=True),
        sa.Column("text_zh_hans", sa.Text(), nullable=True),
        sa.Column("command_id", sa.String(64), nullable=True),
    ]


def upgrade() -> None:
    for column in _event_columns():
        op.add_column("alert_events", column)
    op.create_index(
        "uq_alert_events_event", "alert_events", ["gateway_id", "event_id"], unique=True
    )
    op.add_column("gateways", sa.Column("last_contact_at", Time, nullable=True))
    op.add_column("gateways", sa.Column("silent_alert_id", sa.String(64), nullable=True))
    states = op.create_table(
        "alert_states",
        sa.Column(
            "gateway_id", sa.String(64), sa.ForeignKey("gateways.gateway_id"), primary_key=True
        ),
        sa.Column("alert_id", sa.String(64), primary_key=True),
        sa.Column("site_id", sa.String(64), sa.ForeignKey("sites.site_id"), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("point", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("condition", sa.String(16), nullable=False),
        sa.Column("human_state", sa.String(16), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("text_en", sa.Text(), nullable=False),
        sa.Column("text_zh_hans", sa.Text(), nullable=True),
        sa.Column("raised_at", Time, nullable=False),
        sa.Column("cleared_at", Time, nullable=True),
        sa.Column("acknowledged_at", Time, nullable=True),
        sa.Column("acknowledged_by", sa.String(64), nullable=True),
        sa.Column("acknowledged_note", sa.Text(), nullable=True),
        sa.Column("resolved_at", Time, nullable=True),
        sa.Column("resolved_by", sa.String(64), nullable=True),
        sa.Column("resolved_note", sa.Text(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("last_event", sa.String(16), nullable=False),
        sa.Column("last_event_id", sa.String(128), nullable=True),
        sa.Column("last_event_at", Time, nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("updated_at", Time, nullable=False),
        sa.UniqueConstraint("site_id", "seq", name="uq_alert_states_site_seq"),
    )
    op.create_index("ix_alert_states_site_state", "alert_states", ["site_id", "human_state"])
    op.create_table(
        "commands",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("command_id", sa.String(64), nullable=False),
        sa.Column("site_id", sa.String(64), sa.ForeignKey("sites.site_id"), nullable=False),
        sa.Column(
            "gateway_id", sa.String(64), sa.ForeignKey("gateways.gateway_id"), nullable=False
        ),
        sa.Column("alert_id", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("by", sa.String(64), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("issued_at", Time, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("event_id", sa.String(128), nullable=True),
        sa.Column("result_at", Time, nullable=True),
        sa.Column("changed_at", Time, nullable=False),
        sa.Column("changed_seq", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("command_id", name="uq_commands_command_id"),
        sa.UniqueConstraint("site_id", "changed_seq", name="uq_commands_site_changed_seq"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_commands_gateway_state", "commands", ["gateway_id", "state", "seq"])
    op.create_index("ix_commands_state_issued", "commands", ["state", "issued_at"])
    op.create_table(
        "command_results",
        *record_columns(),
        sa.Column("command_id", sa.String(64), nullable=False),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("event_id", sa.String(128), nullable=True),
        sa.Column("at", Time, nullable=False),
        sa.UniqueConstraint("gateway_id", "record_id", name="uq_command_results_record"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_command_results_site_seq", "command_results", ["site_id", "seq"])
    _fill_legacy_events()
    _fold_legacy_states(states)


def _fill_legacy_events() -> None:
    """What a legacy record implies: raised is active and new, cleared is cleared and resolved
    by the policy (an older gateway has no human state; its alerts end when they clear)."""
    events = sa.table(
        "alert_events",
        *(sa.column(name) for name in ("state", "raised_at", "cleared_at", "wall_time")),
        *(sa.column(c.name) for c in _event_columns()),
    )
    raised = events.c.state == "raised"
    op.execute(
        events.update()
        .where(events.c.event.is_(None))
        .values(
            event=events.c.state,
            n=sa.case((raised, LEGACY_RAISED_N), else_=LEGACY_CLEARED_N),
            human_state=sa.case((raised, "new"), else_="resolved"),
            outcome=sa.case((raised, sa.null()), else_="auto"),
            at=sa.case(
                (raised, events.c.raised_at),
                else_=sa.func.coalesce(events.c.cleared_at, events.c.wall_time),
            ),
            via="rule",
            level=0,
        )
    )


def _legacy_rows(conn: sa.Connection) -> Iterator[list[dict[str, Any]]]:
    """The legacy events of each alert, alert by alert, in order (cleared after raised)."""
    events = sa.table(
        "alert_events",
        *(
            sa.column(name)
            for name in (
                "seq",
                "site_id",
                "gateway_id",
                "alert_id",
                "rule",
                "device",
                "point",
                "severity",
                "message",
                "value",
                "state",
                "n",
            )
        ),
        *(sa.column(name, Time) for name in ("raised_at", "cleared_at", "at")),
    )
    rows = conn.execute(
        sa.select(events).order_by(events.c.gateway_id, events.c.alert_id, events.c.n, events.c.seq)
    ).mappings()
    alert: list[dict[str, Any]] = []
    for row in rows:
        if alert and (row["gateway_id"], row["alert_id"]) != (
            alert[0]["gateway_id"],
            alert[0]["alert_id"],
        ):
            yield alert
            alert = []
        alert.append(dict(row))
    if alert:
        yield alert


def _fold_legacy_states(states: sa.Table) -> None:
    conn = op.get_bind()
    now = datetime.now(UTC)
    chunk: list[dict[str, Any]] = []
    for alert in _legacy_rows(conn):
        last = alert[-1]
        cleared = next((row for row in alert if row["state"] == "cleared"), None)
        ended = None if cleared is None else cleared["at"]
        chunk.append(
            {
                "gateway_id": last["gateway_id"],
                "alert_id": last["alert_id"],
                "site_id": last["site_id"],
                "seq": max(row["seq"] for row in alert),
                "code": last["rule"],
                "device": last["device"],
                "point": last["point"],
                "severity": last["severity"],
                "condition": "active" if cleared is None else "cleared",
                "human_state": "new" if cleared is None else "resolved",
                "level": 0,
                "value": last["value"],
                "params": {},
                "text_en": last["message"],
                "text_zh_hans": None,
                "raised_at": last["raised_at"],
                "cleared_at": ended,
                "resolved_at": ended,
                "outcome": None if cleared is None else "auto",
                "last_event": last["state"],
                "last_event_id": None,
                "last_event_at": last["at"],
                "events": len(alert),
                "updated_at": now,
            }
        )
        if len(chunk) >= _CHUNK:
            conn.execute(states.insert(), chunk)
            chunk = []
    if chunk:
        conn.execute(states.insert(), chunk)


def downgrade() -> None:
    op.drop_table("command_results")
    op.drop_table("commands")
    op.drop_table("alert_states")
    with op.batch_alter_table("gateways") as batch:
        batch.drop_column("silent_alert_id")
        batch.drop_column("last_contact_at")
    op.drop_index("uq_alert_events_event", "alert_events")
    with op.batch_alter_table("alert_events") as batch:
        for column in reversed(_event_columns()):
            batch.drop_column(column.name)

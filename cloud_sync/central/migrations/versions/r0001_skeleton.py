"""The first release's schema: sites, gateways, summaries and alert events.

Revision ID: 0001
Revises:
Create Date: 2026-01-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime(timezone=True)


def record_columns() -> list[sa.Column[object]]:
    """The columns every record table shares (this revision's copy: migrations never change)."""
    return [
        sa.Column("seq", Seq, primary_key=True, autoincrement=True),
        sa.Column("record_id", sa.String(128), nullable=False),
        sa.Column("site_id", sa.String(64), sa.ForeignKey("sites.site_id"), nullable=False),
        sa.Column(
            "gateway_id", sa.String(64), sa.ForeignKey("gateways.gateway_id"), nullable=False
        ),
        sa.Column("wall_time", Time, nullable=False),
        sa.Column("boot_id", sa.String(64), nullable=False),
        sa.Column("monotonic_ns", sa.BigInteger(), nullable=False),
        sa.Column("clock_synced", sa.Boolean(), nullable=False),
        sa.Column("received_at", Time, nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "sites",
        sa.Column("site_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", Time, nullable=False),
    )
    op.create_table(
        "gateways",
        sa.Column("gateway_id", sa.String(64), primary_key=True),
        sa.Column("site_id", sa.String(64), sa.ForeignKey("sites.site_id"), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", Time, nullable=False),
    )
    op.create_index("ix_gateways_site_id", "gateways", ["site_id"])
    op.create_table(
        "summaries",
        *record_columns(),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("point", sa.String(64), nullable=False),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.Column("period_start", Time, nullable=False),
        sa.Column("period_end", Time, nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("min", sa.Double(), nullable=False),
        sa.Column("max", sa.Double(), nullable=False),
        sa.Column("mean", sa.Double(), nullable=False),
        sa.Column("last", sa.Double(), nullable=False),
        sa.UniqueConstraint("gateway_id", "record_id", name="uq_summaries_record"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_summaries_site_seq", "summaries", ["site_id", "seq"])
    op.create_table(
        "alert_events",
        *record_columns(),
        sa.Column("alert_id", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("point", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("raised_at", Time, nullable=False),
        sa.Column("cleared_at", Time, nullable=True),
        sa.UniqueConstraint("gateway_id", "record_id", name="uq_alert_events_record"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_alert_events_site_seq", "alert_events", ["site_id", "seq"])
    op.create_index("ix_alert_events_alert", "alert_events", ["gateway_id", "alert_id", "state"])


def downgrade() -> None:
    op.drop_table("alert_events")
    op.drop_table("summaries")
    op.drop_table("gateways")
    op.drop_table("sites")

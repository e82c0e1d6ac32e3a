"""Demand forecasts: one row per gateway, series and start hour.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cloud_sync.central.migrations.versions.r0001_skeleton import Time, record_columns

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "forecasts",
        *record_columns(),
        sa.Column("series", sa.String(64), nullable=False),
        sa.Column("issued_at", Time, nullable=False),
        sa.Column("start", Time, nullable=False),
        sa.Column("hours", sa.JSON(), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("capacity_kwh", sa.Double(), nullable=True),
        sa.UniqueConstraint("gateway_id", "record_id", name="uq_forecasts_record"),
        sa.UniqueConstraint("gateway_id", "series", "start", name="uq_forecasts_series_start"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_forecasts_site_seq", "forecasts", ["site_id", "seq"])


def downgrade() -> None:
    op.drop_table("forecasts")

"""Counter deltas in summaries, and the access events of doors and gates.

Revision ID: 0003
Revises: 0002
Create Date: 2026-02-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cloud_sync.central.migrations.versions.r0001_skeleton import Time, record_columns

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column: ALTER TABLE ... ADD COLUMN on both databases, no table rebuild.
    op.add_column("summaries", sa.Column("delta", sa.Double(), nullable=True))
    op.create_table(
        "access_events",
        *record_columns(),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("credential_ref", sa.String(64), nullable=True),
        sa.Column("occurred_at", Time, nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.UniqueConstraint("gateway_id", "record_id", name="uq_access_events_record"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_access_events_site_seq", "access_events", ["site_id", "seq"])


def downgrade() -> None:
    op.drop_table("access_events")
    with op.batch_alter_table("summaries") as batch:  # SQLite rebuilds the table to drop a column
        batch.drop_column("delta")

"""One-time claim codes, and the eviction reports of gateways.

Revision ID: 0002
Revises: 0001
Create Date: 2026-01-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cloud_sync.central.migrations.versions.r0001_skeleton import Time, record_columns

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "claim_codes",
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column("site_id", sa.String(64), sa.ForeignKey("sites.site_id"), nullable=False),
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("expires_at", Time, nullable=False),
        sa.Column("used_at", Time, nullable=True),
    )
    op.create_table(
        "evictions",
        *record_columns(),
        sa.Column("evicted", sa.String(16), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("oldest", Time, nullable=False),
        sa.Column("newest", Time, nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.UniqueConstraint("gateway_id", "record_id", name="uq_evictions_record"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_evictions_site_seq", "evictions", ["site_id", "seq"])


def downgrade() -> None:
    op.drop_table("evictions")
    op.drop_table("claim_codes")

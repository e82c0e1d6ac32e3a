"""The store's schema and its migrations.

``PRAGMA user_version`` holds the schema version. Each migration is a list of statements applied in
one transaction, so a power cut in the middle of an upgrade leaves the old schema intact.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

MIGRATIONS: list[list[str]] = [
    # 1: the walking skeleton
    [
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE readings (
            id INTEGER PRIMARY KEY,
            device TEXT NOT NULL,
            point TEXT NOT NULL,
            value REAL NOT NULL,
            unit TEXT NOT NULL,
            wall_time REAL NOT NULL,
            boot_id TEXT NOT NULL,
            monotonic_ns INTEGER NOT NULL,
            clock_synced INTEGER NOT NULL
        )""",
        "CREATE INDEX readings_by_time ON readings (wall_time)",
        """CREATE TABLE alerts (
            alert_id TEXT PRIMARY KEY,
            key TEXT NOT NULL,
            rule TEXT NOT NULL,
            device TEXT NOT NULL,
            point TEXT NOT NULL,
            severity TEXT NOT NULL,
            message TEXT NOT NULL,
            value REAL NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('raised', 'cleared')),
            raised_at REAL NOT NULL,
            cleared_at REAL
        )""",
        "CREATE UNIQUE INDEX alerts_one_active_per_key ON alerts (key) WHERE state = 'raised'",
        """CREATE TABLE summaries (
            id INTEGER PRIMARY KEY,
            device TEXT NOT NULL,
            point TEXT NOT NULL,
            unit TEXT NOT NULL,
            period_start REAL NOT NULL,
            period_end REAL NOT NULL,
            count INTEGER NOT NULL,
            min REAL NOT NULL,
            max REAL NOT NULL,
            mean REAL NOT NULL,
            last REAL NOT NULL,
            UNIQUE (device, point, period_start)
        )""",
        """CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY,
            record_id TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            priority INTEGER NOT NULL,
            payload TEXT NOT NULL,
            created_at REAL NOT NULL,
            lease_until REAL NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX outbox_by_priority ON outbox (priority, seq)",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to ``SCHEMA_VERSION``; returns the version it was at before."""
    before = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if before > SCHEMA_VERSION:
        raise RuntimeError(
            f"database schema {before} is newer than this nbedge ({SCHEMA_VERSION}): upgrade nbedge"
        )
    for version in range(before, SCHEMA_VERSION):
        with transaction(conn):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            if version == 0:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('store_id', ?), ('outbox_seq', '0')",
                    (secrets.token_hex(4),),
                )
            conn.execute(f"PRAGMA user_version = {version + 1}")
    return before


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction on a connection opened with ``isolation_level=None``."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")

"""Appending to the outbox inside the caller's transaction.

Record ids are ``<gateway>:<store id>:<sequence>``; the sequence lives in ``meta.outbox_seq`` and
is never reused, even after the rows it numbered were acknowledged or evicted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from edge.store import records


def meta(conn: sqlite3.Connection, key: str) -> str:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return "" if row is None else str(row[0])


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def enqueue(
    conn: sqlite3.Connection,
    id_prefix: str,
    kind: str,
    builders: Sequence[Callable[[str], str]],
    *,
    now: float,
) -> None:
    """Append one outbox row per builder (called with the record id, returns the wire JSON);
    ``now`` (wall time) is when they were queued."""
    if not builders:
        return
    seq = int(meta(conn, "outbox_seq"))
    rows = []
    for build in builders:
        seq += 1
        record_id = f"{id_prefix}:{seq}"
        rows.append((seq, record_id, kind, records.PRIORITY[kind], build(record_id), now))
    conn.executemany(
        "INSERT INTO outbox (seq, record_id, kind, priority, payload, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.execute("UPDATE meta SET value = ? WHERE key = 'outbox_seq'", (str(seq),))

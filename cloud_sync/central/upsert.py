"""``INSERT ... ON CONFLICT`` for the two databases the central API runs on.

- ``insert_skipping(conn, table, index_elements)``: skip a row that breaks a unique constraint
  (the one on ``index_elements``, or any when None);
- ``insert_or_update(conn, table, key)``: insert, or set every other column of the row held with
  the same ``key``.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, Insert, Table
from sqlalchemy.dialects import postgresql, sqlite


def _insert(conn: Connection, table: Table) -> sqlite.Insert | postgresql.Insert:
    match conn.dialect.name:
        case "sqlite":
            return sqlite.insert(table)
        case "postgresql":
            return postgresql.insert(table)
        case other:
            raise NotImplementedError(f"no ON CONFLICT for the {other} dialect")


def insert_skipping(
    conn: Connection, table: Table, index_elements: Sequence[str] | None = None
) -> Insert:
    """``INSERT ... ON CONFLICT DO NOTHING``."""
    elements = None if index_elements is None else list(index_elements)
    return _insert(conn, table).on_conflict_do_nothing(index_elements=elements)


def insert_or_update(conn: Connection, table: Table, key: Sequence[str]) -> Insert:
    """``INSERT ... ON CONFLICT (key) DO UPDATE`` every column but the key."""
    stmt = _insert(conn, table)
    columns = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in key}
    return stmt.on_conflict_do_update(index_elements=list(key), set_=columns)

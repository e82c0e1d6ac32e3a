"""The store: one SQLite file in WAL mode, owned by one writer thread.

Every method runs on the store's own thread, in submission order, so there is exactly one writer
and the event loop never blocks on disk. A batch of readings and the alerts they caused are written
in one transaction together with the outbox rows that must be synced, so a record is either stored
and queued for the central API, or neither. The outbox is the ``cloud_sync.outbox.Outbox``.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from cloud_sync.outbox import OutboxRecord
from edge.alerts import Alert
from edge.clock import Clock, Stamp
from edge.store import records
from edge.store.schema import migrate, transaction
from firmware_bridge.readings import Reading

T = TypeVar("T")

_SUMMARY_SQL = """
WITH ranked AS (
    SELECT device, point, unit, value, CAST(wall_time / :interval AS INTEGER) AS bucket,
           ROW_NUMBER() OVER (
               PARTITION BY device, point, CAST(wall_time / :interval AS INTEGER)
               ORDER BY id DESC
           ) AS newest
    FROM readings
    WHERE wall_time >= :start AND wall_time < :end
)
SELECT device, point, MAX(unit) AS unit, bucket, COUNT(*) AS count, MIN(value) AS min,
       MAX(value) AS max, AVG(value) AS mean, MAX(CASE WHEN newest = 1 THEN value END) AS last
FROM ranked
GROUP BY device, point, bucket
ORDER BY bucket, device, point
"""


@dataclass(frozen=True, slots=True)
class StoreStats:
    readings: int
    summaries: int
    active_alerts: int
    outbox: dict[str, int]
    bytes: int


class Store:
    """The gateway's SQLite store. Use as ``async with Store(...) as store``."""

    def __init__(self, path: Path, *, gateway_id: str, clock: Clock | None = None) -> None:
        self.path = path
        self.gateway_id = gateway_id
        self.clock = clock or Clock()
        self.store_id = ""
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite_utils.Database | None = None
        self._monotonic: Callable[[], float] = time.monotonic

    # --- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Store:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nbedge-store")
        await self._run(self._open)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        executor = self._executor
        if executor is None:
            return
        try:
            await self._run(self._close)
        finally:
            self._executor = None
            await asyncio.to_thread(executor.shutdown, wait=True)

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._executor is None:
            raise RuntimeError("the store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 5000")
        db = sqlite_utils.Database(conn)
        db.enable_wal()
        conn.execute("PRAGMA synchronous = NORMAL")  # with WAL: durable across power cuts
        migrate(conn)
        self.store_id = self._meta(conn, "store_id")
        # Leases belong to the process that took them; after a restart every record is free.
        conn.execute("UPDATE outbox SET lease_until = 0 WHERE lease_until != 0")
        self._db = db

    def _close(self) -> None:
        if self._db is not None:
            self._db.conn.execute("PRAGMA optimize")
            self._db.close()
            self._db = None

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the store is not open")
        return self._db.conn

    @staticmethod
    def _meta(conn: sqlite3.Connection, key: str) -> str:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return "" if row is None else str(row[0])

    # --- writes ----------------------------------------------------------------------------

    async def write(self, readings: Sequence[Reading], alerts: Sequence[Alert] = ()) -> None:
        """Store readings and alert changes, with their outbox rows, in one transaction."""
        await self._run(self._write, readings, alerts, self.clock.stamp())

    def _write(self, readings: Sequence[Reading], alerts: Sequence[Alert], stamp: Stamp) -> None:
        conn = self._conn
        with transaction(conn):
            conn.executemany(
                "INSERT INTO readings (device, point, value, unit, wall_time, boot_id,"
                " monotonic_ns, clock_synced) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.device,
                        r.point,
                        r.value,
                        r.unit,
                        r.wall_time,
                        stamp.boot_id,
                        r.monotonic_ns,
                        stamp.clock_synced,
                    )
                    for r in readings
                ],
            )
            for alert in alerts:
                conn.execute(
                    "INSERT INTO alerts (alert_id, key, rule, device, point, severity, message,"
                    " value, state, raised_at, cleared_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (alert_id) DO UPDATE SET state = excluded.state,"
                    " message = excluded.message, value = excluded.value,"
                    " cleared_at = excluded.cleared_at",
                    (
                        alert.alert_id,
                        alert.key,
                        alert.rule,
                        alert.device,
                        alert.point,
                        alert.severity,
                        alert.message,
                        alert.value,
                        alert.state,
                        alert.raised_at,
                        alert.cleared_at,
                    ),
                )
            self._enqueue(
                "alert",
                [functools.partial(records.alert_record, stamp=stamp, alert=a) for a in alerts],
            )

    def _enqueue(self, kind: str, builders: Sequence[Callable[[str], str]]) -> None:
        """Append outbox rows inside the caller's transaction; ids are gateway:store:sequence."""
        if not builders:
            return
        conn = self._conn
        seq = int(self._meta(conn, "outbox_seq"))
        now = time.time()
        rows = []
        for build in builders:
            seq += 1
            record_id = f"{self.gateway_id}:{self.store_id}:{seq}"
            rows.append((seq, record_id, kind, records.PRIORITY[kind], build(record_id), now))
        conn.executemany(
            "INSERT INTO outbox (seq, record_id, kind, priority, payload, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.execute("UPDATE meta SET value = ? WHERE key = 'outbox_seq'", (str(seq),))

    async def summarise(self, *, now: float, interval_s: int, grace_s: float = 5.0) -> int:
        """Summarise every period that ended at least ``grace_s`` ago; returns how many rows."""
        return await self._run(self._summarise, now, interval_s, grace_s, self.clock.stamp())

    def _summarise(self, now: float, interval_s: int, grace_s: float, stamp: Stamp) -> int:
        conn = self._conn
        end = (now - grace_s) // interval_s * interval_s
        start = float(self._meta(conn, "summary_until") or 0.0)
        if end <= start:
            return 0
        with transaction(conn):
            rows = conn.execute(
                _SUMMARY_SQL, {"interval": interval_s, "start": start, "end": end}
            ).fetchall()
            builders = []
            for device, point, unit, bucket, count, lo, hi, mean, last in rows:
                period_start = float(bucket * interval_s)
                period_end = period_start + interval_s
                conn.execute(
                    "INSERT INTO summaries (device, point, unit, period_start, period_end, count,"
                    " min, max, mean, last) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (device, point, unit, period_start, period_end, count, lo, hi, mean, last),
                )
                builders.append(
                    functools.partial(
                        records.summary_record,
                        stamp=stamp,
                        device=device,
                        point=point,
                        unit=unit,
                        period_start=period_start,
                        period_end=period_end,
                        count=count,
                        minimum=lo,
                        maximum=hi,
                        mean=mean,
                        last=last,
                    )
                )
            self._enqueue("summary", builders)
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('summary_until', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (repr(end),),
            )
        return len(rows)

    async def prune(self, *, now: float, retention_s: float) -> int:
        """Delete raw readings older than ``retention_s`` that are already summarised."""
        return await self._run(self._prune, now, retention_s)

    def _prune(self, now: float, retention_s: float) -> int:
        conn = self._conn
        summarised = float(self._meta(conn, "summary_until") or 0.0)
        cutoff = min(summarised, now - retention_s)
        with transaction(conn):
            cursor = conn.execute("DELETE FROM readings WHERE wall_time < ?", (cutoff,))
        return cursor.rowcount

    # --- outbox (cloud_sync.outbox.Outbox) -------------------------------------------------

    async def claim(self, max_records: int, lease_s: float) -> list[OutboxRecord]:
        return await self._run(self._claim, max_records, lease_s)

    def _claim(self, max_records: int, lease_s: float) -> list[OutboxRecord]:
        now = self._monotonic()
        conn = self._conn
        with transaction(conn):
            rows = conn.execute(
                "UPDATE outbox SET lease_until = ? WHERE seq IN ("
                " SELECT seq FROM outbox WHERE lease_until <= ? ORDER BY priority, seq LIMIT ?)"
                " RETURNING priority, seq, record_id, kind, payload",
                (now + lease_s, now, max_records),
            ).fetchall()
        rows.sort()
        return [OutboxRecord(record_id, kind, payload) for _, _, record_id, kind, payload in rows]

    async def ack(self, record_ids: Sequence[str]) -> None:
        await self._run(self._set_many, "DELETE FROM outbox WHERE record_id = ?", record_ids)

    async def release(self, record_ids: Sequence[str]) -> None:
        await self._run(
            self._set_many, "UPDATE outbox SET lease_until = 0 WHERE record_id = ?", record_ids
        )

    def _set_many(self, sql: str, record_ids: Sequence[str]) -> None:
        conn = self._conn
        with transaction(conn):
            conn.executemany(sql, [(record_id,) for record_id in record_ids])

    # --- reads -----------------------------------------------------------------------------

    async def active_alerts(self) -> list[Alert]:
        return await self._run(self._active_alerts)

    def _active_alerts(self) -> list[Alert]:
        rows = self._conn.execute(
            "SELECT alert_id, key, rule, device, point, severity, message, value, state,"
            " raised_at, cleared_at FROM alerts WHERE state = 'raised' ORDER BY raised_at"
        ).fetchall()
        return [Alert(*row) for row in rows]

    async def latest_readings(self) -> list[dict[str, Any]]:
        """The newest value of every point of every device (for the local status page)."""
        return await self._run(self._latest_readings)

    def _latest_readings(self) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT device, point, value, unit, MAX(id), wall_time FROM readings"
            " WHERE id > (SELECT COALESCE(MAX(id), 0) - 5000 FROM readings)"
            " GROUP BY device, point ORDER BY device, point"
        ).fetchall()
        return [
            {"device": d, "point": p, "value": v, "unit": u, "wall_time": t}
            for d, p, v, u, _, t in rows
        ]

    async def stats(self) -> StoreStats:
        return await self._run(self._stats)

    def _stats(self) -> StoreStats:
        conn = self._conn

        def scalar(sql: str) -> int:
            return int(conn.execute(sql).fetchone()[0])

        outbox = dict(conn.execute("SELECT kind, COUNT(*) FROM outbox GROUP BY kind").fetchall())
        return StoreStats(
            readings=scalar("SELECT COUNT(*) FROM readings"),
            summaries=scalar("SELECT COUNT(*) FROM summaries"),
            active_alerts=scalar("SELECT COUNT(*) FROM alerts WHERE state = 'raised'"),
            outbox=outbox,
            bytes=scalar(
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"
            ),
        )

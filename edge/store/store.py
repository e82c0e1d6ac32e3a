"""The store: one SQLite file in WAL mode, owned by one writer thread.

Every method runs on the store's own thread, in submission order, so there is exactly one writer
and the event loop never blocks on disk. A batch of readings, the alerts they caused and the access
events of doors and gates pending are written in one transaction together with the outbox rows that
must be synced, so a record is either stored and queued for the central API, or neither; so is
each demand forecast (``write_forecast``, see ``forecasts``). The outbox is the
``cloud_sync.outbox.Outbox``. For the local page and API: every point's newest reading
(``latest_readings``, see ``latest``) and a point's history for a chart (``meter_history``,
see ``history``).

Housekeeping (``housekeep``, every few seconds from the daemon) corrects wall times once the clock
synchronised (``edge.clock``), summarises closed periods by row-id ranges and counts access events
per door, event and period the same way (``summaries``), applies retention per kind
(``retention``) and enforces the byte quota and free-disk watermark, evicting in the written order
and reporting every eviction (``quota``; the order is ``eviction``'s). The quota is also checked
after every ``Quota.check_every_rows`` readings written.

A full disk (``edge.store.disk``): when SQLite cannot write for want of disk, the store gives back
its reserve file, evicts to make room (``quota.make_room``) and tries once more; if that fails too
it raises ``nbedge.errors.StoreFull`` and nothing was written. Claiming from the outbox writes
nothing (leases are kept in memory, for this process only), so the sync client can send while
the disk is full. ``StoreStats.disk`` shows the disk's state.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import shutil
import sqlite3
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import sqlite_utils

from cloud_sync.outbox import OutboxRecord, SetAside
from edge.alerts import Alert
from edge.clock import Clock, Stamp
from edge.store import alerts as store_alerts
from edge.store import (
    forecasts,
    history,
    hourly,
    latest,
    outbox,
    quota,
    records,
    retention,
    summaries,
)
from edge.store.alerts import UnackedTime
from edge.store.disk import DISK_FULL_RULE, DiskStatus, Limits
from edge.store.forecasts import Forecast
from edge.store.history import History
from edge.store.quota import DiskUsage, Quota, QuotaReport
from edge.store.retention import Pruned, Retention
from edge.store.room import Room
from edge.store.schema import (
    copy_before_migrating,
    ensure_incremental_vacuum,
    migrate,
    prepare_new_file,
    transaction,
)
from firmware_bridge.events import AccessEvent
from firmware_bridge.readings import Reading
from nbedge.errors import StoreFull

T = TypeVar("T")
log = logging.getLogger(__name__)

_URGENT = (
    "(kind IN ('alert', 'alert_event') AND json_extract(payload, '$.body.severity') = 'critical')"
)
"""An outbox row that is a critical alert (SQL)."""


@dataclass(frozen=True, slots=True)
class StoreStats:
    readings: int
    summaries: int
    active_alerts: int
    access_events: int
    """Access events in the local history."""
    forecasts: int
    """Demand forecasts in the local history."""
    outbox: dict[str, int]
    set_aside: dict[str, int]
    """Outbox records the central API refused, per kind (kept; sent again after an upgrade)."""
    bytes: int
    """Database plus WAL on disk."""
    evicted: dict[str, int]
    """Records evicted by the quota since the database was created, per kind."""
    disk: DiskStatus
    """The filesystem under the store: free space, the watermark in force, the reserve."""
    outbox_oldest_at: float | None = None
    """When (wall time) the oldest record waiting to be sent was written; None: none waits.
    Records set aside are not waiting."""


@dataclass(frozen=True, slots=True)
class Housekeeping:
    corrected: int
    """Readings whose wall time was corrected after the clock synchronised."""
    summaries: int
    pruned: Pruned
    quota: QuotaReport


class Store:
    """The gateway's SQLite store. Use as ``async with Store(...) as store``."""

    def __init__(
        self,
        path: Path,
        *,
        gateway_id: str,
        clock: Clock | None = None,
        quota: Quota | None = None,
        retention: Retention | None = None,
        disk_usage: DiskUsage = shutil.disk_usage,
        counters: frozenset[tuple[str, str]] = frozenset(),
        connection_factory: type[sqlite3.Connection] = sqlite3.Connection,
    ) -> None:
        """``counters`` are the (device, point) pairs whose summaries carry a ``delta`` (the
        device profiles' ``kind = "counter"`` points). ``disk_usage`` measures the filesystem and
        ``connection_factory`` makes the SQLite connection: tests inject faults with them."""
        self.path = path
        self.gateway_id = gateway_id
        self.clock = clock or Clock()
        self.quota = quota or Quota()
        self.retention = retention or Retention()
        self.counters = counters
        self.store_id = ""
        self._disk_usage = disk_usage
        self._factory = connection_factory
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite_utils.Database | None = None
        self._rows_since_check = 0
        self._corrected_upto = 0
        self._latest_due = 0.0
        """When (monotonic s) the next batch of readings brings ``point_latest`` up to date."""
        self._room = Room(path, disk_usage=disk_usage, clock=self.clock, quota=lambda: self.quota)
        self._unmet = False
        self._leases: dict[str, tuple[int, float]] = {}
        """Outbox records being sent: record id -> (sequence, lease end in monotonic time)."""

    # --- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Store:
        self._executor = executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="nbedge-store"
        )
        try:
            await self._run(self._open)
        except BaseException:  # a refused or failed open leaves no thread behind
            self._executor = None
            await asyncio.to_thread(executor.shutdown, wait=True)
            raise
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
        room = self._room
        room.open()
        try:
            try:
                self._db = self._connect(room.limits())
            except sqlite3.Error as exc:  # a migration on a full disk: the reserve is for that
                if not room.is_full(exc) or not room.reserve.release():
                    raise
                room.note_full("open", exc)
                self._db = self._connect(room.limits())
        except sqlite3.Error as exc:
            if room.is_full(exc):
                raise StoreFull("open", room.free_bytes()) from exc
            raise
        if self._conn.execute(
            "SELECT 1 FROM alerts WHERE rule = ? AND condition = 'active'", (DISK_FULL_RULE,)
        ).fetchone():
            room.resume()
        room.after_quota_check()

    def _connect(self, limits: Limits) -> sqlite_utils.Database:
        """Open and set up the connection, writing nothing unless the file needs a migration."""
        conn = sqlite3.connect(self.path, isolation_level=None, factory=self._factory)
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            prepare_new_file(conn)  # before WAL: a new file must have no page written yet
            db = sqlite_utils.Database(conn)
            db.enable_wal()
            conn.execute("PRAGMA synchronous = NORMAL")  # with WAL: durable across power cuts
            # Keep the WAL small against the quota and the reserve: checkpoint, truncate early.
            conn.execute(f"PRAGMA journal_size_limit = {limits.wal_bytes}")
            conn.execute(
                f"PRAGMA wal_autocheckpoint = {max(16, min(1000, limits.wal_bytes // 4096))}"
            )
            copy_before_migrating(conn, self.path, self._room.free_bytes())
            migrate(conn, self.path)
            ensure_incremental_vacuum(conn)
            self.store_id = outbox.meta(conn, "store_id")
        except BaseException:
            conn.close()
            raise
        return db

    def _close(self) -> None:
        if self._db is not None:
            try:
                self._db.conn.execute("PRAGMA optimize")
            except sqlite3.Error as exc:  # a full disk, say: it only helps the next start
                log.warning("store not optimised on close", extra={"error": str(exc)})
            self._db.close()
            self._db = None

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the store is not open")
        return self._db.conn

    # --- a full disk (edge.store.room) ----------------------------------------------------

    def limits(self) -> Limits:
        """The store's limits fitted to its filesystem (see ``edge.store.disk``)."""
        return self._room.limits()

    async def disk(self) -> DiskStatus:
        """The filesystem under the store, now."""
        return await self._run(self._room.status)

    async def _write_op(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a write on the store's thread, making room on a full disk (``Room.guarded``)."""
        return await self._run(self._guarded, what, functools.partial(fn, *args, **kwargs))

    def _guarded(self, what: str, fn: Callable[[], T]) -> T:
        result = self._room.guarded(what, fn, self._conn, self._quota_context)
        self._after_write()
        return result

    def _after_write(self) -> None:
        """Once a write is committed (never raises: it must not be written again): checkpoint
        the WAL if its automatic checkpoints failed, and check the quota every
        ``check_every_rows`` readings."""
        try:
            if self._room.wal_overgrown():
                quota.checkpoint(self._conn)
            if self._rows_since_check >= self.quota.check_every_rows:
                self._enforce_quota(self.clock.stamp())
        except sqlite3.Error as exc:
            if not self._room.is_full(exc):
                log.exception("store checkpoint or quota check after a write failed")
                return
            self._room.note_full("checkpoint", exc)
            try:
                self._room.make_room(self._conn, self._quota_context())
            except sqlite3.Error as again:  # the next write tries again
                log.debug("store could not make room", extra={"error": str(again)})

    # --- writes ----------------------------------------------------------------------------

    async def write(
        self,
        readings: Sequence[Reading],
        alerts: Sequence[Alert] = (),
        *,
        access: Sequence[AccessEvent] = (),
        cursors: Mapping[str, str] | None = None,
    ) -> None:
        """Store readings, alert changes and access events, with the outbox rows of the alerts
        and access events (one each), and the sources' ``cursors`` (see :meth:`cursor`), in one
        transaction. Raises ``StoreFull`` when the disk is full (nothing was written)."""
        await self._write_op(
            "write", self._write, readings, alerts, access, cursors, self.clock.stamp()
        )

    def _write(
        self,
        readings: Sequence[Reading],
        alerts: Sequence[Alert],
        access: Sequence[AccessEvent],
        cursors: Mapping[str, str] | None,
        stamp: Stamp,
    ) -> None:
        conn = self._conn
        with transaction(conn):
            flush_latest = bool(readings) and stamp.monotonic_ns / 1e9 >= self._latest_due
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
            if flush_latest:
                latest.flush(conn)
            for alert in alerts:
                store_alerts.write(conn, alert, stamp)
            self._enqueue(
                "alert_event",
                [
                    functools.partial(records.alert_event_record, stamp=stamp, alert=a)
                    for a in alerts
                ],
            )
            # A platform command applied: its result goes with the event it made.
            self._enqueue(
                "command_result",
                [
                    functools.partial(
                        records.command_result_record,
                        stamp=stamp,
                        command_id=a.command_id,
                        result="applied",
                        reason=None,
                        event_id=a.event_id,
                        at=a.at,
                    )
                    for a in alerts
                    if a.command_id is not None and a.via == "platform"
                ],
            )
            if access:
                self._write_access(access, stamp)
            for key, value in (cursors or {}).items():
                outbox.set_meta(conn, f"cursor.{key}", value)
        self._rows_since_check += len(readings)
        if flush_latest:
            self._latest_due = stamp.monotonic_ns / 1e9 + latest.FLUSH_S

    async def cursor(self, key: str) -> str:
        """How far a source's events are stored (``""`` if none yet): the value last written
        with :meth:`write`'s ``cursors``, in the same transaction as those events."""
        return await self._run(lambda: outbox.meta(self._conn, f"cursor.{key}"))

    def _write_access(self, access: Sequence[AccessEvent], stamp: Stamp) -> None:
        self._conn.executemany(
            "INSERT INTO access_events (device, event, credential_ref, wall_time, boot_id,"
            " monotonic_ns, clock_synced, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    e.device,
                    e.event,
                    e.credential_ref,
                    e.wall_time,
                    stamp.boot_id,
                    e.monotonic_ns,
                    stamp.clock_synced,
                    e.detail,
                )
                for e in access
            ],
        )
        self._enqueue(
            "access",
            [functools.partial(records.access_record, stamp=stamp, event=e) for e in access],
        )

    async def write_forecast(self, forecast: Forecast) -> None:
        """Store a demand forecast with its outbox record, in one transaction. A forecast of the
        same series and start issued earlier is replaced (and the replacement sent); one issued
        no later than the one held changes nothing (see ``edge.store.forecasts``). Raises
        ``ValueError`` (pydantic's ``ValidationError`` is one) when it cannot go on the wire;
        nothing is stored then; ``StoreFull`` when the disk is full."""
        await self._write_op("forecast", self._write_forecast, forecast, self.clock.stamp())

    def _write_forecast(self, forecast: Forecast, stamp: Stamp) -> None:
        record = functools.partial(records.forecast_record, stamp=stamp, forecast=forecast)
        with transaction(self._conn):
            if forecasts.write(self._conn, forecast):
                self._enqueue("forecast", [record])
                return
        log.warning(
            "forecast not newer than the one held, ignored",
            extra={"series": forecast.series, "start": forecast.start},
        )

    def _enqueue(self, kind: str, builders: Sequence[Callable[[str], str]]) -> None:
        """Append outbox rows inside the caller's transaction; ids are gateway:store:sequence."""
        outbox.enqueue(
            self._conn,
            f"{self.gateway_id}:{self.store_id}",
            kind,
            builders,
            now=self.clock.wall_time(),
        )

    # --- housekeeping ----------------------------------------------------------------------

    async def housekeep(self, *, now: float, interval_s: int, grace_s: float = 5.0) -> Housekeeping:
        """Correct wall times, summarise closed periods, apply retention, enforce the quota."""
        corrected = await self.correct_wall_times()
        written = await self.summarise(now=now, interval_s=interval_s, grace_s=grace_s)
        pruned = await self._write_op(
            "retention", retention.apply, self._conn, self.retention, now=now
        )
        report = await self.enforce_quota()
        return Housekeeping(corrected, written, pruned, report)

    async def correct_wall_times(self) -> int:
        """Once the clock is synchronised, correct this boot's readings taken before (see
        ``edge.clock``); returns how many were corrected."""
        offset = self.clock.sync_offset()
        if offset is None:
            return 0
        return await self._write_op(
            "wall times", self._correct_wall_times, self.clock.boot_id, offset
        )

    def _correct_wall_times(self, boot_id: str, offset: float) -> int:
        count, self._corrected_upto = summaries.correct_wall_times(
            self._conn, boot_id=boot_id, offset=offset, after_id=self._corrected_upto
        )
        if count:
            log.info("corrected wall times taken before the clock synchronised", extra={"n": count})
        return count

    async def summarise(self, *, now: float, interval_s: int, grace_s: float = 5.0) -> int:
        """Summarise the readings not yet summarised whose periods have ended at least
        ``grace_s`` ago (see ``edge.store.summaries``); returns how many summaries."""
        return await self._write_op(
            "summaries",
            summaries.summarise,
            self._conn,
            self._enqueue,
            now=now,
            interval_s=interval_s,
            grace_s=grace_s,
            stamp=self.clock.stamp(),
            counters=self.counters,
        )

    async def prune(self, *, now: float, retention_s: float) -> int:
        """Delete raw readings older than ``retention_s`` that are already summarised."""
        return await self._write_op(
            "retention", retention.prune_readings, self._conn, now=now, retention_s=retention_s
        )

    async def enforce_quota(self) -> QuotaReport:
        """Evict, in the written order, until the store is within its byte quota and the disk
        keeps its free-space watermark (with room for the reserve file, which it then makes
        again if it was given back); reports every eviction in the outbox."""
        return await self._write_op("quota", self._enforce_quota, self.clock.stamp())

    def _enforce_quota(self, stamp: Stamp) -> QuotaReport:
        self._rows_since_check = 0
        report = quota.enforce(
            self._conn,
            self.quota,
            self._quota_context(stamp),
            keep_free=self._room.keep_free(),
            margin=self.limits().watermark_bytes // 10,
        )
        if report.unmet != self._unmet:
            self._unmet = report.unmet
            if report.unmet:
                log.error(
                    "store over its limits with nothing left it may evict",
                    extra={
                        "used_bytes": report.after.used_bytes,
                        "free_disk": report.after.free_disk_bytes,
                    },
                )
            else:
                log.info("store within its limits again")
        self._room.after_quota_check()
        return report

    def _quota_context(self, stamp: Stamp | None = None) -> quota.Context:
        now = self.clock.monotonic()
        return quota.Context(
            path=self.path,
            disk_usage=self._disk_usage,
            enqueue=self._enqueue,
            stamp=self.clock.stamp() if stamp is None else stamp,
            leased=[seq for seq, until in self._leases.values() if until > now],
        )

    # --- outbox (cloud_sync.outbox.Outbox) -------------------------------------------------

    async def claim(
        self, max_records: int, lease_s: float, kinds: Collection[str] | None = None
    ) -> list[OutboxRecord]:
        return await self._run(self._claim, max_records, lease_s, kinds)

    def _claim(
        self, max_records: int, lease_s: float, kinds: Collection[str] | None
    ) -> list[OutboxRecord]:
        """Reads only: a lease lives in memory, so claiming works on a full disk. Records set
        aside (refused by the central API) and kinds not asked for are not claimed."""
        now = self.clock.monotonic()
        self._leases = {rid: lease for rid, lease in self._leases.items() if lease[1] > now}
        of_kinds = ""
        params: list[Any] = []
        if kinds is not None:
            of_kinds = f" AND kind IN ({', '.join('?' for _ in kinds)})"
            params += list(kinds)
        rows = self._conn.execute(
            f"SELECT seq, record_id, kind, payload, {_URGENT} FROM outbox"  # noqa: S608 (placeholders)
            f" WHERE refused_at IS NULL{of_kinds} ORDER BY priority, seq LIMIT ?",
            [*params, max_records + len(self._leases)],
        ).fetchall()
        claimed = [row for row in rows if row[1] not in self._leases][:max_records]
        for seq, record_id, *_ in claimed:
            self._leases[record_id] = (seq, now + lease_s)
        return [
            OutboxRecord(record_id, kind, payload, bool(urgent))
            for _, record_id, kind, payload, urgent in claimed
        ]

    async def ack(self, record_ids: Sequence[str]) -> None:
        """Delete acknowledged records; ``StoreFull`` on a full disk (they stay leased until the
        lease ends, then are sent again)."""
        await self._write_op("ack", self._ack, record_ids)

    def _ack(self, record_ids: Sequence[str]) -> None:
        conn = self._conn
        with transaction(conn):
            conn.executemany(
                "DELETE FROM outbox WHERE record_id = ?", [(record_id,) for record_id in record_ids]
            )
        for record_id in record_ids:
            self._leases.pop(record_id, None)

    async def release(self, record_ids: Sequence[str]) -> None:
        await self._run(self._release, record_ids)

    def _release(self, record_ids: Sequence[str]) -> None:
        for record_id in record_ids:
            self._leases.pop(record_id, None)

    async def set_aside(self, records: Sequence[SetAside], terms: str) -> int:
        return await self._write_op(
            "set aside", self._set_aside, records, terms, self.clock.wall_time()
        )

    def _set_aside(self, records: Sequence[SetAside], terms: str, now: float) -> int:
        conn = self._conn
        with transaction(conn):
            conn.executemany(
                "UPDATE outbox SET refused_at = ?, refusal = ?, refused_terms = ?"
                " WHERE record_id = ?",
                [(now, f"{r.reason}: {r.detail}", terms, r.record_id) for r in records],
            )
        for record in records:
            self._leases.pop(record.record_id, None)
        return int(
            conn.execute("SELECT COUNT(*) FROM outbox WHERE refused_at IS NOT NULL").fetchone()[0]
        )

    async def resend_set_aside(self, terms: str) -> int:
        return await self._write_op("send again", self._resend_set_aside, terms)

    def _resend_set_aside(self, terms: str) -> int:
        conn = self._conn
        with transaction(conn):
            cursor = conn.execute(
                "UPDATE outbox SET refused_at = NULL, refusal = NULL, refused_terms = NULL"
                " WHERE refused_at IS NOT NULL AND refused_terms IS NOT ?",
                (terms,),
            )
        return int(cursor.rowcount)

    async def set_aside_count(self) -> int:
        return await self._run(
            lambda: int(
                self._conn.execute(
                    "SELECT COUNT(*) FROM outbox WHERE refused_at IS NOT NULL"
                ).fetchone()[0]
            )
        )

    async def urgent_waiting(self) -> bool:
        return await self._run(self._urgent_waiting)

    def _urgent_waiting(self) -> bool:
        row = self._conn.execute(
            f"SELECT 1 FROM outbox WHERE priority = ? AND refused_at IS NULL AND {_URGENT}"  # noqa: S608 (constants)
            " LIMIT 1",
            (records.PRIORITY["alert"],),
        ).fetchone()
        return row is not None

    async def set_aside_records(self, limit: int = 100) -> list[dict[str, Any]]:
        """The records set aside (refused by the central API), oldest first: for status."""
        return await self._run(self._set_aside_records, limit)

    def _set_aside_records(self, limit: int) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT record_id, kind, refused_at, refusal FROM outbox"
            " WHERE refused_at IS NOT NULL ORDER BY seq LIMIT ?",
            (limit,),
        ).fetchall()
        return [{"record_id": i, "kind": k, "refused_at": t, "refusal": r} for i, k, t, r in rows]

    # --- reads -----------------------------------------------------------------------------

    async def open_alerts(self) -> list[Alert]:
        """Every alert not both cleared and resolved, oldest first, as the book needs it."""
        return await self._run(lambda: store_alerts.open_alerts(self._conn))

    async def closed_alerts(self, since: float, limit: int = 100) -> list[Alert]:
        """The alerts closed since ``since`` (wall time), newest first: the console's history."""
        return await self._run(store_alerts.closed_since, self._conn, since, limit)

    async def alert_outcomes(self, device: str) -> dict[str, int]:
        """Outcomes of the stored alerts of ``device`` (``""``: not resolved yet), counted."""
        return await self._run(store_alerts.outcomes, self._conn, device)

    async def last_access(self, devices: Sequence[str], event: str) -> float | None:
        """The wall time of the newest ``event`` (``opened``...) of any of ``devices``."""
        if not devices:
            return None
        marks = ", ".join("?" * len(devices))
        row = await self._run(
            lambda: self._conn.execute(
                f"SELECT MAX(wall_time) FROM access_events WHERE device IN ({marks})"  # noqa: S608
                " AND event = ?",
                (*devices, event),
            ).fetchone()
        )
        return None if row is None or row[0] is None else float(row[0])

    async def unacked_times(self) -> dict[str, UnackedTime]:
        """The escalation timers of the open alerts nobody acknowledged yet, by alert id."""
        return await self._run(lambda: store_alerts.unacked_times(self._conn))

    async def save_unacked(self, times: Sequence[tuple[str, UnackedTime]]) -> None:
        """Write escalation timers in one transaction; ``StoreFull`` on a full disk."""
        await self._write_op("escalation timers", self._save_unacked, times)

    def _save_unacked(self, times: Sequence[tuple[str, UnackedTime]]) -> None:
        with transaction(self._conn):
            store_alerts.save_unacked(self._conn, times)

    async def alert_history(self, alert_id: str) -> list[dict[str, Any]]:
        """The events of one alert, oldest first."""
        return await self._run(lambda: store_alerts.history(self._conn, alert_id))

    async def write_command_result(
        self,
        command_id: str,
        result: Literal["applied", "refused"],
        *,
        reason: str | None = None,
        at: float,
    ) -> None:
        """The answer to a platform command that made no event (refused, or the alert was
        already in that state), with its outbox record; ``StoreFull`` on a full disk."""
        record = functools.partial(
            records.command_result_record,
            stamp=self.clock.stamp(),
            command_id=command_id,
            result=result,
            reason=reason,
            event_id=None,
            at=at,
        )

        def write() -> None:
            with transaction(self._conn):
                self._enqueue("command_result", [record])

        await self._write_op("command result", write)

    async def alert_state(self, alert_id: str) -> tuple[str, str] | None:
        """An alert's condition and human state as stored, open or not (None: unknown)."""
        row = await self._run(
            lambda: self._conn.execute(
                "SELECT condition, human_state FROM alerts WHERE alert_id = ?", (alert_id,)
            ).fetchone()
        )
        return None if row is None else (str(row[0]), str(row[1]))

    async def applied_command(self, command_id: str) -> str | None:
        """The event a platform command made, if it was applied already."""
        return await self._run(lambda: store_alerts.applied_command(self._conn, command_id))

    async def latest_readings(self) -> list[dict[str, Any]]:
        """The newest value of every point of every device, however long ago it came (for the
        local status page; ``edge.store.latest``)."""
        return await self._run(latest.readings, self._conn)

    async def meter_history(
        self,
        device: str,
        point: str,
        *,
        since: float,
        until: float,
        max_recent: int = history.MAX_RECENT,
    ) -> History:
        """One point's history from ``since`` (rounded down to the hour) to ``until``: hourly
        buckets from the summaries and the readings not summarised yet, those readings thinned
        to at most ``max_recent`` buckets, the window's extremes and newest value
        (``edge.store.history``). ``KeyError`` if the store never had a reading of the point;
        ``ValueError`` unless ``since < until``, within ``MAX_HOURS`` (168) hours, and
        ``max_recent >= 2``."""
        return await self._run(
            history.read,
            self._conn,
            device,
            point,
            since=since,
            until=until,
            counter=(device, point) in self.counters,
            max_recent=max_recent,
        )

    async def hourly(
        self,
        device: str,
        point: str,
        *,
        start: int,
        hours: int,
        how: Literal["delta", "mean"],
        synced_only: bool = True,
    ) -> list[float]:
        """Hourly values of a point from its summaries (:mod:`edge.store.hourly`); NaN: unknown."""
        return await self._run(
            hourly.hourly_values,
            self._conn,
            device,
            point,
            start=start,
            hours=hours,
            how=how,
            synced_only=synced_only,
        )

    async def hourly_access(
        self,
        devices: Sequence[str],
        event: str,
        *,
        start: int,
        hours: int,
        synced_only: bool = True,
    ) -> list[int]:
        """Access events of ``devices`` per hour, by kind (:mod:`edge.store.hourly`)."""
        return await self._run(
            hourly.hourly_access_counts,
            self._conn,
            list(devices),
            event,
            start=start,
            hours=hours,
            synced_only=synced_only,
        )

    async def forecasts(self, series: str, since: float) -> list[Forecast]:
        """The forecasts of ``series`` whose first hour is at or after ``since``, by start."""
        return await self._run(forecasts.since, self._conn, series, since)

    async def stats(self) -> StoreStats:
        return await self._run(self._stats)

    def _stats(self) -> StoreStats:
        conn = self._conn

        def scalar(sql: str) -> int:
            return int(conn.execute(sql).fetchone()[0])

        queued = dict(conn.execute("SELECT kind, COUNT(*) FROM outbox GROUP BY kind").fetchall())
        set_aside = dict(
            conn.execute(
                "SELECT kind, COUNT(*) FROM outbox WHERE refused_at IS NOT NULL GROUP BY kind"
            ).fetchall()
        )
        oldest = conn.execute(  # records are written in order: the first in seq is the oldest
            "SELECT created_at FROM outbox WHERE refused_at IS NULL ORDER BY seq LIMIT 1"
        ).fetchone()
        evicted = {
            key.removeprefix("evicted."): int(value)
            for key, value in conn.execute(
                "SELECT key, value FROM meta WHERE key LIKE 'evicted.%' ORDER BY key"
            )
        }
        return StoreStats(
            readings=scalar("SELECT COUNT(*) FROM readings"),
            summaries=scalar("SELECT COUNT(*) FROM summaries"),
            active_alerts=scalar("SELECT COUNT(*) FROM alerts WHERE condition = 'active'"),
            access_events=scalar("SELECT COUNT(*) FROM access_events"),
            forecasts=scalar("SELECT COUNT(*) FROM forecasts"),
            outbox=queued,
            set_aside=set_aside,
            bytes=quota.measure(conn, self.path, self._disk_usage).file_bytes,
            evicted=evicted,
            disk=self._room.status(),
            outbox_oldest_at=oldest[0] if oldest else None,
        )

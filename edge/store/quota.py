"""The store's byte quota and free-disk watermark, their enforcement, and room on a full disk.

The store may use at most ``max_bytes`` on disk (database file plus its WAL, measured on the files,
less the free pages inside them), and the filesystem holding it must keep the watermark free (the
configured ``min_free_bytes``, fitted to the filesystem's size: ``edge.store.disk``), and room to
re-make the reserve file when it is missing. Housekeeping checks both every few seconds and after
every ``check_every_rows`` readings written; never per write. When a limit is crossed, records are
evicted in the order written in ``edge.store.eviction`` until the store is a tenth of the limit
inside it: bulk data only for the watermark, down to the last resort for the byte quota. Every
eviction is counted and reported, and the space is given back to the filesystem for real
(``PRAGMA incremental_vacuum`` a few pages at a time, each followed by a WAL checkpoint).
``make_room`` is what the store does when SQLite reports the disk full.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from edge.clock import Stamp
from edge.store import eviction
from edge.store.outbox import meta
from edge.store.records import EvictionReason
from edge.store.schema import transaction

log = logging.getLogger(__name__)

_MAX_STEPS = 256
_MIN_STEP_BYTES = 16 * 4096

MiB = 1 << 20


@dataclass(frozen=True, slots=True)
class Quota:
    max_bytes: int = 512 * MiB
    """Database plus WAL on disk, at most."""
    min_free_bytes: int = 64 * MiB
    """Free space the filesystem holding the database must keep."""
    check_every_rows: int = 50_000
    """Besides the periodic check, the quota is checked after this many readings were written."""


class _DiskSpace(Protocol):
    @property
    def total(self) -> int: ...

    @property
    def free(self) -> int: ...


DiskUsage = Callable[[Path], _DiskSpace]
"""``shutil.disk_usage`` or a stand-in (tests)."""


@dataclass(frozen=True, slots=True)
class Usage:
    file_bytes: int
    """Database file plus WAL file, as the filesystem sees them."""
    free_page_bytes: int
    """Free pages inside the database file (reused before the file grows)."""
    free_disk_bytes: int
    total_disk_bytes: int

    @property
    def used_bytes(self) -> int:
        return self.file_bytes - self.free_page_bytes


@dataclass(frozen=True, slots=True)
class QuotaReport:
    before: Usage
    after: Usage
    reason: EvictionReason | None
    """Why records were evicted, or None when the store was within its limits."""
    evicted: dict[str, int]
    unmet: bool = False
    """A limit is still crossed with nothing left that it may evict."""


def measure(conn: sqlite3.Connection, path: Path, disk_usage: DiskUsage) -> Usage:
    file_bytes = 0
    for file in (path, Path(f"{path}-wal")):
        with contextlib.suppress(FileNotFoundError):
            file_bytes += os.stat(file).st_size
    free_pages, page_size = conn.execute(
        "SELECT freelist_count, page_size FROM pragma_freelist_count(), pragma_page_size()"
    ).fetchone()
    disk = disk_usage(path.parent)
    return Usage(file_bytes, int(free_pages) * int(page_size), int(disk.free), int(disk.total))


def shortfall(usage: Usage, quota: Quota, keep_free: int, margin: int) -> tuple[int, int]:
    """Bytes to free to be inside the byte quota by a tenth of it, and to have ``keep_free``
    bytes free on the disk and ``margin`` more."""
    over = usage.used_bytes - quota.max_bytes
    short = keep_free - usage.free_disk_bytes
    need_quota = over + quota.max_bytes // 10 if over > 0 else 0
    need_disk = short + margin if short > 0 else 0
    return need_quota, need_disk


def checkpoint(conn: sqlite3.Connection) -> None:
    """Copy the WAL into the database and truncate it (outside any transaction)."""
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()


def room(usage: Usage) -> int:
    """Bytes one transaction may free (deleting or moving pages writes about as many to the WAL,
    which must fit on the disk): half the free disk, at least 16 pages."""
    return max(_MIN_STEP_BYTES, usage.free_disk_bytes // 2)


@dataclass(frozen=True, slots=True)
class Context:
    """What enforcement and ``make_room`` need from the store."""

    path: Path
    disk_usage: DiskUsage
    enqueue: Callable[[str, Sequence[Callable[[str], str]]], None]
    stamp: Stamp
    leased: Collection[int]
    """Outbox sequences being sent: never evicted."""


def reclaim(conn: sqlite3.Connection, ctx: Context) -> None:
    """Give free pages back to the filesystem and empty the WAL (outside any transaction), in
    steps that fit the free disk (``room``), each checkpointed."""
    checkpoint(conn)
    page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    for _ in range(_MAX_STEPS):
        if not int(conn.execute("PRAGMA freelist_count").fetchone()[0]):
            break
        step = room(measure(conn, ctx.path, ctx.disk_usage)) // page_size
        # executescript steps the pragma to completion; execute() would free a single page.
        conn.executescript(f"PRAGMA incremental_vacuum({step});")
        checkpoint(conn)


def _evict(
    conn: sqlite3.Connection, ctx: Context, need: int, *, last_resort: bool
) -> list[eviction.Evicted]:
    return eviction.evict(
        conn,
        need,
        last_summarised=int(meta(conn, "summary_last_id") or 0),
        last_access_counted=int(meta(conn, "access_summary_last_id") or 0),
        leased=ctx.leased,
        last_resort=last_resort,
    )


def enforce(
    conn: sqlite3.Connection, quota: Quota, ctx: Context, *, keep_free: int, margin: int
) -> QuotaReport:
    """Evict until the store is within its byte quota and ``keep_free`` bytes are free (the
    watermark, and the reserve when it is missing), or nothing it may evict is left. For free
    disk only bulk data goes (readings, summaries, forecasts, local copies); unsent alerts and
    access events only for the byte quota itself. Each transaction frees at most ``room``."""
    checkpoint(conn)  # the files are measured with an empty WAL
    before = usage = measure(conn, ctx.path, ctx.disk_usage)
    need_quota, need_disk = shortfall(usage, quota, keep_free, margin)
    if need_quota or need_disk:
        reclaim(conn, ctx)  # free pages may be all there is to it
        usage = measure(conn, ctx.path, ctx.disk_usage)
        need_quota, need_disk = shortfall(usage, quota, keep_free, margin)
    first_reason: EvictionReason | None = None
    totals: dict[str, int] = {}
    for _ in range(_MAX_STEPS):
        if not need_quota and not need_disk:
            break
        reason: EvictionReason = "disk_full" if need_disk >= need_quota else "quota"
        step = room(usage)
        with transaction(conn):
            evicted = _evict(conn, ctx, min(step, max(need_quota, need_disk)), last_resort=False)
            if not evicted and need_quota:
                reason = "quota"
                evicted = _evict(conn, ctx, min(step, need_quota), last_resort=True)
            eviction.report(conn, ctx.enqueue, evicted, reason, ctx.stamp)
        if not evicted:
            break
        first_reason = first_reason or reason
        _add(totals, evicted)
        reclaim(conn, ctx)
        usage = measure(conn, ctx.path, ctx.disk_usage)
        need_quota, need_disk = shortfall(usage, quota, keep_free, margin)
    _log_evicted(first_reason, totals)
    return QuotaReport(before, usage, first_reason, totals, unmet=bool(need_quota or need_disk))


def make_room(
    conn: sqlite3.Connection, ctx: Context, free_goal: int, free_floor: int
) -> dict[str, int]:
    """After SQLite reported the disk full (and the store gave back its reserve): evict bulk
    data in the written order until ``free_goal`` bytes are free; unsent alerts and access
    events only when no bulk data is left and less than ``free_floor`` is free. Reason
    ``disk_full``; the space is given back a ``room`` at a time. Stops at the first SQLite
    error: what was freed until then stays freed."""
    totals: dict[str, int] = {}
    try:
        with contextlib.suppress(sqlite3.OperationalError):
            checkpoint(conn)  # a WAL the database could not take: into it if it fits now
        last_resort = False
        for _ in range(_MAX_STEPS):
            usage = measure(conn, ctx.path, ctx.disk_usage)
            goal = free_floor if last_resort else free_goal
            if usage.free_disk_bytes >= goal:
                break
            step = min(room(usage), goal - usage.free_disk_bytes)
            with transaction(conn):
                evicted = _evict(conn, ctx, step, last_resort=last_resort)
                eviction.report(conn, ctx.enqueue, evicted, "disk_full", ctx.stamp)
            if not evicted:
                if last_resort:
                    break
                last_resort = True
                continue
            _add(totals, evicted)
            reclaim(conn, ctx)
    except sqlite3.OperationalError as exc:
        log.debug("store could not make more room", extra={"error": str(exc)})
    _log_evicted("disk_full", totals)
    return totals


def _add(totals: dict[str, int], evicted: Sequence[eviction.Evicted]) -> None:
    for item in evicted:
        totals[item.kind] = totals.get(item.kind, 0) + item.count


def _log_evicted(reason: EvictionReason | None, totals: dict[str, int]) -> None:
    if totals:
        # Alerts and access events are the last resort: losing them unsent is an error.
        level = logging.ERROR if {"alert", "access"} & totals.keys() else logging.WARNING
        log.log(level, "store evicted records", extra={"reason": reason, **totals})

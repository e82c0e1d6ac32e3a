"""The store's byte quota and free-disk watermark, and their enforcement.

The store may use at most ``max_bytes`` on disk (database file plus its WAL, measured on the files,
less the free pages inside them), and the filesystem holding it must keep ``min_free_bytes`` free.
Housekeeping checks both every few seconds and after every ``check_every_rows`` readings written;
never per write. When either limit is crossed, records are evicted in the order written in
``edge.store.eviction`` until the store is a tenth of the limit inside it, every eviction is
counted and reported, and the space is given back to the filesystem for real (``PRAGMA
incremental_vacuum``, then ``wal_checkpoint(TRUNCATE)``); then the files are measured again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from edge.clock import Stamp
from edge.store import eviction
from edge.store.outbox import meta
from edge.store.records import EvictionReason
from edge.store.schema import transaction

log = logging.getLogger(__name__)

_MAX_PASSES = 4

MiB = 1 << 20


@dataclass(frozen=True, slots=True)
class Quota:
    max_bytes: int = 512 * MiB
    """Database plus WAL on disk, at most."""
    min_free_bytes: int = 64 * MiB
    """Free space the filesystem holding the database must keep."""
    check_every_rows: int = 50_000
    """Besides the periodic check, the quota is checked after this many readings were written."""


class _HasFree(Protocol):
    @property
    def free(self) -> int: ...


DiskUsage = Callable[[Path], _HasFree]
"""``shutil.disk_usage`` or a stand-in (tests)."""


@dataclass(frozen=True, slots=True)
class Usage:
    file_bytes: int
    """Database file plus WAL file, as the filesystem sees them."""
    free_page_bytes: int
    """Free pages inside the database file (reused before the file grows)."""
    free_disk_bytes: int

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


def measure(conn: sqlite3.Connection, path: Path, disk_usage: DiskUsage) -> Usage:
    file_bytes = 0
    for file in (path, Path(f"{path}-wal")):
        with contextlib.suppress(FileNotFoundError):
            file_bytes += os.stat(file).st_size
    free_pages, page_size = conn.execute(
        "SELECT freelist_count, page_size FROM pragma_freelist_count(), pragma_page_size()"
    ).fetchone()
    return Usage(file_bytes, int(free_pages) * int(page_size), int(disk_usage(path.parent).free))


def shortfall(usage: Usage, quota: Quota) -> tuple[int, EvictionReason | None]:
    """How many bytes to free to be a tenth of a limit inside both limits, and why."""
    over = usage.used_bytes - quota.max_bytes
    short = quota.min_free_bytes - usage.free_disk_bytes
    need_quota = over + quota.max_bytes // 10 if over > 0 else 0
    need_disk = short + quota.min_free_bytes // 10 if short > 0 else 0
    if need_quota == need_disk == 0:
        return 0, None
    if need_disk >= need_quota:
        return need_disk, "disk_full"
    return need_quota, "quota"


def reclaim(conn: sqlite3.Connection) -> None:
    """Give free pages back to the filesystem and empty the WAL (outside any transaction)."""
    # executescript steps the pragma to completion; execute() would free a single page.
    conn.executescript("PRAGMA incremental_vacuum;")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()


def enforce(
    conn: sqlite3.Connection,
    path: Path,
    quota: Quota,
    disk_usage: DiskUsage,
    *,
    enqueue: Callable[[str, Sequence[Callable[[str], str]]], None],
    stamp: Stamp,
    lease_now: float,
) -> QuotaReport:
    """Evict until the store is within its limits (or nothing evictable is left)."""
    before = usage = measure(conn, path, disk_usage)
    need, reason = shortfall(usage, quota)
    if need and usage.file_bytes - usage.used_bytes < need:
        reclaim(conn)  # an oversized WAL or free pages may be all there is to it
        usage = measure(conn, path, disk_usage)
        need, reason = shortfall(usage, quota)
    first_reason = reason
    totals: dict[str, int] = {}
    for _ in range(_MAX_PASSES):
        if not need or reason is None:
            break
        with transaction(conn):
            evicted = eviction.evict(
                conn,
                need,
                last_summarised=int(meta(conn, "summary_last_id") or 0),
                last_access_counted=int(meta(conn, "access_summary_last_id") or 0),
                lease_now=lease_now,
            )
            eviction.report(conn, enqueue, evicted, reason, stamp)
        if not evicted:
            log.error(
                "store over its limits with nothing left to evict",
                extra={"used_bytes": usage.used_bytes, "free_disk": usage.free_disk_bytes},
            )
            break
        for item in evicted:
            totals[item.kind] = totals.get(item.kind, 0) + item.count
        reclaim(conn)
        usage = measure(conn, path, disk_usage)
        need, reason = shortfall(usage, quota)
    if totals:
        # Alerts and access events are the last resort: losing them unsent is an error.
        level = logging.ERROR if {"alert", "access"} & totals.keys() else logging.WARNING
        log.log(level, "store evicted records", extra={"reason": first_reason, **totals})
    return QuotaReport(before, usage, first_reason if totals else None, totals)

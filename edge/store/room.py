"""Room on a full disk: the store's reserve file, its ``disk_full`` level, and making room.

``Room(path, disk_usage=..., clock=..., quota=...)`` belongs to one ``Store`` and runs on its
thread. ``open()`` measures the filesystem; ``guarded(what, fn, conn, context)`` runs one write
and, when SQLite reports the disk full, gives back the reserve, evicts (``quota.make_room``), makes
the reserve again if it can and runs the write once more, raising ``StoreFull`` if that fails too;
``after_quota_check()`` makes the reserve again when there is room and updates the level;
``status()`` is what ``/api/status`` shows. The limits and the level: ``edge.store.disk``.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from edge.clock import Clock
from edge.store import quota
from edge.store.disk import DiskStatus, FullDisk, Limits, Reserve, is_full_error
from edge.store.quota import DiskUsage, Quota
from nbedge.errors import StoreFull

T = TypeVar("T")
log = logging.getLogger(__name__)


class Room:
    """The filesystem under one store, as the store's thread sees it."""

    def __init__(
        self, path: Path, *, disk_usage: DiskUsage, clock: Clock, quota: Callable[[], Quota]
    ) -> None:
        """``path`` is the database file; ``quota`` gives the store's quota in force."""
        self.path = path
        self.reserve = Reserve(path.with_name(path.name + ".reserve"), 0)
        self.level = FullDisk()
        self._disk_usage = disk_usage
        self._clock = clock
        self._quota = quota
        self._total_bytes = 0

    def open(self) -> None:
        """Measure the filesystem (its size fits the limits); call before the database opens."""
        self._total_bytes = int(self._disk_usage(self.path.parent).total)
        self.reserve.size = self.limits().reserve_bytes

    def limits(self) -> Limits:
        in_force = self._quota()
        return Limits.fit(
            self._total_bytes,
            min_free_bytes=in_force.min_free_bytes,
            max_bytes=in_force.max_bytes,
        )

    def keep_free(self) -> int:
        """Free bytes the quota must keep: the watermark, and the reserve while it is missing."""
        limits = self.limits()
        return limits.watermark_bytes + (0 if self.reserve.held() else limits.reserve_bytes)

    def free_bytes(self) -> int:
        try:
            return int(self._disk_usage(self.path.parent).free)
        except OSError:
            return 0

    def is_full(self, exc: sqlite3.Error) -> bool:
        return is_full_error(exc, self.free_bytes(), self.limits().wal_bytes)

    def wal_overgrown(self) -> bool:
        """The WAL is past twice its bound: its automatic checkpoints are failing (quietly, when
        the database cannot grow), and the store must checkpoint it itself."""
        try:
            wal = Path(f"{self.path}-wal").stat().st_size
        except FileNotFoundError:
            return False
        return wal > 2 * self.limits().wal_bytes

    def note_full(self, what: str, exc: sqlite3.Error) -> None:
        """SQLite reported the disk full; logged when the disk becomes full."""
        if self.level.error(self._clock.monotonic()):
            log.error(
                "store disk full: giving back the reserve and evicting to keep writing",
                extra={"operation": what, "error": str(exc), "free_disk": self.free_bytes()},
            )

    def guarded(
        self,
        what: str,
        fn: Callable[[], T],
        conn: sqlite3.Connection,
        context: Callable[[], quota.Context],
    ) -> T:
        """Run a write; on a full disk make room and run it once more. Raises ``StoreFull`` when
        it still cannot be written (nothing was); any other error as it is."""
        try:
            return fn()
        except sqlite3.Error as exc:
            if not self.is_full(exc):
                raise
            self.note_full(what, exc)
        try:
            self.make_room(conn, context())
            return fn()
        except sqlite3.Error as exc:
            if not self.is_full(exc):
                raise
            self.note_full(what, exc)
            raise StoreFull(what, self.free_bytes()) from exc

    def make_room(self, conn: sqlite3.Connection, context: quota.Context) -> None:
        """Give back the reserve, evict bulk data (in the written order) until the watermark and
        twice the reserve are free, unsent alerts and access events only for room for two WALs
        when no bulk is left, and make the reserve again at once if there is room."""
        limits = self.limits()
        released = self.reserve.release()
        log.debug("store reserve file given back", extra={"bytes": released})
        goal = limits.watermark_bytes + 2 * limits.reserve_bytes
        quota.make_room(conn, context, goal, 2 * limits.wal_bytes)
        self.make_reserve()

    def make_reserve(self) -> None:
        limits = self.limits()
        room = limits.reserve_bytes + limits.watermark_bytes
        if not self.reserve.held() and self.free_bytes() >= room:
            self.reserve.make()

    def resume(self) -> None:
        """The disk was full when the gateway last stopped (its alert is still active)."""
        self.level.resume(self._clock.monotonic())

    def after_quota_check(self) -> None:
        """Make the reserve again if there is room, and update the level (logged on change)."""
        self.make_reserve()
        limits = self.limits()
        free = self.free_bytes()
        was = self.level.full
        full = self.level.check(
            self._clock.monotonic(),
            reserve_held=bool(self.reserve.held()),
            free_bytes=free,
            watermark=limits.watermark_bytes,
        )
        if full and not was:
            log.error(
                "store disk full: less free than the watermark, or no room for the reserve",
                extra={"free_disk": free, "watermark": limits.watermark_bytes},
            )
        elif was and not full:
            log.info("store disk space back", extra={"free_disk": free})

    def status(self) -> DiskStatus:
        return DiskStatus(
            total_bytes=self._total_bytes,
            free_bytes=self.free_bytes(),
            watermark_bytes=self.limits().watermark_bytes,
            reserve_bytes=self.reserve.held(),
            disk_full=self.level.full,
            full_episodes=self.level.episodes,
            full_errors=self.level.errors,
        )

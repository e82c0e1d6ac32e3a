"""The filesystem under the store: limits fitted to its size, the reserve file, a full disk.

``Limits.fit(total_bytes, min_free_bytes=..., max_bytes=...)`` fits the store's limits to the
filesystem: the free-disk watermark in force (at most ``1 / WATERMARK_SHARE`` of it), the size of
the reserve file and the WAL's bound. ``Reserve`` is that file (``<database>.reserve``): made when
there is room, deleted by the store when SQLite reports the disk full, so that it has room to
evict and to write the alert. ``is_full_error`` tells SQLite's full-disk errors from the others.
``FullDisk`` is the level behind the ``disk_full`` alert. How the store uses them:
``edge.store.room``; the figures, and why: docs/architecture.md, "A full disk".
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MiB = 1 << 20
WATERMARK_SHARE = 10
"""The watermark in force is at most a tenth of the filesystem's size."""
RESERVE_SHARE = 16
RESERVE_MAX_BYTES = 8 * MiB
"""The reserve is a sixteenth of the filesystem, at most 8 MiB."""
WAL_MAX_BYTES = 64 * MiB
FULL_HOLD_S = 600.0
"""``disk_full`` stays active this long after SQLite last reported the disk full."""
DISK_FULL_RULE = "disk_full"
"""The alert of a full disk (critical), raised on the gateway's point ``store``."""

_SQLITE_FULL = 13
_SQLITE_IOERR = 10
_PAGE = 4096


@dataclass(frozen=True, slots=True)
class Limits:
    """The store's limits on one filesystem."""

    total_bytes: int
    watermark_bytes: int
    """Free space the store keeps on the filesystem: the configured ``min_free_bytes``, at most
    ``1 / WATERMARK_SHARE`` of the filesystem."""
    reserve_bytes: int
    wal_bytes: int
    """The WAL is checkpointed at this size and truncated back to it; a quarter of the reserve
    at most, and checkpointed by the store at twice this size, so that giving the reserve back
    always leaves room to checkpoint the WAL."""

    @classmethod
    def fit(cls, total_bytes: int, *, min_free_bytes: int, max_bytes: int) -> Limits:
        reserve = max(_PAGE, min(RESERVE_MAX_BYTES, total_bytes // RESERVE_SHARE) // _PAGE * _PAGE)
        wal = max(16 * _PAGE, min(max_bytes // 8, WAL_MAX_BYTES, reserve // 4))
        return cls(
            total_bytes=total_bytes,
            watermark_bytes=min(min_free_bytes, total_bytes // WATERMARK_SHARE),
            reserve_bytes=reserve,
            wal_bytes=wal,
        )


@dataclass(frozen=True, slots=True)
class DiskStatus:
    """The filesystem under the store, as ``/api/status`` shows it (``store.disk``)."""

    total_bytes: int
    free_bytes: int
    watermark_bytes: int
    """The free-disk watermark in force: ``store.min_free_bytes`` fitted to the filesystem."""
    reserve_bytes: int
    """What the reserve file holds now; 0 while it is given back."""
    disk_full: bool
    """The level behind the ``disk_full`` alert (``FullDisk``)."""
    full_episodes: int
    """Times the disk became full since start."""
    full_errors: int
    """Full-disk errors SQLite reported since start."""


class Reserve:
    """A file of ``size`` bytes allocated on the filesystem, to be given back when it is full."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size

    def held(self) -> int:
        """Bytes the reserve holds now (0: it is not there)."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def make(self) -> bool:
        """Allocate the reserve if it is not there; False when the filesystem has no room."""
        if self.held():
            return True
        partial = self.path.with_name(self.path.name + ".partial")
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _allocate(fd, self.size)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(partial, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                partial.unlink()
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                log.warning("could not make the store's reserve file", extra={"error": str(exc)})
            return False
        log.debug("store reserve file in place", extra={"bytes": self.size})
        return True

    def release(self) -> int:
        """Delete the reserve; returns the bytes it held (0 if it was not there)."""
        held = self.held()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        return held


def _allocate(fd: int, size: int) -> None:
    """Blocks for real (no sparse file): fallocate, or written bytes where it is unsupported."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    else:
        return
    chunk = b"\xa5" * (64 * 1024)  # not zeros, which some filesystems store as holes
    written = 0
    while written < size:
        written += os.write(fd, chunk[: size - written])


def is_full_error(exc: sqlite3.Error, free_bytes: int, tight_bytes: int) -> bool:
    """Whether SQLite failed for want of disk: ``SQLITE_FULL``, or an I/O error (``SQLITE_IOERR``
    and its extended codes) while less than ``tight_bytes`` are free."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return "database or disk is full" in str(exc)
    if code & 0xFF == _SQLITE_FULL:
        return True
    return code & 0xFF == _SQLITE_IOERR and free_bytes < tight_bytes


class FullDisk:
    """Whether the store's disk is full, a level with a hold (behind the ``disk_full`` alert).

    Full while SQLite reported the disk full in the last ``hold_s`` (``error``), or when the last
    check (``check``, after each quota enforcement) found the reserve missing or less free than
    the watermark; not full otherwise. ``episodes`` counts the times it became full.
    """

    def __init__(self, hold_s: float = FULL_HOLD_S) -> None:
        self.hold_s = hold_s
        self.full = False
        self.episodes = 0
        self.errors = 0
        """Full-disk errors reported by SQLite."""
        self._last_error: float | None = None

    def resume(self, now: float) -> None:
        """The disk was full when the gateway last stopped (its alert is still active): full,
        held from ``now`` as if SQLite had just said so."""
        self._last_error = now
        self._set(True)

    def error(self, now: float) -> bool:
        """SQLite reported the disk full at ``now`` (monotonic); True if it was not full."""
        self.errors += 1
        self._last_error = now
        return self._set(True)

    def check(self, now: float, *, reserve_held: bool, free_bytes: int, watermark: int) -> bool:
        """The level after a quota check; returns it."""
        recent = self._last_error is not None and now - self._last_error < self.hold_s
        self._set(recent or not reserve_held or free_bytes < watermark)
        return self.full

    def _set(self, full: bool) -> bool:
        became = full and not self.full
        if became:
            self.episodes += 1
        self.full = full
        return became

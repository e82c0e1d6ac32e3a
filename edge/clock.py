"""Time as a gateway without a real-time clock can know it.

Every record carries the wall time (UTC), the id of the boot it was taken in, a monotonic counter of
that boot and whether the system clock was synchronised (NTP) when it was taken. Wall time alone is
never used to order records: the store orders readings by insertion (row id) and the outbox by
sequence; the monotonic counter orders what happened within one boot.

Correcting records taken before the first synchronisation
---------------------------------------------------------
A Pi boots with a wrong clock (1970, or the time ``fake-hwclock`` saved at the last shutdown) and
steps it once NTP answers. The monotonic clock does not jump. The first time this process sees the
clock synchronised, ``Clock`` learns ``offset = wall - monotonic`` (``sync_offset``); that offset
holds for the whole boot, before the step as well as after it. The store's housekeeping then
rewrites the wall time of this boot's readings that were taken unsynchronised and are *not
summarised yet*: ``wall_time = monotonic_ns / 1e9 + offset``, and marks them corrected
(``wall_time_corrected``). Such readings count as well timed: the wire carries nothing new for
them, and a summary made from well-timed readings only says ``clock_synced: true``.

What cannot be corrected stays flagged: readings summarised before the clock synchronised (their
summary was already queued), and readings of an earlier boot that ended before any
synchronisation (its monotonic clock is gone). Summaries made from such readings say
``clock_synced: false``, and the summariser never mixes well-timed and ill-timed readings in one
summary. The correction assumes the monotonic clock runs through the boot (no suspend), which
holds on a gateway.

Clock jumps (forward or backward, synchronised or not) never lose a reading: summaries are made by
row-id ranges, not by wall-time ranges (see ``edge.store.summaries``).

A kernel that refuses the read (EPERM: a seccomp filter such as systemd's ``ProtectClock=yes``)
means "never synchronised", so nothing is corrected: that is logged once, with the cause.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import functools
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
_TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised
_TIMEX_SIZE = 512  # larger than struct timex on every Linux ABI; modes = 0 only reads
_reported_errors: set[int] = set()  # errnos of adjtimex already logged by this process


@dataclass(frozen=True, slots=True)
class Stamp:
    """When something happened, as recorded with it."""

    wall_time: float
    boot_id: str
    monotonic_ns: int
    clock_synced: bool


def read_boot_id() -> str:
    """The kernel's id of this boot, or a random one where there is none (not Linux)."""
    try:
        return _BOOT_ID_FILE.read_text().strip()
    except OSError:
        return str(uuid.uuid4())


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library, loaded once: ``find_library`` runs ``ldconfig -p`` in a subprocess."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None


def clock_synchronised() -> bool:
    """Whether the kernel considers the system clock synchronised (adjtimex, read-only)."""
    libc = _libc()
    if libc is None:
        return False
    try:
        buffer = ctypes.create_string_buffer(_TIMEX_SIZE)
        state = int(libc.adjtimex(buffer))
    except (OSError, AttributeError):
        return False
    if state == -1:
        _report_unreadable(ctypes.get_errno())
        return False
    return state != _TIME_ERROR


def _report_unreadable(number: int) -> None:
    """Log, once per process and error, that the clock's state cannot be read, and what it costs."""
    if number in _reported_errors:
        return
    _reported_errors.add(number)
    cause = (
        "a seccomp filter refuses adjtimex/clock_adjtime (under systemd: ProtectClock=yes, or a "
        "SystemCallFilter= without them; the shipped unit allows them)"
        if number == errno.EPERM
        else os.strerror(number)
    )
    log.warning(
        "cannot read whether the clock is synchronised: %s. Every record is marked "
        "clock_synced false and wall times taken before the first sync are never corrected",
        cause,
    )


Sleep = Callable[[float], Awaitable[None]]


class Clock:
    """The gateway's one clock: wall and monotonic time, waiting, and record stamps. Checks clock
    synchronisation at most every ``recheck_s`` seconds.

    Every service that waits or schedules takes the gateway's clock, so that a test can run a
    whole gateway in virtual time. The time sources can be replaced: ``wall`` returns seconds
    since the epoch, ``monotonic_ns`` nanoseconds of this boot, ``sleep`` waits a number of
    seconds of that monotonic time, ``synchronised`` says whether the wall clock is synchronised.
    """

    def __init__(
        self,
        *,
        recheck_s: float = 60.0,
        wall: Callable[[], float] = time.time,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
        sleep: Sleep = asyncio.sleep,
        synchronised: Callable[[], bool] = clock_synchronised,
        boot_id: str | None = None,
    ) -> None:
        self.boot_id = read_boot_id() if boot_id is None else boot_id
        self._wall = wall
        self._monotonic_ns = monotonic_ns
        self.sleep = sleep
        self._synchronised = synchronised
        self._recheck_ns = int(recheck_s * 1e9)
        self._offset: float | None = None
        self._checked_ns = 0
        self._synced = False
        self._check(self._monotonic_ns())

    def _check(self, now_ns: int) -> None:
        self._synced = self._synchronised()
        self._checked_ns = now_ns
        if self._synced and self._offset is None:
            self._offset = self._wall() - now_ns / 1e9

    def synced(self) -> bool:
        now = self._monotonic_ns()
        if now - self._checked_ns >= self._recheck_ns:
            self._check(now)
        return self._synced

    def sync_offset(self) -> float | None:
        """``wall - monotonic`` (seconds) learnt when the clock was first seen synchronised in
        this process, or None while it never was. Valid for every record of this boot."""
        self.synced()
        return self._offset

    def wall_time(self) -> float:
        return self._wall()

    def monotonic_ns(self) -> int:
        """Nanoseconds of this boot's monotonic clock."""
        return self._monotonic_ns()

    def monotonic(self) -> float:
        """Seconds of this boot's monotonic clock."""
        return self._monotonic_ns() / 1e9

    def stamp(self) -> Stamp:
        return Stamp(self._wall(), self.boot_id, self._monotonic_ns(), self.synced())

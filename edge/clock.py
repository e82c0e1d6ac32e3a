"""Time as a gateway without a real-time clock can know it.

Every record carries the wall time (UTC), the id of the boot it was taken in, a monotonic counter of
that boot and whether the system clock was synchronised (NTP) when it was taken. Wall time alone is
never used to order records.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

_BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
_TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised
_TIMEX_SIZE = 512  # larger than struct timex on every Linux ABI; modes = 0 only reads


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


def clock_synchronised() -> bool:
    """Whether the kernel considers the system clock synchronised (adjtimex, read-only)."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        buffer = ctypes.create_string_buffer(_TIMEX_SIZE)
        state = int(libc.adjtimex(buffer))
    except (OSError, AttributeError):
        return False
    return state not in (-1, _TIME_ERROR)


class Clock:
    """Stamps records. Checks clock synchronisation at most every ``recheck_s`` seconds."""

    def __init__(self, *, recheck_s: float = 60.0) -> None:
        self.boot_id = read_boot_id()
        self._recheck_ns = int(recheck_s * 1e9)
        self._synced = clock_synchronised()
        self._checked_ns = time.monotonic_ns()

    def synced(self) -> bool:
        now = time.monotonic_ns()
        if now - self._checked_ns >= self._recheck_ns:
            self._synced = clock_synchronised()
            self._checked_ns = now
        return self._synced

    def stamp(self) -> Stamp:
        return Stamp(time.time(), self.boot_id, time.monotonic_ns(), self.synced())

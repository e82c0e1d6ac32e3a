"""One gateway per state folder: the daemon holds an exclusive lock on ``<state_dir>/gateway.lock``
while it runs (``flock``; the kernel lets go when the process ends, however it ends).

Two daemons on one store would each lease and send the same outbox records and poll the same
serial port; and ``nbedge doctor`` asks the lock whether the gateway runs, so that it never opens
a bus the gateway holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from nbedge.errors import NbedgeError

LOCK_FILE = "gateway.lock"


class AlreadyRunning(NbedgeError):
    """Another gateway holds the state folder's lock."""

    def __init__(self, path: Path, pid: str) -> None:
        self.path = path
        super().__init__(
            f"another gateway (pid {pid or 'unknown'}) runs on {path.parent}: it holds {path}"
        )


@contextlib.contextmanager
def run_lock(state_dir: Path) -> Iterator[None]:
    """Hold the state folder's lock for the block; ``AlreadyRunning`` if another holds it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(path, _read(fd)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # lets go of the lock


def running_pid(state_dir: Path) -> int | None:
    """The pid of the gateway that holds the state folder's lock, or None when none runs (the
    lock is free, or was never taken). Needs only read access to the lock file."""
    try:
        fd = os.open(state_dir / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = _read(fd)
            return int(text) if text.isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return ""

"""The systemd notify protocol: readiness, watchdog keep-alives and stopping.

A datagram to ``$NOTIFY_SOCKET`` (an abstract socket when it starts with ``@``). Outside systemd the
variable is unset and every call does nothing.
"""

from __future__ import annotations

import asyncio
import os
import socket


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``READY=1``) to systemd; False when not run by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto(state.encode(), address)
        except OSError:
            return False
    return True


def watchdog_interval_s() -> float | None:
    """Half the watchdog period systemd asked for (``WATCHDOG_USEC``), or None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return None
    return int(usec) / 2e6


async def keep_watchdog_fed(interval_s: float) -> None:
    """Send ``WATCHDOG=1`` from the event loop: a loop that hangs stops feeding it."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval_s)

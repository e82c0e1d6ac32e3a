"""The typed values that field-bus adapters yield."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reading:
    """One decoded value of one point of one device, stamped when it was read.

    ``wall_time`` is UTC seconds since the epoch as the gateway's clock saw it (which may be wrong
    before the first clock synchronisation); ``monotonic_ns`` comes from ``time.monotonic_ns()`` and
    orders readings within one boot whatever the wall clock does.
    """

    device: str
    point: str
    value: float
    unit: str
    wall_time: float
    monotonic_ns: int

"""The typed events that door and gate adapters yield."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

AccessEventKind = Literal["granted", "denied", "forced_open", "held_open", "opened", "closed"]
"""What happened at a door or gate: a credential granted or denied, the door forced or held
open, opened or closed."""


@dataclass(frozen=True, slots=True)
class AccessEvent:
    """One event of one door or gate, stamped when it happened.

    ``credential_ref`` names the credential pseudonymously (e.g. a keyed hash of the card or tag
    id made by the adapter), never the raw card number; None when no credential was presented.
    ``wall_time`` is UTC seconds since the epoch as the gateway's clock saw it; ``monotonic_ns``
    comes from ``time.monotonic_ns()``, as for a ``Reading``. ``detail`` is optional free text
    from the controller (at most 200 characters on the wire).
    """

    device: str
    event: AccessEventKind
    credential_ref: str | None
    wall_time: float
    monotonic_ns: int
    detail: str | None = None

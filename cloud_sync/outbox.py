"""What the sync client needs from a gateway's outbox.

The gateway's store implements this protocol; the sync client knows nothing of SQLite. Delivery is
at least once: a claimed record that is not acknowledged before its lease ends is claimed again, and
the central API de-duplicates on ``record_id``. A record the central API refuses is *set aside*:
kept, never claimed again under the same terms, and sendable again once the terms change (either
side upgraded).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

RefusalReason = Literal["unknown_kind", "invalid", "too_large", "undecodable"]


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """One record waiting to be synced: its id, kind and its wire JSON (a ``schemas.Record``);
    ``urgent`` for a critical alert."""

    record_id: str
    kind: str
    payload: str
    urgent: bool = False


@dataclass(frozen=True, slots=True)
class SetAside:
    """A record the central API refused, and why."""

    record_id: str
    reason: RefusalReason
    detail: str


class Outbox(Protocol):
    async def claim(
        self, max_records: int, lease_s: float, kinds: Collection[str] | None = None
    ) -> list[OutboxRecord]:
        """Lease up to ``max_records`` records, highest priority (alerts) and oldest first, of
        ``kinds`` only (None: any), none of them set aside."""
        ...

    async def ack(self, record_ids: Sequence[str]) -> None:
        """Forget records the central API has acknowledged."""
        ...

    async def release(self, record_ids: Sequence[str]) -> None:
        """End the lease of records that could not be sent, so they are claimed again at once."""
        ...

    async def set_aside(self, records: Sequence[SetAside], terms: str) -> int:
        """Keep refused records out of every claim while the wire ``terms`` (a fingerprint of
        both sides' versions) stay the same; returns how many records are set aside now."""
        ...

    async def resend_set_aside(self, terms: str) -> int:
        """Make records set aside under other terms than ``terms`` claimable again; returns how
        many."""
        ...

    async def set_aside_count(self) -> int:
        """How many records are set aside now."""
        ...

    async def urgent_waiting(self) -> bool:
        """Whether a critical alert waits to be sent (not set aside)."""
        ...

"""What the sync client needs from a gateway's outbox.

The gateway's store implements this protocol; the sync client knows nothing of SQLite. Delivery is
at least once: a claimed record that is not acknowledged before its lease ends is claimed again, and
the central API de-duplicates on ``record_id``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """One record waiting to be synced: its id, kind and its wire JSON (a ``schemas.Record``)."""

    record_id: str
    kind: str
    payload: str


class Outbox(Protocol):
    async def claim(self, max_records: int, lease_s: float) -> list[OutboxRecord]:
        """Lease up to ``max_records`` records, highest priority (alerts) and oldest first."""
        ...

    async def ack(self, record_ids: Sequence[str]) -> None:
        """Forget records the central API has acknowledged."""
        ...

    async def release(self, record_ids: Sequence[str]) -> None:
        """End the lease of records that could not be sent, so they are claimed again at once."""
        ...

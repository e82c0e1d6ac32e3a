"""The sync client: drains a gateway's outbox to the central API, at least once.

One loop (``SyncClient.run``) claims a batch from the ``Outbox``, posts it gzip-compressed to
``POST /v1/ingest``, acknowledges it on 2xx and releases it otherwise. The central API
de-duplicates on ``record_id``, so a batch whose answer was lost is simply sent again.

Failures are grouped as ``nbedge.errors`` says: ``UplinkUnavailable`` (no connection, timeout,
408, 429, 5xx; carries ``Retry-After``) and ``UplinkRejected`` (any other 4xx). ``run`` meets
both with jittered exponential backoff, honours ``Retry-After``, and logs when the uplink goes
down or comes back up, not at every attempt.

Usage::

    async with SyncClient(outbox, base_url=..., token=..., gateway_id=..., site_id=...) as sync:
        await sync.run()  # until cancelled; sync.status() at any time
"""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import json
import logging
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from types import TracebackType
from typing import Self

import httpx

import nbedge
from cloud_sync.outbox import Outbox, OutboxRecord
from cloud_sync.schemas import MAX_RECORDS_PER_BATCH, SCHEMA_VERSION
from nbedge.errors import UplinkRejected, UplinkUnavailable

__all__ = ["Sleep", "SyncClient", "SyncStatus", "UplinkState"]

log = logging.getLogger(__name__)

INGEST_PATH = "/v1/ingest"
BACKOFF_INITIAL_S = 1.0
RETRY_AFTER_CAP_S = 3600.0
"""A ``Retry-After`` longer than this is taken as this: a typo on the server must not stall us."""
GZIP_LEVEL = 6
_RETRYABLE_4XX = frozenset({408, 425, 429})

Sleep = Callable[[float], Awaitable[None]]


class UplinkState(StrEnum):
    """What the last attempt to deliver a batch showed."""

    UNKNOWN = "unknown"  # nothing sent yet
    UP = "up"  # the last batch was acknowledged
    DOWN = "down"  # unreachable or failing temporarily: retrying with backoff
    REJECTED = "rejected"  # the central API refuses our batches: a person must look


@dataclass(frozen=True, slots=True)
class SyncStatus:
    """A snapshot of the sync client, for ``nbedge doctor``, the local page and metrics."""

    state: UplinkState
    records_sent: int
    batches_sent: int
    failures: int
    last_error: str | None
    last_success: datetime | None
    """Wall time (UTC) of the last acknowledged batch."""


class SyncClient:
    """Drains ``outbox`` to the central API at ``base_url`` as gateway ``gateway_id``.

    ``transport`` replaces httpx's network transport (tests inject faults with it); ``sleep``
    replaces ``asyncio.sleep`` for every wait of ``run``. Use one ``sync_once`` or ``run`` at a
    time per client.
    """

    def __init__(
        self,
        outbox: Outbox,
        *,
        base_url: str,
        token: str,
        gateway_id: str,
        site_id: str,
        batch_max_records: int = 500,
        lease_s: float = 30,
        interval_s: float = 2.0,
        timeout_s: float = 10.0,
        backoff_max_s: float = 300.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not 1 <= batch_max_records <= MAX_RECORDS_PER_BATCH:
            raise ValueError(f"batch_max_records must be within 1..{MAX_RECORDS_PER_BATCH}")
        if min(lease_s, interval_s, timeout_s, backoff_max_s) <= 0:
            raise ValueError("lease_s, interval_s, timeout_s and backoff_max_s must be positive")
        self._outbox = outbox
        self._base_url = base_url
        self._token = token
        self._batch_head = _batch_head(gateway_id, site_id)
        self._batch_max_records = batch_max_records
        self._lease_s = lease_s
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._backoff_max_s = backoff_max_s
        self._transport = transport
        self._sleep = sleep
        self._random = random.Random()
        self._http: httpx.AsyncClient | None = None
        self._status = SyncStatus(UplinkState.UNKNOWN, 0, 0, 0, None, None)

    async def __aenter__(self) -> Self:
        if self._http is not None:
            raise RuntimeError("this SyncClient is already open")
        self._http = self._new_http_client()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    def status(self) -> SyncStatus:
        """The current snapshot (immutable)."""
        return self._status

    async def run(self) -> None:
        """Sync until cancelled: drain while there is work, wait ``interval_s`` when idle."""
        async with self._connection():
            failures_in_a_row = 0
            while True:
                try:
                    sent = await self.sync_once()
                except (UplinkUnavailable, UplinkRejected) as exc:
                    failures_in_a_row += 1
                    delay = self._backoff_s(failures_in_a_row)
                    if isinstance(exc, UplinkUnavailable) and exc.retry_after_s is not None:
                        delay = max(delay, exc.retry_after_s)
                    await self._sleep(delay)
                    continue
                failures_in_a_row = 0
                if sent < self._batch_max_records:  # a short batch: the outbox is drained
                    await self._sleep(self._interval_s)

    async def sync_once(self) -> int:
        """Deliver one batch; return how many records the central API acknowledged (0: none due).

        Raises ``UplinkUnavailable`` or ``UplinkRejected`` after releasing the batch.
        """
        records = await self._outbox.claim(self._batch_max_records, self._lease_s)
        if not records:
            return 0
        record_ids = [record.record_id for record in records]
        try:
            body = self._encode(records)
            async with self._connection() as http:
                await self._post(http, body)
        except BaseException as exc:
            if isinstance(exc, UplinkUnavailable | UplinkRejected):
                self._failed(exc)
            await self._release(record_ids)
            raise
        await self._outbox.ack(record_ids)
        self._succeeded(len(records))
        return len(records)

    def _new_http_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self._base_url,
            transport=self._transport,
            timeout=httpx.Timeout(self._timeout_s),
            headers={
                "Authorization": f"Bearer {self._token}",
                "User-Agent": f"nbedge-sync/{nbedge.__version__}",
            },
        )

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[httpx.AsyncClient]:
        """The open HTTP client, or one for the duration of the block if none is open."""
        if self._http is not None:
            yield self._http
            return
        http = self._http = self._new_http_client()
        try:
            yield http
        finally:
            self._http = None
            await http.aclose()

    def _encode(self, records: Sequence[OutboxRecord]) -> bytes:
        """The gzip-compressed ``IngestBatch``, joined from the stored payload texts.

        The payloads were validated when the gateway made them; the central API validates again.
        Compressing a few hundred kB takes a few ms, acceptable on the event loop.
        """
        text = self._batch_head + ",".join(record.payload for record in records) + "]}"
        return gzip.compress(text.encode(), compresslevel=GZIP_LEVEL)

    async def _post(self, http: httpx.AsyncClient, body: bytes) -> None:
        """Post one batch; return on 2xx, raise ``UplinkUnavailable``/``UplinkRejected`` else."""
        try:
            async with asyncio.timeout(self._timeout_s):
                response = await http.post(
                    INGEST_PATH,
                    content=body,
                    headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
                )
        except TimeoutError as exc:
            raise UplinkUnavailable(f"no answer within {self._timeout_s:g} s") from exc
        except httpx.TransportError as exc:
            raise UplinkUnavailable(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
        status = response.status_code
        if response.is_success:
            return
        detail = _detail(response)
        if status >= 500 or status in _RETRYABLE_4XX:
            retry_after = _retry_after_s(response.headers.get("Retry-After"), datetime.now(UTC))
            raise UplinkUnavailable(f"central API answered {status}: {detail}", retry_after)
        raise UplinkRejected(status, detail)

    async def _release(self, record_ids: list[str]) -> None:
        try:
            await self._outbox.release(record_ids)
        except Exception:
            log.exception("could not release %d records; their lease will expire", len(record_ids))

    def _backoff_s(self, failures_in_a_row: int) -> float:
        """Exponential in the failures, capped at ``backoff_max_s``, jittered to 50-100 %."""
        ceiling = min(self._backoff_max_s, BACKOFF_INITIAL_S * 2 ** min(failures_in_a_row - 1, 30))
        return self._random.uniform(ceiling / 2, ceiling)

    def _succeeded(self, records: int) -> None:
        old = self._status
        if old.state is not UplinkState.UP:
            log.info("uplink up: the central API acknowledged %d records", records)
        self._status = SyncStatus(
            state=UplinkState.UP,
            records_sent=old.records_sent + records,
            batches_sent=old.batches_sent + 1,
            failures=old.failures,
            last_error=old.last_error,
            last_success=datetime.now(UTC),
        )

    def _failed(self, exc: UplinkUnavailable | UplinkRejected) -> None:
        old = self._status
        state = UplinkState.DOWN if isinstance(exc, UplinkUnavailable) else UplinkState.REJECTED
        if old.state is not state:
            if state is UplinkState.DOWN:
                log.warning("uplink down: %s; records stay buffered, retrying", exc)
            else:
                log.error("uplink rejected: %s; records stay buffered until fixed", exc)
        self._status = SyncStatus(
            state=state,
            records_sent=old.records_sent,
            batches_sent=old.batches_sent,
            failures=old.failures + 1,
            last_error=str(exc),
            last_success=old.last_success,
        )


def _batch_head(gateway_id: str, site_id: str) -> str:
    """The start of an ``IngestBatch`` JSON text, up to the opening bracket of ``records``."""
    head = json.dumps(
        {"schema_version": SCHEMA_VERSION, "gateway_id": gateway_id, "site_id": site_id},
        separators=(",", ":"),
    )
    return head[:-1] + ',"records":['


def _detail(response: httpx.Response) -> str:
    """The ``detail`` of a FastAPI error body, else the start of the body text."""
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text
    text = detail if isinstance(detail, str) else json.dumps(detail)
    return text[:500] or response.reason_phrase


def _retry_after_s(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), if usable."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_S)

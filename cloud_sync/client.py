"""The sync client: drains a gateway's outbox to the central API, at least once.

One loop (``SyncClient.run``) claims a batch from the ``Outbox`` in the store's priority order
(alerts, then evictions, then summaries; oldest first), posts it gzip-compressed to
``POST /v1/ingest``, acknowledges it when the central API's answer accounts for every record
and releases it otherwise. The central API de-duplicates on ``record_id``, so a batch whose answer
was lost or garbled is simply sent again.

Before it sends, the client asks the central API which wire versions and record kinds it takes
(``GET /v1/wire``; none there: a central API of version 1), sends the newest version both speak
and claims only those kinds. A record the central API refuses (named in a version 2 answer, or
found by halving a batch that a version 1 central API refused whole) is set aside in the outbox,
counted and reported (``on_set_aside``), and the rest flow; set-aside records are sent again
once the terms change, that is once either side is upgraded.

A batch holds at most ``batch_max_records`` records and ``batch_max_bytes`` bytes of JSON before
compression; the records that do not fit go back to the outbox for the next batch. A record larger
than ``batch_max_bytes`` on its own is still sent, alone.

A backlog is drained at no more than ``drain_max_records_per_s`` (a token bucket holding one
second's worth), and after a long outage (or at start, when the outbox already holds a backlog)
the drain starts after a random delay of up to ``drain_jitter_s``: a fleet coming back online
together reaches the central API spread out, not all at once.

Failures are grouped as ``nbedge.errors`` says: ``UplinkUnavailable`` (no connection, timeout,
408, 429, 5xx; carries ``Retry-After``) and ``UplinkRejected`` (401, 403 and other refusals of
the gateway itself, not of a record). ``run`` meets both with jittered exponential backoff, at
most ``URGENT_RETRY_S`` while a critical alert waits, honours ``Retry-After``, and logs when the
uplink goes down or comes back up, not at every attempt.

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
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

import nbedge
from cloud_sync.outbox import Outbox, OutboxRecord, RefusalReason, SetAside
from cloud_sync.schemas import (
    MAX_RECORDS_PER_BATCH,
    RECORD_KINDS,
    SCHEMA_VERSIONS,
    AlertCommand,
    GatewayIdentityAnswer,
    IngestResult,
    PendingCommands,
    WireTerms,
)
from nbedge.errors import StoreFull, UplinkRejected, UplinkUnavailable

__all__ = ["Clock", "Sleep", "SyncClient", "SyncStatus", "UplinkState", "WireAgreement"]

log = logging.getLogger(__name__)


def trust(ca_file: Path | None = None) -> ssl.SSLContext:
    """What the gateway trusts in the central API's certificate: the system's CAs, or only the
    CAs of ``ca_file`` (PEM; a private CA). Host names are checked; TLS 1.2 at least."""
    context = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def transport_failure(exc: httpx.TransportError) -> UplinkUnavailable:
    """A transport error in words: a certificate the gateway does not trust says why and what
    to do, other errors as httpx gives them."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, ssl.SSLCertVerificationError):
        reason = cause.verify_message or str(cause)
        return UplinkUnavailable(
            f"the central API's certificate is not trusted: {reason}; check the address, the"
            " certificate's dates and host names, or set uplink.ca_file to its CA"
        )
    return UplinkUnavailable(f"{type(exc).__name__}: {exc}".rstrip(": "))


INGEST_PATH = "/v1/ingest"
WIRE_PATH = "/v1/wire"
COMMANDS_PATH = "/v1/gateway/commands"
WHOAMI_PATH = "/v1/gateways/me"
TERMS_RECHECK_S = 3600.0
"""The central API's terms are asked again this often, and after every failure to reach it."""
URGENT_RETRY_S = 15.0
"""While a critical alert waits, the wait after a failure is at most this (or ``Retry-After``)."""
BACKOFF_INITIAL_S = 1.0
RETRY_AFTER_CAP_S = 3600.0
"""A ``Retry-After`` longer than this is taken as this: a typo on the server must not stall us."""
GZIP_LEVEL = 6
LONG_OUTAGE_S = 60.0
"""Failing for this long makes an outage long: the drain after it starts after a random delay."""
DRAIN_BURST_S = 1.0
"""The drain's token bucket holds this many seconds' worth of records."""
_RETRYABLE_4XX = frozenset({408, 425, 429})
_PER_RECORD: dict[int, dict[int, RefusalReason]] = {
    1: {400: "undecodable", 413: "too_large", 422: "invalid"},
    2: {400: "undecodable", 413: "too_large"},
}
"""By wire version, the refusals of a whole batch that may be one record's doing: the batch is
halved until that record is found (version 2 names invalid records itself; a 422 there is the
envelope's, the gateway's own)."""

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


class UplinkState(StrEnum):
    """What the last attempt to deliver a batch showed."""

    UNKNOWN = "unknown"  # nothing sent yet
    UP = "up"  # the last batch was acknowledged
    DOWN = "down"  # unreachable or failing temporarily: retrying with backoff
    REJECTED = "rejected"  # the central API refuses our batches: a person must look


@dataclass(frozen=True, slots=True)
class WireAgreement:
    """What this gateway and its central API agreed on: the version of the batches, the record
    kinds sent, and a fingerprint of both sides' versions (what set-aside records remember)."""

    schema_version: int
    kinds: tuple[str, ...]
    central_version: str | None
    """The central API's release, or None for one of wire version 1 (no ``/v1/wire``)."""
    fingerprint: str


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
    wire: WireAgreement | None = None
    records_refused: int = 0
    """Records the central API refused since start (each set aside in the outbox)."""
    set_aside: int = 0
    """Records set aside in the outbox now, as last counted."""
    last_refusal: str | None = None
    commands_received: int = 0
    """Platform commands pulled since start (each applied once, answered by the outbox)."""


class SyncClient:
    """Drains ``outbox`` to the central API at ``base_url`` as gateway ``gateway_id``.

    ``drain_max_records_per_s=None`` drains as fast as the central API answers;
    ``drain_jitter_s=0`` starts a drain at once. ``transport`` replaces httpx's network transport
    (tests inject faults with it); ``verify`` is what the client trusts (``trust``: the system's
    CAs by default); ``sleep`` replaces ``asyncio.sleep`` for every wait of ``run``
    and ``clock`` (seconds, monotonic) the clock of the rate limit and of outage lengths;
    ``on_commands`` is given the platform's commands to this gateway, pulled at most every
    ``interval_s``; ``rng`` makes the jitter reproducible; ``on_set_aside(count,
    last_refusal)`` is called with the number of records set aside whenever it may have changed
    (the gateway raises an alert while it is not 0). Use one ``sync_once`` or ``run`` at a time
    per client.
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
        batch_max_bytes: int = 1_000_000,
        drain_max_records_per_s: float | None = 5000.0,
        drain_jitter_s: float = 20.0,
        lease_s: float = 30,
        interval_s: float = 2.0,
        timeout_s: float = 10.0,
        backoff_max_s: float = 300.0,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: ssl.SSLContext | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
        on_set_aside: Callable[[int, str | None], None] | None = None,
        on_commands: Callable[[Sequence[AlertCommand]], Awaitable[None]] | None = None,
    ) -> None:
        if not 1 <= batch_max_records <= MAX_RECORDS_PER_BATCH:
            raise ValueError(f"batch_max_records must be within 1..{MAX_RECORDS_PER_BATCH}")
        if min(batch_max_bytes, lease_s, interval_s, timeout_s, backoff_max_s) <= 0:
            raise ValueError(
                "batch_max_bytes, lease_s, interval_s, timeout_s and backoff_max_s must be positive"
            )
        if drain_max_records_per_s is not None and drain_max_records_per_s <= 0:
            raise ValueError("drain_max_records_per_s must be positive (None: no limit)")
        if drain_jitter_s < 0:
            raise ValueError("drain_jitter_s must not be negative")
        self._outbox = outbox
        self._base_url = base_url
        self._token = token
        self._gateway_id = gateway_id
        self._site_id = site_id
        self._batch_max_records = batch_max_records
        self._batch_max_bytes = batch_max_bytes
        self._drain_jitter_s = drain_jitter_s
        self._lease_s = lease_s
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._backoff_max_s = backoff_max_s
        self._transport = transport
        self._verify = trust() if verify is None else verify
        self._sleep = sleep
        self._clock = clock
        self._random = rng or random.Random()
        self._bucket = (
            None
            if drain_max_records_per_s is None
            else _TokenBucket(drain_max_records_per_s, DRAIN_BURST_S, clock, sleep)
        )
        self._http: httpx.AsyncClient | None = None
        self._status = SyncStatus(UplinkState.UNKNOWN, 0, 0, 0, None, None)
        self._on_set_aside = on_set_aside
        self._on_commands = on_commands
        self._next_pull = 0.0
        self._wire: WireAgreement | None = None
        self._wire_until = 0.0
        self._fingerprint_resent: str | None = None

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
        """Sync until cancelled: drain while there is work, wait ``interval_s`` when idle.

        Failures back off (jittered, exponential, at least ``Retry-After``). A backlog is drained
        at the rate limit; after a long outage, and at start, its drain begins after a random
        delay of up to ``drain_jitter_s`` (the first batch has gone by then: it is the probe).
        """
        async with self._connection():
            failures_in_a_row = 0
            down_since: float | None = None
            start_delay_due = True  # at start, the outage before it is of unknown length
            while True:
                try:
                    sent, backlog = await self._deliver()
                    await self._pull_commands()
                except StoreFull:  # the store logs it; records not acknowledged go again
                    failures_in_a_row += 1
                    await self._sleep(self._backoff_s(failures_in_a_row))
                    continue
                except (UplinkUnavailable, UplinkRejected) as exc:
                    failures_in_a_row += 1
                    now = self._clock()
                    if down_since is None:
                        down_since = now
                    if now - down_since >= LONG_OUTAGE_S:
                        start_delay_due = True
                    delay = self._backoff_s(failures_in_a_row)
                    if delay > URGENT_RETRY_S and await self._outbox.urgent_waiting():
                        delay = self._random.uniform(URGENT_RETRY_S / 2, URGENT_RETRY_S)
                    if isinstance(exc, UplinkUnavailable) and exc.retry_after_s is not None:
                        delay = max(delay, exc.retry_after_s)
                    await self._sleep(delay)
                    continue
                failures_in_a_row = 0
                down_since = None
                if not backlog:  # the outbox is drained
                    start_delay_due = False
                    await self._sleep(self._interval_s)
                    continue
                if start_delay_due:
                    start_delay_due = False
                    await self._delay_drain_start()
                if self._bucket is not None:
                    await self._bucket.take(sent)

    async def _pull_commands(self) -> None:
        """Ask for the platform's commands to this gateway (at most every ``interval_s``, and
        only from a central API that takes command results) and hand them to
        ``on_commands``, which applies each once and answers through the outbox."""
        wire = self._wire
        if self._on_commands is None or wire is None or "command_result" not in wire.kinds:
            return
        now = self._clock()
        if now < self._next_pull:
            return
        self._next_pull = now + self._interval_s
        async with self._connection() as http:
            try:
                async with asyncio.timeout(self._timeout_s):
                    response = await http.get(COMMANDS_PATH)
            except TimeoutError as exc:
                raise UplinkUnavailable(f"no answer within {self._timeout_s:g} s") from exc
            except httpx.TransportError as exc:
                raise transport_failure(exc) from exc
        if not response.is_success:
            raise refusal(response)
        try:
            pending = PendingCommands.model_validate_json(response.content)
        except ValueError as exc:
            raise UplinkUnavailable(
                f"central API answered {response.status_code} to {COMMANDS_PATH} with a body"
                " that is not its commands"
            ) from exc
        if pending.commands:
            self._status = replace(
                self._status,
                commands_received=self._status.commands_received + len(pending.commands),
            )
            await self._on_commands(pending.commands)

    async def sync_once(self) -> int:
        """Deliver one batch; return how many records the central API acknowledged (0: none due).

        Raises ``UplinkUnavailable`` or ``UplinkRejected`` after releasing the batch. Not rate
        limited: the limit belongs to ``run``.
        """
        sent, _ = await self._deliver()
        return sent

    async def _deliver(self) -> tuple[int, bool]:
        """Deliver one batch: (records acknowledged, whether more records are waiting)."""
        claimed: list[OutboxRecord] = []
        try:
            async with self._connection() as http:
                wire = await self._agree(http)
                claimed = await self._outbox.claim(
                    self._batch_max_records, self._lease_s, wire.kinds
                )
                if not claimed:
                    return 0, False
                count = self._fitting(claimed)
                if count < len(claimed):  # over the byte bound: the rest waits for the next batch
                    await self._outbox.release([record.record_id for record in claimed[count:]])
                acked, refused = await self._send(http, claimed[:count], wire)
        except BaseException as exc:
            if isinstance(exc, UplinkUnavailable | UplinkRejected):
                self._failed(exc)
                if isinstance(exc, UplinkUnavailable):
                    self._wire = None  # ask again: the central API may have been upgraded
            if claimed:
                await self._release([record.record_id for record in claimed])
            raise
        await self._outbox.ack(acked)
        if refused:
            await self._set_aside(refused, wire)
        self._succeeded(len(acked))
        return len(acked), count < len(claimed) or len(claimed) == self._batch_max_records

    async def _send(
        self, http: httpx.AsyncClient, records: Sequence[OutboxRecord], wire: WireAgreement
    ) -> tuple[list[str], list[SetAside]]:
        """Post ``records`` as one batch: the ids the central API accounted for, and the records
        it refused. A refusal of the whole batch that one record may cause is narrowed down by
        halving the batch until that record stands alone."""
        try:
            result = await self._post(http, self._body(records, wire), len(records))
        except UplinkRejected as exc:
            reason = _PER_RECORD[wire.schema_version].get(exc.status)
            if reason is None:
                raise
            if len(records) == 1:
                return [], [SetAside(records[0].record_id, reason, exc.detail[:500])]
            half = len(records) // 2
            first_ok, first_refused = await self._send(http, records[:half], wire)
            rest_ok, rest_refused = await self._send(http, records[half:], wire)
            return first_ok + rest_ok, first_refused + rest_refused
        refused = {refusal.index: refusal for refusal in result.refused}
        return (
            [record.record_id for i, record in enumerate(records) if i not in refused],
            [
                SetAside(records[i].record_id, refusal.reason, refusal.detail)
                for i, refusal in sorted(refused.items())
            ],
        )

    async def _set_aside(self, refused: Sequence[SetAside], wire: WireAgreement) -> None:
        count = await self._outbox.set_aside(refused, wire.fingerprint)
        last = f"{refused[-1].record_id}: {refused[-1].reason}: {refused[-1].detail}"
        log.error(
            "the central API refused %d records; set aside, the rest flows",
            len(refused),
            extra={"set_aside": count, "last": last[:300]},
        )
        old = self._status
        self._status = replace(
            old,
            records_refused=old.records_refused + len(refused),
            set_aside=count,
            last_refusal=last[:500],
        )
        if self._on_set_aside is not None:
            self._on_set_aside(count, self._status.last_refusal)

    async def _agree(self, http: httpx.AsyncClient) -> WireAgreement:
        """The terms agreed with the central API, asked again after ``TERMS_RECHECK_S``. Records
        set aside under other terms (either side upgraded since) are sent again."""
        if self._wire is not None and self._clock() < self._wire_until:
            return self._wire
        wire = await self._ask_terms(http)
        if wire != self._status.wire:  # logged when it changes, not at every reconnection
            log.info(
                "wire version %d with the central API %s",
                wire.schema_version,
                wire.central_version or "of version 1",
                extra={"kinds": list(wire.kinds)},
            )
        self._wire, self._wire_until = wire, self._clock() + TERMS_RECHECK_S
        self._status = replace(self._status, wire=wire)
        if wire.fingerprint != self._fingerprint_resent:
            again = await self._outbox.resend_set_aside(wire.fingerprint)
            self._fingerprint_resent = wire.fingerprint
            if again:
                log.info("sending again %d records set aside under earlier terms", again)
            # A level, told at every new agreement (at start too): what an alert reloaded after
            # a restart needs to clear when nothing is set aside any more.
            count = await self._outbox.set_aside_count()
            self._status = replace(self._status, set_aside=count)
            if self._on_set_aside is not None:
                self._on_set_aside(count, self._status.last_refusal if count else None)
        return wire

    async def _ask_terms(self, http: httpx.AsyncClient) -> WireAgreement:
        try:
            async with asyncio.timeout(self._timeout_s):
                response = await http.get(WIRE_PATH)
        except TimeoutError as exc:
            raise UplinkUnavailable(f"no answer within {self._timeout_s:g} s") from exc
        except httpx.TransportError as exc:
            raise transport_failure(exc) from exc
        if response.status_code in (404, 405):  # a central API of wire version 1
            return _agreement(1, RECORD_KINDS, None)
        if not response.is_success:
            raise refusal(response)
        try:
            terms = WireTerms.model_validate_json(response.content)
        except ValueError as exc:
            raise UplinkUnavailable(
                f"central API answered {response.status_code} to {WIRE_PATH} with a body that"
                " is not its terms"
            ) from exc
        common = set(SCHEMA_VERSIONS) & set(terms.schema_versions)
        if not common:
            raise UplinkRejected(
                409,
                f"no wire version in common: the central API speaks {terms.schema_versions},"
                f" this gateway {list(SCHEMA_VERSIONS)}; upgrade one of them",
            )
        kinds = tuple(kind for kind in RECORD_KINDS if kind in set(terms.record_kinds))
        return _agreement(max(common), kinds, terms.api_version)

    async def _delay_drain_start(self) -> None:
        if self._drain_jitter_s <= 0:
            return
        delay = self._random.uniform(0, self._drain_jitter_s)
        log.info("a backlog is waiting; its drain starts in %.1f s", delay)
        await self._sleep(delay)

    def _new_http_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self._base_url,
            transport=self._transport,
            verify=self._verify,
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

    def _fitting(self, records: Sequence[OutboxRecord]) -> int:
        """How many of ``records``, in claim order, fit in one batch of ``batch_max_bytes`` of
        JSON; the first goes even if it alone is larger."""
        size = len(_batch_head(2, self._gateway_id, self._site_id)) + len(b"]}")
        count = 0
        for record in records:
            grown = size + len(record.payload.encode()) + (1 if count else 0)
            if count and grown > self._batch_max_bytes:
                break
            count += 1
            size = grown
        return count

    def _body(self, records: Sequence[OutboxRecord], wire: WireAgreement) -> bytes:
        """An ``IngestBatch`` of ``records``, gzip-compressed. The batch is joined from the stored
        payload texts: validated when the gateway made them, and by the central API again.
        Compressing a few hundred kB takes a few ms, acceptable on the event loop."""
        head = _batch_head(wire.schema_version, self._gateway_id, self._site_id)
        text = head + b",".join(record.payload.encode() for record in records) + b"]}"
        return gzip.compress(text, compresslevel=GZIP_LEVEL)

    async def _post(self, http: httpx.AsyncClient, body: bytes, count: int) -> IngestResult:
        """Post one batch of ``count`` records; return the answer once it accounts for all.

        A 2xx whose body is not an ``IngestResult`` counting ``count`` records (a proxy's page,
        a truncated answer) is not an acknowledgement: ``UplinkUnavailable``, and sent again.
        Raises ``UplinkUnavailable`` or ``UplinkRejected`` on any other answer.
        """
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
            raise transport_failure(exc) from exc
        status = response.status_code
        if response.is_success:
            try:
                result = IngestResult.model_validate_json(response.content)
            except ValueError as exc:
                raise UplinkUnavailable(
                    f"central API answered {status} with a body that is not an IngestResult"
                ) from exc
            indexes = {refusal.index for refusal in result.refused}
            accounted = result.accepted + result.duplicates + len(result.refused)
            if (
                accounted != count
                or len(indexes) != len(result.refused)
                or max(indexes, default=0) >= count
            ):
                raise UplinkUnavailable(f"central API accounted for {accounted} of {count} records")
            return result
        raise refusal(response)

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
        self._status = replace(
            old,
            state=UplinkState.UP,
            records_sent=old.records_sent + records,
            batches_sent=old.batches_sent + 1,
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
        self._status = replace(old, state=state, failures=old.failures + 1, last_error=str(exc))


class _TokenBucket:
    """At most ``rate`` records a second on average, in bursts of up to ``burst_s`` seconds' worth.

    ``take`` is paid after the fact: a batch is sent, then its records are taken, going into
    debt if need be, and the debt is waited off before the next batch is claimed, so no lease
    is held while waiting. Records sent by time t never exceed ``rate * (t + burst_s)`` plus
    the last batch.
    """

    def __init__(self, rate: float, burst_s: float, clock: Clock, sleep: Sleep) -> None:
        self._rate = rate
        self._capacity = rate * burst_s
        self._clock = clock
        self._sleep = sleep
        self._tokens = self._capacity
        self._last = clock()

    async def take(self, count: int) -> None:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
        self._last = now
        self._tokens -= count
        if self._tokens < 0:
            await self._sleep(-self._tokens / self._rate)


def _batch_head(version: int, gateway_id: str, site_id: str) -> bytes:
    """The start of an ``IngestBatch`` JSON text, up to the opening bracket of ``records``."""
    head = json.dumps(
        {"schema_version": version, "gateway_id": gateway_id, "site_id": site_id},
        separators=(",", ":"),
    )
    return (head[:-1] + ',"records":[').encode()


def _agreement(version: int, kinds: Sequence[str], central: str | None) -> WireAgreement:
    fingerprint = (
        f"central {central or 'wire-v1'} wire v{version} kinds {','.join(kinds)};"
        f" gateway {nbedge.__version__}"
    )
    return WireAgreement(version, tuple(kinds), central, fingerprint)


async def whoami(
    base_url: str,
    token: str,
    *,
    verify: ssl.SSLContext | None = None,
    timeout_s: float = 10.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> GatewayIdentityAnswer:
    """Whom the central API at ``base_url`` takes ``token`` for (``GET /v1/gateways/me``, an
    authenticated no-op). ``UplinkUnavailable`` when it cannot be reached or its certificate is
    not trusted, ``UplinkRejected`` when it refuses the credential."""
    try:
        async with (
            asyncio.timeout(timeout_s),
            httpx.AsyncClient(
                base_url=base_url,
                transport=transport,
                verify=trust() if verify is None else verify,
                timeout=timeout_s,
                headers={
                    "Authorization": f"Bearer {token}",
                    "User-Agent": f"nbedge-sync/{nbedge.__version__}",
                },
            ) as http,
        ):
            response = await http.get(WHOAMI_PATH)
    except TimeoutError as exc:
        raise UplinkUnavailable(f"no answer within {timeout_s:g} s") from exc
    except httpx.TransportError as exc:
        raise transport_failure(exc) from exc
    if response.status_code == 404:
        raise UplinkUnavailable("the central API is older: it does not answer /v1/gateways/me")
    if not response.is_success:
        raise refusal(response)
    try:
        return GatewayIdentityAnswer.model_validate_json(response.content)
    except ValueError as exc:
        raise UplinkUnavailable(f"unexpected answer to {WHOAMI_PATH}: {exc}") from exc


def refusal(response: httpx.Response) -> UplinkUnavailable | UplinkRejected:
    """The error for a central API answer that is not a success: ``UplinkUnavailable`` (with
    its ``Retry-After``) for 5xx, 408, 425 and 429, which are worth retrying; else
    ``UplinkRejected``."""
    status = response.status_code
    detail = _detail(response)
    if status >= 500 or status in _RETRYABLE_4XX:
        retry_after = _retry_after_s(response.headers.get("Retry-After"), datetime.now(UTC))
        return UplinkUnavailable(f"central API answered {status}: {detail}", retry_after)
    return UplinkRejected(status, detail)


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

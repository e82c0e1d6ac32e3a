"""The sync client against the real central API; faults injected in the HTTP transport."""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import itertools
import json
import logging
import random
import time
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from cloud_sync.client import URGENT_RETRY_S, SyncClient, UplinkState, WireAgreement
from cloud_sync.outbox import OutboxRecord, SetAside
from cloud_sync.schemas import RECORD_KINDS, AlertBody, AlertRecord, SummaryRecord, WireTerms
from nbedge.errors import UplinkRejected, UplinkUnavailable
from tests.cloud_sync.conftest import (
    Central,
    access_record,
    alert_record,
    central_api,
    stored_count,
    summary_record,
)

PRIORITY = {"alert": 0, "eviction": 1, "access": 2, "summary": 3}  # as the gateway's store claims


class MemoryOutbox:
    """The ``Outbox`` protocol over a dict: leases, alerts then evictions first, oldest first."""

    def __init__(self, records: Sequence[OutboxRecord]) -> None:
        self.pending = {record.record_id: record for record in records}
        self.leased_until: dict[str, float] = {}
        self.acked: list[str] = []
        self.aside: dict[str, tuple[SetAside, str]] = {}

    async def claim(
        self, max_records: int, lease_s: float, kinds: Collection[str] | None = None
    ) -> list[OutboxRecord]:
        now = time.monotonic()
        due = [
            r
            for r in self.pending.values()
            if self.leased_until.get(r.record_id, 0) <= now
            and r.record_id not in self.aside
            and (kinds is None or r.kind in kinds)
        ]
        due.sort(key=lambda record: PRIORITY[record.kind])  # stable: oldest first within kind
        claimed = due[:max_records]
        for record in claimed:
            self.leased_until[record.record_id] = now + lease_s
        return claimed

    async def ack(self, record_ids: Sequence[str]) -> None:
        for record_id in record_ids:
            del self.pending[record_id]
            self.leased_until.pop(record_id, None)
        self.acked += record_ids

    async def release(self, record_ids: Sequence[str]) -> None:
        for record_id in record_ids:
            self.leased_until.pop(record_id, None)

    async def set_aside(self, records: Sequence[SetAside], terms: str) -> int:
        for record in records:
            self.aside[record.record_id] = (record, terms)
            self.leased_until.pop(record.record_id, None)
        return len(self.aside)

    async def resend_set_aside(self, terms: str) -> int:
        again = [i for i, (_, held) in self.aside.items() if held != terms]
        for record_id in again:
            del self.aside[record_id]
        return len(again)

    async def set_aside_count(self) -> int:
        return len(self.aside)

    async def urgent_waiting(self) -> bool:
        return any(r.urgent for r in self.pending.values() if r.record_id not in self.aside)

    def leased(self) -> int:
        now = time.monotonic()
        return sum(1 for until in self.leased_until.values() if until > now)


def outbox_of(n_summaries: int, n_alerts: int = 0) -> MemoryOutbox:
    records: list[SummaryRecord | AlertRecord] = [summary_record(n) for n in range(n_summaries)]
    records += [alert_record(10_000 + n, f"a{n}") for n in range(n_alerts)]
    return MemoryOutbox([OutboxRecord(r.record_id, r.kind, r.model_dump_json()) for r in records])


class FaultyTransport(httpx.AsyncBaseTransport):
    """The real transport, with one planned fault per request until the plan runs out."""

    def __init__(
        self, plan: Sequence[str] = (), clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.plan = list(plan)
        self.requests = 0
        self.clock = clock
        self.sent: list[tuple[float, bytes]] = []
        """(clock, JSON body) of every request that reached the central API and was stored."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/wire":  # the terms: never faulted, not counted
            return await self.inner.handle_async_request(request)
        self.requests += 1
        fault = self.plan.pop(0) if self.plan else "none"
        match fault:
            case "none":
                response = await self.inner.handle_async_request(request)
                if response.status_code == 200:
                    self.sent.append((self.clock(), gzip.decompress(request.content)))
                return response
            case "lose-response":  # the server stored the batch; its answer never arrives
                response = await self.inner.handle_async_request(request)
                await response.aread()
                await response.aclose()
                raise httpx.ReadError("connection reset by peer", request=request)
            case "500":
                return httpx.Response(500, json={"detail": "boom"}, request=request)
            case "429":
                headers = {"Retry-After": "2"}
                return httpx.Response(429, headers=headers, json={"detail": "slow down"})
            case "429-7s":
                headers = {"Retry-After": "7"}
                return httpx.Response(429, headers=headers, json={"detail": "slow down"})
            case "503-in-2-min":  # Retry-After as an HTTP date
                when = datetime.now(UTC) + timedelta(seconds=120)
                headers = {"Retry-After": email.utils.format_datetime(when, usegmt=True)}
                return httpx.Response(503, headers=headers, text="maintenance")
            case "503-bad-retry-after":
                return httpx.Response(503, headers={"Retry-After": "soon"}, text="maintenance")
            case "garbage-200":  # a captive portal or broken proxy: 200, but not our answer
                return httpx.Response(200, text="<html>welcome</html>", request=request)
            case "short-count-200":  # the answer accounts for fewer records than were sent
                return httpx.Response(200, json={"accepted": 1, "duplicates": 0})
            case "timeout":
                raise httpx.ReadTimeout("timed out", request=request)
            case "refused":
                raise httpx.ConnectError("connection refused", request=request)
            case "hang":
                await asyncio.Event().wait()
        raise AssertionError(f"unknown fault {fault}")

    async def aclose(self) -> None:
        await self.inner.aclose()


class FakeTime:
    """A monotonic clock that only ``sleep`` moves; every delay is remembered."""

    def __init__(self) -> None:
        self.now = 0.0
        self.delays: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)
        self.now += delay
        await asyncio.sleep(0)


class Ceiling(random.Random):
    """Jitter at its ceiling, so that waits are known in advance."""

    def uniform(self, a: float, b: float) -> float:
        return b


class RecordingSleep:
    """Stands in for ``asyncio.sleep``: remembers each delay, waits only a moment."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0.002)


def sync_client(
    central: Central,
    outbox: MemoryOutbox,
    transport: httpx.AsyncBaseTransport | None = None,
    token: str | None = None,
    **options: Any,
) -> SyncClient:
    return SyncClient(
        outbox,
        base_url=central.base_url,
        token=central.gateway_token if token is None else token,
        gateway_id=central.gateway_id,
        site_id=central.site_id,
        transport=transport or FaultyTransport(),
        **{"drain_jitter_s": 0.0} | options,
    )


async def eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


async def test_sync_once_drains_everything_exactly_once(central: Central) -> None:
    outbox = outbox_of(1100, n_alerts=3)
    async with sync_client(central, outbox) as client:
        sent = [await client.sync_once() for _ in range(4)]
        assert await client.sync_once() == 0
    assert sent == [500, 500, 103, 0]
    assert outbox.pending == {}
    assert stored_count(central.engine) == 1103
    status = client.status()
    assert (status.state, status.records_sent, status.batches_sent) == (UplinkState.UP, 1103, 3)
    assert status.failures == 0
    assert status.last_success is not None


async def test_alerts_go_first(central: Central) -> None:
    outbox = outbox_of(10, n_alerts=2)
    async with sync_client(central, outbox, batch_max_records=2) as client:
        await client.sync_once()
    assert outbox.acked == ["gw-1:a:10000", "gw-1:a:10001"]


async def test_run_drains_then_idles_until_cancelled(central: Central) -> None:
    outbox = outbox_of(700)
    sleep = RecordingSleep()
    client = sync_client(central, outbox, interval_s=2.0, sleep=sleep)
    async with asyncio.TaskGroup() as group:
        task = group.create_task(client.run())
        await eventually(lambda: not outbox.pending and len(sleep.delays) >= 3)
        task.cancel()
    assert task.cancelled()
    assert stored_count(central.engine) == 700
    assert set(sleep.delays) == {2.0}  # only idle waits: no failure, no backoff
    assert client.status().batches_sent == 2


async def test_a_lost_answer_means_a_harmless_resend(central: Central) -> None:
    outbox = outbox_of(30)
    transport = FaultyTransport(["lose-response"])
    async with sync_client(central, outbox, transport) as client:
        with pytest.raises(UplinkUnavailable):
            await client.sync_once()
        assert stored_count(central.engine) == 30  # stored, but the gateway cannot know
        assert len(outbox.pending) == 30
        assert outbox.leased() == 0  # released: claimed again at once
        assert await client.sync_once() == 30
    assert transport.requests == 2
    assert outbox.pending == {}
    assert stored_count(central.engine) == 30
    assert client.status().state is UplinkState.UP


async def test_failures_lose_nothing_and_log_state_changes_only(
    central: Central, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = outbox_of(120)
    transport = FaultyTransport(["500", "timeout", "refused", "500"])
    sleep = RecordingSleep()
    client = sync_client(
        central, outbox, transport, batch_max_records=50, backoff_max_s=8, sleep=sleep
    )
    caplog.set_level(logging.INFO, logger="cloud_sync.client")
    async with asyncio.TaskGroup() as group:
        task = group.create_task(client.run())
        await eventually(lambda: not outbox.pending)
        task.cancel()
    assert stored_count(central.engine) == 120
    status = client.status()
    assert (status.state, status.failures, status.records_sent) == (UplinkState.UP, 4, 120)
    assert status.last_error is not None
    assert "500" in status.last_error
    backoffs = sleep.delays[:4]  # jittered 50-100 % of 1, 2, 4, 8 s
    assert all(
        ceiling / 2 <= d <= ceiling for d, ceiling in zip(backoffs, [1, 2, 4, 8], strict=True)
    )
    messages = [r.getMessage() for r in caplog.records if r.name == "cloud_sync.client"]
    assert messages[0].startswith("wire version 2 with the central API")  # once, not per retry
    assert [m.split(":")[0] for m in messages[1:]] == ["uplink down", "uplink up"]


async def test_each_failure_is_reported_as_what_to_do(central: Central) -> None:
    outbox = outbox_of(5)
    plan = ["500", "timeout", "refused", "429"]
    async with sync_client(central, outbox, FaultyTransport(plan)) as client:
        for _ in plan:
            with pytest.raises(UplinkUnavailable):
                await client.sync_once()
    assert client.status().state is UplinkState.DOWN
    assert client.status().failures == 4
    assert len(outbox.pending) == 5
    assert outbox.leased() == 0
    assert stored_count(central.engine) == 0


async def test_retry_after_is_honoured(central: Central) -> None:
    outbox = outbox_of(5)
    sleep = RecordingSleep()
    client = sync_client(central, outbox, FaultyTransport(["429"]), sleep=sleep)
    async with client:
        with pytest.raises(UplinkUnavailable) as caught:
            await client.sync_once()
        assert caught.value.retry_after_s == 2
    async with asyncio.TaskGroup() as group:
        task = group.create_task(client.run())
        await eventually(lambda: not outbox.pending)
        task.cancel()
    assert stored_count(central.engine) == 5
    assert sleep.delays[0] >= 2


async def test_a_refused_batch_stays_buffered(central: Central) -> None:
    outbox = outbox_of(5)
    async with sync_client(central, outbox, token="not-our-token") as client:
        with pytest.raises(UplinkRejected) as caught:
            await client.sync_once()
    assert caught.value.status == 401
    assert client.status().state is UplinkState.REJECTED
    assert len(outbox.pending) == 5
    assert outbox.leased() == 0


async def test_a_silent_server_times_out(central: Central) -> None:
    outbox = outbox_of(5)
    transport = FaultyTransport(["hang"])
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async with sync_client(central, outbox, transport, timeout_s=0.2) as client:
        ticker = asyncio.create_task(tick())
        try:
            with pytest.raises(UplinkUnavailable, match=r"no answer within 0\.2 s"):
                await client.sync_once()
        finally:
            ticker.cancel()
            await asyncio.wait([ticker])
    # Given up after about 0.2 s, timed in ticks of 10 ms sleeps beside it (about 20): a stall of
    # the machine adds seconds to a clock, not ticks.
    assert ticks < 100, f"{ticks} ticks of 10 ms"
    assert outbox.leased() == 0


async def test_cancelling_mid_request_releases_the_batch(central: Central) -> None:
    outbox = outbox_of(5)
    async with sync_client(central, outbox, FaultyTransport(["hang"])) as client:
        task = asyncio.create_task(client.sync_once())
        await eventually(lambda: outbox.leased() == 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert outbox.leased() == 0
    assert len(outbox.pending) == 5


async def test_an_unreachable_central_api(port: int) -> None:
    outbox = outbox_of(5)
    client = SyncClient(
        outbox, base_url=f"http://127.0.0.1:{port}", token="t", gateway_id="gw-1", site_id="s"
    )
    with pytest.raises(UplinkUnavailable, match="ConnectError"):
        await client.sync_once()  # opens and closes its own HTTP client
    assert client.status().state is UplinkState.DOWN
    assert outbox.leased() == 0


def test_options_are_checked() -> None:
    outbox = outbox_of(0)
    common: dict[str, Any] = {"base_url": "x", "token": "t", "gateway_id": "g", "site_id": "s"}
    with pytest.raises(ValueError, match="batch_max_records"):
        SyncClient(outbox, batch_max_records=1001, **common)
    with pytest.raises(ValueError, match="must be positive"):
        SyncClient(outbox, timeout_s=0, **common)
    with pytest.raises(ValueError, match="must be positive"):
        SyncClient(outbox, batch_max_bytes=0, **common)
    with pytest.raises(ValueError, match="drain_max_records_per_s"):
        SyncClient(outbox, drain_max_records_per_s=0, **common)
    with pytest.raises(ValueError, match="drain_jitter_s"):
        SyncClient(outbox, drain_jitter_s=-1, **common)


def batch_records(body: bytes) -> list[str]:
    return [record["record_id"] for record in json.loads(body)["records"]]


async def test_batches_follow_the_claim_order(central: Central) -> None:
    """The client sends what the outbox hands out, in that order: the store's priorities hold."""
    outbox = outbox_of(3, n_alerts=4)
    transport = FaultyTransport()
    async with sync_client(central, outbox, transport, batch_max_records=2) as client:
        while await client.sync_once():
            pass
    batches = [batch_records(body) for _, body in transport.sent]
    assert batches == [
        ["gw-1:a:10000", "gw-1:a:10001"],
        ["gw-1:a:10002", "gw-1:a:10003"],
        ["gw-1:s:0", "gw-1:s:1"],
        ["gw-1:s:2"],
    ]


async def test_batches_stay_within_the_byte_bound(central: Central) -> None:
    outbox = outbox_of(60, n_alerts=5)
    bound = 2000
    transport = FaultyTransport()
    async with sync_client(central, outbox, transport, batch_max_bytes=bound) as client:
        for _ in range(100):
            if not await client.sync_once():
                break
    bodies = [body for _, body in transport.sent]
    assert all(len(body) <= bound for body in bodies)
    sent = [record_id for body in bodies for record_id in batch_records(body)]
    assert sorted(sent) == sorted(outbox.acked)
    assert len(sent) == len(set(sent)) == 65
    assert stored_count(central.engine) == 65
    assert sent[:5] == [f"gw-1:a:{10_000 + n}" for n in range(5)]  # alerts still first
    # Greedy: each batch is full, the next record would not have fitted.
    for body, following in itertools.pairwise(bodies):
        first_of_next = json.dumps(json.loads(following)["records"][0], separators=(",", ":"))
        assert len(body) + 1 + len(first_of_next) > bound
    assert outbox.leased() == 0


async def test_a_record_larger_than_the_byte_bound_goes_alone(central: Central) -> None:
    big = alert_record(1, "big")
    big = big.model_copy(
        update={"body": AlertBody(**big.body.model_dump() | {"message": "x" * 500})}
    )
    records = [OutboxRecord(big.record_id, "alert", big.model_dump_json())]
    records += [
        OutboxRecord(s.record_id, "summary", s.model_dump_json())
        for s in (summary_record(n) for n in range(4))
    ]
    outbox = MemoryOutbox(records)
    bound = len(records[0].payload) - 50  # the alert alone is too large; two summaries fit
    assert 70 + 2 + 2 * len(records[1].payload) + 1 <= bound
    transport = FaultyTransport()
    async with sync_client(central, outbox, transport, batch_max_bytes=bound) as client:
        assert [await client.sync_once() for _ in range(4)] == [1, 2, 2, 0]
    assert batch_records(transport.sent[0][1]) == ["gw-1:a:1"]
    assert len(transport.sent[0][1]) > bound
    assert stored_count(central.engine) == 5


async def test_the_drain_rate_limit_holds(central: Central) -> None:
    outbox = outbox_of(3000)
    fake = FakeTime()
    rate, batch = 500.0, 250
    transport = FaultyTransport(clock=fake.clock)
    client = sync_client(
        central,
        outbox,
        transport,
        batch_max_records=batch,
        drain_max_records_per_s=rate,
        sleep=fake.sleep,
        clock=fake.clock,
    )
    async with asyncio.TaskGroup() as group:
        task = group.create_task(client.run())
        await eventually(lambda: not outbox.pending, timeout_s=20)
        task.cancel()
    assert stored_count(central.engine) == 3000
    # Before each batch left, the records already sent were within one second's worth (the
    # bucket) plus the rate times the (fake) time since the client started.
    sent_before = 0
    for at, body in transport.sent:
        assert sent_before <= rate * 1.0 + rate * at + 1e-6
        sent_before += len(batch_records(body))
    last_at = transport.sent[-1][0]
    assert last_at >= (3000 - batch - rate * 1.0) / rate  # 4.5 s at least, not a flash flood
    assert last_at <= 3000 / rate + 1.0  # and no slower than the limit needs


async def test_without_a_rate_limit_a_backlog_goes_at_once(central: Central) -> None:
    outbox = outbox_of(1200)
    fake = FakeTime()
    client = sync_client(
        central,
        outbox,
        batch_max_records=200,
        drain_max_records_per_s=None,
        sleep=fake.sleep,
        clock=fake.clock,
    )
    async with asyncio.TaskGroup() as group:
        task = group.create_task(client.run())
        await eventually(lambda: not outbox.pending and fake.delays != [])
        task.cancel()
    assert set(fake.delays) == {2.0}  # only the idle wait once drained
    assert stored_count(central.engine) == 1200


@pytest.mark.parametrize(
    ("failures", "delayed"),
    [(0, True), (2, False), (8, True)],
    ids=["at-start", "after-a-short-outage", "after-a-long-outage"],
)
async def test_the_drain_after_a_long_outage_starts_after_a_random_delay(
    central: Central, failures: int, delayed: bool
) -> None:
    """At start with a backlog, or once back after a minute or more of failures, the client
    sends one batch (the probe), then waits a random while (here the ceiling: 45 s) before
    draining the rest; after a short outage it drains at once."""
    fake = FakeTime()
    outbox = outbox_of(10 if failures else 600)
    jitter = 45.0
    transport = FaultyTransport(clock=fake.clock)
    client = sync_client(
        central,
        outbox,
        transport,
        batch_max_records=200,
        backoff_max_s=16,
        drain_jitter_s=jitter,
        sleep=fake.sleep,
        clock=fake.clock,
        rng=Ceiling(),
    )
    delays_before = sent_before = 0
    async with asyncio.TaskGroup() as group:
        task = group.create_task(client.run())
        if failures:  # the client has drained and idles: then the uplink fails, work piles up
            await eventually(lambda: not outbox.pending and fake.delays != [])
            delays_before, sent_before = len(fake.delays), len(transport.sent)
            transport.plan = ["500"] * failures
            backlog = [summary_record(n) for n in range(10, 600)]
            outbox.pending |= {
                r.record_id: OutboxRecord(r.record_id, r.kind, r.model_dump_json()) for r in backlog
            }
        await eventually(lambda: not outbox.pending)
        task.cancel()
    delays = fake.delays[delays_before:]
    # Backoffs at their ceilings: 1, 2, 4, 8, 16, 16, 16, 16 s (63 s of failures in all).
    assert delays[:failures] == [1, 2, 4, 8, 16, 16, 16, 16][:failures]
    assert (jitter in delays) is delayed
    probe, after_probe = transport.sent[sent_before][0], transport.sent[sent_before + 1][0]
    assert (after_probe - probe >= jitter) is delayed  # the probe went before the delay
    assert stored_count(central.engine) == 600


async def test_429_and_503_retry_after_is_honoured_over_a_shorter_backoff(
    central: Central,
) -> None:
    outbox = outbox_of(5)
    fake = FakeTime()
    plan = ["429-7s", "503-in-2-min", "503-bad-retry-after"]
    client = sync_client(
        central,
        outbox,
        FaultyTransport(plan),
        backoff_max_s=1,
        sleep=fake.sleep,
        clock=fake.clock,
        rng=Ceiling(),
    )
    async with asyncio.TaskGroup() as group:
        task = group.create_task(client.run())
        await eventually(lambda: not outbox.pending)
        task.cancel()
    waits = fake.delays[:3]
    assert waits[0] == 7  # 429, Retry-After in seconds
    assert 115 <= waits[1] <= 120  # 503, Retry-After as an HTTP date two minutes ahead
    assert waits[2] == 1  # an unreadable Retry-After: the backoff alone
    assert stored_count(central.engine) == 5


@pytest.mark.parametrize("fault", ["garbage-200", "short-count-200"])
async def test_a_success_that_does_not_account_for_the_batch_is_no_ack(
    central: Central, fault: str
) -> None:
    outbox = outbox_of(5)
    async with sync_client(central, outbox, FaultyTransport([fault])) as client:
        with pytest.raises(UplinkUnavailable, match=r"IngestResult|accounted for 1 of 5"):
            await client.sync_once()
        assert len(outbox.pending) == 5
        assert outbox.leased() == 0
        assert await client.sync_once() == 5
    assert stored_count(central.engine) == 5


def _as_outbox(records: Sequence[Any], urgent: bool = False) -> list[OutboxRecord]:
    return [OutboxRecord(r.record_id, r.kind, r.model_dump_json(), urgent) for r in records]


def _with_field(record: Any, **fields: Any) -> OutboxRecord:
    """A record whose body has fields this central API does not know (a newer gateway's)."""
    payload = json.loads(record.model_dump_json())
    payload["body"].update(fields)
    return OutboxRecord(record.record_id, record.kind, json.dumps(payload))


async def test_a_record_the_central_api_refuses_is_set_aside_and_the_rest_flows(
    central: Central,
) -> None:
    first = _with_field(alert_record(1, "a1"), escalation_level=2)  # claimed first of all
    records = [first, *_as_outbox([alert_record(2, "a2", severity="critical")], urgent=True)]
    records += _as_outbox([summary_record(n) for n in range(10)])
    outbox = MemoryOutbox(records)
    reported: list[tuple[int, str | None]] = []
    async with sync_client(
        central, outbox, on_set_aside=lambda n, last: reported.append((n, last))
    ) as client:
        assert await client.sync_once() == 11
        assert await client.sync_once() == 0  # nothing but the refused record left, and not sent
    assert stored_count(central.engine) == 11  # the critical alert behind it among them
    assert sorted(outbox.pending) == ["gw-1:a:1"]  # kept
    (aside, terms) = outbox.aside["gw-1:a:1"]
    assert (aside.reason, "escalation_level" in aside.detail) == ("invalid", True)
    assert terms == client.status().wire.fingerprint  # type: ignore[union-attr]
    status = client.status()
    assert (status.state, status.records_refused, status.set_aside) == (UplinkState.UP, 1, 1)
    assert status.last_refusal is not None
    assert status.last_refusal.startswith("gw-1:a:1: invalid")
    assert reported == [(0, None), (1, status.last_refusal)]  # told at the agreement, then


async def test_a_central_api_of_version_1_refusing_a_batch_whole_gets_it_halved(
    database_url: str,
) -> None:
    records = _as_outbox([summary_record(n) for n in range(40)])
    records[13] = _with_field(summary_record(13), colour="blue")
    outbox = MemoryOutbox(records)
    transport = FaultyTransport()
    with central_api(database_url, wire=None) as central:
        async with sync_client(central, outbox, transport) as client:
            assert await client.sync_once() == 39
            assert await client.sync_once() == 0
        assert stored_count(central.engine) == 39
    assert client.status().wire == WireAgreement(
        1,
        RECORD_KINDS,
        None,
        client.status().wire.fingerprint,  # type: ignore[union-attr]
    )
    assert list(outbox.aside) == ["gw-1:s:13"]
    assert outbox.aside["gw-1:s:13"][0].reason == "invalid"
    # Found by halving: one post of 40, then about two per halving (40, 20, 10, 5, 3, 2, 1).
    assert transport.requests <= 1 + 2 * 6


async def test_a_kind_the_central_api_does_not_take_waits_without_blocking_the_rest(
    database_url: str,
) -> None:
    records = _as_outbox(
        [access_record(n) for n in range(3)] + [summary_record(n) for n in range(5)]
    )
    outbox = MemoryOutbox(records)
    older = WireTerms(
        schema_versions=[1, 2],
        record_kinds=[kind for kind in RECORD_KINDS if kind != "access"],
        api_version="0.0.9",
    )
    with central_api(database_url, wire=older) as central:
        async with sync_client(central, outbox) as client:
            assert await client.sync_once() == 5
            assert await client.sync_once() == 0
        assert client.status().wire.kinds == tuple(older.record_kinds)  # type: ignore[union-attr]
        assert sorted(outbox.pending) == [f"gw-1:x:{n}" for n in range(3)]
        assert outbox.aside == {}  # waiting, not refused
    # The central API is upgraded: the access events go too.
    with central_api(database_url) as central:
        async with sync_client(central, outbox) as client:
            assert await client.sync_once() == 3
    assert outbox.pending == {}


async def test_records_set_aside_under_earlier_terms_are_sent_again(central: Central) -> None:
    records = _as_outbox([alert_record(n, f"a{n}") for n in range(3)])
    outbox = MemoryOutbox(records)
    earlier = "central 0.0.9 wire v2 kinds alert; gateway 0.0.9"  # refused before an upgrade
    await outbox.set_aside([SetAside(r.record_id, "invalid", "no") for r in records[:2]], earlier)
    reported: list[tuple[int, str | None]] = []
    async with sync_client(
        central, outbox, on_set_aside=lambda n, last: reported.append((n, last))
    ) as client:
        assert await client.sync_once() == 3
    assert outbox.pending == {}
    assert outbox.aside == {}
    assert reported == [(0, None)]
    assert client.status().set_aside == 0


async def test_a_gateway_and_central_api_with_no_version_in_common_stop_and_say_so(
    database_url: str,
) -> None:
    future = WireTerms(schema_versions=[7], record_kinds=list(RECORD_KINDS), api_version="9.0")
    outbox = outbox_of(3)
    with central_api(database_url, wire=future) as central:
        async with sync_client(central, outbox) as client:
            with pytest.raises(UplinkRejected, match="no wire version in common"):
                await client.sync_once()
    assert client.status().state is UplinkState.REJECTED
    assert len(outbox.pending) == 3
    assert outbox.leased() == 0


@pytest.mark.parametrize("urgent", [True, False], ids=["critical-alert-waiting", "no-alert"])
async def test_while_a_critical_alert_waits_a_failure_is_retried_within_15_s(
    port: int, urgent: bool
) -> None:
    records = _as_outbox([alert_record(1, "a1", severity="critical")], urgent=urgent)
    outbox = MemoryOutbox(records + _as_outbox([summary_record(n) for n in range(3)]))
    fake = FakeTime()
    client = SyncClient(
        outbox,
        base_url=f"http://127.0.0.1:{port}",  # nothing listens: the central API is down
        token="t",
        gateway_id="gw-1",
        site_id="site-1",
        sleep=fake.sleep,
        clock=fake.clock,
        rng=Ceiling(),
    )
    async with asyncio.TaskGroup() as group:
        task = group.create_task(client.run())
        await eventually(lambda: len(fake.delays) >= 12)
        task.cancel()
    waits = fake.delays[:12]
    assert waits[:4] == [1, 2, 4, 8]  # the backoff as before, while under the cap
    if urgent:
        assert max(waits) == URGENT_RETRY_S == 15
    else:
        assert max(waits) == 300  # the backoff's own cap (backoff_max_s)


async def test_a_retry_after_is_honoured_even_while_a_critical_alert_waits(
    central: Central,
) -> None:
    records = _as_outbox([alert_record(1, "a1", severity="critical")], urgent=True)
    outbox = MemoryOutbox(records)
    fake = FakeTime()
    plan = ["503-in-2-min"]
    client = sync_client(
        central, outbox, FaultyTransport(plan), sleep=fake.sleep, clock=fake.clock, rng=Ceiling()
    )
    async with asyncio.TaskGroup() as group:
        task = group.create_task(client.run())
        await eventually(lambda: not outbox.pending)
        task.cancel()
    assert 115 <= fake.delays[0] <= 120

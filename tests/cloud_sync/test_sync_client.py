"""The sync client against the real central API; faults injected in the HTTP transport."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import pytest

from cloud_sync.client import SyncClient, UplinkState
from cloud_sync.outbox import OutboxRecord
from cloud_sync.schemas import AlertRecord, SummaryRecord
from nbedge.errors import UplinkRejected, UplinkUnavailable
from tests.cloud_sync.conftest import Central, alert_record, stored_count, summary_record


class MemoryOutbox:
    """The ``Outbox`` protocol over a dict: leases, alerts first, oldest first."""

    def __init__(self, records: Sequence[OutboxRecord]) -> None:
        self.pending = {record.record_id: record for record in records}
        self.leased_until: dict[str, float] = {}
        self.acked: list[str] = []

    async def claim(self, max_records: int, lease_s: float) -> list[OutboxRecord]:
        now = time.monotonic()
        due = [r for r in self.pending.values() if self.leased_until.get(r.record_id, 0) <= now]
        due.sort(key=lambda record: record.kind != "alert")  # stable: oldest first within kind
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

    def leased(self) -> int:
        now = time.monotonic()
        return sum(1 for until in self.leased_until.values() if until > now)


def outbox_of(n_summaries: int, n_alerts: int = 0) -> MemoryOutbox:
    records: list[SummaryRecord | AlertRecord] = [summary_record(n) for n in range(n_summaries)]
    records += [alert_record(10_000 + n, f"a{n}") for n in range(n_alerts)]
    return MemoryOutbox([OutboxRecord(r.record_id, r.kind, r.model_dump_json()) for r in records])


class FaultyTransport(httpx.AsyncBaseTransport):
    """The real transport, with one planned fault per request until the plan runs out."""

    def __init__(self, plan: Sequence[str] = ()) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.plan = list(plan)
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        fault = self.plan.pop(0) if self.plan else "none"
        match fault:
            case "none":
                return await self.inner.handle_async_request(request)
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
            case "timeout":
                raise httpx.ReadTimeout("timed out", request=request)
            case "refused":
                raise httpx.ConnectError("connection refused", request=request)
            case "hang":
                await asyncio.Event().wait()
        raise AssertionError(f"unknown fault {fault}")

    async def aclose(self) -> None:
        await self.inner.aclose()


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
        **options,
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
    assert [m.split(":")[0] for m in messages] == ["uplink down", "uplink up"]


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
    async with sync_client(central, outbox, transport, timeout_s=0.2) as client:
        started = time.monotonic()
        with pytest.raises(UplinkUnavailable, match=r"no answer within 0\.2 s"):
            await client.sync_once()
    assert time.monotonic() - started < 2
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

"""A full disk, in-process, on real SQLite files: SQLite's ``database or disk is full`` is injected
at the statements where a full disk makes it fail (``COMMIT``, checkpoints, ``PRAGMA optimize``),
and the filesystem's size and free space are a stand-in. The store gives back its reserve, evicts
bulk data first and writes what it was given; what it cannot write raises ``StoreFull`` and is
not half written; claiming needs no disk; housekeeping, the sync client and open/close survive.
Tests on a real small filesystem: tests/test_disk_full.py."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest

from cloud_sync.client import SyncClient
from edge.alerts import Alert, AlertBook, Finding
from edge.store import Quota, Store
from edge.store.disk import DISK_FULL_RULE, FULL_HOLD_S, Limits, is_full_error
from edge.store.forecasts import Forecast
from edge.store.housekeeping import Housekeeper
from edge.store.quota import MiB
from firmware_bridge.readings import Reading
from nbedge.errors import StoreFull
from tests.conftest import wait_until
from tests.edge.test_clock import FakeTime
from tests.support import alerts as support

T0 = 1_800_000_000.0 // 60 * 60
POINTS = tuple(f"p{i}" for i in range(20))
_WRITES = ("COMMIT", "PRAGMA WAL_CHECKPOINT", "PRAGMA INCREMENTAL_VACUUM", "PRAGMA OPTIMIZE")


def full_error() -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError("database or disk is full")
    exc.sqlite_errorcode = 13  # type: ignore[attr-defined]
    exc.sqlite_errorname = "SQLITE_FULL"  # type: ignore[attr-defined]
    return exc


class Disk:
    """A filesystem of ``total`` bytes that other files fill but for what the store holds and
    ``spare`` bytes. With less than ``TIGHT`` bytes free, or while ``full``, SQLite cannot
    write: commits, checkpoints and ``PRAGMA optimize`` fail as they do on a full disk."""

    TIGHT = 64 * 1024

    def __init__(self, path: Path, *, total: int = 64 * MiB) -> None:
        self.path = path
        self.total = total
        self.spare = 32 * MiB
        self.full = False
        self.failed: list[str] = []

    def store_bytes(self) -> int:
        files = (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}.reserve"))
        return sum(f.stat().st_size for f in files if f.exists())

    def free(self) -> int:
        return 0 if self.full else max(0, self.spare - self.store_bytes())

    def usage(self, folder: Path) -> Usage:
        return Usage(self.total, self.free())

    def fill(self, leave: int = 0) -> None:
        """Other files take all but ``leave`` bytes of what is free now."""
        self.spare = self.store_bytes() + leave

    def check(self, sql: str) -> None:
        if sql.lstrip().upper().startswith(_WRITES) and self.free() < self.TIGHT:
            self.failed.append(sql.strip())
            raise full_error()

    def connection(self) -> type[sqlite3.Connection]:
        disk = self

        class OnThisDisk(sqlite3.Connection):
            def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
                disk.check(sql)
                return super().execute(sql, *args)

            def executescript(self, script: str) -> sqlite3.Cursor:  # type: ignore[override]
                disk.check(script)
                return super().executescript(script)

        return OnThisDisk


class Usage(NamedTuple):
    total: int
    free: int


def batch(fake: FakeTime, n: int, seconds: float = 1.0) -> list[Reading]:
    start = fake.now
    out = [
        Reading("m1", POINTS[i % len(POINTS)], float(i), "V", start + i * seconds / n, 0)
        for i in range(n)
    ]
    fake.advance(seconds)
    return out


def alert(book: AlertBook, point: str, at: float) -> Alert:
    return support.raise_alert(book, point=point, at=at, severity="critical")


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def outbox(path: Path, kind: str) -> list[dict[str, Any]]:
    found = rows(path, f"SELECT payload FROM outbox WHERE kind = '{kind}' ORDER BY seq")
    return [json.loads(payload) for (payload,) in found]


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime(T0, synced=True)


@pytest.fixture
def disk(tmp_path: Path) -> Disk:
    return Disk(tmp_path / "gw.db")


def open_store(disk: Disk, fake: FakeTime | None, **quota: Any) -> Store:
    """A store on ``disk``, on ``fake`` time (None: the system's)."""
    return Store(
        disk.path,
        gateway_id="gw-1",
        clock=None if fake is None else fake.clock(),
        quota=Quota(**({"min_free_bytes": 0} | quota)),
        disk_usage=disk.usage,
        connection_factory=disk.connection(),
    )


def test_the_watermark_and_the_reserve_fit_the_filesystem() -> None:
    small = Limits.fit(4 * MiB, min_free_bytes=64 * MiB, max_bytes=512 * MiB)
    assert small.watermark_bytes == 4 * MiB // 10 < 4 * MiB  # not 64 MiB on a 4 MiB disk
    assert small.reserve_bytes == 256 * 1024
    assert small.wal_bytes * 4 <= small.reserve_bytes  # giving the reserve back lets a WAL out
    card = Limits.fit(32 << 30, min_free_bytes=64 * MiB, max_bytes=512 * MiB)
    assert (card.watermark_bytes, card.reserve_bytes) == (64 * MiB, 8 * MiB)


def test_only_full_disk_errors_count_as_a_full_disk() -> None:
    assert is_full_error(full_error(), free_bytes=10 * MiB, tight_bytes=MiB)
    ioerr = sqlite3.OperationalError("disk I/O error")
    ioerr.sqlite_errorcode = 778  # type: ignore[attr-defined]  # SQLITE_IOERR_WRITE
    assert is_full_error(ioerr, free_bytes=0, tight_bytes=MiB)
    assert not is_full_error(ioerr, free_bytes=10 * MiB, tight_bytes=MiB)  # a failing card
    locked = sqlite3.OperationalError("database is locked")
    locked.sqlite_errorcode = 5  # type: ignore[attr-defined]
    assert not is_full_error(locked, free_bytes=0, tight_bytes=MiB)


async def test_a_write_on_a_full_disk_gives_back_the_reserve_evicts_bulk_and_lands(
    disk: Disk, fake: FakeTime
) -> None:
    book = AlertBook()
    async with open_store(disk, fake) as store:
        first = alert(book, "voltage_l1", fake.now)
        await store.write(batch(fake, 5000), [first])
        for _ in range(9):
            await store.write(batch(fake, 5000))
        assert (await store.disk()).reserve_bytes == 4 * MiB  # a sixteenth of 64 MiB
        disk.fill()  # the next commit fails
        second = alert(book, "voltage_l2", fake.now)
        await store.write(batch(fake, 100), [second])
        state = await store.disk()
        stats = await store.stats()

    assert disk.failed == ["COMMIT"]
    assert state.disk_full
    assert state.full_errors == 1
    assert state.full_episodes == 1
    assert state.reserve_bytes == 4 * MiB  # given back, then made again once there was room
    # Evicted in the written order, oldest first: readings only (no summary, no alert).
    assert set(stats.evicted) == {"reading"}
    assert stats.readings == 50_100 - stats.evicted["reading"]
    ids = [i for (i,) in rows(disk.path, "SELECT id FROM readings ORDER BY id")]
    assert ids == list(range(stats.evicted["reading"] + 1, 50_101))  # the batch landed, once
    assert [a["body"]["alert_id"] for a in outbox(disk.path, "alert_event")] == [
        first.alert_id,
        second.alert_id,
    ]
    reports = [r["body"] for r in outbox(disk.path, "eviction")]
    assert {(r["evicted"], r["reason"]) for r in reports} == {("reading", "disk_full")}
    assert sum(r["count"] for r in reports) == stats.evicted["reading"]


async def test_a_write_that_cannot_be_made_room_for_raises_store_full_and_writes_nothing(
    disk: Disk, fake: FakeTime
) -> None:
    book = AlertBook()
    async with open_store(disk, fake) as store:
        await store.write(batch(fake, 1000), [alert(book, "voltage_l1", fake.now)])
        disk.full = True
        with pytest.raises(StoreFull) as raised:
            await store.write(batch(fake, 1000), [alert(book, "voltage_l2", fake.now)])
        assert raised.value.operation == "write"
        hour = T0 // 3600 * 3600
        with pytest.raises(StoreFull):
            await store.write_forecast(Forecast("block-a", T0, hour, (1.0,) * 24, "m 1 abc"))
        # Claiming writes nothing: the sync client can still send what is queued.
        [claimed] = await store.claim(100, lease_s=30)
        assert await store.claim(100, lease_s=30) == []  # leased
        with pytest.raises(StoreFull):
            await store.ack([claimed.record_id])
        await store.release([claimed.record_id])
        [again] = await store.claim(100, lease_s=30)
        disk.full = False
        await store.ack([again.record_id])
        stats = await store.stats()

    assert again.record_id == claimed.record_id
    assert stats.readings == 1000
    assert stats.outbox == {}
    assert rows(disk.path, "SELECT COUNT(*) FROM alerts") == [(1,)]


async def test_housekeeping_on_a_full_disk_goes_on_and_raises_disk_full_until_space_is_back(
    disk: Disk, fake: FakeTime
) -> None:
    findings: list[Finding] = []
    async with open_store(disk, fake) as store:
        await store.write(batch(fake, 2000, seconds=120.0))
        keeper = Housekeeper(
            store, summary_interval_s=60, interval_s=0.01, on_finding=findings.append
        )
        running = asyncio.create_task(keeper.run())
        try:
            await wait_until(lambda: len(findings) >= 2)
            assert not findings[-1].active
            disk.full = True
            fake.advance(60)  # a period closed: summaries are due, and cannot be written
            await wait_until(lambda: keeper.failures >= 3)
            assert findings[-1].active
            disk.full = False
            seen = len(findings)
            await wait_until(lambda: len(findings) > seen + 2)
            assert findings[-1].active  # space is back, but the disk was full a moment ago
            fake.advance(FULL_HOLD_S)
            await wait_until(lambda: not findings[-1].active)
            await wait_until(lambda: keeper.summaries > 0)
        finally:
            running.cancel()
            with pytest.raises(asyncio.CancelledError):
                await running

    raised = next(f for f in findings if f.active)
    assert (raised.code, raised.device, raised.point) == (DISK_FULL_RULE, "gw-1", "store")
    assert raised.value == 0.0
    book = AlertBook()
    [alert] = book.apply(raised)
    assert alert.severity == "critical"
    assert "disk is full" in alert.message
    assert "room again" in book.apply(findings[-1])[0].message


async def test_a_full_disk_neither_stops_the_store_opening_nor_closing(
    disk: Disk, fake: FakeTime
) -> None:
    book = AlertBook()
    async with open_store(disk, fake) as store:
        await store.write(batch(fake, 1000), [alert(book, "voltage_l1", fake.now)])
    disk.full = True
    async with open_store(disk, fake) as store:  # migrations done: opening writes nothing
        [active] = await store.open_alerts()
        assert len(await store.claim(10, lease_s=30)) == 1
        with pytest.raises(StoreFull):
            await store.write(batch(fake, 10))
        state = await store.disk()
    # PRAGMA optimize failed on the way out, quietly.
    assert disk.failed[-1] == "PRAGMA optimize"
    assert active.point == "voltage_l1"
    assert state.disk_full  # no room for the reserve, no room at all


async def test_the_watermark_never_evicts_unsent_alerts_on_a_small_disk(
    disk: Disk, fake: FakeTime
) -> None:
    disk.total = 4 * MiB
    book = AlertBook()
    async with open_store(disk, fake, min_free_bytes=64 * MiB) as store:
        written = [alert(book, f"voltage_{i}", fake.now) for i in range(30)]
        await store.write(batch(fake, 3000), written)
        disk.fill(leave=300_000)  # less free than the 410 kB in force
        report = await store.enforce_quota()
        state = await store.disk()
        stats = await store.stats()

    assert state.watermark_bytes == 4 * MiB // 10
    assert report.reason == "disk_full"
    assert set(report.evicted) == {"reading"}  # bulk data only
    assert stats.outbox == {"alert_event": 30, "eviction": len(outbox(disk.path, "eviction"))}
    assert 0 < stats.readings < 3000


async def test_the_watermark_leaves_unsent_alerts_alone_even_when_it_cannot_be_met(
    disk: Disk, fake: FakeTime
) -> None:
    disk.total = 4 * MiB
    book = AlertBook()
    async with open_store(disk, fake, min_free_bytes=64 * MiB) as store:
        await store.write(
            batch(fake, 500), [alert(book, f"voltage_{i}", fake.now) for i in range(30)]
        )
        disk.fill(leave=100_000)  # evicting every reading cannot free the 410 kB in force
        report = await store.enforce_quota()
        stats = await store.stats()
        state = await store.disk()

    assert report.unmet
    assert "alert" not in report.evicted
    assert stats.outbox["alert_event"] == 30
    assert stats.readings == 0  # all the bulk data went
    assert state.disk_full


class Central(httpx.AsyncBaseTransport):
    """A central API of wire version 1 (no ``/v1/wire``) that accepts every batch."""

    def __init__(self) -> None:
        self.received: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        import gzip

        if request.url.path == "/v1/wire":
            return httpx.Response(404, json={"detail": "Not Found"})
        batch = json.loads(gzip.decompress(await request.aread()))
        self.received += [r["record_id"] for r in batch["records"]]
        count = len(batch["records"])
        return httpx.Response(200, json={"accepted": count, "duplicates": 0})


async def test_the_sync_client_keeps_running_while_acknowledgements_cannot_be_written(
    disk: Disk, fake: FakeTime
) -> None:
    central = Central()
    book = AlertBook()
    async with open_store(disk, None) as store:  # leases end in real time
        await store.write([], [alert(book, "voltage_l1", fake.now)])
        disk.full = True
        async with SyncClient(
            store,
            base_url="http://central.test",
            token="t",
            gateway_id="gw-1",
            site_id="site-1",
            lease_s=0.2,
            interval_s=0.01,
            backoff_max_s=0.05,
            drain_jitter_s=0,
            transport=central,
        ) as sync:
            running = asyncio.create_task(sync.run())
            try:
                await wait_until(lambda: len(central.received) >= 3)  # sent, not acknowledged
                assert not running.done()
                disk.full = False
                await wait_until(lambda: sync.status().records_sent >= 1)
                stats = await store.stats()
            finally:
                running.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await running
    assert stats.outbox == {}
    assert len(set(central.received)) == 1  # the same record, again and again: de-duplicated

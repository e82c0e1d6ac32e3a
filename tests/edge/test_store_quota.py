"""The byte quota and free-disk watermark on real SQLite files: the quota holds, evictions follow
the written order, every eviction is counted and reported once, alerts outlive everything else."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from edge.alerts import Alert, AlertBook
from edge.store import Quota, Store
from edge.store.quota import MiB
from firmware_bridge.readings import Reading
from tests.edge.test_clock import FakeTime
from tests.support import alerts as support

T0 = 1_800_000_000.0 // 60 * 60
POINTS = tuple(f"p{i}" for i in range(20))


def file_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in (path, Path(f"{path}-wal")) if f.exists())


def batch(fake: FakeTime, n: int, seconds: float = 1.0) -> list[Reading]:
    """``n`` readings spread over the next ``seconds``."""
    start = fake.now
    out = [
        Reading("m1", POINTS[i % len(POINTS)], float(i), "V", start + i * seconds / n, 0)
        for i in range(n)
    ]
    fake.advance(seconds)
    return out


def outbox(path: Path, kind: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT payload FROM outbox WHERE kind = ? ORDER BY seq", (kind,))
        return [json.loads(p) for (p,) in rows]
    finally:
        conn.close()


def raise_and_clear(book: AlertBook, point: str, at: float) -> list[Alert]:
    """Three events: raised, cleared, resolved (``auto``: a warning needs nobody)."""
    raised = support.raise_alert(book, point=point, value=260.0, at=at)
    return [raised, *support.clear_alert(book, raised, at=at + 1)]


def raise_one(book: AlertBook, point: str, at: float) -> Alert:
    return support.raise_alert(book, point=point, value=270.0, at=at, severity="critical")


async def test_quota_holds_under_a_long_stream_of_writes_and_alerts_survive(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gw.db"
    limit = 2 * MiB
    fake = FakeTime(T0, synced=True)
    quota = Quota(max_bytes=limit, min_free_bytes=0, check_every_rows=10_000)
    book = AlertBook()
    alert = raise_one(book, "voltage_l1", T0)
    sizes = []
    written = 0
    async with Store(path, gateway_id="gw-1", clock=fake.clock(), quota=quota) as store:
        await store.write([], [alert])
        for i in range(100):  # 200,000 readings, about 10 times the quota
            readings = batch(fake, 2000, seconds=2.0)
            await store.write(readings)
            written += len(readings)
            sizes.append(file_bytes(path))
            if i % 10 == 9:
                await store.summarise(now=fake.now, interval_s=60, grace_s=5)
                report = await store.enforce_quota()
                assert report.after.used_bytes <= limit
                assert file_bytes(path) <= limit
        stats = await store.stats()
        assert [a.alert_id for a in await store.open_alerts()] == [alert.alert_id]

    assert stats.evicted["reading"] > 100_000
    assert stats.readings + stats.evicted["reading"] == written
    assert max(sizes) <= 2 * limit  # between checks, at most the rows of one check more
    reports = [r["body"] for r in outbox(path, "eviction")]
    assert sum(r["count"] for r in reports) == stats.evicted["reading"]
    assert {(r["evicted"], r["reason"]) for r in reports} == {("reading", "quota")}
    assert [a["body"]["alert_id"] for a in outbox(path, "alert_event")] == [alert.alert_id]


class Scene(NamedTuple):
    summarised: int
    unsummarised: int
    summaries: int
    active: Alert


async def build_scene(store: Store, fake: FakeTime) -> Scene:
    """Readings (half summarised), summaries, a cleared alert and an active one."""
    book = AlertBook()
    await store.write(batch(fake, 20_000, seconds=100.0), raise_and_clear(book, "voltage_l2", T0))
    fake.advance(60)
    summaries = await store.summarise(now=fake.now, interval_s=60, grace_s=5)
    active = raise_one(book, "voltage_l1", fake.now)
    await store.write(batch(fake, 20_000, seconds=30.0), [active])
    return Scene(20_000, 20_000, summaries, active)


def reading_ids(path: Path) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        return [i for (i,) in conn.execute("SELECT id FROM readings ORDER BY id")]
    finally:
        conn.close()


async def test_summarised_readings_go_first_and_oldest_first(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    fake = FakeTime(T0, synced=True)
    async with Store(path, gateway_id="gw-1", clock=fake.clock()) as store:
        scene = await build_scene(store, fake)
        report = await store.enforce_quota()
        assert report.evicted == {}
        store.quota = Quota(max_bytes=report.after.used_bytes - 300_000, min_free_bytes=0)
        report = await store.enforce_quota()

    evicted = report.evicted["reading"]
    assert report.evicted == {"reading": evicted}
    assert 0 < evicted < scene.summarised
    assert report.after.used_bytes <= store.quota.max_bytes
    # The oldest readings went; every reading not yet summarised is still there.
    assert reading_ids(path) == list(range(evicted + 1, scene.summarised + scene.unsummarised + 1))
    [eviction] = outbox(path, "eviction")
    assert eviction["body"]["count"] == evicted
    assert datetime.fromisoformat(eviction["body"]["oldest"]).timestamp() == T0
    assert datetime.fromisoformat(eviction["body"]["newest"]).timestamp() == pytest.approx(
        T0 + (evicted - 1) * 100.0 / 20_000
    )


async def test_local_copies_go_before_readings_not_yet_summarised(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    fake = FakeTime(T0, synced=True)
    async with Store(path, gateway_id="gw-1", clock=fake.clock()) as store:
        scene = await build_scene(store, fake)
        report = await store.enforce_quota()
        # More than the summarised readings must go, far less than every reading.
        store.quota = Quota(max_bytes=report.after.used_bytes - 1_500_000, min_free_bytes=0)
        report = await store.enforce_quota()
        stats = await store.stats()

    # Every local summary copy and the cleared alert went, while readings not yet summarised
    # went only in part: the copies were evicted first (the other way round, all 20,000 of
    # those readings would have gone before the first copy).
    assert report.evicted["summary_copy"] == scene.summaries
    assert report.evicted["cleared_alert"] == 1
    assert scene.summarised < report.evicted["reading"] < scene.summarised + scene.unsummarised
    assert 0 < stats.readings < scene.unsummarised
    assert "summary" not in report.evicted  # the outbox still holds every summary


async def test_eviction_order_down_to_the_last_resort_and_active_alerts_stay(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "gw.db"
    fake = FakeTime(T0, synced=True)
    async with Store(path, gateway_id="gw-1", clock=fake.clock()) as store:
        scene = await build_scene(store, fake)
        store.quota = Quota(max_bytes=1, min_free_bytes=0)  # impossible: evict all there is
        report = await store.enforce_quota()
        stats = await store.stats()
        assert [a.alert_id for a in await store.open_alerts()] == [scene.active.alert_id]
        # Eviction reports are sent right after alerts.
        later = raise_one(AlertBook(), "voltage_l3", fake.now)
        await store.write([], [later])
        kinds = [r.kind for r in await store.claim(100, lease_s=30)]

    expected = {
        "reading": scene.summarised + scene.unsummarised,
        "summary_copy": scene.summaries,
        "cleared_alert": 1,
        "summary": scene.summaries,
        "alert": 4,  # raised, cleared, resolved (auto), raised
    }
    assert report.evicted == expected
    assert stats.evicted == expected
    assert (stats.readings, stats.summaries, stats.active_alerts) == (0, 0, 1)
    assert stats.outbox == {"eviction": 3}
    reported = {r["body"]["evicted"]: r["body"]["count"] for r in outbox(path, "eviction")}
    assert reported == {"reading": 40_000, "summary": scene.summaries, "alert": 4}
    assert kinds == ["alert_event", "eviction", "eviction", "eviction"]
    assert any(r.levelname == "ERROR" and "evicted" in r.getMessage() for r in caplog.records)


async def test_records_being_sent_are_not_evicted(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    fake = FakeTime(T0, synced=True)
    async with Store(path, gateway_id="gw-1", clock=fake.clock()) as store:
        scene = await build_scene(store, fake)
        leased = await store.claim(100, lease_s=600)
        store.quota = Quota(max_bytes=1, min_free_bytes=0)
        report = await store.enforce_quota()
        await store.ack([r.record_id for r in leased])
    assert Counter(r.kind for r in leased) == {"alert_event": 4, "summary": scene.summaries}
    assert "summary" not in report.evicted
    assert "alert" not in report.evicted


async def test_free_disk_watermark_evicts_with_reason_disk_full(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    capacity = 64 * MiB  # a filesystem that other files fill but for a few MiB

    class Disk(NamedTuple):
        total: int
        free: int

    def disk_usage(folder: Path) -> Disk:
        assert folder == tmp_path
        reserve = Path(f"{path}.reserve")  # the store's, on the same filesystem
        held = reserve.stat().st_size if reserve.exists() else 0
        return Disk(capacity, capacity - 56 * MiB - held - file_bytes(path))

    fake = FakeTime(T0, synced=True)
    quota = Quota(min_free_bytes=3 * MiB, check_every_rows=1_000_000)
    async with Store(
        path, gateway_id="gw-1", clock=fake.clock(), quota=quota, disk_usage=disk_usage
    ) as store:
        for _ in range(40):
            await store.write(batch(fake, 2000))
        assert disk_usage(tmp_path).free < quota.min_free_bytes
        report = await store.enforce_quota()
    assert report.reason == "disk_full"
    assert report.after.free_disk_bytes >= quota.min_free_bytes
    assert disk_usage(tmp_path).free >= quota.min_free_bytes
    # On a disk this tight, each transaction frees at most half the free space: several
    # records, one per transaction.
    evictions = [r["body"] for r in outbox(path, "eviction")]
    assert {(e["evicted"], e["reason"]) for e in evictions} == {("reading", "disk_full")}
    assert sum(e["count"] for e in evictions) == report.evicted["reading"]

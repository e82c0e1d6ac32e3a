"""A week without the central API: the quota holds, every alert arrives afterwards, evictions count.

A small building (5 meters x 13 points, polled every 10 minutes) writes through a real ``Store`` on
a real SQLite file with a 2 MiB quota, in virtual time, for 7 simulated days: 65,520 readings and
about 10,900 hourly summaries, several times what the quota holds, so the store evicts in the
written order (``edge.store.eviction``): readings, local summary copies and cleared alerts, then
the oldest unsynced summaries. 31 alert events (raised, cleared, resolved) happen at known
moments through ``AlertBook``; the gateway's own housekeeping service runs on that virtual
clock, every 10 simulated minutes (the whole of it once an hour has closed, else the quota only);
a sync client tries the central API every 6 simulated hours and finds nothing listening.

After the week a real central API starts (uvicorn on 127.0.0.1, SQLite) and a real ``SyncClient``
drains the outbox. Then: every alert change is in the alerts feed exactly once; the eviction
reports add up, per kind, to exactly what the store counted; every summary that was not evicted
arrived exactly once, and the evicted ones were the oldest; the outbox is empty; the file is sound.

A door at the entrance sees a badge granted, the door opened and closed every three simulated
hours (168 access events): every one of them arrives too, and none is evicted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from cloud_sync.central import CentralSettings
from cloud_sync.central.admin import init_db, make_engine, register_gateway, register_site
from cloud_sync.client import SyncClient
from edge.alerts import Alert, AlertBook, alert_key
from edge.store import Quota, Store
from edge.store.housekeeping import Housekeeper
from edge.store.quota import MiB
from firmware_bridge.events import AccessEvent
from firmware_bridge.readings import Reading
from nbedge.errors import UplinkUnavailable
from tests.cloud_sync.conftest import serving
from tests.conftest import free_port, wait_until
from tests.edge.test_clock import NS
from tests.support import alerts as support
from tests.support.clocks import VirtualTime

SITE = "site-1"
GATEWAY = "gw-1"
T0 = datetime(2024, 3, 4, tzinfo=UTC).timestamp()  # a Monday, 00:00 UTC
MINUTE = 60
HOUR = 3600
DAYS = 7
MINUTES = DAYS * 24 * 60
METERS = tuple(f"meter-{n}" for n in range(1, 6))
POINTS: tuple[tuple[str, str, float], ...] = (
    ("voltage_l1", "V", 230.0),
    ("voltage_l2", "V", 230.0),
    ("voltage_l3", "V", 230.0),
    ("current_l1", "A", 12.0),
    ("current_l2", "A", 9.0),
    ("current_l3", "A", 7.0),
    ("power_l1", "W", 2700.0),
    ("power_l2", "W", 2000.0),
    ("power_l3", "W", 1600.0),
    ("power_total", "W", 6300.0),
    ("energy_import", "kWh", 1000.0),
    ("frequency", "Hz", 50.0),
    ("power_factor", "", 0.95),
)
QUOTA = Quota(max_bytes=2 * MiB, min_free_bytes=0)  # the daemon's check_every_rows
POLL_EVERY_MIN = 10
HOUSEKEEPING_EVERY_MIN = 10
PROBE_EVERY_MIN = 6 * 60
REPORTED_KINDS = ("reading", "summary", "alert", "access")
"""Evicted kinds that ``edge.store.eviction`` reports to the central API (steps 1, 2, 5, 6)."""
DRAIN_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class AlertMoment:
    minute: int
    device: str
    point: str
    clear_after_min: int | None
    """None: still active at the end of the week."""


# Ten alerts raised and cleared across the week (a raise every 16 h, cleared 3 h later), and one
# raised on the last day and still active at the end: 31 alert events (a clearing also resolves
# a warning). The first ones are from the first hours of the outage, so they are among the
# oldest records in the outbox.
ALERTS = (
    *(
        AlertMoment(
            minute=(1 + 16 * i) * 60 + POLL_EVERY_MIN * i,
            device=METERS[i % len(METERS)],
            point=f"voltage_l{i % 3 + 1}",
            clear_after_min=180 + POLL_EVERY_MIN * i,
        )
        for i in range(10)
    ),
    AlertMoment(minute=(6 * 24 + 16) * 60 + POLL_EVERY_MIN, device="meter-2", point="voltage_l3",
                clear_after_min=None),
)  # fmt: skip


def file_bytes(path: Path) -> int:
    """Database plus WAL, as ``StoreStats.bytes`` measures them."""
    total = 0
    for file in (path, Path(f"{path}-wal")):
        with contextlib.suppress(FileNotFoundError):
            total += os.stat(file).st_size
    return total


def poll(minute: int, at: float, mono_ns: int, swelling: set[str]) -> list[Reading]:
    """One poll of every meter: 65 readings, all of one meter stamped alike."""
    readings = []
    for d, device in enumerate(METERS):
        wall = at + d * 0.2
        mono = mono_ns + int(d * 0.2 * NS)
        for p, (point, unit, base) in enumerate(POINTS):
            if alert_key("voltage", device, point) in swelling:
                value = 262.0
            elif point == "energy_import":
                value = base + minute * 0.05 * (d + 1)
            else:
                value = base * (1 + 0.01 * ((minute * 7 + d * 13 + p) % 11 - 5))
            readings.append(Reading(device, point, value, unit, wall, mono))
    return readings


ACCESS_EVERY_MIN = 180


def access_events(minute: int, at: float, mono_ns: int) -> list[AccessEvent]:
    """A badge granted, the door opened and closed, every ``ACCESS_EVERY_MIN`` minutes."""
    if minute % ACCESS_EVERY_MIN:
        return []
    badge = f"badge:{minute // ACCESS_EVERY_MIN % 7:04x}"
    return [
        AccessEvent("door-main", "granted", badge, at, mono_ns),
        AccessEvent("door-main", "opened", None, at + 2, mono_ns + 2_000_000_000),
        AccessEvent("door-main", "closed", None, at + 9, mono_ns + 9_000_000_000),
    ]


def alert_changes(book: AlertBook, minute: int, at: float) -> list[Alert]:
    """The alert changes scheduled for ``minute``."""
    changes = []
    for moment in ALERTS:
        key = alert_key("voltage", moment.device, moment.point)
        if minute == moment.minute:
            changes.append(
                support.raise_alert(book, device=moment.device, point=moment.point, at=at)
            )
        elif (
            moment.clear_after_min is not None and minute == moment.minute + moment.clear_after_min
        ):
            [alert] = [a for a in book.open() if a.key == key]
            changes += support.clear_alert(book, alert, value=231.0, at=at)  # and resolved
    return changes


@dataclass
class Week:
    readings_written: int = 0
    access_written: list[AccessEvent] = field(default_factory=list)
    alert_changes: list[Alert] = field(default_factory=list)
    summaries_written: int = 0
    housekeeping_passes: int = 0
    evicting_passes: int = 0
    peak_bytes_between_checks: int = 0
    probes_refused: int = 0


async def simulate_week(store: Store, virtual: VirtualTime, path: Path) -> Week:
    """7 days of polls, alerts and the gateway's own housekeeping service, in virtual time; the
    uplink is probed and never answers."""
    week = Week()
    book = AlertBook()
    housekeeper = Housekeeper(
        store, summary_interval_s=HOUR, interval_s=HOUSEKEEPING_EVERY_MIN * MINUTE
    )
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with (
        SyncClient(
            store,
            base_url=nobody,
            token="gateway-token-that-nobody-checks",
            gateway_id=GATEWAY,
            site_id=SITE,
            timeout_s=2.0,
            drain_jitter_s=0.0,
        ) as probe,
        asyncio.TaskGroup() as tasks,
    ):
        service: asyncio.Task[None] | None = None
        for minute in range(0, MINUTES, POLL_EVERY_MIN):
            at = T0 + minute * MINUTE
            await virtual.advance(at - virtual.time())
            changes = alert_changes(book, minute, at)
            swelling = {a.key for a in book.active()}  # after this minute's changes
            readings = poll(minute, at, virtual.monotonic_ns(), swelling)
            doors = access_events(minute, at, virtual.monotonic_ns())
            await virtual.advance(10.0)  # the poll, the door and the pipeline's batch delay
            await store.write(readings, changes, access=doors)
            week.readings_written += len(readings)
            week.access_written += doors
            week.alert_changes += changes
            week.peak_bytes_between_checks = max(week.peak_bytes_between_checks, file_bytes(path))

            # The housekeeping service wakes 40 s after every tenth minute (it started then).
            await virtual.advance(30.0)
            if service is None:
                service = tasks.create_task(housekeeper.run(), name="housekeeping")
                await wait_until(lambda: virtual.asleep({"housekeeping"}), timeout_s=30)
            checked(housekeeper)
            # Right after a check the store is within its quota, WAL included, measured as
            # StoreStats.bytes measures it (compared with it every simulated hour).
            assert file_bytes(path) <= QUOTA.max_bytes, (minute, file_bytes(path))
            if minute % 60 == 0:
                stats = await store.stats()
                assert stats.bytes == file_bytes(path) <= QUOTA.max_bytes, (minute, stats)
            week.evicting_passes += bool(housekeeper.last_quota and housekeeper.last_quota.evicted)

            if (minute + POLL_EVERY_MIN) % PROBE_EVERY_MIN == 0:
                with pytest.raises(UplinkUnavailable):
                    await probe.sync_once()
                week.probes_refused += 1

        # The week is over: the last hour closes and is summarised at the next wake.
        await virtual.advance(T0 + MINUTES * MINUTE + 40.0 - virtual.time())
        checked(housekeeper)
        assert (await store.stats()).bytes <= QUOTA.max_bytes
        assert service is not None
        service.cancel()
    week.summaries_written = housekeeper.summaries
    week.housekeeping_passes = housekeeper.passes + housekeeper.checks
    return week


def checked(housekeeper: Housekeeper) -> None:
    """The housekeeping service's last quota check left the store within its quota."""
    report = housekeeper.last_quota
    assert report is not None
    assert report.after.used_bytes <= QUOTA.max_bytes, report


@dataclass(frozen=True)
class CentralApi:
    base_url: str
    gateway_token: str
    platform_token: str


@contextlib.contextmanager
def central_api(tmp_path: Path) -> Iterator[CentralApi]:
    """The central API, started only now: uvicorn on a free loopback port, a SQLite file."""
    url = f"sqlite:///{tmp_path / 'central.db'}"
    platform_token = secrets.token_urlsafe(24)
    settings = CentralSettings(database_url=url, platform_token=SecretStr(platform_token))
    engine = make_engine(url)
    try:
        init_db(engine)
        register_site(engine, SITE, "Outage week building")
        gateway_token = register_gateway(engine, SITE, GATEWAY)
        with serving(settings) as base_url:
            yield CentralApi(base_url, gateway_token, platform_token)
    finally:
        engine.dispose()


async def drain(store: Store, api: CentralApi) -> tuple[SyncClient, list[float]]:
    """A real sync client drains the outbox until it is empty (no rate limit, no jitter);
    returns it and every wait it asked for."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0.001)

    async with SyncClient(
        store,
        base_url=api.base_url,
        token=api.gateway_token,
        gateway_id=GATEWAY,
        site_id=SITE,
        batch_max_records=1000,
        drain_max_records_per_s=None,
        drain_jitter_s=0.0,
        sleep=sleep,
    ) as sync:
        running = asyncio.create_task(sync.run())
        try:
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            while (await store.stats()).outbox:
                if running.done() or time.monotonic() > deadline:
                    pytest.fail(f"the outbox did not drain: {sync.status()}")
                await asyncio.sleep(0.05)
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
    return sync, waits


async def pull(api: CentralApi, feed: str) -> list[dict[str, Any]]:
    """Every item of one of the site's feeds, every page, as the platform pulls them."""
    items: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {api.platform_token}"}
    async with httpx.AsyncClient(base_url=api.base_url, headers=headers, timeout=10) as client:
        cursor = 0
        for _ in range(1000):  # bounded: a million items
            page = await client.get(
                f"/v1/sites/{SITE}/{feed}", params={"after": cursor, "limit": 1000}
            )
            page.raise_for_status()
            body = page.json()
            if not body["items"]:
                return items
            items += body["items"]
            cursor = body["next_cursor"]
    pytest.fail(f"the {feed} feed did not end")


def seq(record_id: str) -> int:
    return int(record_id.rsplit(":", 1)[1])


def store_meta(path: Path) -> tuple[dict[str, str], str]:
    """The store's ``meta`` table and ``PRAGMA integrity_check``, read as a second connection."""
    db = sqlite3.connect(path)
    try:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        return meta, db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


async def test_a_week_without_the_central_api(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    virtual = VirtualTime(T0)
    async with Store(path, gateway_id=GATEWAY, clock=virtual.clock(), quota=QUOTA) as store:
        week = await simulate_week(store, virtual, path)
        before = await store.stats()
        with central_api(tmp_path) as api:
            sync, waits = await drain(store, api)
            alerts, evictions, summaries, access = [
                await pull(api, feed)
                for feed in ("alerts", "evictions", "summaries", "access-events")
            ]
        after = await store.stats()
    meta, integrity = store_meta(path)

    # The week: several times the quota, evicted in passes; the uplink never answered.
    assert week.readings_written == MINUTES // POLL_EVERY_MIN * len(METERS) * len(POINTS)
    assert week.readings_written == 65_520
    assert len(week.alert_changes) == 31
    assert week.probes_refused == MINUTES // PROBE_EVERY_MIN == 28
    assert week.housekeeping_passes == MINUTES // HOUSEKEEPING_EVERY_MIN + 1
    assert week.evicting_passes > 0
    assert before.evicted["reading"] > 0
    assert before.active_alerts == 1
    # Between two checks the store grows by what was written since the last one (one poll), and
    # its WAL up to the journal size limit the store sets (an eighth of the quota).
    assert week.peak_bytes_between_checks <= QUOTA.max_bytes + QUOTA.max_bytes // 8 + 64 * 1024

    # Drained: nothing left, nothing failed, nothing evicted meanwhile, the file is sound.
    assert after.outbox == {}
    assert sync.status().failures == 0
    assert set(waits) <= {2.0}  # only the idle interval: no backoff, no drain delay
    assert after.evicted == before.evicted
    assert integrity == "ok"

    # Every record id is in the feeds at most once, and each is an id this store issued.
    ids = [item["record_id"] for feed in (alerts, evictions, summaries, access) for item in feed]
    assert [i for i, n in Counter(ids).items() if n > 1] == []
    issued = int(meta["outbox_seq"])
    assert {i.rsplit(":", 1)[0] for i in ids} == {f"{GATEWAY}:{meta['store_id']}"}
    assert all(1 <= seq(i) <= issued for i in ids)

    # Every alert change of the week arrived, exactly once.
    assert "alert" not in before.evicted
    written = Counter((a.alert_id, a.event) for a in week.alert_changes)
    assert Counter((a["alert_id"], a["event"]) for a in alerts) == written

    # Every access event of the week arrived, exactly once, and none was evicted.
    assert "access" not in before.evicted
    assert len(week.access_written) == 7 * 24 * 60 // ACCESS_EVERY_MIN * 3 == 168
    arrived = [
        (a["event"], a["credential_ref"], datetime.fromisoformat(a["occurred_at"]).timestamp())
        for a in access
    ]
    assert sorted(arrived) == sorted(
        (e.event, e.credential_ref, e.wall_time) for e in week.access_written
    )

    # The eviction reports add up, per kind, to exactly what the store counted.
    reported: Counter[str] = Counter()
    for item in evictions:
        reported[item["evicted"]] += item["count"]
    assert reported == {k: n for k, n in before.evicted.items() if k in REPORTED_KINDS}
    # Local copies went too (counted, not reported: the outbox still held their records).
    assert before.evicted["summary_copy"] > 0
    assert before.evicted["cleared_alert"] > 0
    assert {item["reason"] for item in evictions} == {"quota"}

    # Every summary arrived but those the quota evicted, and those were the oldest.
    evicted_summaries = before.evicted["summary"]
    assert evicted_summaries > 0
    assert len(summaries) == week.summaries_written - evicted_summaries
    assert issued == (
        week.summaries_written + len(week.alert_changes) + len(evictions) + len(access)
    )
    missing = sorted(set(range(1, issued + 1)) - {seq(i) for i in ids})
    assert len(missing) == evicted_summaries
    assert max(missing) < min(seq(s["record_id"]) for s in summaries)

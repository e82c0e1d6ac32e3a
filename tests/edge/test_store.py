"""The SQLite store on real files: atomic writes with the outbox, summaries, claim/ack/lease."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from cloud_sync.outbox import SetAside
from edge.alerts import Alert, AlertBook
from edge.store import Retention, Store
from firmware_bridge.readings import Reading
from tests.support import alerts as support

T0 = 1_700_000_000.0  # a whole hour (and minute): 2023-11-14T22:13:20Z is not; use buckets below


def reading(point: str, value: float, at: float, device: str = "m1") -> Reading:
    return Reading(device, point, value, "V", at, int(at * 1e9))


def raise_alert(
    book: AlertBook,
    *,
    device: str = "m1",
    point: str = "voltage_l1",
    value: float = 260.0,
    at: float = T0,
) -> Alert:
    return support.raise_alert(book, device=device, point=point, value=value, at=at)


@pytest.fixture
async def store(tmp_path: Path) -> Store:
    async with Store(tmp_path / "gw.db", gateway_id="gw-1") as opened:
        yield opened


async def test_readings_and_alert_outbox_rows_are_written_together(store: Store) -> None:
    book = AlertBook()
    alert = raise_alert(book)
    await store.write([reading("voltage_l1", 260.0, T0)], [alert])

    stats = await store.stats()
    assert stats.readings == 1
    assert stats.active_alerts == 1
    assert stats.outbox == {"alert_event": 1}
    [record] = await store.claim(10, lease_s=30)
    payload = json.loads(record.payload)
    assert payload["kind"] == "alert_event"
    assert payload["record_id"] == record.record_id
    assert record.record_id.startswith(f"gw-1:{store.store_id}:")
    assert payload["body"]["alert_id"] == alert.alert_id
    assert (payload["body"]["event"], payload["body"]["condition"]) == ("raised", "active")
    assert payload["body"]["state"] == "new"
    assert payload["body"]["event_id"] == f"{alert.alert_id}.1"
    assert payload["body"]["text"]["en"].startswith("overvoltage on voltage_l1: 260.0 V")
    assert payload["body"]["text"]["zh-Hans"].startswith("voltage_l1 过电压")


async def test_summaries_match_the_readings_of_each_closed_period(store: Store) -> None:
    start = 1_800_000_000.0 // 60 * 60  # a period boundary
    values = [229.0, 231.5, 230.0, 233.0]
    await store.write([reading("voltage_l1", v, start + i * 10) for i, v in enumerate(values)])
    await store.write([reading("voltage_l1", 240.0, start + 65)])  # next period, still open

    written = await store.summarise(now=start + 100, interval_s=60, grace_s=5)

    assert written == 1
    [record] = await store.claim(10, lease_s=30)
    body = json.loads(record.payload)["body"]
    assert body["count"] == 4
    assert body["min"] == 229.0
    assert body["max"] == 233.0
    assert body["mean"] == pytest.approx(sum(values) / 4)
    assert body["last"] == 233.0
    assert body["period_end"].startswith("2027-01-15T08:01:00")
    # Summarising again adds nothing: each period is summarised once.
    assert await store.summarise(now=start + 100, interval_s=60, grace_s=5) == 0


async def test_counter_deltas_add_up_across_periods_and_a_reset_counts_zero(
    tmp_path: Path,
) -> None:
    start = 1_800_000_000.0 // 60 * 60  # a period boundary
    # kWh per period; the meter is reset (or replaced) at the start of the fourth.
    energy = [[10.0, 10.5, 11.0], [11.75, 12.0], [12.5, 13.0], [0.0, 0.5, 1.0], [1.25, 2.0]]
    path, counters = tmp_path / "gw.db", frozenset({("m1", "import_energy")})
    deltas: list[float] = []
    for run in (energy[:2], energy[2:]):  # two runs, with a restart: 12.5 follows 12.0
        async with Store(path, gateway_id="gw-1", counters=counters) as store:
            offset = len(deltas)
            for period, values in enumerate(run, start=offset):
                at = start + period * 60
                await store.write(
                    [
                        Reading("m1", "import_energy", v, "kWh", at + i, int(at + i))
                        for i, v in enumerate(values)
                    ]
                    + [reading("voltage_l1", 230.0, at)]
                )
            end = start + (offset + len(run)) * 60
            assert await store.summarise(now=end + 10, interval_s=60, grace_s=5) == 2 * len(run)
            claimed = await store.claim(100, lease_s=30)
            await store.ack([r.record_id for r in claimed])
            bodies = [json.loads(r.payload)["body"] for r in claimed]
            assert [b["delta"] for b in bodies if b["point"] == "voltage_l1"] == [None] * len(run)
            deltas += [b["delta"] for b in bodies if b["point"] == "import_energy"]

    assert deltas == pytest.approx([1.0] * 5)  # the step down from 13.0 to 0.0 counts 0
    # Consecutive deltas add up to the counter's increase, before and after the reset.
    assert sum(deltas[:3]) == pytest.approx(energy[2][-1] - energy[0][0])
    assert sum(deltas[3:]) == pytest.approx(energy[4][-1] - energy[3][0])


async def test_claim_leases_ack_deletes_release_frees(store: Store) -> None:
    book = AlertBook()
    alerts = [raise_alert(book, device=f"m{i}") for i in range(5)]
    await store.write([], alerts)

    first = await store.claim(3, lease_s=30)
    second = await store.claim(3, lease_s=30)
    assert len(first) == 3
    assert len(second) == 2
    assert not {r.record_id for r in first} & {r.record_id for r in second}
    assert await store.claim(3, lease_s=30) == []

    await store.ack([r.record_id for r in first])
    await store.release([r.record_id for r in second])
    again = await store.claim(10, lease_s=30)
    assert [r.record_id for r in again] == [r.record_id for r in second]


async def test_alerts_are_claimed_before_summaries(store: Store) -> None:
    start = 1_800_000_000.0 // 60 * 60
    await store.write([reading("voltage_l1", 230.0, start)])
    await store.summarise(now=start + 100, interval_s=60, grace_s=5)
    book = AlertBook()
    alert = raise_alert(book, at=start + 90)
    await store.write([], [alert])

    kinds = [r.kind for r in await store.claim(10, lease_s=30)]
    assert kinds == ["alert_event", "summary"]


async def test_records_set_aside_are_kept_out_of_claims_until_the_terms_change(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gw.db"
    book = AlertBook()
    alerts = [raise_alert(book, device=f"m{i}") for i in range(3)]
    critical = support.raise_alert(
        book, rule="use_stopped", device="flat-1", point="use", value=9.0, at=T0
    )
    async with Store(path, gateway_id="gw-1") as store:
        await store.write([reading("voltage_l1", 230.0, T0)], [*alerts, critical])
        claimed = await store.claim(10, lease_s=30)
        assert [r.urgent for r in claimed] == [False, False, False, True]
        assert await store.urgent_waiting()
        refused = [SetAside(r.record_id, "invalid", "body.x: extra") for r in claimed[1:]]
        assert await store.set_aside(refused, "terms-a") == 3
        await store.release([claimed[0].record_id])
        # Set aside: never claimed again, counted, and a critical alert there is not "waiting".
        assert [r.record_id for r in await store.claim(10, lease_s=30)] == [claimed[0].record_id]
        assert not await store.urgent_waiting()
        assert (await store.stats()).set_aside == {"alert_event": 3}
        listed = await store.set_aside_records()
        assert [(r["record_id"], r["refusal"]) for r in listed] == [
            (r.record_id, "invalid: body.x: extra") for r in refused
        ]
    async with Store(path, gateway_id="gw-1") as store:  # kept across a restart
        assert await store.resend_set_aside("terms-a") == 0  # the same terms: still refused
        assert await store.claim(10, lease_s=30) == [claimed[0]]
        assert await store.resend_set_aside("terms-b") == 3  # either side upgraded
        again = await store.claim(10, lease_s=30)
        assert [r.record_id for r in again] == [r.record_id for r in claimed[1:]]
        assert (await store.stats()).set_aside == {}


async def test_a_claim_takes_only_the_kinds_asked_for(store: Store) -> None:
    start = 1_800_000_000.0 // 60 * 60
    await store.write([reading("voltage_l1", 230.0, start)])
    await store.summarise(now=start + 100, interval_s=60, grace_s=5)
    await store.write([], [raise_alert(AlertBook(), at=start + 90)])
    assert [r.kind for r in await store.claim(10, 30, kinds=("summary",))] == ["summary"]
    assert await store.claim(10, 30, kinds=()) == []
    assert [r.kind for r in await store.claim(10, 30, kinds=None)] == ["alert_event"]


async def test_leases_end_with_the_process_and_records_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    book = AlertBook()
    alert = raise_alert(book)
    async with Store(path, gateway_id="gw-1") as store:
        await store.write([reading("voltage_l1", 260.0, T0)], [alert])
        [leased] = await store.claim(10, lease_s=3600)
        store_id = store.store_id
    async with Store(path, gateway_id="gw-1") as store:
        assert store.store_id == store_id
        [again] = await store.claim(10, lease_s=30)
        assert again.record_id == leased.record_id
        assert [a.alert_id for a in await store.open_alerts()] == [alert.alert_id]


async def test_record_ids_are_never_reused_after_ack(tmp_path: Path) -> None:
    async with Store(tmp_path / "gw.db", gateway_id="gw-1") as store:
        seen: set[str] = set()
        for i in range(3):
            book = AlertBook()
            alert = raise_alert(book, point=f"p{i}", value=1.0, at=T0 + i)
            await store.write([], [alert])
            [record] = await store.claim(10, lease_s=30)
            assert record.record_id not in seen
            seen.add(record.record_id)
            await store.ack([record.record_id])


async def test_database_is_in_wal_mode(store: Store, tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "gw.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


async def test_prune_keeps_readings_not_yet_summarised(store: Store) -> None:
    start = 1_800_000_000.0 // 60 * 60
    await store.write([reading("voltage_l1", 230.0, start + i) for i in range(3)])
    assert await store.prune(now=start + 10_000, retention_s=60) == 0
    await store.summarise(now=start + 100, interval_s=60, grace_s=5)
    assert await store.prune(now=start + 10_000, retention_s=60) == 3


async def test_retention_per_kind_keeps_what_is_not_safe_elsewhere(tmp_path: Path) -> None:
    start = 1_800_000_000.0 // 60 * 60
    day = 86_400.0
    keep = Retention(reading_s=day, summary_s=7 * day, cleared_alert_s=30 * day)
    async with Store(tmp_path / "gw.db", gateway_id="gw-1", retention=keep) as store:
        book = AlertBook()
        raised = raise_alert(book, at=start)
        cleared = support.clear_alert(book, raised, at=start + 1)
        active = raise_alert(book, point="voltage_l2", at=start)
        await store.write([reading("voltage_l1", 230.0, start + i) for i in range(3)], [raised])
        await store.write([], [*cleared, active])

        at_2_days = await store.housekeep(now=start + 2 * day, interval_s=60)
        assert (at_2_days.summaries, at_2_days.pruned.readings) == (1, 3)
        assert at_2_days.pruned.summaries == at_2_days.pruned.cleared_alerts == 0
        at_8_days = await store.housekeep(now=start + 8 * day, interval_s=60)
        assert (at_8_days.pruned.summaries, at_8_days.pruned.cleared_alerts) == (1, 0)
        at_31_days = await store.housekeep(now=start + 31 * day, interval_s=60)
        assert at_31_days.pruned.cleared_alerts == 1

        stats = await store.stats()
        assert (stats.readings, stats.summaries, stats.active_alerts) == (0, 0, 1)
        # Retention never touches the outbox: every record still goes to the central API.
        assert stats.outbox == {"alert_event": 4, "summary": 1}
        assert stats.evicted == {}


async def test_retention_never_prunes_an_alert_that_is_still_open(tmp_path: Path) -> None:
    day = 86_400.0
    keep = Retention(cleared_alert_s=30 * day)
    book = AlertBook()
    start = T0
    stopped = support.raise_alert(
        book, rule="use_stopped", device="flat-1", point="use", value=9.0, at=start
    )
    [cleared] = support.clear_alert(book, stopped, at=start + 60)  # nobody resolved it
    swell = raise_alert(book, at=start)
    closed = support.clear_alert(book, swell, at=start + 60)  # a warning: resolved auto
    async with Store(tmp_path / "gw.db", gateway_id="gw-1", retention=keep) as store:
        await store.write([], [stopped, cleared, swell, *closed])
        await store.housekeep(now=start + 365 * day, interval_s=60)
        left = await store.open_alerts()
        assert [a.alert_id for a in left] == [stopped.alert_id]
        assert [e["event"] for e in await store.alert_history(stopped.alert_id)] == [
            "raised",
            "cleared",
        ]
        assert await store.alert_history(swell.alert_id) == []  # pruned with its alert

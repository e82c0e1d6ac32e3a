"""The pipeline with a real store: readings overflow by dropping the oldest, access events are
never dropped, an access event alone is written promptly, and close flushes everything."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from edge import pipeline as pipeline_module
from edge.alerts import Alert, AlertBook
from edge.pipeline import Pipeline
from edge.store import Store
from firmware_bridge import AccessEvent, Reading
from nbedge.errors import DecodeError
from tests.conftest import wait_until

T0 = 1_800_000_000.0


def reading(i: int) -> Reading:
    return Reading("m1", "voltage_l1", 230.0, "V", T0 + i, i)


def event(i: int, device: str = "gate-1") -> AccessEvent:
    return AccessEvent(device, "granted", f"hmac:{i:04x}", T0 + i, i, None)


def make_pipeline(store: Store, queue_size: int = 10) -> Pipeline:
    return Pipeline(
        store,
        rules=[],
        book=AlertBook(),
        on_alert=lambda _: None,
        queue_size=queue_size,
        batch_max_items=5,
        batch_max_delay_s=0.01,
    )


async def test_overflow_drops_readings_but_never_an_access_event(tmp_path: Path) -> None:
    async with Store(tmp_path / "gw.db", gateway_id="gw-1") as store:
        pipe = make_pipeline(store, queue_size=10)
        # Acquisition outruns the writer (not started yet): 1000 readings, 100 access events.
        for i in range(1000):
            pipe.submit(reading(i))
            if i % 10 == 0:
                pipe.submit_access(event(i))
        assert pipe.stats().dropped == 990
        assert pipe.stats().access_queued == 100
        pipe.close()
        await pipe.run()
        stats, stored = pipe.stats(), await store.stats()

    assert (stats.access_received, stats.access_written, stats.access_queued) == (100, 100, 0)
    assert (stats.access_overflow, stats.access_rejected) == (0, 0)
    assert stats.written == stored.readings == 10
    assert stored.access_events == 100
    assert stored.outbox == {"access": 100}


async def test_an_access_event_alone_is_written_promptly(tmp_path: Path) -> None:
    async with Store(tmp_path / "gw.db", gateway_id="gw-1") as store:
        pipe = make_pipeline(store)
        async with asyncio.TaskGroup() as tasks:
            writer = tasks.create_task(pipe.run())
            await asyncio.sleep(0.05)  # the writer waits on an empty queue
            pipe.submit_access(event(1, device="door-7"))
            await wait_until(lambda: pipe.stats().access_written == 1)
            pipe.submit(reading(2))
            pipe.submit_access(event(3))
            pipe.close()
            await writer
        stats, stored = pipe.stats(), await store.stats()
        [*records] = await store.claim(10, lease_s=30)

    assert (stats.access_written, stats.written) == (2, 1)
    assert stored.access_events == 2
    assert [r.kind for r in records] == ["access", "access"]


async def test_events_beyond_the_hard_cap_are_refused_counted_and_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(pipeline_module, "ACCESS_HARD_CAP", 5)
    async with Store(tmp_path / "gw.db", gateway_id="gw-1") as store:
        pipe = make_pipeline(store)
        with caplog.at_level(logging.ERROR):
            for i in range(7):
                pipe.submit_access(event(i))
        pipe.close()
        await pipe.run()
        stored = await store.stats()
    stats = pipe.stats()
    assert (stats.access_received, stats.access_overflow, stats.access_written) == (7, 2, 5)
    assert stored.access_events == 5  # the events accepted first are all kept
    assert any("hard cap" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


async def test_an_event_that_cannot_go_on_the_wire_is_refused_at_once(tmp_path: Path) -> None:
    async with Store(tmp_path / "gw.db", gateway_id="gw-1") as store:
        pipe = make_pipeline(store)
        with pytest.raises(DecodeError):
            pipe.submit_access(AccessEvent("gate 1", "granted", "card 1234", T0, 0, None))
        pipe.submit_access(event(1))  # the writer is not blocked by the bad one
        pipe.close()
        await pipe.run()
        stored = await store.stats()
    stats = pipe.stats()
    assert (stats.access_rejected, stats.access_written, stored.access_events) == (1, 1, 1)


class FailingStore(Store):
    """A real store whose first writes fail (a full disk, say)."""

    failures = 2

    async def write(
        self,
        readings: Sequence[Reading],
        alerts: Sequence[Alert] = (),
        *,
        access: Sequence[AccessEvent] = (),
        cursors: Mapping[str, str] | None = None,
    ) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError("disk full")
        await super().write(readings, alerts, access=access, cursors=cursors)


async def test_access_events_wait_through_failed_writes(tmp_path: Path) -> None:
    async with FailingStore(tmp_path / "gw.db", gateway_id="gw-1") as store:
        pipe = make_pipeline(store)
        async with asyncio.TaskGroup() as tasks:
            writer = tasks.create_task(pipe.run())
            pipe.submit_access(event(1))
            await wait_until(lambda: pipe.stats().write_failures >= 1)
            pipe.submit_access(event(2))  # arrives while the first write is being retried
            pipe.close()
            await writer
        stored = await store.stats()
    stats = pipe.stats()
    assert (stats.write_failures, stats.access_written, stats.access_queued) == (2, 2, 0)
    assert stored.access_events == 2

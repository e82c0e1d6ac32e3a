"""Stopping services: a task that loses its cancellations is named in the log and stopped."""

from __future__ import annotations

import asyncio
import logging

import pytest

from edge import daemon


async def test_a_task_that_loses_its_cancellations_is_logged_once_and_cancelled_until_it_ends(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(daemon, "RECANCEL_S", 0.2)
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        for _ in range(2):  # the first two cancellations are lost (see daemon's doc)
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                swallowed += 1
        await asyncio.sleep(3600)

    async def polite() -> None:
        await asyncio.sleep(3600)

    tasks = [asyncio.create_task(stubborn(), name="stubborn"), asyncio.create_task(polite())]
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="edge.daemon"):
        async with asyncio.timeout(5):
            await daemon._cancel_and_wait(tasks)
    assert swallowed == 2
    assert all(task.done() for task in tasks)
    (record,) = [r for r in caplog.records if "did not stop" in r.getMessage()]
    where = record.__dict__["tasks"]
    assert len(where) == 1
    assert where[0].startswith("stubborn at ")
    assert "(sleep)" in where[0]

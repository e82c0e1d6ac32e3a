"""Stopping services: a task that swallows a cancellation is named in the log and stopped."""

from __future__ import annotations

import asyncio
import logging

import pytest

from edge import daemon


async def test_a_task_that_swallows_its_cancellation_is_logged_and_cancelled_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(daemon, "SHUTDOWN_TIMEOUT_S", 0.2)
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            swallowed += 1  # a bug in a service: the first cancellation is lost
        await asyncio.sleep(3600)

    async def polite() -> None:
        await asyncio.sleep(3600)

    tasks = [asyncio.create_task(stubborn(), name="stubborn"), asyncio.create_task(polite())]
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="edge.daemon"):
        async with asyncio.timeout(5):
            await daemon._cancel_and_wait(tasks)
    assert swallowed == 1
    assert all(task.done() for task in tasks)
    (record,) = [r for r in caplog.records if "did not stop" in r.getMessage()]
    where = record.__dict__["tasks"]
    assert len(where) == 1
    assert where[0].startswith("stubborn at ")
    assert "(sleep)" in where[0]

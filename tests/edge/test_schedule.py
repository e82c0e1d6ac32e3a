"""A whole in-process gateway in virtual time: what it does on a schedule, it does on time.

The gateway runs with a ``VirtualTime`` clock (every service that waits or schedules takes it),
on a store with eight weeks of a building's history, and time is moved across hour boundaries.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edge.clock import Clock
from edge.config import parse_config
from edge.daemon import Gateway
from edge.schemas import GatewayConfig
from edge.store import Store
from tests.conftest import free_port, wait_until
from tests.edge.test_analytics import NOW_HOUR, counter_readings, office_load
from tests.support.clocks import VirtualTime

HOUR = 3600

CONFIG = """
[gateway]
id = "gw-schedule"
site = "site-schedule"
state_dir = "{state}"

[mqtt]
enabled = false

[local_api]
enabled = false

[rules.device_silent]
enabled = false

[store]
housekeeping_interval_s = 60

[site]
timezone = "Europe/London"
country = "GB"
subdivision = "ENG"

[[modbus.devices]]
name = "main"
profile = "eastron_sdm630"
host = "127.0.0.1"
port = {port}
poll_interval_s = 5

[models]
bundle_check_interval_s = {check}

[[models.demand]]
name = "office"
meters = ["main:import_energy"]
"""


async def seed(config: GatewayConfig) -> None:
    """Eight weeks of the office's hourly energy, summarised, up to ``NOW_HOUR``."""
    readings = counter_readings("main", "import_energy", "kWh", office_load())
    async with Store(
        config.database_path,
        gateway_id=config.gateway.id,
        counters=frozenset({("main", "import_energy")}),
        clock=Clock(synchronised=lambda: True),
    ) as store:
        await store.write(readings, [])
        await store.summarise(now=NOW_HOUR + 10, interval_s=HOUR, grace_s=5)


@pytest.mark.parametrize("check_s", [60, 7, 1800, 3600], ids=lambda s: f"bundle-check-{s}s")
async def test_the_models_run_once_an_hour_on_time_whatever_the_bundle_check_interval(
    tmp_path: Path, check_s: int
) -> None:
    # 60 s is the default bundle check: before the fix, every run after the first was skipped.
    config = parse_config(CONFIG.format(state=tmp_path / "state", port=free_port(), check=check_s))
    await seed(config)
    started = NOW_HOUR + 20 * 60 + 17.5  # 14:20:17.5 UTC
    virtual = VirtualTime(started)
    gateway = Gateway(config, clock=virtual.clock())
    stop = asyncio.Event()
    running = asyncio.create_task(gateway.run(stop))
    try:
        await wait_until(
            lambda: (
                gateway.analytics is not None
                and gateway.analytics.stats.runs == 1
                and virtual.asleep({"analytics", "housekeeping"})
            ),
            timeout_s=30,
        )
        analytics = gateway.analytics
        assert analytics is not None
        assert analytics.stats.last_run_at == started  # a run at start
        for k in (1, 2, 3):
            due = NOW_HOUR + k * HOUR + 60.0  # HH:01:00
            await virtual.advance(due - 0.5 - virtual.time())
            assert analytics.stats.runs == k, f"a run before {due} or twice in hour {k}"
            await virtual.advance(0.5)
            assert analytics.stats.runs == k + 1, f"the run due at HH:01 of hour {k} did not come"
            assert analytics.stats.last_run_at == due
            assert analytics.status().next_run_at == due + HOUR
        await virtual.advance(30 * 60)
        assert analytics.stats.runs == 4
        store = gateway._store
        assert store is not None
        forecasts = await store.forecasts("office", NOW_HOUR)
        assert [(f.start, f.issued_at) for f in forecasts] == [
            (NOW_HOUR, started),
            *((NOW_HOUR + k * HOUR, NOW_HOUR + k * HOUR + 60.0) for k in (1, 2, 3)),
        ]
        assert gateway.housekeeper is not None
        assert gateway.housekeeper.passes >= 4  # a summary pass after each of the hours
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await running

"""A building for the console's tests: a simulated SDM630 main meter, a flat's electricity and
water meters and a gate behind a pymodbus TCP server, a real Mosquitto, and an in-process
gateway whose local web app listens on a loopback port. People: 王芳 (a responder), 李伟 (a
viewer) and 张强 (an installer), each with a password."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge.clock import Clock
from edge.config import parse_config
from edge.daemon import Gateway
from edge.people import PEOPLE_FILE, PeopleStore, Role
from firmware_bridge.modbus.profiles import load_profile
from sim.gate import SimulatedGate
from sim.load_profile import ResidentialLoadProfile
from sim.meter import SimulatedMeter
from sim.modbus_server import SimulatedBuilding
from tests.conftest import Broker, free_port
from tests.test_alert_actions import retained

SITE, GATEWAY = "site-console", "gw-console"
PASSWORD = "correct horse 301"
PEOPLE = {
    "wang.fang": (Role.RESPONDER, "王芳"),
    "li.wei": (Role.VIEWER, "李伟"),
    "zhang.qiang": (Role.INSTALLER, "张强"),
}
LABELS = {"main": "1号楼总电表", "flat-1": "2单元301室电表", "entrance": "3号楼东门"}
HOME_LABEL = "2单元301室 (李奶奶)"


class ShiftedClock(Clock):
    """The system's clock whose monotonic time a test moves on (``skip``): a session's idle
    time passing. The wall clock is the system's."""

    def __init__(self) -> None:
        self.offset_ns = 0
        super().__init__(
            synchronised=lambda: True,
            monotonic_ns=lambda: time.monotonic_ns() + self.offset_ns,
        )

    def skip(self, seconds: float) -> None:
        self.offset_ns += int(seconds * 1e9)


@dataclass
class Building:
    gateway: Gateway
    main: SimulatedMeter
    url: str
    broker: Broker
    clock: ShiftedClock
    state_dir: Path

    def topic(self, alert_id: str) -> str:
        return f"nbedge/{SITE}/{GATEWAY}/alerts/{alert_id}"


def config_text(
    tmp_path: Path,
    *,
    modbus_port: int,
    broker: Broker,
    local_port: int,
    extra: str = "",
    local_api: str = "",
) -> str:
    devices = "\n".join(
        f"""
[[modbus.devices]]
name = "{name}"
label = "{LABELS.get(name, name)}"
profile = "{profile}"
host = "127.0.0.1"
port = {modbus_port}
unit_id = {unit}
poll_interval_s = 1.0
"""
        for name, profile, unit in (
            ("main", "eastron_sdm630", 1),
            ("flat-1", "eastron_sdm120", 3),
            ("flat-1-water", "advantech_adam6050_water", 4),
        )
    )
    return f"""
[gateway]
id = "{GATEWAY}"
site = "{SITE}"
state_dir = "{tmp_path / "state"}"

[mqtt]
host = "{broker.host}"
port = {broker.port}

[store]
batch_max_delay_s = 0.05

[local_api]
host = "127.0.0.1"
port = {local_port}
{local_api}

[site]
label = "幸福里3号楼"
timezone = "Asia/Shanghai"
{devices}
[[modbus.gates]]
name = "entrance"
label = "{LABELS["entrance"]}"
host = "127.0.0.1"
port = {modbus_port}
unit_id = 2

[[models.dwellings]]
name = "flat-1"
label = "{HOME_LABEL}"
meters = ["flat-1:import_energy", "flat-1-water:volume"]
{extra}
"""


def add_people(state_dir: Path) -> None:
    people = PeopleStore(state_dir / PEOPLE_FILE)
    state_dir.mkdir(parents=True, exist_ok=True)
    for name, (role, display) in PEOPLE.items():
        people.add(name, role, display=display, password=PASSWORD)


SEEDED_KWH = [0.5 + 0.1 * (h % 12) for h in range(30)]
"""The main meter's use in each of the 30 whole hours before this one (kWh)."""


async def seed_hours(config: Any) -> None:
    """The main meter's last 30 hours, as hourly summaries (the chart has something to draw)."""
    from edge.store import Store
    from firmware_bridge.readings import Reading

    end = int(time.time() // 3600 * 3600)
    start = end - len(SEEDED_KWH) * 3600
    total, readings = 1000.0, [Reading("main", "import_energy", 1000.0, "kWh", start + 1, 0)]
    for hour, used in enumerate(SEEDED_KWH):
        total += used
        readings.append(
            Reading("main", "import_energy", total, "kWh", start + hour * 3600 + 3599, 0)
        )
    async with Store(
        config.database_path,
        gateway_id=config.gateway.id,
        counters=frozenset({("main", "import_energy")}),
        clock=Clock(synchronised=lambda: True),
    ) as store:
        await store.write(readings, [])
        await store.summarise(now=end + 10, interval_s=3600, grace_s=5)


@contextlib.asynccontextmanager
async def console_building(
    tmp_path: Path, broker: Broker, *, extra: str = "", local_api: str = ""
) -> AsyncIterator[Building]:
    main = SimulatedMeter(
        load_profile("eastron_sdm630"), ResidentialLoadProfile(), start=datetime.now(tz=UTC)
    )
    flat_load = ResidentialLoadProfile(base_w=80, morning_peak_w=600, evening_peak_w=900)
    flat = SimulatedMeter(load_profile("eastron_sdm120"), flat_load, start=datetime.now(tz=UTC))
    water = SimulatedMeter(
        load_profile("advantech_adam6050_water"), flat_load, start=datetime.now(tz=UTC)
    )
    local_port = free_port()
    async with SimulatedBuilding(
        {1: main, 3: flat, 4: water}, gates={2: SimulatedGate()}, port=0
    ) as sim:
        config = parse_config(
            config_text(
                tmp_path,
                modbus_port=sim.port,
                broker=broker,
                local_port=local_port,
                extra=extra,
                local_api=local_api,
            )
        )
        add_people(config.gateway.state_dir)
        await seed_hours(config)
        clock = ShiftedClock()
        gateway = Gateway(config, clock=clock)
        stop = asyncio.Event()
        running = asyncio.create_task(gateway.run(stop))
        try:
            await asyncio.wait_for(gateway.ready.wait(), 15)
            scheme = "https" if "tls_cert" in local_api else "http"
            yield Building(
                gateway,
                main,
                f"{scheme}://127.0.0.1:{local_port}",
                broker,
                clock,
                config.gateway.state_dir,
            )
        finally:
            stop.set()
            await asyncio.wait_for(running, 20)


async def retained_when(
    broker: Broker, topic: str, condition: Any, timeout_s: float = 5.0
) -> dict[str, Any]:
    """The retained message on ``topic`` once ``condition(message)`` holds; fails after
    ``timeout_s`` with the last one seen."""
    deadline = time.monotonic() + timeout_s
    message = await retained(broker, topic)
    while message is None or not condition(message):
        assert time.monotonic() < deadline, f"retained on {topic}: {message}"
        await asyncio.sleep(0.1)
        message = await retained(broker, topic)
    return message

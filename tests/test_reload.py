"""``systemctl reload``: a running ``nbedge run`` takes a changed configuration on SIGHUP.

A real process, a simulated building behind Modbus TCP and a real Mosquitto: a meter is added,
one removed (its alert cleared), a rule changed; the MQTT session and the other meter's readings
go on through it. An invalid file is refused and the running configuration stays; a change that
needs a restart is logged and not applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest

from firmware_bridge.modbus.profiles import load_profile
from sim.load_profile import ResidentialLoadProfile
from sim.meter import SimulatedMeter
from sim.modbus_server import SimulatedBuilding
from tests.conftest import Broker, free_port, wait_until
from tests.edge.test_console import login
from tests.support.console import config_text, console_building

pytestmark = pytest.mark.timeout(180)
SITE, GATEWAY = "site-reload", "gw-reload"
ROOT = f"nbedge/{SITE}/{GATEWAY}"


def config(
    tmp_path: Path, *, sim_port: int, broker: Broker, local_port: int, meters: dict[str, int]
) -> str:
    devices = "".join(
        f"""
[[modbus.devices]]
name = "{name}"
label = "{name} 表"
profile = "{"eastron_sdm630" if unit == 1 else "eastron_sdm120"}"
host = "127.0.0.1"
port = {sim_port}
unit_id = {unit}
poll_interval_s = 0.5
timeout_s = 0.3
"""
        for name, unit in meters.items()
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

[log]
format = "json"
{devices}
"""


@contextlib.asynccontextmanager
async def running(path: Path, log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge.cli", "run", "--config", str(path), stdout=out, stderr=out
        )
        try:
            yield process
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                await asyncio.wait_for(process.wait(), 30)


async def status(client: httpx.AsyncClient) -> dict[str, Any]:
    answer = await client.get("/api/status")
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


def devices_of(state: dict[str, Any]) -> dict[str, bool]:
    return {d["name"]: d["online"] for bus in state["modbus"] for d in bus["devices"]}


async def until(check: Any, timeout_s: float, what: str) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"{what}: not within {timeout_s} s")
        await asyncio.sleep(0.2)


def logged(log: Path, message: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("msg") == message]


def readings(db: Path, device: str) -> list[float]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        rows = conn.execute(
            "SELECT wall_time FROM readings WHERE device = ? AND point = 'voltage_l1' ORDER BY id",
            (device,),
        ).fetchall()
    return [row[0] for row in rows]


@pytest.mark.slow
async def test_sighup_takes_a_changed_configuration(tmp_path: Path, mosquitto: Broker) -> None:
    now = datetime.now(tz=UTC)
    meters = {
        1: SimulatedMeter(load_profile("eastron_sdm630"), ResidentialLoadProfile(), start=now),
        3: SimulatedMeter(load_profile("eastron_sdm120"), ResidentialLoadProfile(), start=now),
        4: SimulatedMeter(load_profile("eastron_sdm120"), ResidentialLoadProfile(), start=now),
    }
    local_port = free_port()
    path = tmp_path / "gateway.toml"
    log = tmp_path / "gateway.log"
    online: list[bytes] = []
    alerts: dict[str, dict[str, Any]] = {}
    discovery: dict[str, bytes] = {}  # what Home Assistant is told, by config topic

    async with (
        SimulatedBuilding(meters, port=0) as sim,
        aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="watcher") as watcher,
    ):

        def write(meters: dict[str, int], extra: str = "") -> None:
            text = config(
                tmp_path, sim_port=sim.port, broker=mosquitto, local_port=local_port, meters=meters
            )
            path.write_text(text + "\n[mqtt.home_assistant]\nenabled = true\n" + extra)

        async def listen() -> None:
            async for message in watcher.messages:
                topic = str(message.topic)
                if topic.startswith("homeassistant/"):
                    discovery[topic] = bytes(message.payload)  # type: ignore[arg-type]
                elif topic == f"{ROOT}/status" and message.payload == b"online":
                    online.append(message.payload)
                elif topic.startswith(f"{ROOT}/alerts/") and topic.count("/") == 4:
                    states = alerts.setdefault(topic.rsplit("/", 1)[1], {})
                    if message.payload:
                        body = json.loads(message.payload)
                        states[body["condition"]] = body
                    else:  # the retained alert taken away: cleared and resolved
                        states["closed"] = {}

        await watcher.subscribe(f"{ROOT}/#", qos=1)
        await watcher.subscribe("homeassistant/#", qos=1)
        listening = asyncio.create_task(listen())
        write({"main": 1, "flat-1": 3})
        async with (
            running(path, log) as process,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{local_port}", timeout=10) as client,
        ):

            async def both_online() -> bool:
                with contextlib.suppress(httpx.HTTPError):
                    return devices_of(await status(client)) == {"main": True, "flat-1": True}
                return False

            await until(both_online, 30, "the gateway and its two meters")
            sim.silence(3)  # flat-1 stops answering: its device_silent alert

            def silent_alert() -> dict[str, Any]:
                """flat-1's device_silent alert: its last message per condition."""
                return next(
                    (
                        states
                        for states in alerts.values()
                        if any(
                            a["device"] == "flat-1" and a["rule"] == "device_silent"
                            for a in states.values()
                        )
                    ),
                    {},
                )

            async def raised() -> bool:
                return "active" in silent_alert()

            await until(raised, 20, "flat-1's device_silent alert")
            sessions = len(online)

            # flat-1 removed, flat-2 added, the voltage rule changed: reload.
            write(
                {"main": 1, "flat-2": 4},
                "\n[rules.voltage]\nnominal_v = 220.0\ntolerance_pct = 7.0\n",
            )
            reloaded_at = time.time()
            process.send_signal(signal.SIGHUP)

            async def reloaded() -> bool:
                return devices_of(await status(client)) == {"main": True, "flat-2": True}

            await until(reloaded, 20, "the new meters after the reload")

            async def cleared() -> bool:
                return bool({"cleared", "closed"} & set(silent_alert()))

            await until(cleared, 10, "the removed meter's alert cleared")

            def entities(device: str) -> dict[str, bytes]:
                return {t: p for t, p in discovery.items() if f"-{device}-" in t}

            async def flat_1_deleted() -> bool:  # its entities gone from Home Assistant
                return bool(entities("flat-1")) and not any(entities("flat-1").values())

            await until(flat_1_deleted, 10, "flat-1's Home Assistant entities deleted")
            assert entities("flat-2")  # the new meter's, announced
            assert all(entities("flat-2").values())
            assert all(entities("main").values())
            assert process.returncode is None
            (applied,) = logged(log, "configuration reloaded")
            assert set(applied["changed"]) >= {"modbus", "rules"}
            assert applied["removed"] == ["flat-1"]

            # An invalid file is refused; the running configuration stays.
            valid = path.read_text()
            path.write_text(valid.replace(f"port = {mosquitto.port}", 'port = "eighteen"'))
            process.send_signal(signal.SIGHUP)

            async def refused() -> bool:
                return bool(logged(log, "reload refused: the configuration is not valid"))

            await until(refused, 10, "the invalid configuration refused")
            (why,) = logged(log, "reload refused: the configuration is not valid")
            assert any(e.startswith("mqtt.port:") for e in why["errors"]), why
            assert devices_of(await status(client)) == {"main": True, "flat-2": True}

            # A change that needs a restart is logged and not applied.
            path.write_text(valid.replace("batch_max_delay_s = 0.05", "batch_max_delay_s = 0.1"))
            process.send_signal(signal.SIGHUP)

            async def restart_logged() -> bool:
                return bool(logged(log, "configuration changes that need a restart, not applied"))

            await until(restart_logged, 10, "the restart-only change logged")
            (waiting,) = logged(log, "configuration changes that need a restart, not applied")
            assert waiting["keys"] == ["store"]
            db = tmp_path / "state" / "gateway.db"

            async def polled_on() -> bool:  # the meter that stayed goes on being read
                return sum(t > reloaded_at for t in readings(db, "main")) >= 4

            await until(polled_on, 10, "main's readings after the reload")
            state = await status(client)
            assert state["mqtt"]["connected"]
            assert state["mqtt"]["connection_failures"] == 0
        assert process.returncode == 0
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening

    assert len(online) == sessions == 1  # one MQTT session throughout: no reconnect
    times = readings(tmp_path / "state" / "gateway.db", "main")
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(times) < reloaded_at - 1 < reloaded_at + 1 < max(times)  # before and after
    assert max(gaps) < 2.5, f"main's readings stopped for {max(gaps):.1f} s"  # polled every 0.5 s


@pytest.mark.slow
async def test_a_reload_takes_policies_models_labels_and_keeps_the_gate_s_driver(
    tmp_path: Path, mosquitto: Broker
) -> None:
    """In one process: what the SIGHUP handler asks (``request_reload``), the daemon's own
    reload task does."""
    async with console_building(tmp_path, mosquitto) as building:
        gateway = building.gateway
        path = tmp_path / "gateway.toml"
        original = config_text(
            tmp_path,
            modbus_port=gateway.config.modbus.devices[0].port,
            broker=mosquitto,
            local_port=gateway.config.local_api.port,
        )
        path.write_text(original, encoding="utf-8")
        gateway.config_path = path
        (gate_driver,) = [controller for _, controller, _ in gateway._gates.values()]
        analytics = gateway.analytics
        policy = (
            '\n[[alerts.escalation]]\nseverity = "warning"\nafter_s = 1.0\nevery_s = 60.0\n'
            'levels = ["grid_worker"]\n'
        )
        changed = (
            original.replace('label = "1号楼总电表"', 'label = "一号楼总表"')
            .replace('label = "3号楼东门"', 'label = "东门"')
            .replace(
                'meters = ["flat-1:import_energy"',
                'respond = "calibrated"\nmeters = ["flat-1:import_energy"',
            )
            + policy
        )
        path.write_text(changed, encoding="utf-8")
        reloads = gateway.reloads
        gateway.request_reload()
        await wait_until(lambda: gateway.reloads == reloads + 1, 10)

        assert gateway.config.models.dwellings[0].respond == "calibrated"
        assert gateway.analytics is not analytics  # the models run again on the new series
        (driver,) = [controller for _, controller, _ in gateway._gates.values()]
        assert driver is gate_driver  # only its label changed: the same driver goes on
        async with httpx.AsyncClient(base_url=building.url, timeout=10) as client:
            await login(client, "li.wei")
            devices = (await client.get("/devices")).text
        assert "一号楼总表" in devices
        assert "东门" in devices

        building.main.override("voltage_l1", 262.0)  # escalated by the new policy

        def escalated() -> bool:
            return any(a.rule == "voltage" and a.level == 1 for a in gateway.active_alerts())

        await wait_until(escalated, 10)

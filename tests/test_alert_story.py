"""The story of one alert people act on, with real components, told once at the platform.

A resident living alone stops using water and electricity: a simulated flat (pymodbus over TCP
on 127.0.0.1) that uses nothing, on top of eight weeks of history in the gateway's store in
which its last four usually busy hours were quiet. The gateway raises ``use_stopped``; nobody
acknowledges it, so it escalates, on MQTT (a real Mosquitto) and at the central API (uvicorn, on
SQLite and on PostgreSQL); the gateway goes offline and the platform acknowledges it; the
gateway comes back and applies it; MQTT shows who acknowledged; a responder resolves it on the
local API with an outcome; the central history holds raised, escalated, acknowledged, resolved,
each once and in order, with the time it took to acknowledge.

The in-process gateway runs on a virtual clock (the escalation and sync timers); in the variant
with a real ``nbedge run``, it is killed with SIGKILL in the middle, which changes none of that.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest

from edge.daemon import Gateway
from edge.demo import (
    FLAT_UNIT,
    FLAT_WATER_UNIT,
    GATE_UNIT,
    GATEWAY,
    SITE,
    demo_config,
    demo_history,
    demo_timezone,
    seed_history,
)
from edge.schemas import GatewayConfig
from firmware_bridge.modbus.profiles import load_profile
from sim.gate import SimulatedGate
from sim.load_profile import ResidentialLoadProfile
from sim.meter import SimulatedMeter
from sim.modbus_server import SimulatedBuilding
from tests.cloud_sync.servers import PostgresUnavailable, postgres_cluster
from tests.conftest import Broker, free_port
from tests.support.central import serve_central
from tests.support.clocks import VirtualTime
from tests.test_faults import GatewayProcess, reaped

OPERATOR = "responder-token-0123456789abcdef"
ESCALATE_S = 30  # the demo's policy: every 30 s, the family, the grid worker, the office


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    try:
        with postgres_cluster() as cluster:
            yield cluster.create_database("story")
    except PostgresUnavailable as exc:
        pytest.fail(str(exc))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'central.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def central_api(url: str) -> contextlib.AbstractAsyncContextManager[dict[str, Any]]:
    return serve_central(url, SITE, GATEWAY)


@contextlib.asynccontextmanager
async def quiet_flat() -> AsyncIterator[SimulatedBuilding]:
    """The building: its main meter, the flat's electricity and water meters that record no
    use, and a gate controller."""
    now = datetime.now(tz=UTC)
    nothing = ResidentialLoadProfile(base_w=0, morning_peak_w=0, evening_peak_w=0)
    meters = {
        1: SimulatedMeter(load_profile("eastron_sdm630"), ResidentialLoadProfile(), start=now),
        FLAT_UNIT: SimulatedMeter(load_profile("eastron_sdm120"), nothing, start=now),
        FLAT_WATER_UNIT: SimulatedMeter(
            load_profile("advantech_adam6050_water"), nothing, start=now
        ),
    }
    async with SimulatedBuilding(meters, gates={GATE_UNIT: SimulatedGate()}, port=0) as building:
        yield building


def story_config(
    tmp_path: Path, building: SimulatedBuilding, broker: Broker, central: dict[str, Any]
) -> GatewayConfig:
    config = demo_config(
        tmp_path,
        modbus_port=building.port,
        mqtt_port=broker.port,
        central_port=int(central["url"].rsplit(":", 1)[1]),
        local_port=free_port(),
        token=central["token"],
        operator_token=OPERATOR,
        capacity_kwh=1000.0,
        timezone=demo_timezone(time.time())[0],
    )
    return config.model_copy(
        update={"uplink": config.uplink.model_copy(update={"interval_s": 5.0})}  # type: ignore[union-attr]
    )


class Platform:
    """The neighbourhood platform at the central API."""

    def __init__(self, central: dict[str, Any]) -> None:
        self.http = httpx.AsyncClient(
            base_url=f"{central['url']}/v1/sites/{SITE}",
            headers={"Authorization": f"Bearer {central['platform']}"},
            timeout=10,
        )

    async def events(self, alert_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        after = 0
        for _ in range(100):
            page = (await self.http.get("/alerts", params={"after": after, "limit": 500})).json()
            items += [i for i in page["items"] if i["alert_id"] == alert_id]
            if not page["items"]:
                return items
            after = page["next_cursor"]
        return items

    async def acknowledge(self, alert_id: str, by: str) -> dict[str, Any]:
        answer = await self.http.post(
            f"/gateways/{GATEWAY}/alerts/{alert_id}/acknowledge", json={"by": by, "note": "我去"}
        )
        assert answer.status_code == 202, answer.text
        result: dict[str, Any] = answer.json()
        return result


async def retained(broker: Broker, topic: str) -> dict[str, Any] | None:
    async with aiomqtt.Client(broker.host, broker.port, identifier=secrets.token_hex(4)) as c:
        await c.subscribe(topic, qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                async for message in c.messages:
                    payload = bytes(message.payload)  # type: ignore[arg-type]
                    return json.loads(payload) if payload else None
    return None


async def until(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(what)


def the_story(events: list[dict[str, Any]]) -> None:
    """Raised, escalated (level by level), acknowledged by 王芳, resolved: each once, in order."""
    kinds = [e["event"] for e in events]
    assert kinds[0] == "raised"
    assert kinds[-2:] == ["acknowledged", "resolved"], kinds
    escalated = [e for e in events if e["event"] == "escalated"]
    assert escalated, kinds
    assert [e["level"] for e in escalated] == list(range(1, len(escalated) + 1))
    assert escalated[0]["audience"] == "family"
    assert set(kinds) == {"raised", "escalated", "acknowledged", "resolved"}
    assert len({e["event_id"] for e in events}) == len(events)  # each once
    numbers = [int(e["event_id"].rsplit(".", 1)[1]) for e in events]
    assert numbers == sorted(numbers)
    acknowledged, resolved = events[-2], events[-1]
    assert (acknowledged["by"], acknowledged["via"]) == ("王芳", "platform")
    assert (resolved["via"], resolved["outcome"]) == ("local_api", "resident_ok")
    assert resolved["text"]["zh-Hans"].endswith("处置完毕：居民安好")


async def test_a_quiet_flat_escalates_the_platform_acknowledges_it_offline_and_it_is_resolved(
    tmp_path: Path, mosquitto: Broker, database_url: str
) -> None:
    async with (
        quiet_flat() as building,
        central_api(database_url) as central,
    ):
        platform = Platform(central)
        config = story_config(tmp_path, building, mosquitto, central)
        await seed_history(config, demo_history(time.time()))
        virtual = VirtualTime(time.time())

        @contextlib.asynccontextmanager
        async def gateway() -> AsyncIterator[Gateway]:
            running = Gateway(config, clock=virtual.clock())
            stop = asyncio.Event()
            task = asyncio.create_task(running.run(stop))
            try:
                await asyncio.wait_for(running.ready.wait(), 15)
                yield running
            finally:
                stop.set()
                await asyncio.wait_for(task, 20)

        def stopped(g: Gateway) -> Any:
            return next((a for a in g.active_alerts() if a.rule == "use_stopped"), None)

        async with gateway() as first:

            async def raised() -> Any:
                return stopped(first)

            alert = await until(raised, 30, "use_stopped was not raised")
            topic = f"nbedge/{SITE}/{GATEWAY}/alerts/{alert.alert_id}"
            await virtual.advance(ESCALATE_S + 1)  # nobody acknowledges: the family is told

            async def escalated_on_mqtt() -> Any:
                return await retained(mosquitto, f"{topic}/escalation/family")

            message = await until(escalated_on_mqtt, 10, "no escalation on MQTT")
            assert message["texts"]["zh-Hans"].endswith("无人确认，已升级通知家属（第 1 级）")
            await virtual.advance(6)  # a sync interval

            async def escalated_at_the_platform() -> bool:
                return any(e["event"] == "escalated" for e in await platform.events(alert.alert_id))

            await until(escalated_at_the_platform, 10, "the escalation never reached the platform")

        # The gateway is offline: the platform acknowledges it for a grid worker.
        command = await platform.acknowledge(alert.alert_id, "王芳")
        assert command["state"] == "pending"

        async with gateway() as second:
            await virtual.advance(6)  # the next sync: the command is pulled and applied

            async def acknowledged() -> Any:
                current = stopped(second)
                return current is not None and current.acknowledged_by == "王芳"

            await until(acknowledged, 10, "the platform's acknowledgement was not applied")

            async def shown_on_mqtt() -> Any:
                message = await retained(mosquitto, topic)
                return message and message["acknowledged_by"] == "王芳"

            await until(shown_on_mqtt, 10, "MQTT does not show who acknowledged")
            assert await retained(mosquitto, f"{topic}/escalation/family") is None  # stopped

            # A responder resolves it on the local API, with the outcome.
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{config.local_api.port}", timeout=10
            ) as local:
                answer = await local.post(
                    f"/api/alerts/{alert.alert_id}/resolve",
                    json={"outcome": "resident_ok", "note": "老人在午睡"},
                    headers={"Authorization": f"Bearer {OPERATOR}"},
                )
            assert answer.status_code == 200, answer.text
            await virtual.advance(6)

            async def resolved_at_the_platform() -> list[dict[str, Any]]:
                events = await platform.events(alert.alert_id)
                return events if events and events[-1]["event"] == "resolved" else []

            events = await until(resolved_at_the_platform, 10, "the story never reached the end")
            await virtual.advance(ESCALATE_S * 3)  # acknowledged: no more escalation
        [state] = (
            await platform.http.get("/alerts/current", params={"code": "use_stopped"})
        ).json()["items"]
        await platform.http.aclose()
    the_story(events)
    assert state["human_state"] == "resolved"
    assert state["acknowledged_by"] == "王芳"


@pytest.mark.parametrize("rounds", [1, pytest.param(3, marks=pytest.mark.slow)])
async def test_a_kill_9_in_the_middle_of_the_story_changes_none_of_it(
    tmp_path: Path, mosquitto: Broker, rounds: int
) -> None:
    async with quiet_flat() as building, central_api(f"sqlite:///{tmp_path / 'c.db'}") as central:
        platform = Platform(central)
        config = story_config(tmp_path, building, mosquitto, central)
        await seed_history(config, demo_history(time.time()))
        fast = config.model_dump(mode="json", exclude_unset=True)
        fast["alerts"]["escalation"][0] |= {"after_s": 2, "every_s": 2}
        fast["uplink"]["interval_s"] = 0.5
        fast["log"] = {"level": "info", "format": "json"}  # "gateway running", as systemd logs
        fast["local_api"]["operators"] = [
            {"name": "grid.worker", "token_sha256": hashlib.sha256(OPERATOR.encode()).hexdigest()}
        ]
        path = tmp_path / "gateway.toml"
        path.write_text(_toml(fast))
        processes: list[GatewayProcess] = []
        with reaped(processes):
            alert_id = ""
            for n in range(rounds):
                gateway = GatewayProcess(path, tmp_path / f"gateway-{n}.log")
                processes.append(gateway)
                await gateway.ready()

                async def escalated_once_more(round_: int = n) -> list[dict[str, Any]]:
                    nonlocal alert_id
                    if not alert_id:
                        events = [
                            e
                            for page in [await platform.http.get("/alerts/current")]
                            for e in page.json()["items"]
                            if e["code"] == "use_stopped"
                        ]
                        alert_id = events[0]["alert_id"] if events else ""
                    found = await platform.events(alert_id) if alert_id else []
                    levels = [e for e in found if e["event"] == "escalated"]
                    return levels if len(levels) > round_ else []

                await until(escalated_once_more, 30, "no escalation reached the platform")
                gateway.kill()  # SIGKILL, mid-story
            command = await platform.acknowledge(alert_id, "王芳")
            gateway = GatewayProcess(path, tmp_path / "gateway-last.log")
            processes.append(gateway)
            await gateway.ready()

            async def applied() -> bool:
                page = (await platform.http.get("/commands")).json()["items"]
                return any(
                    c["command_id"] == command["command_id"] and c["state"] == "applied"
                    for c in page
                )

            await until(applied, 30, "the acknowledgement was not applied")
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{fast['local_api']['port']}", timeout=10
            ) as local:
                answer = await local.post(
                    f"/api/alerts/{alert_id}/resolve",
                    json={"outcome": "resident_ok"},
                    headers={"Authorization": f"Bearer {OPERATOR}"},
                )
            assert answer.status_code == 200, answer.text

            async def ended() -> list[dict[str, Any]]:
                events = await platform.events(alert_id)
                return events if events and events[-1]["event"] == "resolved" else []

            events = await until(ended, 30, "the story never reached the end")
            assert await gateway.stop() == 0
        await platform.http.aclose()
    the_story(events)


def _toml(config: dict[str, Any]) -> str:
    """The configuration as TOML (tables, arrays of tables, scalars and lists of scalars)."""
    lines: list[str] = []

    def scalar(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    def table(prefix: str, values: dict[str, Any]) -> None:
        plain = {k: v for k, v in values.items() if not isinstance(v, dict | list) or _scalars(v)}
        lines.append(f"[{prefix}]")
        lines.extend(f"{k} = {scalar(v)}" for k, v in plain.items() if v is not None)
        for key, value in values.items():
            if isinstance(value, dict):
                table(f"{prefix}.{key}", value)
            elif isinstance(value, list) and value and not _scalars(value):
                for item in value:
                    lines.append(f"[[{prefix}.{key}]]")
                    lines.extend(f"{k} = {scalar(v)}" for k, v in item.items() if v is not None)

    for section, values in config.items():
        if isinstance(values, dict):
            table(section, values)
    return "\n".join(lines) + "\n"


def _scalars(value: Any) -> bool:
    return isinstance(value, list) and all(not isinstance(v, dict | list) for v in value)

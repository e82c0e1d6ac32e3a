"""The platform acts on an alert through the central API, and the gateway applies it once.

A real central API (uvicorn, SQLite) and an in-process gateway: the gateway's critical
``use_stopped`` alert reaches the platform; the gateway goes offline; the platform acknowledges
it (naming the person); the gateway comes back, pulls the command, applies it, and confirms it;
it is applied once, across a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from edge.alerts import AlertBook
from edge.clock import Clock
from edge.config import parse_config
from edge.daemon import Gateway
from edge.schemas import GatewayConfig
from edge.store import Store
from tests.support import alerts as support
from tests.test_end_to_end import GATEWAY, SITE, central_api, eventually, pull

T0 = 1_800_000_000.0


def gateway_config(tmp_path: Path, central: dict[str, Any]) -> GatewayConfig:
    return parse_config(
        f"""
[gateway]
id = "{GATEWAY}"
site = "{SITE}"
state_dir = "{tmp_path / "gw"}"

[mqtt]
enabled = false

[local_api]
enabled = false

[store]
batch_max_delay_s = 0.05

[uplink]
url = "{central["url"]}"
token = "{central["token"]}"
interval_s = 0.2
"""
    )


@contextlib.asynccontextmanager
async def running(config: GatewayConfig) -> AsyncIterator[Gateway]:
    gateway = Gateway(config)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    try:
        await asyncio.wait_for(gateway.ready.wait(), 10)
        yield gateway
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def platform(central: dict[str, Any], method: str, path: str, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {central['platform']}"}
    async with httpx.AsyncClient(base_url=central["url"], headers=headers, timeout=5) as client:
        answer = await client.request(method, f"/v1/sites/{SITE}{path}", **kwargs)
    assert answer.status_code < 300, answer.text
    return answer.json()


async def test_the_platform_acknowledges_while_the_gateway_is_away_and_it_is_applied_once(
    tmp_path: Path,
) -> None:
    async with central_api(tmp_path) as central:
        config = gateway_config(tmp_path, central)
        book = AlertBook()
        stopped = support.raise_alert(
            book,
            rule="use_stopped",
            device="flat-1",
            point="use",
            at=T0,
            params={"meters": "electricity+water", "hours_quiet": 4.0, "usual_uses": 3.6},
        )
        async with Store(
            config.database_path, gateway_id=GATEWAY, clock=Clock(synchronised=lambda: True)
        ) as store:
            await store.write([], [stopped])

        # The alert reaches the platform; then the gateway goes away.
        async with running(config):

            async def known() -> list[str]:
                return [a["alert_id"] for a in await pull(central, "alerts")]

            await eventually(known, 10, "the alert never reached the platform")

        # Acknowledged from the platform while the gateway is offline: pending.
        issued = await platform(
            central,
            "POST",
            f"/gateways/{GATEWAY}/alerts/{stopped.alert_id}/acknowledge",
            json={"by": "李伟", "note": "社区已派人"},
        )
        assert issued["state"] == "pending"

        # The gateway comes back, pulls it, applies it and confirms it.
        async with running(config) as gateway:

            def acknowledged_by() -> str | None:
                alerts = [a for a in gateway.active_alerts() if a.alert_id == stopped.alert_id]
                return alerts[0].acknowledged_by if alerts else None

            await eventually(acknowledged_by, 10, "the command was never applied")
            assert acknowledged_by() == "李伟"

            async def applied() -> list[dict[str, Any]]:
                page = await platform(central, "GET", "/commands")
                done = [c for c in page["items"] if c["state"] == "applied"]
                return done

            [command] = await eventually(applied, 10, "the result never reached the platform")
            assert command["command_id"] == issued["command_id"]
            assert command["event_id"] == f"{stopped.alert_id}.2"

        # Restarted: the command is not applied twice, even if the platform had sent it again.
        async with running(config) as gateway:
            await asyncio.sleep(1.0)  # several pulls
        async with Store(config.database_path, gateway_id=GATEWAY) as store:
            history = await store.alert_history(stopped.alert_id)
        events = await pull(central, "alerts")

    assert [(e["event"], e["by"], e["via"]) for e in history] == [
        ("raised", None, "rule"),
        ("acknowledged", "李伟", "platform"),
    ]
    assert history[1]["command_id"] == issued["command_id"]
    assert history[1]["note"] == "社区已派人"
    at_platform = [(e["event"], e["by"]) for e in events if e["alert_id"] == stopped.alert_id]
    assert at_platform == [("raised", None), ("acknowledged", "李伟")]
    assert [e["text"]["zh-Hans"] for e in events][-1].endswith("已由李伟确认")

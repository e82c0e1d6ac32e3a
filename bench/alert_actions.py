"""People acting on alerts: how soon the building sees it.

1. An acknowledgement on the local API to the updated retained MQTT message (budget: 200 ms),
   beside the bare MQTT round trip on the same broker (publish, receive) as the baseline.
2. A platform command at the central API to the alert acknowledged on the gateway (budget: one
   sync interval, ``uplink.interval_s``), beside that interval.

Real components on 127.0.0.1: Mosquitto, the central API (uvicorn, SQLite), a whole gateway in
process with its local API. Distributions over ``--alerts`` alerts each.

    .venv/bin/python bench/alert_actions.py [--alerts 40] [--interval 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import httpx

from cloud_sync.central import admin
from cloud_sync.central.app import create_app
from cloud_sync.central.settings import CentralSettings
from edge.alerts import Alert, AlertBook, Finding
from edge.asgi import serve_app
from edge.cli import main as nbedge
from edge.clock import Clock
from edge.config import parse_config
from edge.daemon import Gateway
from edge.store import Store

SITE, GATEWAY = "bench-site", "bench-gw"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def mosquitto(folder: Path) -> Iterator[int]:
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


@contextlib.asynccontextmanager
async def central(folder: Path) -> AsyncIterator[dict[str, str]]:
    url = f"sqlite:///{folder / 'central.db'}"
    engine = admin.make_engine(url)
    admin.init_db(engine)
    admin.register_site(engine, SITE, "Bench building")
    token = admin.register_gateway(engine, SITE, GATEWAY)
    engine.dispose()
    platform = secrets.token_urlsafe(24)
    app = create_app(CentralSettings(database_url=url, platform_token=platform))  # type: ignore[arg-type]
    port = free_port()
    started = asyncio.Event()
    async with asyncio.TaskGroup() as tasks:
        server = tasks.create_task(serve_app(app, host="127.0.0.1", port=port, started=started))
        await asyncio.wait_for(started.wait(), 10)
        try:
            yield {"url": f"http://127.0.0.1:{port}", "token": token, "platform": platform}
        finally:
            server.cancel()


def alerts(n: int, t0: float, prefix: str) -> list[Alert]:
    book = AlertBook()
    params = {"meters": "electricity+water", "hours_quiet": 4.0, "usual_uses": 3.6}
    return [
        change
        for k in range(n)
        for change in book.apply(
            Finding(
                code="use_stopped",
                device=f"{prefix}-{k}",
                point="use",
                active=True,
                value=9.0,
                at=t0 + k,
                params=params,
            )
        )
    ]


def summary(name: str, seconds: list[float], baseline: float, baseline_name: str) -> None:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[max(0, int(len(ms) * 0.95) - 1)]
    median = statistics.median(ms)
    print(
        f"{name}: n={len(ms)} median {median:.1f} ms, p95 {p95:.1f} ms, max {ms[-1]:.1f} ms;"
        f" {baseline_name} {baseline * 1000:.1f} ms, median ratio {median / (baseline * 1000):.2f}"
    )


async def mqtt_round_trip(port: int, n: int) -> float:
    """The median publish-to-receive time of one message on the broker (the baseline)."""
    times: list[float] = []
    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-echo") as client:
        await client.subscribe("bench/echo", qos=1)
        for k in range(n):
            start = time.perf_counter()
            await client.publish("bench/echo", str(k), qos=1)
            async for _ in client.messages:
                break
            times.append(time.perf_counter() - start)
    return statistics.median(times)


async def run(n: int, interval_s: float) -> None:
    with tempfile.TemporaryDirectory() as tmp, mosquitto(Path(tmp)) as broker:
        folder = Path(tmp)
        state = folder / "gw"
        nbedge(["users", "add", "bench.responder", "--role", "responder", "--no-password",
                "--no-token", "--state-dir", str(state)])  # fmt: skip
        async with central(folder) as api:
            port = free_port()
            config = parse_config(
                f"""
[gateway]
id = "{GATEWAY}"
site = "{SITE}"
state_dir = "{state}"
[mqtt]
port = {broker}
[local_api]
host = "127.0.0.1"
port = {port}
[uplink]
url = "{api["url"]}"
token = "{api["token"]}"
interval_s = {interval_s}
"""
            )
            local = alerts(n, time.time() - 3600, "flat")
            remote = alerts(n, time.time() - 1800, "home")
            async with Store(
                config.database_path, gateway_id=GATEWAY, clock=Clock(synchronised=lambda: True)
            ) as store:
                await store.write([], [*local, *remote])
            token = await responder_token(state)
            gateway = Gateway(config)
            stop = asyncio.Event()
            task = asyncio.create_task(gateway.run(stop))
            try:
                await asyncio.wait_for(gateway.ready.wait(), 15)
                baseline = await mqtt_round_trip(broker, n)
                summary(
                    "local API acknowledgement to retained MQTT update",
                    await local_acks(port, broker, token, local),
                    baseline,
                    "bare MQTT round trip",
                )
                await wait_known(api, remote)
                summary(
                    "platform command to applied on the gateway",
                    await platform_acks(api, gateway, remote),
                    interval_s,
                    "sync interval",
                )
            finally:
                stop.set()
                await asyncio.wait_for(task, 20)


async def responder_token(state: Path) -> str:
    """A token for the bench responder, as ``nbedge users token`` prints it."""
    import io
    from contextlib import redirect_stdout

    out = io.StringIO()
    with redirect_stdout(out):
        nbedge(["users", "token", "bench.responder", "--label", "bench", "--state-dir", str(state)])
    return next(line.strip() for line in out.getvalue().splitlines() if len(line.strip()) == 43)


async def local_acks(port: int, broker: int, token: str, targets: list[Alert]) -> list[float]:
    times: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http,
        aiomqtt.Client("127.0.0.1", broker, identifier="bench-phone") as phone,
    ):
        for alert in targets:
            topic = f"nbedge/{SITE}/{GATEWAY}/alerts/{alert.alert_id}"
            await phone.subscribe(topic, qos=1)
            async for _ in phone.messages:  # the retained message as it is
                break
            start = time.perf_counter()
            answer = await http.post(
                f"/api/alerts/{alert.alert_id}/acknowledge", json={}, headers=headers
            )
            answer.raise_for_status()
            async for message in phone.messages:
                payload: dict[str, Any] = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                if payload["state"] == "acknowledged":
                    break
            times.append(time.perf_counter() - start)
            await phone.unsubscribe(topic)
    return times


async def wait_known(api: dict[str, str], targets: list[Alert]) -> None:
    """Until the central API knows every alert the platform is to act on."""
    headers = {"Authorization": f"Bearer {api['platform']}"}
    wanted = {a.alert_id for a in targets}
    async with httpx.AsyncClient(base_url=api["url"], headers=headers, timeout=10) as http:
        for _ in range(600):
            page = await http.get(f"/v1/sites/{SITE}/alerts/current", params={"limit": 1000})
            if wanted <= {item["alert_id"] for item in page.json()["items"]}:
                return
            await asyncio.sleep(0.1)
    raise SystemExit("the alerts never reached the central API")


async def platform_acks(api: dict[str, str], gateway: Gateway, targets: list[Alert]) -> list[float]:
    times: list[float] = []
    headers = {"Authorization": f"Bearer {api['platform']}"}
    async with httpx.AsyncClient(base_url=api["url"], headers=headers, timeout=10) as http:
        for alert in targets:
            start = time.perf_counter()
            answer = await http.post(
                f"/v1/sites/{SITE}/gateways/{GATEWAY}/alerts/{alert.alert_id}/acknowledge",
                json={"by": "bench"},
            )
            answer.raise_for_status()
            while not any(
                a.alert_id == alert.alert_id and a.state == "acknowledged"
                for a in gateway.active_alerts()
            ):
                await asyncio.sleep(0.005)
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=40)
    parser.add_argument("--interval", type=float, default=1.0, help="uplink.interval_s")
    args = parser.parse_args()
    asyncio.run(run(args.alerts, args.interval))


if __name__ == "__main__":
    main()

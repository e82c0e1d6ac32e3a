"""From a command on MQTT to the alert's retained message: how long a phone waits.

A whole in-process gateway (default store batching) on a Mosquitto of its own (loopback, a free
port), one open alert, and a phone client that sends N acknowledgements one after another on
``.../set/wang.fang``. For each, the time until the answer on ``.../result`` and until the
alert's topic carries the new event. Prints the median and the maximum of both.

    .venv/bin/python bench/mqtt_act.py [--n 50] [--no-nodelay]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import aiomqtt

from edge.alerts import AlertBook, Finding
from edge.daemon import Gateway
from edge.people import PeopleStore, Role
from edge.schemas import GatewayConfig
from edge.store import Store

SITE, GATEWAY = "bench-site", "bench-gw"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def measure(folder: Path, port: int, n: int) -> tuple[list[float], list[float]]:
    state = folder / "gw"
    state.mkdir()
    PeopleStore(state / "people.json").add("wang.fang", Role.RESPONDER)
    config = GatewayConfig.model_validate(
        {
            "gateway": {"id": GATEWAY, "site": SITE, "state_dir": str(state)},
            "mqtt": {"host": "127.0.0.1", "port": port},
            "local_api": {"enabled": False},
        }
    )
    book = AlertBook()
    finding = Finding(
        code="use_stopped", device="flat-3", point="use", active=True, value=0.0, at=time.time()
    )
    [alert] = book.apply(finding)
    async with Store(config.database_path, gateway_id=GATEWAY) as store:
        await store.write([], [alert])
    topic = f"nbedge/{SITE}/{GATEWAY}/alerts/{alert.alert_id}"
    gateway = Gateway(config)
    stop = asyncio.Event()
    answers: list[float] = []
    retained: list[float] = []
    async with asyncio.TaskGroup() as tasks:
        running = tasks.create_task(gateway.run(stop))
        await asyncio.wait_for(gateway.ready.wait(), 15)
        async with aiomqtt.Client("127.0.0.1", port, identifier="phone", timeout=5) as phone:
            await phone.subscribe(topic, qos=1, timeout=5)
            await phone.subscribe(f"{topic}/set/wang.fang/result", qos=1, timeout=5)
            await asyncio.sleep(1.0)  # the gateway connects and subscribes
            body = json.dumps({"action": "acknowledge"})
            for i in range(n):
                event_n = alert.event_n + i + 1
                started = time.perf_counter()
                await phone.publish(f"{topic}/set/wang.fang", body, qos=1, timeout=5)
                answered = shown = None
                async with asyncio.timeout(10):
                    async for message in phone.messages:
                        data = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                        if str(message.topic).endswith("/result"):
                            answered = time.perf_counter() - started
                        elif data["event"]["event_id"] == f"{alert.alert_id}.{event_n}":
                            shown = time.perf_counter() - started
                        if answered is not None and shown is not None:
                            break
                assert answered is not None
                assert shown is not None
                answers.append(answered)
                retained.append(shown)
        stop.set()
        await running
    return answers, retained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument(
        "--no-nodelay", dest="nodelay", action="store_false", help="the broker's default"
    )
    args = parser.parse_args()
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        conf = Path(folder) / "mosquitto.conf"
        conf.write_text(  # set_tcp_nodelay as in examples/mosquitto/nbedge.conf
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            f"set_tcp_nodelay {'true' if args.nodelay else 'false'}\n"
        )
        broker = subprocess.Popen([binary, "-c", str(conf)])
        try:
            time.sleep(0.5)
            answers, retained = asyncio.run(measure(Path(folder), port, args.n))
        finally:
            broker.terminate()
            broker.wait(5)
    for name, values in (("answer", answers), ("retained alert", retained)):
        print(
            f"{name:15s} median {statistics.median(values) * 1000:6.1f} ms"
            f"  max {max(values) * 1000:6.1f} ms  (n={len(values)})"
        )


if __name__ == "__main__":
    main()

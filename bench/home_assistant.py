"""Home Assistant's discovery at a connection: how long a large building takes to announce.

A Mosquitto of its own (loopback, a free port, anonymous), and the gateway's publisher with its
Home Assistant bridge for a building of M SDM630 meters and S door sensors (no device is
polled): the time from the start until every discovery config and every cause's state has
reached the broker. Prints the counts and the time of each run.

    .venv/bin/python bench/home_assistant.py [--meters 50] [--sensors 100] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from edge.home_assistant import HomeAssistantBridge
from edge.mqtt import AlertPublisher
from edge.schemas import GatewayConfig


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def announce(config: GatewayConfig) -> tuple[int, int, float]:
    bridge = HomeAssistantBridge(config)
    publisher = AlertPublisher(
        config.mqtt, site="bench", gateway="gw", open_alerts=list, home_assistant=bridge
    )
    start = time.perf_counter()
    task = asyncio.create_task(publisher.run())
    while not publisher.status().connected or bridge.waiting:
        await asyncio.sleep(0.002)
    took = time.perf_counter() - start
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return len(bridge.causes()), bridge.announced + bridge.states, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=50)
    parser.add_argument("--sensors", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        conf = Path(folder) / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        broker = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            config = GatewayConfig.model_validate(
                {
                    "gateway": {"id": "gw", "site": "bench"},
                    "mqtt": {"port": port, "home_assistant": {"enabled": True}},
                    "modbus": {
                        "devices": [
                            {
                                "name": f"m{i}",
                                "profile": "eastron_sdm630",
                                "host": "h",
                                "unit_id": i,
                            }
                            for i in range(1, args.meters + 1)
                        ]
                    },
                    "ble": {
                        "sensors": [
                            {"name": f"d{i}", "mac": f"AA:BB:CC:DD:{i // 256:02X}:{i % 256:02X}"}
                            for i in range(args.sensors)
                        ]
                    },
                }
            )
            for run in range(args.runs):
                causes, messages, took = asyncio.run(announce(config))
                print(f"run {run + 1}: {causes} causes, {messages} messages in {took:.2f} s")
        finally:
            broker.terminate()
            broker.wait()


if __name__ == "__main__":
    main()

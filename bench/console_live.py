"""How long an alert takes to reach an open console, in a real browser.

    python bench/console_live.py [--rounds 5]

A gateway (a simulated building behind Modbus TCP, a real Mosquitto) serves the console; Chromium
(Playwright) is logged in on the alerts page at a phone's viewport. Each round the simulator puts
phase L1 at 262 V and the time until the alert's card is on the page is measured; then the
voltage comes back, the alert clears and is resolved, and the card goes. The baseline, in the same
run: the time until the gateway itself holds the alert (the poll and the store write), so the
ratio is what the console adds (the live stream and the page's fetch). Goal: under 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from playwright.async_api import async_playwright

from tests.conftest import free_port
from tests.support.console import PASSWORD, console_building


async def run(rounds: int) -> None:
    import subprocess

    from tests.conftest import Broker

    folder = Path(tempfile.mkdtemp(prefix="nbedge-bench-console-"))
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    command = ["mosquitto", "-c", str(conf)]
    broker = subprocess.Popen(command, stderr=subprocess.DEVNULL)  # noqa: ASYNC220 (once, untimed)
    try:
        await asyncio.sleep(0.5)
        async with (
            console_building(folder, Broker("127.0.0.1", port)) as building,
            async_playwright() as p,
        ):
            browser = await p.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--no-sandbox"]
            )
            page = await browser.new_page(viewport={"width": 390, "height": 844})
            await page.goto(building.url + "/login")
            await page.fill("input[name=name]", "li.wei")
            await page.fill("input[name=password]", PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_selector("#live:not(.lost)")
            held, shown = [], []
            for _ in range(rounds):
                started = time.monotonic()
                building.main.override("voltage_l1", 262.0)
                while not building.gateway.active_alerts():
                    await asyncio.sleep(0.005)
                held.append(time.monotonic() - started)
                await page.locator("article.alert.warning").wait_for(timeout=10_000)
                shown.append(time.monotonic() - started)
                building.main.override("voltage_l1", None)
                await page.locator("article.alert.warning").wait_for(
                    state="detached", timeout=20_000
                )
            await browser.close()
    finally:
        broker.terminate()
        broker.wait()
    base, console = statistics.median(held), statistics.median(shown)
    print(f"rounds: {rounds}")
    print(f"simulator -> alert held by the gateway (baseline): median {base:.3f} s")
    print(
        f"simulator -> card on the open console page:        median {console:.3f} s, "
        f"max {max(shown):.3f} s"
    )
    print(f"the console adds {console - base:.3f} s (ratio {console / base:.2f}x); goal: < 2 s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(run(parser.parse_args().rounds))

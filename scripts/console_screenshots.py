"""Screenshots of the grid workers' console for docs/grid-worker.md, taken from ``make demo``.

    nbedge demo                     # in one terminal: prints the console's address and password
    python scripts/console_screenshots.py http://127.0.0.1:8801 PASSWORD

Drives Debian's Chromium (Playwright) at a phone's viewport (390x844), in Chinese and in English,
logged in as the demo's grid worker (wang.fang, 王芳), and writes docs/images/console-*.png.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from playwright.async_api import async_playwright

IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"
PAGES = ("alerts", "residents", "meters/main-meter", "devices")


async def shoot(url: str, password: str) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox"]
        )
        for language, accept in (("zh", "zh-CN,zh;q=0.9"), ("en", "en-GB,en;q=0.9")):
            context = await browser.new_context(
                viewport={"width": 390, "height": 844},
                extra_http_headers={"Accept-Language": accept},
            )
            page = await context.new_page()
            await page.goto(f"{url}/login")
            await page.screenshot(path=IMAGES / f"console-login-{language}.png")
            await page.fill("input[name=name]", "wang.fang")
            await page.fill("input[name=password]", password)
            await page.click("button[type=submit]")
            await page.wait_for_url("**/alerts*")
            for name in PAGES:
                await page.goto(f"{url}/{name}")
                await page.wait_for_timeout(1500)  # the chart draws, the live badge connects
                shot = name.replace("/", "-").replace("-main-meter", "-chart")
                await page.screenshot(path=IMAGES / f"console-{shot}-{language}.png")
            await context.close()
        await browser.close()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    asyncio.run(shoot(sys.argv[1], sys.argv[2]))

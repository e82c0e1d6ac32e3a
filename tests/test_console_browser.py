"""The console in a real browser (Playwright driving Debian's Chromium), at a phone's viewport
and a desktop's, against a running gateway, a simulated building and a real Mosquitto.

A grid worker logs in; an overvoltage the simulator makes appears without a reload; she
acknowledges and resolves it, and MQTT and the store change; she reads the page in Chinese and
in large text; the meter's chart draws the data the gateway gave it. Every step leaves a
screenshot under ``test-screenshots/<test>/`` (kept whether the test passes or fails).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import Broker
from tests.support.console import (
    PASSWORD,
    SEEDED_KWH,
    Building,
    console_building,
    retained_when,
)

playwright = pytest.importorskip("playwright.async_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(
    os.environ.get("NBEDGE_SCREENSHOTS", Path(__file__).resolve().parents[1] / "test-screenshots")
)
VIEWPORTS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 900}}

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError("Chromium is missing: the README's test command installs it")
    pytest.skip("no Chromium (apt-get install chromium fonts-noto-cjk)", allow_module_level=True)


class Shots:
    def __init__(self, folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        self.folder = folder
        self.n = 0

    async def take(self, page: object, name: str) -> None:
        self.n += 1
        await page.screenshot(path=self.folder / f"{self.n:02d}-{name}.png", full_page=True)  # type: ignore[attr-defined]


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    async with playwright.async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            await chromium.close()


async def log_in(page: object, building: Building, name: str = "wang.fang") -> None:
    await page.goto(building.url + "/")  # type: ignore[attr-defined]
    await page.fill("input[name=name]", name)  # type: ignore[attr-defined]
    await page.fill("input[name=password]", PASSWORD)  # type: ignore[attr-defined]
    await page.click("button[type=submit]")  # type: ignore[attr-defined]
    await page.wait_for_url(re.compile(r"/alerts"))  # type: ignore[attr-defined]


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
async def test_a_grid_worker_sees_an_alert_arrive_and_acts_on_it(
    tmp_path: Path,
    mosquitto: Broker,
    browser: object,
    viewport: str,
    request: pytest.FixtureRequest,
) -> None:
    shots = Shots(SHOTS / request.node.name.replace("[", "-").rstrip("]"))
    async with console_building(tmp_path, mosquitto) as building:
        context = await browser.new_context(  # type: ignore[attr-defined]
            viewport=VIEWPORTS[viewport], locale="en-GB"
        )
        page = await context.new_page()
        await log_in(page, building)
        await page.wait_for_selector("text=No open alerts.")
        await page.wait_for_selector("#live:not(.lost)")
        await page.evaluate("window.notReloaded = true")
        await shots.take(page, "no-alerts")

        building.main.override("voltage_l1", 262.0)  # the simulator: phase L1 too high
        card = page.locator("article.alert.warning")
        await card.wait_for(timeout=10_000)  # without a reload
        assert await page.evaluate("window.notReloaded === true")
        await shots.take(page, "alert-arrived")
        text = await card.inner_text()
        assert "1号楼总电表" in text  # the meter's label, not its id
        assert "262" in text
        if viewport == "phone":  # nothing is cut off at the screen's edge
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= VIEWPORTS["phone"]["width"]

        alert_id = next(a.alert_id for a in building.gateway.active_alerts())
        await card.get_by_role("button", name=re.compile("I have it")).click()
        await page.wait_for_selector("text=acknowledged by 王芳")
        await shots.take(page, "acknowledged")
        message = await retained_when(
            mosquitto, building.topic(alert_id), lambda m: m["state"] == "acknowledged"
        )
        assert message["acknowledged_by"] == "王芳"

        await page.locator("details.resolve summary").first.click()
        await page.select_option("select[name=outcome]", "device_fault")
        await page.fill("textarea[name=note]", "电压表接线松动")
        await shots.take(page, "resolving")
        await page.get_by_role("button", name="Resolve", exact=True).click()
        await page.wait_for_selector("text=Resolved. Thank you.")
        await shots.take(page, "resolved")
        message = await retained_when(
            mosquitto, building.topic(alert_id), lambda m: m["state"] == "resolved"
        )
        assert message["outcome"] == "device_fault"
        history = await building.gateway._store.alert_history(alert_id)  # type: ignore[union-attr]
        assert [h["event"] for h in history] == ["raised", "acknowledged", "resolved"]

        # Chinese, then large text.
        await page.get_by_role("link", name="中文").click()
        await page.wait_for_selector("text=待处理告警")
        assert await page.get_attribute("html", "lang") == "zh-Hans"
        await shots.take(page, "chinese")
        before = await page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)")
        await page.locator("#large-text").click()
        await page.wait_for_selector("html.large")
        after = await page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)")
        assert after >= before * 1.25
        await shots.take(page, "chinese-large")
        if viewport == "phone":
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= VIEWPORTS["phone"]["width"]
        await context.close()


async def test_the_live_stream_reconnects_by_itself(
    tmp_path: Path,
    mosquitto: Broker,
    browser: object,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stream ends (after ``LIVE_MAX_S``, here 2 s) and cannot be opened again for a while
    (the Wi-Fi drops): the page says so, reconnects once it can, and the next alert arrives
    without a reload."""
    from edge.web.routes import api

    monkeypatch.setattr(api, "LIVE_MAX_S", 2.0)
    shots = Shots(SHOTS / request.node.name)
    async with console_building(tmp_path, mosquitto) as building:
        context = await browser.new_context(viewport=VIEWPORTS["phone"])  # type: ignore[attr-defined]
        page = await context.new_page()
        await log_in(page, building, "li.wei")
        await page.wait_for_selector("#live:not(.lost)")
        await page.evaluate("window.notReloaded = true")
        await page.route("**/api/events", lambda route: route.abort("internetdisconnected"))
        await page.wait_for_selector("#live.lost", timeout=10_000)
        await shots.take(page, "lost")
        connects = int(await page.get_attribute("#main", "data-connects") or 0)
        await page.unroute("**/api/events")
        await page.wait_for_function(
            f"Number(document.getElementById('main').dataset.connects) > {connects}",
            timeout=15_000,
        )
        await page.wait_for_selector("#live:not(.lost)")
        building.main.override("voltage_l1", 262.0)
        await page.locator("article.alert.warning").wait_for(timeout=10_000)
        assert await page.evaluate("window.notReloaded === true")
        await shots.take(page, "after-reconnecting")
        await context.close()


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
async def test_the_meter_chart_draws_the_data_the_gateway_gave_it(
    tmp_path: Path,
    mosquitto: Broker,
    browser: object,
    viewport: str,
    request: pytest.FixtureRequest,
) -> None:
    shots = Shots(SHOTS / request.node.name.replace("[", "-").rstrip("]"))
    async with console_building(tmp_path, mosquitto) as building:
        context = await browser.new_context(viewport=VIEWPORTS[viewport])  # type: ignore[attr-defined]
        page = await context.new_page()
        await log_in(page, building, "li.wei")
        await page.goto(building.url + "/meters/main?point=import_energy&days=1")
        await page.wait_for_selector("#chart[data-drawn]", timeout=10_000)
        await shots.take(page, "chart")
        given = await page.evaluate("window.nbedgeChartData")
        drawn_x, drawn = await page.evaluate(
            "[window.nbedgeChart.data[0], window.nbedgeChart.data[1]]"
        )
        assert given["kind"] == "counter"
        # The hourly line is the API's use per hour, at each hour's middle.
        hourly = {x: y for x, y in zip(drawn_x, drawn, strict=True) if (x - 1800) % 3600 == 0}
        uses = [b["delta"] for b in given["hours"]]
        assert [hourly[given["since"] + 3600 * i + 1800] for i in range(len(uses))] == uses
        # The 23 whole hours of the window before this one are the seeded use, hour by hour.
        assert uses[:-1] == pytest.approx(SEEDED_KWH[-23:])
        # The live simulator's readings of this hour are not summarised yet: the thin tail.
        assert given["recent"], "the recent readings are drawn too"
        assert len(await page.evaluate("window.nbedgeChart.series")) == 3
        assert await page.inner_text("[data-stat=max]") == f"{max(uses):.1f} kWh / h"
        canvas = page.locator("#chart canvas")
        assert await canvas.count() == 1
        box = await canvas.bounding_box()
        assert box is not None
        assert box["width"] <= VIEWPORTS[viewport]["width"]
        # Something is drawn: the canvas is not one colour.
        colours = await page.evaluate(
            """() => { const c = document.querySelector('#chart canvas');
                 const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                 const seen = new Set(); for (let i = 0; i < px.length; i += 4 * 97)
                   seen.add(px[i] + ',' + px[i+1] + ',' + px[i+2] + ',' + px[i+3]);
                 return seen.size; }"""
        )
        assert colours > 3
        await context.close()


CONTRAST = (Path(__file__).parent / "support" / "contrast.js").read_text(encoding="utf-8")


async def test_every_page_fits_360_pixels_and_its_text_has_aa_contrast(
    tmp_path: Path, mosquitto: Broker, browser: object, request: pytest.FixtureRequest
) -> None:
    """The smallest phones in use are 360 px wide: no page scrolls sideways, in either language
    or in large text, and every text meets WCAG AA contrast against its background."""
    shots = Shots(SHOTS / request.node.name)
    async with console_building(tmp_path, mosquitto) as building:
        context = await browser.new_context(viewport={"width": 360, "height": 740})  # type: ignore[attr-defined]
        page = await context.new_page()
        await log_in(page, building)
        building.main.override("voltage_l1", 262.0)  # an alert card on the alerts page
        await page.locator("article.alert.warning").wait_for(timeout=10_000)
        pages = [
            "/alerts",
            "/residents",
            "/meters",
            "/meters/main",
            "/devices",
            "/health",
            "/account",
        ]
        for setting in ("", "/language/zh-Hans", "/text/large"):
            if setting:
                await page.goto(building.url + setting)
            for path in pages:
                await page.goto(building.url + path)
                await page.wait_for_load_state("networkidle")
                name = (path.strip("/").replace("/", "-") or "home") + setting.replace("/", "-")
                await shots.take(page, name)
                width = await page.evaluate("document.documentElement.scrollWidth")
                assert width <= 360, f"{path} {setting or 'default'} is {width} px wide"
                assert await page.evaluate(CONTRAST) == [], f"{path} {setting or 'default'}"
        await context.close()

"""The grid workers' console over HTTP, as a phone's browser uses it: a running gateway (its
local web app on a loopback port), a simulated building behind Modbus TCP and a real Mosquitto.

Logging in and out, session cookies, CSRF on every form, failed logins slowed and never locked,
sessions that end, passwords changed and reset; nothing about residents without a login (and
not for a viewer); acting on an alert from a form reaches the store and MQTT; the live stream
says when an alert changes; pages in Chinese show no English; bad input is refused and counted.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from edge.alerts import Finding
from edge.config import parse_config
from edge.web.view import ConsoleSite
from tests.conftest import Broker, wait_until
from tests.edge.test_analytics import CONFIG, MOTION_DWELLING, MOTION_SENSOR
from tests.support.console import (
    GATEWAY,
    HOME_LABEL,
    PASSWORD,
    SITE,
    Building,
    console_building,
    retained_when,
)
from tests.support.tls import self_signed

ROOT = Path(__file__).resolve().parents[2]
PO = ROOT / "edge" / "locale" / "zh_Hans" / "LC_MESSAGES" / "nbedge.po"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def login(client: httpx.AsyncClient, name: str, password: str = PASSWORD) -> httpx.Response:
    form = await client.get("/login")
    (token,) = CSRF.findall(form.text)
    return await client.post("/login", data={"name": name, "password": password, "csrf": token})


async def csrf_of(client: httpx.AsyncClient) -> str:
    (token,) = CSRF.findall((await client.get("/account")).text)[:1]
    return token


def session(building: Building) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=building.url, timeout=10)


def stop_the_flat(building: Building) -> str:
    """The flat's use stops (as its detector would say): a critical alert about a resident."""
    finding = Finding(
        code="use_stopped",
        device="flat-1",
        point="use",
        active=True,
        value=4.0,
        at=time.time(),
        params={"meters": "electricity+water", "hours_quiet": 4.0, "usual_uses": 3.6},
    )
    building.gateway._pipeline.submit_finding(finding)  # type: ignore[union-attr]
    return "use_stopped"


def open_alert(building: Building, rule: str) -> str:
    return next(a.alert_id for a in building.gateway.active_alerts() if a.rule == rule)


class _Text(HTMLParser):
    """The text a reader sees (not scripts, styles or attributes)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        for name, value in attrs:  # what a screen reader says, and the hover titles
            if name in ("title", "aria-label", "alt", "placeholder") and value:
                self.parts.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def visible_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return " ".join(parser.parts)


# Ids, units, people's names and product names a Chinese page may show as they are.
ALLOWED_LATIN = {
    SITE, GATEWAY, "site", "console", "gw", "main", "flat", "water", "entrance", "English",
    "wang", "fang", "li", "wei", "zhang", "qiang", "kWh", "V", "W", "A", "Hz", "dBm", "m3", "MQTT",
    "Home", "Assistant", "HTTP", "HTTPS", "local_api", "tls_cert", "tls_key", "nbedge", "users",
    "EN", "unit", "import_energy", "export_energy", "total_power", "voltage_l1", "voltage_l2",
    "voltage_l3", "current_l1", "current_l2", "current_l3", "power_l1", "power_l2", "power_l3",
    "frequency", "power_factor", "volume", "total_energy", "voltage", "current", "power",
}  # fmt: skip


def english_words(text: str) -> set[str]:
    words = set(re.findall(r"[A-Za-z][A-Za-z0-9_.-]*", text))
    ids = {w for w in words if any(part in ALLOWED_LATIN for part in re.split(r"[-_.]", w))}
    return {w for w in words - ids if w not in ALLOWED_LATIN and not re.fullmatch(r"[A-Z]", w)}


async def test_a_login_starts_a_session_and_a_logout_ends_it(
    tmp_path: Path, mosquitto: Broker
) -> None:
    async with console_building(tmp_path, mosquitto) as building, session(building) as client:
        first = await client.get("/", follow_redirects=True)
        assert first.url.path == "/login"
        assert "plain HTTP" in first.text  # the console says it is not encrypted
        answer = await login(client, "wang.fang")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/alerts"
        cookie = answer.headers["set-cookie"]
        assert "nbedge_session=" in cookie
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie
        assert "Secure" not in cookie
        alerts = await client.get("/alerts")
        assert alerts.status_code == 200
        assert "No open alerts." in alerts.text
        account = await client.get("/account")
        assert "wang.fang" in account.text
        token = await csrf_of(client)
        out = await client.post("/logout", data={"csrf": token})
        assert out.status_code == 303
        after = await client.get("/alerts")
        assert after.status_code == 303
        assert after.headers["location"].startswith("/login")


async def test_failed_logins_are_slowed_per_address_and_account_but_never_locked(
    tmp_path: Path, mosquitto: Broker
) -> None:
    async with console_building(tmp_path, mosquitto) as building, session(building) as client:
        wrong = await login(client, "wang.fang", "not her password")
        assert wrong.status_code == 401
        assert "Wrong name or password" in wrong.text
        # At once, even with the right password: slowed, and the password is not checked.
        slowed = await login(client, "wang.fang")
        assert slowed.status_code == 429
        assert slowed.headers["retry-after"] == "1"
        other = await login(client, "li.wei")  # same address: slowed too
        assert other.status_code == 429
        building.clock.skip(1.01)  # the first failure's second has passed
        assert (await login(client, "wang.fang")).status_code == 303  # never locked
        status = (await client.get("/api/status")).json()["local_api"]
        assert (status["logins_failed"], status["logins_slowed"]) == (1, 2)


async def test_every_form_and_session_post_needs_its_csrf_token(
    tmp_path: Path, mosquitto: Broker
) -> None:
    async with console_building(tmp_path, mosquitto) as building, session(building) as client:
        await login(client, "wang.fang")
        stop_the_flat(building)
        await wait_until(lambda: bool(building.gateway.active_alerts()), 5)
        alert_id = open_alert(building, "use_stopped")
        url = f"/alerts/{alert_id}/acknowledge"
        missing = await client.post(url, data={})
        assert missing.status_code == 422
        forged = await client.post(url, data={"csrf": "forged"})
        assert forged.status_code == 403
        api = await client.post(f"/api/alerts/{alert_id}/acknowledge", json={})
        assert api.status_code == 403  # a session without X-CSRF-Token
        login_forged = await client.post(
            "/login", data={"name": "wang.fang", "password": PASSWORD, "csrf": "x"}
        )
        assert login_forged.status_code == 403
        assert building.gateway.active_alerts()[0].state == "new"  # nothing changed
        token = await csrf_of(client)
        done = await client.post(
            f"/api/alerts/{alert_id}/acknowledge",
            json={"note": "路上"},
            headers={"X-CSRF-Token": token},
        )
        assert done.status_code == 200, done.text
        assert done.json()["alert"]["acknowledged_by"] == "王芳"
        status = (await client.get("/api/status")).json()["local_api"]
        assert status["csrf_refused"] == 3


async def test_nothing_about_residents_without_a_login_nor_for_a_viewer(
    tmp_path: Path, mosquitto: Broker
) -> None:
    async with console_building(tmp_path, mosquitto) as building, session(building) as nobody:
        stop_the_flat(building)
        await wait_until(lambda: bool(building.gateway.active_alerts()), 5)
        status = (await nobody.get("/api/status")).json()
        assert status["analytics"]["dwellings"] == {}
        assert status["analytics"]["dwellings_hidden"] == 1
        assert (await nobody.get("/api/alerts")).json() == []  # the flat's alert is not shown
        assert (await nobody.get("/api/readings/latest")).status_code == 401
        assert (await nobody.get("/api/events")).status_code == 401
        residents = await nobody.get("/residents")
        assert residents.status_code == 303

        async with session(building) as viewer:
            await login(viewer, "li.wei")
            assert (await viewer.get("/residents")).status_code == 403
            assert (await viewer.get("/api/alerts")).json() == []
            page = (await viewer.get("/alerts")).text
            assert HOME_LABEL not in page
            readings = (await viewer.get("/api/readings/latest")).json()
            assert {r["device"] for r in readings} == {"main", "entrance"}  # not the flat's
            assert (await viewer.get("/meters/flat-1")).status_code == 404

        async with session(building) as responder:
            await login(responder, "wang.fang")
            alerts = (await responder.get("/api/alerts")).json()
            assert [a["rule"] for a in alerts] == ["use_stopped"]
            page = (await responder.get("/residents")).text
            assert HOME_LABEL in page
            assert "Stopped: please visit" in page  # the stage, in words
            assert "nobody has it yet" in page
            dwellings = (await responder.get("/api/status")).json()["analytics"]["dwellings"]
            assert list(dwellings) == ["flat-1"]


async def test_acting_from_the_alerts_page_reaches_the_store_and_mqtt(
    tmp_path: Path, mosquitto: Broker
) -> None:
    async with console_building(tmp_path, mosquitto) as building, session(building) as client:
        await login(client, "wang.fang")
        stop_the_flat(building)
        await wait_until(lambda: bool(building.gateway.active_alerts()), 5)
        alert_id = open_alert(building, "use_stopped")
        page = (await client.get("/alerts")).text
        assert HOME_LABEL in page
        assert "I have it" in page
        token = await csrf_of(client)
        ack = await client.post(
            f"/alerts/{alert_id}/acknowledge", data={"csrf": token, "note": "在路上"}
        )
        assert ack.status_code == 303
        assert ack.headers["location"] == "/alerts?done=acknowledged"
        message = await retained_when(
            mosquitto, building.topic(alert_id), lambda m: m["state"] != "new"
        )
        assert (message["state"], message["acknowledged_by"]) == ("acknowledged", "王芳")
        no_outcome = await client.post(f"/alerts/{alert_id}/resolve", data={"csrf": token})
        assert no_outcome.status_code == 409
        assert "Choose what happened" in no_outcome.text
        resolved = await client.post(
            f"/alerts/{alert_id}/resolve",
            data={"csrf": token, "outcome": "resident_ok", "note": "她在午睡"},
        )
        assert resolved.status_code == 303
        [after] = [a for a in building.gateway.active_alerts() if a.alert_id == alert_id]
        assert (after.state, after.outcome, after.resolved_by) == (
            "resolved",
            "resident_ok",
            "王芳",
        )
        history = await building.gateway._store.alert_history(alert_id)  # type: ignore[union-attr]
        assert [h["event"] for h in history] == ["raised", "acknowledged", "resolved"]
        assert history[1]["note"] == "在路上"
        assert history[2]["note"] == "她在午睡"
        page = (await client.get("/alerts?done=resolved")).text
        assert "resolved by 王芳" in page


async def test_the_live_stream_says_when_an_alert_changes(
    tmp_path: Path, mosquitto: Broker
) -> None:
    async with console_building(tmp_path, mosquitto) as building, session(building) as client:
        await login(client, "li.wei")
        events: list[str] = []
        async with client.stream("GET", "/api/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.aiter_lines()

            async def next_event() -> str:
                async for line in lines:
                    if line.startswith("event: "):
                        return line.removeprefix("event: ")
                return ""

            events.append(await asyncio.wait_for(next_event(), 5))  # at once, on connecting
            building.main.override("voltage_l1", 262.0)  # the simulator: an overvoltage
            started = time.monotonic()
            events.append(await asyncio.wait_for(next_event(), 10))
            took = time.monotonic() - started
        assert events == ["alerts", "alerts"]
        assert any(a.rule == "voltage" for a in building.gateway.active_alerts())
        print(f"overvoltage on the simulator to the live event: {took:.2f} s")


async def test_a_session_ends_when_idle_and_a_password_change_ends_the_others(
    tmp_path: Path, mosquitto: Broker
) -> None:
    async with (
        console_building(tmp_path, mosquitto) as building,
        session(building) as phone,
        session(building) as other,
        session(building) as installer,
    ):
        await login(phone, "wang.fang")
        await login(other, "wang.fang")
        token = await csrf_of(phone)
        wrong = await phone.post(
            "/account/password",
            data={"csrf": token, "current": "nope", "new": "new secret 1", "again": "new secret 1"},
        )
        assert wrong.status_code == 400
        assert "current password is wrong" in wrong.text
        short = await phone.post(
            "/account/password",
            data={"csrf": token, "current": PASSWORD, "new": "short", "again": "short"},
        )
        assert short.status_code == 400
        changed = await phone.post(
            "/account/password",
            data={
                "csrf": token,
                "current": PASSWORD,
                "new": "new secret 1",
                "again": "new secret 1",
            },
        )
        assert changed.status_code == 303
        assert (await phone.get("/alerts")).status_code == 200  # this one goes on
        assert (await other.get("/alerts")).status_code == 303  # the other one ended
        # An installer resets it; her sessions end; the new one works.
        await login(installer, "zhang.qiang")
        people = await installer.get("/people")
        assert "王芳" in people.text
        new = "from the office"
        reset = await installer.post(
            "/people/wang.fang/password",
            data={"csrf": await csrf_of(installer), "new": new, "again": new},
        )
        assert reset.status_code == 303
        assert (await phone.get("/alerts")).status_code == 303
        assert (await login(phone, "wang.fang", "from the office")).status_code == 303
        # A responder may not reset anyone's.
        assert (await phone.get("/people")).status_code == 403
        # Idle for longer than local_api.session_idle_s (30 min): ended.
        building.clock.skip(30 * 60 + 1)
        assert (await phone.get("/alerts")).status_code == 303
        assert (await installer.get("/alerts")).status_code == 303


@pytest.mark.parametrize("path", ["/alerts", "/residents", "/meters", "/devices", "/account"])
async def test_a_chinese_page_shows_no_english(
    tmp_path: Path, mosquitto: Broker, path: str
) -> None:
    zh = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}
    async with console_building(tmp_path, mosquitto) as building, session(building) as client:
        await login(client, "wang.fang")
        stop_the_flat(building)
        building.main.override("voltage_l1", 262.0)
        await wait_until(lambda: len(building.gateway.active_alerts()) == 2, 10)
        await wait_until(lambda: bool(building.gateway.gates()[0].state), 5)
        page = await client.get(path, headers=zh)
        assert page.status_code == 200
        assert page.headers["content-language"] == "zh-Hans"
        text = visible_text(page.text)
        assert english_words(text) == set(), text
        assert re.search(r"[\u4e00-\u9fff]", text)
        # The reader's choice wins over the browser's.
        chosen = await client.get("/language/en?next=" + path)
        assert chosen.status_code == 303
        assert chosen.headers["location"] == path
        english = await client.get(path, headers=zh)
        assert english.headers["content-language"] == "en"


def test_every_text_of_the_templates_is_translated() -> None:
    method_map = [("**.html", "jinja2")]
    options = {"**.html": {"extensions": "jinja2.ext.i18n"}}
    found = {
        message
        for _, _, message, _, _ in extract_from_dir(
            ROOT / "edge" / "web" / "templates", method_map, options_map=options
        )
    }
    with PO.open("rb") as f:
        catalogue = read_po(f)
    translated = {m.id for m in catalogue if m.id and m.string and not m.fuzzy}
    texts = {m if isinstance(m, str) else m[0] for m in found}
    assert texts, "no texts found in the templates"
    assert texts <= translated, sorted(texts - translated)


async def test_bad_input_is_refused_and_changes_nothing(tmp_path: Path, mosquitto: Broker) -> None:
    async with console_building(tmp_path, mosquitto) as building, session(building) as client:
        await login(client, "wang.fang")
        stop_the_flat(building)
        await wait_until(lambda: bool(building.gateway.active_alerts()), 5)
        alert_id = open_alert(building, "use_stopped")
        token = await csrf_of(client)
        for outcome in ("fine", "auto", "x" * 41, "\x00", "结束", str(10**400)):
            answer = await client.post(
                f"/alerts/{alert_id}/resolve", data={"csrf": token, "outcome": outcome}
            )
            assert answer.status_code in (409, 422), (outcome, answer.status_code)
        huge_note = await client.post(
            f"/alerts/{alert_id}/acknowledge", data={"csrf": token, "note": "字" * 501}
        )
        assert huge_note.status_code == 422
        unknown = await client.post("/alerts/nope/acknowledge", data={"csrf": token})
        assert unknown.status_code == 404
        long_id = await client.post("/alerts/" + "x" * 300 + "/acknowledge", data={"csrf": token})
        assert long_id.status_code == 422
        verb = await client.post(f"/alerts/{alert_id}/delete", data={"csrf": token})
        assert verb.status_code == 422
        assert (await client.request("PATCH", "/alerts")).status_code == 405
        assert (await client.get("/language/fr")).status_code == 404
        away = await client.get("/language/en?next=//evil.example/x")
        assert away.headers["location"] == "/"
        away = await client.post(
            "/login?next=https://evil.example/",
            data={"name": "wang.fang", "password": PASSWORD, "csrf": "x"},
        )
        assert away.status_code == 403
        assert building.gateway.active_alerts()[0].state == "new"
        # The gateway still serves.
        assert (await client.get("/alerts")).status_code == 200


async def test_the_console_ships_its_assets_and_a_web_app_manifest(
    tmp_path: Path, mosquitto: Broker
) -> None:
    async with console_building(tmp_path, mosquitto) as building, session(building) as client:
        manifest = await client.get("/manifest.webmanifest")
        assert manifest.headers["content-type"] == "application/manifest+json"
        assert manifest.json()["start_url"] == "/alerts"
        for asset in ("console.css", "console.js", "meter.js", "uplot.iife.min.js", "icon.svg"):
            assert (await client.get(f"/static/{asset}")).status_code == 200, asset
        page = (await client.get("/login")).text
        assert "http://" not in page.replace("http://127.0.0.1", "")
        assert "https://" not in page


def test_the_wheel_ships_the_templates_assets_and_compiled_catalogues(tmp_path: Path) -> None:
    """What ``pip install`` puts on a gateway has every page, asset and catalogue it serves."""
    import subprocess
    import sys
    import zipfile

    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("nbedge-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {
        "edge/locale/zh_Hans/LC_MESSAGES/nbedge.mo",
        "edge/web/static/uplot.iife.min.js",
        "edge/web/static/uplot.LICENSE",
        "edge/web/static/console.js",
        "edge/web/static/manifest.webmanifest",
        *(f"edge/web/templates/{p.name}" for p in (ROOT / "edge/web/templates").glob("*.html")),
    }
    assert shipped <= names, sorted(shipped - names)


async def test_over_https_the_session_cookie_is_secure(tmp_path: Path, mosquitto: Broker) -> None:
    cert, key = self_signed(tmp_path)
    tls = f'tls_cert = "{cert}"\ntls_key = "{key}"'
    async with (
        console_building(tmp_path, mosquitto, local_api=tls) as building,
        httpx.AsyncClient(
            base_url=building.url, timeout=10, verify=ssl.create_default_context(cafile=cert)
        ) as client,
    ):
        assert building.url.startswith("https://")
        first = await client.get("/login")
        assert "plain HTTP" not in first.text
        answer = await login(client, "wang.fang")
        assert answer.status_code == 303
        cookie = answer.headers["set-cookie"]
        assert "Secure" in cookie
        assert "HttpOnly" in cookie
        assert (await client.get("/alerts")).status_code == 200


def test_a_homes_motion_sensor_tells_of_its_residents() -> None:
    # someone moving about, or nobody: for responders only, as the home's meters and doors
    text = CONFIG.format(state="state")
    config = parse_config(text.replace('name = "flat-1"\n', MOTION_DWELLING) + MOTION_SENSOR)
    site = ConsoleSite.from_config(config)
    assert {"flat-1", "flat", "water", "flat-1-motion"} <= site.resident_devices
    assert "main" not in site.resident_devices

"""``gateway_silent``, on SQLite and on PostgreSQL, with the central API's clock injected: raised
once a gateway heard before has been silent for the configured time, as the platform sees it in
the alert feed, the current states and the open work; cleared (and resolved) when the gateway
reports again; raised once, not once per process, with two API processes on one database."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx

from cloud_sync.central import silence
from cloud_sync.central.admin import make_engine, register_gateway
from tests.cloud_sync.central.test_api import pull_all
from tests.cloud_sync.central.test_ops import samples
from tests.cloud_sync.conftest import (
    T0,
    Central,
    batch_json,
    central_api,
    eventually,
    summary_record,
)
from tests.support.clocks import SetClock

SILENT_AFTER_S = 900
TICK_S = 0.05
SETTLE_S = 0.4
"""Long enough for several rounds of the periodic work."""


@contextlib.contextmanager
def api(
    database_url: str, clock: SetClock, **options: Any
) -> Iterator[tuple[Central, httpx.Client]]:
    settings = {"gateway_silent_after_s": SILENT_AFTER_S, "check_interval_s": TICK_S} | options
    with (
        central_api(database_url, now=clock, **settings) as central,
        httpx.Client(base_url=central.base_url, timeout=10) as http,
    ):
        yield central, http


def report(http: httpx.Client, central: Central, n: int) -> None:
    reply = http.post(
        "/v1/ingest", content=batch_json([summary_record(n)]), headers=central.gateway_headers()
    )
    assert reply.status_code == 200, reply.text


def silent_events(http: httpx.Client, central: Central) -> list[dict[str, Any]]:
    return [
        e for e in pull_all(http, central, "alerts", limit=100) if e["code"] == "gateway_silent"
    ]


def grew(before: dict[Any, float], after: dict[Any, float], event: str) -> float:
    key = ("nbedge_central_gateway_silent_total", frozenset({("event", event)}))
    return after[key] - before.get(key, 0.0)


def test_a_silent_gateway_raises_once_and_clears_when_it_reports_again(database_url: str) -> None:
    clock = SetClock(T0)
    with api(database_url, clock) as (central, http):
        register_gateway(central.engine, central.site_id, "gw-never")  # never heard: never silent
        before = samples(http)
        report(http, central, 1)
        clock.advance(SILENT_AFTER_S - 1)
        time.sleep(SETTLE_S)
        assert silent_events(http, central) == []
        clock.advance(2)
        [raised] = eventually(lambda: silent_events(http, central), "no gateway_silent raised")
        time.sleep(SETTLE_S)
        assert len(silent_events(http, central)) == 1  # once, however many rounds
        alert_id = raised["alert_id"]
        assert alert_id == f"central.gateway_silent.{int(T0.timestamp() * 1000)}"
        assert {k: raised[k] for k in ("event", "device", "point", "severity", "condition")} == {
            "event": "raised",
            "device": "gw-1",
            "point": "uplink",
            "severity": "critical",
            "condition": "active",
        }
        assert raised["text"] == {
            "en": "Gateway gw-1 has not reported for 15 min",
            "zh-Hans": "网关 gw-1 已 15 分钟未上报",
        }
        assert raised["params"] == {
            "silent_s": SILENT_AFTER_S + 1,
            "silent_after_s": SILENT_AFTER_S,
            "last_contact_at": "2024-03-01T00:00:00+00:00",
        }
        [work] = http.get(
            f"/v1/sites/{central.site_id}/open-work", headers=central.platform_headers()
        ).json()["items"]
        assert (work["alert_id"], work["human_state"], work["age_s"]) == (alert_id, "new", 0.0)

        clock.advance(60)
        me = http.get("/v1/gateways/me", headers=central.gateway_headers())
        assert me.json() == {"gateway_id": "gw-1", "site_id": central.site_id}
        assert [e["event"] for e in silent_events(http, central)] == ["raised"]  # no contact

        clock.advance(60)
        commands = http.get("/v1/gateway/commands", headers=central.gateway_headers())
        assert commands.status_code == 200  # a pull is a contact too
        events = silent_events(http, central)
        assert [(e["event"], e["condition"], e["human_state"]) for e in events] == [
            ("raised", "active", "new"),
            ("cleared", "cleared", "new"),
            ("resolved", "cleared", "resolved"),
        ]
        assert events[1]["text"]["zh-Hans"] == "网关 gw-1 已恢复上报（中断 17 分钟）"
        assert events[2]["outcome"] == "auto"
        [state] = http.get(
            f"/v1/sites/{central.site_id}/alerts/current",
            params={"code": "gateway_silent"},
            headers=central.platform_headers(),
        ).json()["items"]
        assert (state["condition"], state["human_state"], state["outcome"]) == (
            "cleared",
            "resolved",
            "auto",
        )
        assert state["cleared_at"] == "2024-03-01T00:17:01Z"
        work_left = http.get(
            f"/v1/sites/{central.site_id}/open-work", headers=central.platform_headers()
        ).json()["items"]
        assert work_left == []
        after = samples(http)
        assert (grew(before, after, "raised"), grew(before, after, "cleared")) == (1, 1)

        # A second silence is a second alert.
        clock.advance(SILENT_AFTER_S + 1)
        events = eventually(
            lambda: [e for e in silent_events(http, central) if e["alert_id"] != alert_id],
            "no second gateway_silent",
        )
        assert [e["event"] for e in events] == ["raised"]
        assert {e["device"] for e in silent_events(http, central)} == {"gw-1"}


def test_a_person_acknowledges_and_resolves_a_silent_gateway_at_once(database_url: str) -> None:
    clock = SetClock(T0)
    with api(database_url, clock) as (central, http):
        report(http, central, 1)
        clock.advance(SILENT_AFTER_S + 1)
        [raised] = eventually(lambda: silent_events(http, central), "no gateway_silent raised")
        url = f"/v1/sites/{central.site_id}/gateways/gw-1/alerts/{raised['alert_id']}"
        headers = central.platform_headers()
        acknowledged = http.post(f"{url}/acknowledge", json={"by": "Li Wei"}, headers=headers)
        assert acknowledged.status_code == 202
        assert (acknowledged.json()["state"], acknowledged.json()["event_id"]) == (
            "applied",
            f"{raised['alert_id']}.2",
        )
        again = http.post(f"{url}/acknowledge", json={"by": "王芳"}, headers=headers).json()
        assert (again["state"], again["event_id"]) == ("applied", None)  # already acknowledged
        resolved = http.post(
            f"{url}/resolve",
            json={"by": "Li Wei", "outcome": "device_fault", "note": "router replaced"},
            headers=headers,
        ).json()
        assert resolved["state"] == "applied"
        assert http.get("/v1/gateway/commands", headers=central.gateway_headers()).json() == {
            "commands": []
        }  # nothing for the gateway to do
        events = silent_events(http, central)
        assert [(e["event"], e["human_state"], e["via"], e["by"]) for e in events] == [
            ("raised", "new", "rule", None),
            ("acknowledged", "acknowledged", "platform", "Li Wei"),
            ("resolved", "resolved", "platform", "Li Wei"),
            ("cleared", "resolved", "rule", None),  # the pull above: the gateway is back
        ]
        assert events[2]["text"] == {
            "en": "Resolved by Li Wei: a device fault",
            "zh-Hans": "Li Wei 已处理：设备故障",
        }
        assert events[2]["command_id"] == resolved["command_id"]


def test_no_gateway_silent_when_it_is_off(database_url: str) -> None:
    clock = SetClock(T0)
    with api(database_url, clock, gateway_silent_after_s=0) as (central, http):
        report(http, central, 1)
        clock.advance(30 * 86_400)
        time.sleep(SETTLE_S)
        assert silent_events(http, central) == []


def test_after_a_restart_gateways_get_the_whole_time_to_report(database_url: str) -> None:
    clock = SetClock(T0)
    with api(database_url, clock) as (central, http):
        report(http, central, 1)
    clock.advance(3 * SILENT_AFTER_S)  # the API was down: nobody could report
    with api(database_url, clock) as (central, http):
        time.sleep(SETTLE_S)
        assert silent_events(http, central) == []
        clock.advance(SILENT_AFTER_S)
        eventually(lambda: silent_events(http, central), "no gateway_silent after the restart")


def test_two_processes_on_one_database_raise_and_clear_once(database_url: str) -> None:
    clock = SetClock(T0)
    with (
        api(database_url, clock) as (central, http),
        api(database_url, clock, platform_token=central.platform_token) as (_, other),
    ):
        token = register_gateway(central.engine, central.site_id, central.gateway_id)
        gateway = {"Authorization": f"Bearer {token}"}
        before = [samples(http), samples(other)]
        assert (
            other.post(
                "/v1/ingest", content=batch_json([summary_record(1)]), headers=gateway
            ).status_code
            == 200
        )
        clock.advance(SILENT_AFTER_S + 1)
        eventually(lambda: silent_events(http, central), "no gateway_silent raised")
        time.sleep(SETTLE_S)
        assert [e["event"] for e in silent_events(http, central)] == ["raised"]
        clock.advance(60)
        replies: list[int] = []
        threads = [
            threading.Thread(
                target=lambda client=client: replies.append(
                    client.get("/v1/gateway/commands", headers=gateway).status_code
                )
            )
            for client in (http, other, http, other)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert replies == [200] * 4
        assert [e["event"] for e in silent_events(http, central)] == [
            "raised",
            "cleared",
            "resolved",
        ]
        after = [samples(http), samples(other)]
        assert sum(grew(b, a, "raised") for b, a in zip(before, after, strict=True)) == 1
        assert sum(grew(b, a, "cleared") for b, a in zip(before, after, strict=True)) == 1


ROUNDS = 3


def test_racing_checks_raise_one_alert(central: Central) -> None:
    """Eight checkers, each with its own connections, at the same instant: one alert."""
    contacts = silence.Contacts(timedelta(seconds=30))
    contacts.heard(central.engine, central.gateway_id, central.site_id, T0)
    engines = [make_engine(central.settings.database_url) for _ in range(8)]
    try:
        for round_number in range(ROUNDS):
            now = T0 + timedelta(seconds=SILENT_AFTER_S + 1 + round_number)
            barrier = threading.Barrier(len(engines))
            raised: list[int] = []

            def check(
                engine: Any, now: Any = now, barrier: Any = barrier, raised: Any = raised
            ) -> None:
                barrier.wait()
                raised.append(silence.raise_silent(engine, now, timedelta(seconds=SILENT_AFTER_S)))

            threads = [threading.Thread(target=check, args=(engine,)) for engine in engines]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert sum(raised) == (1 if round_number == 0 else 0)
        with httpx.Client(base_url=central.base_url, timeout=10) as http:
            assert [e["event"] for e in silent_events(http, central)] == ["raised"]
    finally:
        for engine in engines:
            engine.dispose()

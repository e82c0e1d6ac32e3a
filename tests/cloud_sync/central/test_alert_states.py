"""Alerts people act on, as the platform reads them, on SQLite and on PostgreSQL: the event feed
with old and new fields, each alert's current state whatever order or repetition its events
come in, the filters of ``/alerts/current``, and the open work, critical and oldest first."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import httpx
import pytest

from cloud_sync.central.admin import register_gateway
from cloud_sync.schemas import Record
from tests.cloud_sync.central.test_api import ingest, pull_all
from tests.cloud_sync.conftest import (
    ALERT,
    T0,
    Central,
    Clock,
    alert_event_record,
    alert_record,
    alert_story,
    batch_json,
)
from tests.support.clocks import SetClock

NOW = T0 + timedelta(hours=2)
CLOCK = SetClock(NOW)


@pytest.fixture(scope="module")
def central_clock() -> Clock:
    return CLOCK


@pytest.fixture(autouse=True)
def _clock_at_now() -> None:
    CLOCK.set(NOW)


def post(http: httpx.Client, token: str, gateway_id: str, records: list[Record]) -> dict[str, Any]:
    reply = http.post(
        "/v1/ingest",
        content=batch_json(records, gateway_id=gateway_id),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert reply.status_code == 200, reply.text
    answer: dict[str, Any] = reply.json()
    return answer


def current(http: httpx.Client, central: Central, **params: Any) -> list[dict[str, Any]]:
    """Every alert ``/alerts/current`` lists with ``params``, page by page."""
    items: list[dict[str, Any]] = []
    after = 0
    while True:
        reply = http.get(
            f"/v1/sites/{central.site_id}/alerts/current",
            params={"after": after, **params},
            headers=central.platform_headers(),
        )
        assert reply.status_code == 200, reply.text
        page = reply.json()
        if not page["items"]:
            assert page["next_cursor"] == after
            return items
        items += page["items"]
        after = page["next_cursor"]


def _comparable(state: dict[str, Any]) -> dict[str, Any]:
    """A state without what depends on where and when it was stored."""
    skip = {"seq", "gateway_id", "updated_at", "history"}
    return {key: value for key, value in state.items() if key not in skip}


def test_a_whole_alert_reads_the_same_whatever_order_and_repetition(
    http: httpx.Client, central: Central
) -> None:
    order = list(range(5))
    shuffled = order[:]
    random.Random(17).shuffle(shuffled)
    orders = {
        "gw-1": [order],  # in order, one batch
        "gw-2": [[i] for i in reversed(order)],  # backwards, one by one
        "gw-3": [shuffled[:2], shuffled, shuffled[1:3], order],  # shuffled, each sent again
        "gw-4": [[i, i] for i in shuffled],  # each twice within its batch
    }
    tokens = {"gw-1": central.gateway_token}
    for gateway_id in list(orders)[1:]:
        tokens[gateway_id] = register_gateway(central.engine, central.site_id, gateway_id)
    for gateway_id, batches in orders.items():
        story: list[Record] = list(alert_story(gateway_id=gateway_id))
        answers = [
            post(http, tokens[gateway_id], gateway_id, [story[i] for i in batch])
            for batch in batches
        ]
        assert sum(a["accepted"] for a in answers) == 5
    states = {item["gateway_id"]: item for item in current(http, central)}
    assert sorted(states) == sorted(orders)
    first = _comparable(states["gw-1"])
    assert first == {
        "site_id": "site-1",
        "alert_id": ALERT,
        "code": "use_stopped",
        "device": "flat-3-201",
        "point": "water_electricity",
        "severity": "critical",
        "condition": "cleared",
        "human_state": "resolved",
        "level": 1,
        "value": 6.5,
        "params": {"hours_quiet": 6.5, "usual_uses": 14, "lives_alone": True},
        "text": {"en": "use_stopped resolved 5", "zh-Hans": "use_stopped resolved 5 事件"},
        "raised_at": "2024-03-01T00:00:00Z",
        "cleared_at": "2024-03-01T00:04:00Z",
        "acknowledged_at": "2024-03-01T00:03:00Z",
        "acknowledged_by": "王芳",
        "acknowledged_note": "on my way",
        "resolved_at": "2024-03-01T00:05:00Z",
        "resolved_by": "王芳",
        "resolved_note": "she was asleep",
        "outcome": "resident_ok",
        "last_event": "resolved",
        "last_event_id": f"{ALERT}.5",
        "last_event_at": "2024-03-01T00:05:00Z",
        "events": 5,
    }
    for gateway_id in orders:
        assert _comparable(states[gateway_id]) == first, gateway_id
        history = states[gateway_id]["history"]
        assert [event["event"] for event in history] == [
            "raised",
            "escalated",
            "acknowledged",
            "cleared",
            "resolved",
        ], gateway_id


def test_the_event_feed_carries_new_events_and_keeps_the_old_fields(
    http: httpx.Client, central: Central
) -> None:
    story = alert_story()
    legacy = [alert_record(20, "a1"), alert_record(21, "a1", "cleared")]
    assert ingest(http, central, batch_json([*story[:3], *legacy])).status_code == 200
    events = pull_all(http, central, "alerts", limit=2)
    assert [(e["event"], e["state"], e["human_state"]) for e in events] == [
        ("raised", "raised", "new"),
        ("escalated", "raised", "new"),
        ("acknowledged", "raised", "acknowledged"),
        ("raised", "raised", "new"),  # a legacy record: raised is active and new
        ("cleared", "cleared", "resolved"),  # cleared ends it: resolved by the policy
    ]
    acknowledged = events[2]
    assert acknowledged | {"seq": 0, "received_at": ""} == {
        "seq": 0,
        "record_id": f"gw-1:ae:{ALERT}.3",
        "site_id": "site-1",
        "gateway_id": "gw-1",
        "wall_time": "2024-03-01T00:03:00Z",
        "boot_id": "boot-a",
        "monotonic_ns": 3 * 10**9,
        "clock_synced": True,
        "received_at": "",
        # as before alert events
        "alert_id": ALERT,
        "rule": "use_stopped",
        "device": "flat-3-201",
        "point": "water_electricity",
        "state": "raised",
        "severity": "critical",
        "message": "use_stopped acknowledged 3",
        "value": 6.5,
        "raised_at": "2024-03-01T00:00:00Z",
        "cleared_at": None,
        # with alert events
        "event_id": f"{ALERT}.3",
        "event": "acknowledged",
        "code": "use_stopped",
        "condition": "active",
        "human_state": "acknowledged",
        "at": "2024-03-01T00:03:00Z",
        "via": "local_api",
        "by": "王芳",
        "note": "on my way",
        "outcome": None,
        "level": 1,
        "audience": None,
        "params": {"hours_quiet": 6.5, "usual_uses": 14, "lives_alone": True},
        "text": {"en": "use_stopped acknowledged 3", "zh-Hans": "use_stopped acknowledged 3 事件"},
        "command_id": None,
    }
    assert events[1]["audience"] == "grid_worker"
    assert (events[4]["outcome"], events[4]["text"]) == (
        "auto",
        {"en": "alert a1 cleared", "zh-Hans": None},
    )
    # Acknowledged is still active; the legacy alert cleared.
    active = http.get(
        f"/v1/sites/{central.site_id}/alerts/active", headers=central.platform_headers()
    ).json()["items"]
    assert [(a["alert_id"], a["event"]) for a in active] == [(ALERT, "acknowledged")]
    # Cleared but nobody resolved it: no longer active, still open work.
    assert ingest(http, central, batch_json([story[3]])).json()["accepted"] == 1
    active = http.get(
        f"/v1/sites/{central.site_id}/alerts/active", headers=central.platform_headers()
    ).json()["items"]
    assert active == []
    work = http.get(f"/v1/sites/{central.site_id}/open-work", headers=central.platform_headers())
    assert [(w["alert_id"], w["condition"]) for w in work.json()["items"]] == [(ALERT, "cleared")]


def test_an_alert_event_the_central_api_cannot_order_is_refused_by_record(
    http: httpx.Client, central: Central
) -> None:
    good = alert_event_record(1)
    not_numbered = alert_event_record(2).model_copy(
        update={"body": alert_event_record(2).body.model_copy(update={"event_id": "x.2"})}
    )
    claims_central = alert_event_record(1, alert_id="central.gateway_silent.1")
    reply = ingest(http, central, batch_json([good, not_numbered, claims_central]))
    answer = reply.json()
    assert answer["accepted"] == 1
    assert [(r["index"], r["reason"]) for r in answer["refused"]] == [
        (1, "invalid"),
        (2, "invalid"),
    ]
    assert "event_id" in answer["refused"][0]["detail"]
    assert [s["alert_id"] for s in current(http, central)] == [ALERT]


def test_a_record_repeating_an_event_id_is_a_duplicate(
    http: httpx.Client, central: Central
) -> None:
    first = alert_event_record(1)
    again = alert_event_record(1, record_id="gw-1:ae:again", note="a second copy")
    assert ingest(http, central, batch_json([first])).json()["accepted"] == 1
    assert ingest(http, central, batch_json([again])).json() == {"accepted": 0, "duplicates": 1}
    [state] = current(http, central)
    assert (state["events"], state["history"][0]["note"]) == (1, None)


def _alert(
    name: str, *, severity: str, raised_min: int, device: str = "flat-1", code: str = "use_stopped"
) -> str:
    return f"{code}.{device}.{name}.{raised_min}"


SCENE = [
    # (alert name, severity, raised minutes after T0, device, code, human state reached)
    ("a", "critical", 30, "flat-1", "use_stopped", "new"),
    ("b", "warning", 5, "flat-2", "voltage_swell", "acknowledged"),
    ("c", "critical", 10, "flat-1", "use_stopped", "acknowledged"),
    ("d", "info", 1, "meter-9", "meter_dead", "new"),
    ("e", "critical", 10, "flat-3", "use_stopped", "resolved"),
    ("f", "warning", 20, "flat-2", "voltage_swell", "new"),
    ("g", "critical", 40, "flat-4", "use_stopped", "new"),
]


def _scene_records() -> list[Record]:
    records: list[Record] = []
    for name, severity, raised_min, device, code, reached in SCENE:
        alert_id = _alert(name, severity=severity, raised_min=raised_min, device=device, code=code)
        common: dict[str, Any] = {
            "alert_id": alert_id,
            "severity": severity,
            "code": code,
            "device": device,
            "raised_at": T0 + timedelta(minutes=raised_min),
        }

        def at(n: int, raised_min: int = raised_min) -> Any:
            return T0 + timedelta(minutes=raised_min + 3 * (n - 1))

        records.append(alert_event_record(1, at=at(1), **common))
        if reached in ("acknowledged", "resolved"):
            records.append(
                alert_event_record(
                    2, "acknowledged", at=at(2), state="acknowledged", by="Li Wei", **common
                )
            )
        if reached == "resolved":
            records.append(
                alert_event_record(
                    3,
                    "resolved",
                    at=at(3),
                    state="resolved",
                    by="Li Wei",
                    outcome="help_given",
                    **common,
                )
            )
    return records


def _names(items: list[dict[str, Any]]) -> list[str]:
    return [item["alert_id"].split(".")[2] for item in items]


def test_current_states_filter_by_state_condition_severity_code_device_and_time(
    http: httpx.Client, central: Central
) -> None:
    assert ingest(http, central, batch_json(_scene_records())).status_code == 200
    assert sorted(_names(current(http, central, limit=2))) == list("abcdefg")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"human_state": "new"}, "adfg"),
        ({"human_state": ["new", "acknowledged"]}, "abcdfg"),
        ({"human_state": "resolved"}, "e"),
        ({"condition": "active"}, "abcdefg"),
        ({"condition": "cleared"}, ""),
        ({"severity": "critical"}, "aceg"),
        ({"severity": ["info", "warning"]}, "bdf"),
        ({"code": "voltage_swell"}, "bf"),
        ({"device": "flat-1"}, "ac"),
        ({"raised_from": "2024-03-01T00:10:00Z"}, "acefg"),
        ({"raised_before": "2024-03-01T00:10:00Z"}, "bd"),
        (
            {"raised_from": "2024-03-01T08:10:00+08:00", "raised_before": "2024-03-01T00:30:00Z"},
            "cef",
        ),
        ({"severity": "critical", "human_state": "new", "device": "flat-4"}, "g"),
    ]
    for params, expected in cases:
        assert sorted(_names(current(http, central, limit=3, **params))) == list(expected), params


def test_a_change_moves_an_alert_to_the_end_of_the_current_list(
    http: httpx.Client, central: Central
) -> None:
    assert ingest(http, central, batch_json(_scene_records())).status_code == 200
    reply = http.get(
        f"/v1/sites/{central.site_id}/alerts/current",
        params={"limit": 1000, "history": 0},
        headers=central.platform_headers(),
    ).json()
    assert all(item["history"] == [] for item in reply["items"])
    cursor = reply["next_cursor"]
    common: dict[str, Any] = {
        "alert_id": _alert("a", severity="critical", raised_min=30),
        "device": "flat-1",
        "raised_at": T0 + timedelta(minutes=30),
    }
    later = alert_event_record(2, "cleared", condition="cleared", **common)
    assert ingest(http, central, batch_json([later])).json()["accepted"] == 1
    changed = http.get(
        f"/v1/sites/{central.site_id}/alerts/current",
        params={"after": cursor, "history": 1},
        headers=central.platform_headers(),
    ).json()["items"]
    assert [(_names(changed), changed[0]["condition"])] == [(["a"], "cleared")]
    assert [e["event"] for e in changed[0]["history"]] == ["cleared"]  # the latest one


def test_open_work_comes_critical_first_then_oldest_and_pages_exactly(
    http: httpx.Client, central: Central
) -> None:
    assert ingest(http, central, batch_json(_scene_records())).status_code == 200
    for limit in (1, 2, 3, 100):
        seen: list[dict[str, Any]] = []
        after: str | None = None
        for _ in range(20):
            params: dict[str, Any] = {"limit": limit} | ({} if after is None else {"after": after})
            page = http.get(
                f"/v1/sites/{central.site_id}/open-work",
                params=params,
                headers=central.platform_headers(),
            ).json()
            if not page["items"]:
                assert page["next_cursor"] == after
                break
            seen += page["items"]
            after = page["next_cursor"]
        # e is resolved; c and e were raised at the same minute (c is the smaller id)
        assert _names(seen) == ["c", "a", "g", "b", "f", "d"], limit
    by_name = dict(zip(_names(seen), seen, strict=True))
    assert by_name["c"]["age_s"] == (NOW - (T0 + timedelta(minutes=10))).total_seconds()
    assert by_name["c"]["time_to_acknowledge_s"] == 3 * 60  # acknowledged 3 min after raised
    assert by_name["a"]["time_to_acknowledge_s"] is None
    CLOCK.advance(60)
    later = http.get(
        f"/v1/sites/{central.site_id}/open-work", headers=central.platform_headers()
    ).json()["items"]
    assert later[0]["age_s"] == by_name["c"]["age_s"] + 60


@pytest.mark.parametrize(
    "after", ["", "abc", "W10", "WzEsIDIsIDMsIDRd", "x" * 513, "!!", "WzksInoiLCJhIiwiYiJd"]
)
def test_a_bad_open_work_cursor_is_refused_naming_it(
    http: httpx.Client, central: Central, after: str
) -> None:
    reply = http.get(
        f"/v1/sites/{central.site_id}/open-work",
        params={"after": after},
        headers=central.platform_headers(),
    )
    assert reply.status_code == 422, reply.text
    assert [error["loc"] for error in reply.json()["detail"]] == [["query", "after"]]


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"human_state": "asleep"}, "human_state"),
        ({"human_state": ["new"] * 4}, "human_state"),
        ({"condition": "gone"}, "condition"),
        ({"severity": "fatal"}, "severity"),
        ({"code": "no spaces"}, "code"),
        ({"device": "x" * 65}, "device"),
        ({"raised_from": "2024-03-01T00:00:00"}, "raised_from"),  # no offset
        ({"raised_before": "9999-12-31T23:00:00-05:00"}, "raised_before"),  # past year 9999
        ({"raised_from": "yesterday"}, "raised_from"),
        ({"history": 101}, "history"),
    ],
)
def test_a_bad_filter_is_refused_naming_it(
    http: httpx.Client, central: Central, params: dict[str, Any], name: str
) -> None:
    reply = http.get(
        f"/v1/sites/{central.site_id}/alerts/current",
        params=params,
        headers=central.platform_headers(),
    )
    assert reply.status_code == 422, reply.text
    assert {tuple(error["loc"][:2]) for error in reply.json()["detail"]} == {("query", name)}


@pytest.mark.parametrize("path", ["alerts/current", "open-work", "commands"])
def test_the_new_lists_need_the_platform_token(
    http: httpx.Client, central: Central, path: str
) -> None:
    url = f"/v1/sites/{central.site_id}/{path}"
    assert http.get(url).status_code == 401
    assert http.get(url, headers=central.gateway_headers()).status_code == 401
    assert http.get(url, headers=central.platform_headers()).status_code == 200
    assert (
        http.get(f"/v1/sites/nowhere/{path}", headers=central.platform_headers()).status_code == 404
    )

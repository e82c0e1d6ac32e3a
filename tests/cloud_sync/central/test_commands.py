"""Platform commands, on SQLite and on PostgreSQL: issued by the platform, pulled by their
gateway only, applied or refused by its ``command_result``, expired a day after issue (with the
central API's clock injected), and refused when the request is wrong."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from cloud_sync.central.admin import register_gateway, register_site
from tests.cloud_sync.central.test_api import ingest
from tests.cloud_sync.central.test_ops import samples
from tests.cloud_sync.conftest import (
    ALERT,
    T0,
    Central,
    Clock,
    alert_event_record,
    batch_json,
    command_result_record,
    eventually,
)
from tests.support.clocks import SetClock

NOW = T0 + timedelta(hours=1)
CLOCK = SetClock(NOW)


@pytest.fixture(scope="module")
def central_clock() -> Clock:
    return CLOCK


@pytest.fixture(scope="module")
def central_options() -> dict[str, Any]:
    return {"check_interval_s": 0.05}


@pytest.fixture(autouse=True)
def _raised(http: httpx.Client, central: Central) -> None:
    """Each test starts at ``NOW`` with one alert raised by the test's gateway."""
    CLOCK.set(NOW)
    assert ingest(http, central, batch_json([alert_event_record(1)])).json()["accepted"] == 1


def command_url(
    central: Central, action: str, gateway_id: str = "gw-1", alert_id: str = ALERT
) -> str:
    return f"/v1/sites/{central.site_id}/gateways/{gateway_id}/alerts/{alert_id}/{action}"


def issue(
    http: httpx.Client, central: Central, action: str, body: dict[str, Any]
) -> dict[str, Any]:
    reply = http.post(command_url(central, action), json=body, headers=central.platform_headers())
    assert reply.status_code == 202, reply.text
    answer: dict[str, Any] = reply.json()
    return answer


def pull(http: httpx.Client, token: str) -> list[dict[str, Any]]:
    reply = http.get("/v1/gateway/commands", headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 200, reply.text
    commands: list[dict[str, Any]] = reply.json()["commands"]
    return commands


def commands_after(http: httpx.Client, central: Central, after: int = 0) -> dict[str, Any]:
    reply = http.get(
        f"/v1/sites/{central.site_id}/commands",
        params={"after": after},
        headers=central.platform_headers(),
    )
    assert reply.status_code == 200, reply.text
    page: dict[str, Any] = reply.json()
    return page


def test_an_acknowledgement_goes_to_its_gateway_and_comes_back_applied(
    http: httpx.Client, central: Central
) -> None:
    before = samples(http)
    other = register_gateway(central.engine, central.site_id, "gw-2")
    command = issue(http, central, "acknowledge", {"by": "王芳", "note": "on my way"})
    assert command | {"command_id": ""} == {
        "seq": command["seq"],
        "command_id": "",
        "site_id": "site-1",
        "gateway_id": "gw-1",
        "alert_id": ALERT,
        "action": "acknowledge",
        "by": "王芳",
        "note": "on my way",
        "outcome": None,
        "issued_at": "2024-03-01T01:00:00Z",
        "expires_at": "2024-03-02T01:00:00Z",
        "state": "pending",
        "reason": None,
        "event_id": None,
        "result_at": None,
        "changed_at": "2024-03-01T01:00:00Z",
    }
    # Only its gateway gets it, and until it reports, at every pull.
    assert pull(http, other) == []
    for _ in range(2):
        assert pull(http, central.gateway_token) == [
            {
                "command_id": command["command_id"],
                "alert_id": ALERT,
                "action": "acknowledge",
                "by": "王芳",
                "note": "on my way",
                "outcome": None,
                "issued_at": "2024-03-01T01:00:00Z",
            }
        ]
    page = commands_after(http, central)
    assert [(c["command_id"], c["state"]) for c in page["items"]] == [
        (command["command_id"], "pending")
    ]
    cursor = page["next_cursor"]
    # The gateway applies it: the event it made, and its result.
    made = alert_event_record(
        2,
        "acknowledged",
        state="acknowledged",
        via="platform",
        by="王芳",
        note="on my way",
        command_id=command["command_id"],
    )
    result = command_result_record(1, command["command_id"], event_id=f"{ALERT}.2")
    assert ingest(http, central, batch_json([made, result])).json() == {
        "accepted": 2,
        "duplicates": 0,
    }
    changed = commands_after(http, central, cursor)["items"]
    assert [(c["state"], c["event_id"], c["result_at"]) for c in changed] == [
        ("applied", f"{ALERT}.2", "2024-03-01T00:01:00Z")
    ]
    assert pull(http, central.gateway_token) == []
    [state] = http.get(
        f"/v1/sites/{central.site_id}/alerts/current", headers=central.platform_headers()
    ).json()["items"]
    assert (state["human_state"], state["acknowledged_by"]) == ("acknowledged", "王芳")
    assert state["history"][-1]["command_id"] == command["command_id"]
    # The same result again, or another one later, changes nothing.
    refused_later = command_result_record(2, command["command_id"], "refused", reason="late")
    assert ingest(http, central, batch_json([result, refused_later])).json() == {
        "accepted": 1,
        "duplicates": 1,
    }
    assert commands_after(http, central, changed[0]["seq"])["items"] == []
    assert commands_after(http, central)["items"][0]["state"] == "applied"
    after = samples(http)

    def grew(state: str) -> float:
        key = (
            "nbedge_central_commands_total",
            frozenset({("action", "acknowledge"), ("state", state)}),
        )
        return after[key] - before.get(key, 0.0)

    assert [grew(s) for s in ("issued", "applied", "refused", "expired")] == [1, 1, 0, 0]


def test_a_refused_resolution_says_why(http: httpx.Client, central: Central) -> None:
    command = issue(http, central, "resolve", {"by": "Li Wei", "outcome": "false_alarm"})
    assert command["outcome"] == "false_alarm"
    [pulled] = pull(http, central.gateway_token)
    assert (pulled["action"], pulled["outcome"], pulled["note"]) == ("resolve", "false_alarm", None)
    reason = "the alert is still active and its policy needs a visit first"
    refusal = command_result_record(1, command["command_id"], "refused", reason=reason)
    assert ingest(http, central, batch_json([refusal])).json()["accepted"] == 1
    [item] = commands_after(http, central)["items"]
    assert (item["state"], item["reason"], item["event_id"]) == ("refused", reason, None)
    [state] = http.get(
        f"/v1/sites/{central.site_id}/alerts/current", headers=central.platform_headers()
    ).json()["items"]
    assert state["human_state"] == "new"


def test_a_command_not_applied_within_a_day_expires(http: httpx.Client, central: Central) -> None:
    before = samples(http)
    command = issue(http, central, "acknowledge", {"by": "王芳"})
    cursor = commands_after(http, central)["next_cursor"]
    CLOCK.advance(24 * 3600 - 1)
    assert [c["command_id"] for c in pull(http, central.gateway_token)] == [command["command_id"]]
    CLOCK.advance(1)
    assert pull(http, central.gateway_token) == []
    # Expired as soon as it is due, and listed again once the periodic work has marked it.
    assert commands_after(http, central)["items"][0]["state"] == "expired"
    marked = eventually(lambda: commands_after(http, central, cursor)["items"], "not marked")
    assert [(c["command_id"], c["state"]) for c in marked] == [(command["command_id"], "expired")]
    after = samples(http)
    key = (
        "nbedge_central_commands_total",
        frozenset({("action", "acknowledge"), ("state", "expired")}),
    )
    assert after[key] - before.get(key, 0.0) == 1
    # A result that comes after expiry still tells what the gateway did.
    late = command_result_record(1, command["command_id"], event_id=f"{ALERT}.2")
    assert ingest(http, central, batch_json([late])).json()["accepted"] == 1
    [item] = commands_after(http, central, marked[0]["seq"])["items"]
    assert (item["state"], item["event_id"]) == ("applied", f"{ALERT}.2")


def test_a_gateway_cannot_answer_for_another_gateways_command(
    http: httpx.Client, central: Central
) -> None:
    other = register_gateway(central.engine, central.site_id, "gw-2")
    command = issue(http, central, "acknowledge", {"by": "王芳"})
    forged = command_result_record(1, command["command_id"], gateway_id="gw-2")
    reply = http.post(
        "/v1/ingest",
        content=batch_json([forged], gateway_id="gw-2"),
        headers={"Authorization": f"Bearer {other}"},
    )
    assert reply.json()["accepted"] == 1  # stored as it came, to no effect
    assert commands_after(http, central)["items"][0]["state"] == "pending"


def test_commands_are_oldest_first_and_only_the_platform_issues_them(
    http: httpx.Client, central: Central
) -> None:
    ids = []
    for n in range(3):
        CLOCK.advance(1)
        ids.append(issue(http, central, "acknowledge", {"by": f"person {n}"})["command_id"])
    assert [c["command_id"] for c in pull(http, central.gateway_token)] == ids
    for headers in ({}, central.gateway_headers()):
        reply = http.post(command_url(central, "acknowledge"), json={"by": "x"}, headers=headers)
        assert reply.status_code == 401
        assert http.get(f"/v1/sites/{central.site_id}/commands", headers=headers).status_code == 401
    for headers in ({}, central.platform_headers()):
        assert http.get("/v1/gateway/commands", headers=headers).status_code == 401
    assert len(commands_after(http, central)["items"]) == 3


def test_a_command_for_an_unknown_site_gateway_or_alert_is_404(
    http: httpx.Client, central: Central
) -> None:
    register_site(central.engine, "site-2", "Next door")
    register_gateway(central.engine, "site-2", "gw-9")
    for url in [
        f"/v1/sites/nowhere/gateways/gw-1/alerts/{ALERT}/acknowledge",
        command_url(central, "acknowledge", gateway_id="gw-404"),
        command_url(central, "acknowledge", gateway_id="gw-9"),  # of another site
        command_url(central, "acknowledge", alert_id="not.raised.here.1"),
    ]:
        reply = http.post(url, json={"by": "王芳"}, headers=central.platform_headers())
        assert reply.status_code == 404, (url, reply.text)
    assert commands_after(http, central)["items"] == []


@pytest.mark.parametrize(
    ("action", "body", "where"),
    [
        ("resolve", {"by": "王芳"}, "outcome"),
        ("resolve", {"by": "王芳", "outcome": "fixed"}, "outcome"),
        ("resolve", {"by": "王芳", "outcome": "auto"}, "outcome"),  # the policy's, not a person's
        ("acknowledge", {"by": ""}, "by"),
        ("acknowledge", {"by": "Li\nWei"}, "by"),
        ("acknowledge", {"by": "Li\x00Wei"}, "by"),
        ("acknowledge", {"by": "x" * 65}, "by"),
        ("acknowledge", {}, "by"),
        ("acknowledge", {"by": "王芳", "note": "n" * 501}, "note"),
        ("acknowledge", {"by": "王芳", "note": "a\x00b"}, "note"),
        ("acknowledge", {"by": "王芳", "colour": "blue"}, "colour"),
    ],
)
def test_a_bad_command_body_is_refused_naming_the_field(
    http: httpx.Client, central: Central, action: str, body: dict[str, Any], where: str
) -> None:
    reply = http.post(command_url(central, action), json=body, headers=central.platform_headers())
    assert reply.status_code == 422, reply.text
    assert {error["loc"][-1] for error in reply.json()["detail"]} == {where}
    assert commands_after(http, central)["items"] == []


def test_a_note_of_500_characters_is_taken(http: httpx.Client, central: Central) -> None:
    command = issue(
        http, central, "resolve", {"by": "王芳", "note": "字" * 500, "outcome": "other"}
    )
    assert command["note"] == "字" * 500

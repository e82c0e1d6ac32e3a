"""Operating the central API: health, Prometheus metrics, schema migrations; on both databases."""

from __future__ import annotations

import random
import string
from datetime import UTC, datetime

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Column, MetaData, Table, inspect

from cloud_sync.central import db
from cloud_sync.central.admin import (
    create_claim_code,
    init_db,
    register_gateway,
    register_site,
)
from cloud_sync.central.metrics import RouteLabels, method_label, status_label
from cloud_sync.central.migrations import upgrade
from cloud_sync.central.tables import alert_events, gateways, metadata, sites, summaries
from cloud_sync.schemas import IngestBatch
from tests.cloud_sync.central.openapi import api_document, fill
from tests.cloud_sync.conftest import (
    Central,
    alert_record,
    batch_json,
    schema_differences,
    stored_count,
    summary_record,
)


def samples(http: httpx.Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of ``GET /metrics``, by name and labels."""
    reply = http.get("/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
    }


def test_metrics_count_batches_records_and_refusals(http: httpx.Client, central: Central) -> None:
    before = samples(http)
    auth = central.gateway_headers()
    first = batch_json([summary_record(n) for n in range(3)])
    assert http.post("/v1/ingest", content=first, headers=auth).status_code == 200
    again = batch_json([summary_record(n) for n in range(2, 6)])  # one duplicate, three new
    assert http.post("/v1/ingest", content=again, headers=auth).status_code == 200
    assert http.post("/v1/ingest", content=first).status_code == 401
    assert http.post("/v1/ingest", content=b"{}", headers=auth).status_code == 422
    assert http.get("/no/such/path").status_code == 404
    feed = "/v1/sites/alerts/alerts"  # a site named like a part of the path
    assert http.get(feed, headers=central.platform_headers()).status_code == 404
    after = samples(http)

    def grew(name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        return after[key] - before.get(key, 0.0)

    assert grew("nbedge_central_ingest_batches_total") == 2
    assert grew("nbedge_central_ingest_records_total", result="accepted") == 6
    assert grew("nbedge_central_ingest_records_total", result="duplicate") == 1
    assert grew("nbedge_central_ingest_refused_total", reason="unauthenticated") == 1
    assert grew("nbedge_central_ingest_refused_total", reason="invalid") == 1
    assert grew("nbedge_central_ingest_refused_total", reason="forbidden") == 0
    latency = "nbedge_central_http_request_duration_seconds_count"
    assert grew(latency, method="POST", route="/v1/ingest", status="200") == 2
    assert grew(latency, method="GET", route="unmatched", status="404") == 1
    assert grew(latency, method="GET", route="/v1/sites/{site_id}/alerts", status="404") == 1
    assert not [key for key in after if "/no/such/path" in str(key)]


KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
MADE_UP_REQUESTS = 2000


def _made_up_method(rng: random.Random) -> str:
    while True:  # a token as RFC 9110 allows it (httpx sends it upper case)
        method = "".join(rng.choices(string.ascii_uppercase + "-_.!~", k=rng.randint(1, 16)))
        if method not in KNOWN_METHODS:
            return method


def _segment(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits, k=rng.randint(1, 24)))


def test_made_up_methods_and_paths_add_no_metric_series(
    http: httpx.Client, central: Central
) -> None:
    """20,000 requests with made-up methods used to add a series each (110 to 248 MB, and a
    /metrics of 35 MB). Now the labels come from closed sets: once every route, a trailing
    slash and an unknown path have been seen with one made-up method, thousands more made-up
    methods and paths add no series."""
    rng = random.Random(16)
    templates = list(api_document()["paths"])
    shapes = [
        lambda: fill(rng.choice(templates), _segment(rng)),  # a route: 405
        lambda: fill(rng.choice(templates), _segment(rng)) + "/",  # a slash too many: 307
        lambda: "/zz/" + "/".join(_segment(rng) for _ in range(rng.randint(1, 4))),  # 404
    ]
    for path in [*(fill(t, central.site_id) for t in templates), "/v1/health/", "/zz/nothing"]:
        http.request("MADE-UP", path)
    seen = http.get("/metrics").text
    before = samples(http)
    for _ in range(MADE_UP_REQUESTS):
        reply = http.request(_made_up_method(rng), rng.choice(shapes)())
        assert reply.status_code in (307, 404, 405)
    after = samples(http)
    body = http.get("/metrics").text

    assert set(after) == set(before)  # not one new series
    assert len(body.splitlines()) == len(seen.splitlines())
    assert len(body) < 1.1 * len(seen)  # only the numbers grew
    latency = "nbedge_central_http_request_duration_seconds_count"
    series = [dict(labels) for name, labels in after if name == latency]
    assert {labels["method"] for labels in series} <= KNOWN_METHODS | {"other"}
    assert {labels["route"] for labels in series} <= set(templates) | {
        "unmatched",
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
    }
    made_up = sum(
        after[key] - before.get(key, 0.0)
        for key in after
        if key[0] == latency and dict(key[1])["method"] == "other"
    )
    assert made_up == MADE_UP_REQUESTS


def test_labels_come_from_closed_sets() -> None:
    assert [method_label(m) for m in ("GET", "POST", "get", "PROPFIND", "")] == [
        "GET",
        "POST",
        "other",
        "other",
        "other",
    ]
    assert [status_label(code) for code in (200, 422, 418, 299, 502)] == [
        "200",
        "422",
        "4xx",
        "2xx",
        "5xx",
    ]
    routes = RouteLabels(
        lambda: ["/v1/sites/{site_id}/alerts", "/v1/sites/{site_id}/alerts/active"]
    )
    assert routes.label("/v1/sites/v1/alerts") == "/v1/sites/{site_id}/alerts"
    assert routes.label("/v1/sites/a/alerts/active") == "/v1/sites/{site_id}/alerts/active"
    assert routes.label("/v1/sites/a/b/alerts") == "unmatched"


def test_metrics_count_claims(http: httpx.Client, central: Central) -> None:
    before = samples(http)
    code = create_claim_code(central.engine, central.site_id, "gw-7")
    for _ in range(2):
        http.post("/v1/claim", json={"code": code})
    after = samples(http)
    for result, count in [("claimed", 1), ("used", 1), ("unknown", 0)]:
        key = ("nbedge_central_claims_total", frozenset({("result", result)}))
        assert after[key] - before.get(key, 0.0) == count


def test_commands_and_gateway_silent_are_counted_in_closed_label_sets(
    http: httpx.Client,
) -> None:
    found = samples(http)
    commands = {
        dict(labels)["action"] + "/" + dict(labels)["state"]
        for name, labels in found
        if name == "nbedge_central_commands_total"
    }
    assert commands == {
        f"{action}/{state}"
        for action in ("acknowledge", "resolve")
        for state in ("issued", "applied", "refused", "expired")
    }
    silent = {
        dict(labels)["event"]
        for name, labels in found
        if name == "nbedge_central_gateway_silent_total"
    }
    assert silent == {"raised", "cleared"}


def test_health_needs_no_credential(http: httpx.Client) -> None:
    reply = http.get("/v1/health")
    assert (reply.status_code, reply.json()) == (200, {"status": "ok"})


def test_the_migrated_schema_is_the_declared_one(central: Central) -> None:
    assert schema_differences(central.engine) == []
    init_db(central.engine)  # again: nothing to do, nothing lost
    assert central.engine.dialect.name in ("sqlite", "postgresql")


ALERT_EVENT_COLUMNS = [
    *("event_id", "n", "event", "human_state", "at", "via", "by", "note", "outcome", "level"),
    *("audience", "params", "text_zh_hans", "command_id"),
]
"""The columns revision 0005 added to ``alert_events``."""


def test_a_database_of_the_first_release_is_upgraded(central: Central) -> None:
    """A database created by ``create_all`` before migrations existed keeps its records."""
    with central.engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            table.drop(conn)
        for name in ("alembic_version",):
            if inspect(conn).has_table(name):
                conn.exec_driver_sql(f"DROP TABLE {name}")
    metadata.create_all(central.engine, tables=[sites, gateways, summaries, alert_events])
    register_site(central.engine, central.site_id, "Old building")
    token = register_gateway(central.engine, central.site_id, central.gateway_id)
    with httpx.Client(base_url=central.base_url, timeout=10) as http:
        body = batch_json([summary_record(1)])
        reply = http.post("/v1/ingest", content=body, headers={"Authorization": f"Bearer {token}"})
        assert reply.status_code == 200
        with central.engine.begin() as conn:  # what later releases added to those tables
            conn.exec_driver_sql("ALTER TABLE summaries DROP COLUMN delta")
            conn.exec_driver_sql("DROP INDEX uq_alert_events_event")
            for column in ALERT_EVENT_COLUMNS:
                conn.exec_driver_sql(f'ALTER TABLE alert_events DROP COLUMN "{column}"')
            for column in ("last_contact_at", "silent_alert_id"):
                conn.exec_driver_sql(f"ALTER TABLE gateways DROP COLUMN {column}")
        init_db(central.engine)
        assert schema_differences(central.engine) == []
        assert stored_count(central.engine) == 1
        code = create_claim_code(central.engine, central.site_id, "gw-new")
        assert http.post("/v1/claim", json={"code": code}).status_code == 200


def test_alerts_held_before_alert_events_get_their_current_state(central: Central) -> None:
    """A database of revision 0004 with legacy alert records: after the upgrade each alert has
    its current state, and the feeds read as they did."""
    with central.engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            table.drop(conn)
        conn.exec_driver_sql("DROP TABLE alembic_version")
    upgrade(central.engine, "0004")
    register_site(central.engine, central.site_id, "Old building")
    register_gateway(central.engine, central.site_id, central.gateway_id)
    legacy = [
        alert_record(1, "a1"),
        alert_record(2, "a2", severity="critical"),
        alert_record(4, "a3", "cleared"),  # delivered before its raise
        alert_record(3, "a3"),
        alert_record(5, "a1", "cleared"),
    ]
    batch = IngestBatch(gateway_id=central.gateway_id, site_id=central.site_id, records=legacy)
    old_columns = [
        *("record_id", "site_id", "gateway_id", "wall_time", "boot_id", "monotonic_ns"),
        *("clock_synced", "received_at", "alert_id", "rule", "device", "point", "state"),
        *("severity", "message", "value", "raised_at", "cleared_at"),
    ]
    old_table = Table("alert_events", MetaData(), *(Column(name) for name in old_columns))
    rows = [db.record_row(r, batch, datetime.now(UTC)) for r in legacy]
    with central.engine.begin() as conn:
        conn.execute(old_table.insert(), [{k: row[k] for k in old_columns} for row in rows])
    init_db(central.engine)
    assert schema_differences(central.engine) == []
    with httpx.Client(base_url=central.base_url, timeout=10) as http:
        headers = central.platform_headers()
        states = http.get(f"/v1/sites/{central.site_id}/alerts/current", headers=headers).json()
        by_alert = {s["alert_id"]: s for s in states["items"]}
        assert {
            a: (s["condition"], s["human_state"], s["outcome"]) for a, s in by_alert.items()
        } == {
            "a1": ("cleared", "resolved", "auto"),
            "a2": ("active", "new", None),
            "a3": ("cleared", "resolved", "auto"),
        }
        assert by_alert["a1"]["cleared_at"] == "2024-03-01T00:05:00Z"
        assert [e["event"] for e in by_alert["a3"]["history"]] == ["raised", "cleared"]
        active = http.get(f"/v1/sites/{central.site_id}/alerts/active", headers=headers).json()
        assert [a["alert_id"] for a in active["items"]] == ["a2"]
        work = http.get(f"/v1/sites/{central.site_id}/open-work", headers=headers).json()
        assert [w["alert_id"] for w in work["items"]] == ["a2"]
        feed = http.get(f"/v1/sites/{central.site_id}/alerts", headers=headers).json()["items"]
        assert [(e["alert_id"], e["state"], e["event"]) for e in feed] == [
            (r.body.alert_id, r.body.state, r.body.state) for r in legacy
        ]
        # Sent again by the gateway, they are duplicates and change nothing.
        token = register_gateway(central.engine, central.site_id, central.gateway_id)
        again = http.post(
            "/v1/ingest",
            content=batch_json(legacy),
            headers={"Authorization": f"Bearer {token}"},
        )
        assert again.json() == {"accepted": 0, "duplicates": 5}

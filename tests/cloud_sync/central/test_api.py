"""The central API over real HTTP (uvicorn), on SQLite and on PostgreSQL: ingest, auth, feeds."""

from __future__ import annotations

import gzip
import json
import threading
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from cloud_sync.central import CentralSettings
from cloud_sync.central.admin import AdminError, register_gateway, register_site
from cloud_sync.schemas import INT64_MAX, AlertRecord, EvictionRecord, SchemaVersion, SummaryRecord
from tests.cloud_sync.central.openapi import IntegerParameter, integer_parameters
from tests.cloud_sync.conftest import (
    Central,
    alert_record,
    batch_json,
    eviction_record,
    stored_count,
    summary_record,
)


def ingest(http: httpx.Client, central: Central, body: bytes, **headers: str) -> httpx.Response:
    return http.post("/v1/ingest", content=body, headers=central.gateway_headers() | headers)


def pull_all(http: httpx.Client, central: Central, feed: str, limit: int) -> list[dict[str, Any]]:
    """Every item of a feed, page by page, as the platform reads it."""
    items: list[dict[str, Any]] = []
    after = 0
    while True:
        page = http.get(
            f"/v1/sites/{central.site_id}/{feed}",
            params={"after": after, "limit": limit},
            headers=central.platform_headers(),
        )
        assert page.status_code == 200, page.text
        body = page.json()
        if not body["items"]:
            assert body["next_cursor"] == after
            return items
        items += body["items"]
        after = body["next_cursor"]


def test_ingested_records_appear_in_the_feeds(http: httpx.Client, central: Central) -> None:
    records: list[SummaryRecord | AlertRecord | EvictionRecord] = [
        summary_record(1),
        summary_record(2),
        alert_record(3, "a1"),
        eviction_record(5),
        summary_record(4),
    ]
    reply = ingest(http, central, batch_json(records))
    assert reply.status_code == 200
    assert reply.json() == {"accepted": 5, "duplicates": 0}

    summaries = pull_all(http, central, "summaries", limit=100)
    assert [item["record_id"] for item in summaries] == ["gw-1:s:1", "gw-1:s:2", "gw-1:s:4"]
    first = summaries[0]
    assert first["gateway_id"] == "gw-1"
    assert first["site_id"] == "site-1"
    assert (first["device"], first["point"], first["unit"], first["max"]) == (
        "meter-1",
        "energy",
        "kWh",
        3.0,
    )
    assert first["wall_time"] == "2024-03-01T00:01:00Z"
    assert first["boot_id"] == "boot-a"
    assert first["clock_synced"] is True
    alerts = pull_all(http, central, "alerts", limit=100)
    assert [(a["alert_id"], a["state"], a["record_id"]) for a in alerts] == [
        ("a1", "raised", "gw-1:a:3")
    ]
    [eviction] = pull_all(http, central, "evictions", limit=100)
    assert (eviction["record_id"], eviction["evicted"], eviction["count"]) == (
        "gw-1:e:5",
        "reading",
        500,
    )
    assert (eviction["oldest"], eviction["reason"]) == ("2024-03-06T00:00:00Z", "quota")


def test_a_counter_delta_round_trips_and_gauges_have_none(
    http: httpx.Client, central: Central
) -> None:
    records = [summary_record(1, delta=1.25), summary_record(2, delta=0.0), summary_record(3)]
    assert ingest(http, central, batch_json(records)).json() == {"accepted": 3, "duplicates": 0}
    items = pull_all(http, central, "summaries", limit=100)
    assert [item["delta"] for item in items] == [1.25, 0.0, None]
    negative = batch_json([summary_record(4)]).replace(b'"delta":null', b'"delta":-0.5')
    reply = ingest(http, central, negative)  # a consumption is never negative
    assert [(r["record_id"], r["reason"]) for r in reply.json()["refused"]] == [
        ("gw-1:s:4", "invalid")
    ]
    assert len(pull_all(http, central, "summaries", limit=100)) == 3


def test_a_batch_posted_twice_is_stored_once(http: httpx.Client, central: Central) -> None:
    records = [summary_record(n) for n in range(5)] + [alert_record(9, "a1"), eviction_record(1)]
    body = batch_json(records)
    assert ingest(http, central, body).json() == {"accepted": 7, "duplicates": 0}
    assert ingest(http, central, body).json() == {"accepted": 0, "duplicates": 7}
    assert len(pull_all(http, central, "summaries", limit=2)) == 5
    assert len(pull_all(http, central, "alerts", limit=2)) == 1
    assert len(pull_all(http, central, "evictions", limit=2)) == 1


def test_a_gzip_body_is_accepted(http: httpx.Client, central: Central) -> None:
    body = gzip.compress(batch_json([summary_record(n) for n in range(50)]))
    reply = ingest(http, central, body, **{"Content-Encoding": "gzip"})
    assert reply.json() == {"accepted": 50, "duplicates": 0}
    assert stored_count(central.engine) == 50


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer not-a-token", "Basic Z3ctMTpzZWNyZXQ="],
    ids=["missing", "unknown", "not-bearer"],
)
def test_writing_needs_a_gateway_token(
    http: httpx.Client, central: Central, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    reply = http.post("/v1/ingest", content=batch_json([summary_record(1)]), headers=headers)
    assert reply.status_code == 401
    assert reply.headers["WWW-Authenticate"] == "Bearer"
    assert stored_count(central.engine) == 0


def test_a_gateway_cannot_write_for_another_site(http: httpx.Client, central: Central) -> None:
    register_site(central.engine, "site-2", "Next door")
    reply = ingest(http, central, batch_json([summary_record(1)], site_id="site-2"))
    assert reply.status_code == 403
    assert stored_count(central.engine) == 0


def test_a_gateway_cannot_write_as_another_gateway(http: httpx.Client, central: Central) -> None:
    other_token = register_gateway(central.engine, central.site_id, "gw-2")
    body = batch_json([summary_record(1)])  # names gw-1
    reply = http.post(
        "/v1/ingest", content=body, headers={"Authorization": f"Bearer {other_token}"}
    )
    assert reply.status_code == 403
    assert stored_count(central.engine) == 0


def test_registering_a_gateway_again_rotates_its_token(
    http: httpx.Client, central: Central
) -> None:
    new_token = register_gateway(central.engine, central.site_id, central.gateway_id)
    body = batch_json([summary_record(1)])
    assert ingest(http, central, body).status_code == 401  # the old token
    reply = http.post("/v1/ingest", content=body, headers={"Authorization": f"Bearer {new_token}"})
    assert reply.json() == {"accepted": 1, "duplicates": 0}
    with pytest.raises(AdminError, match="register the site first"):
        register_gateway(central.engine, "no-such-site", "gw-9")
    register_site(central.engine, "site-2", "Next door")
    with pytest.raises(AdminError, match="belongs to site"):
        register_gateway(central.engine, "site-2", central.gateway_id)


def _valid(schema_version: SchemaVersion = 1) -> dict[str, Any]:
    body = batch_json([summary_record(1), summary_record(2)], schema_version=schema_version)
    batch: dict[str, Any] = json.loads(body)
    return batch


def _bad_record() -> bytes:
    batch = _valid()
    batch["records"][1]["body"]["count"] = 0  # a summary of no samples
    return json.dumps(batch).encode()


def _extra_field() -> bytes:
    batch = _valid()
    batch["records"][0]["body"]["colour"] = "blue"
    return json.dumps(batch).encode()


def _too_many_records() -> bytes:
    batch = _valid()
    batch["records"] = [json.loads(summary_record(n).model_dump_json()) for n in range(1001)]
    return json.dumps(batch).encode()


GOOD = batch_json([summary_record(1), summary_record(2)], schema_version=1)


@pytest.mark.parametrize(
    ("body", "encoding", "status"),
    [
        (gzip.compress(GOOD)[:-9], "gzip", 400),  # truncated
        (b"\x1f\x8b\x08\x00garbage", "gzip", 400),
        (GOOD, "gzip", 400),  # says gzip, is not
        (b'{"gateway_id": "gw-1", "site_id": ', "", 400),
        (b"\xff\xfe not utf-8", "", 400),
        (b'{"gateway_id": "gw-1"}', "", 422),
        (_bad_record(), "", 422),
        (_extra_field(), "", 422),
        (_too_many_records(), "", 422),
        (GOOD.replace(b'"schema_version":1', b'"schema_version":3'), "", 422),
        (gzip.compress(b" " * (9 * 1024 * 1024)), "gzip", 413),  # a gzip bomb, in small
        (GOOD, "br", 415),
    ],
    ids=[
        "truncated-gzip",
        "corrupt-gzip",
        "not-gzip",
        "truncated-json",
        "not-utf8",
        "missing-fields",
        "one-bad-record",
        "extra-field",
        "too-many-records",
        "future-schema",
        "gzip-bomb",
        "unknown-encoding",
    ],
)
def test_a_bad_body_is_refused_and_nothing_is_stored(
    http: httpx.Client, central: Central, body: bytes, encoding: str, status: int
) -> None:
    headers = {"Content-Encoding": encoding} if encoding else {}
    reply = ingest(http, central, body, **headers)
    assert reply.status_code == status, reply.text
    assert stored_count(central.engine) == 0


def test_a_body_over_the_cap_is_refused_before_decoding(
    http: httpx.Client, central: Central
) -> None:
    reply = ingest(http, central, b" " * (central.settings.max_body_bytes + 1))
    assert reply.status_code == 413


def test_cursor_pages_return_every_record_once(http: httpx.Client, central: Central) -> None:
    for start in range(0, 250, 100):
        records = [summary_record(n) for n in range(start, min(start + 100, 250))]
        assert ingest(http, central, batch_json(records)).status_code == 200
    items = pull_all(http, central, "summaries", limit=7)
    assert [item["record_id"] for item in items] == [f"gw-1:s:{n}" for n in range(250)]
    seqs = [item["seq"] for item in items]
    assert seqs == sorted(set(seqs))


def test_cursor_misses_nothing_while_gateways_write(http: httpx.Client, central: Central) -> None:
    """Two gateways post concurrently while the platform pages through the feed."""
    tokens = {"gw-1": central.gateway_token}
    tokens["gw-2"] = register_gateway(central.engine, central.site_id, "gw-2")
    errors: list[str] = []

    def write(gateway_id: str) -> None:
        with httpx.Client(base_url=central.base_url, timeout=10) as client:
            for start in range(0, 200, 10):
                records = [summary_record(n, gateway_id) for n in range(start, start + 10)]
                reply = client.post(
                    "/v1/ingest",
                    content=batch_json(records, gateway_id=gateway_id),
                    headers={"Authorization": f"Bearer {tokens[gateway_id]}"},
                )
                if reply.status_code != 200:
                    errors.append(reply.text)

    writers = [threading.Thread(target=write, args=(gw,)) for gw in tokens]
    for writer in writers:
        writer.start()
    seen: list[str] = []
    after = 0
    while any(writer.is_alive() for writer in writers) or len(seen) < 400:
        page = http.get(
            f"/v1/sites/{central.site_id}/summaries",
            params={"after": after, "limit": 13},
            headers=central.platform_headers(),
        ).json()
        seen += [item["record_id"] for item in page["items"]]
        after = page["next_cursor"]
        if not page["items"] and not any(writer.is_alive() for writer in writers):
            break
    for writer in writers:
        writer.join()
    assert errors == []
    assert len(seen) == len(set(seen)) == 400


def test_active_alerts_are_those_raised_and_not_cleared(
    http: httpx.Client, central: Central
) -> None:
    records = [
        alert_record(1, "a1"),
        alert_record(2, "a2"),
        alert_record(3, "a1", "cleared"),
        alert_record(5, "a3", "cleared"),  # delivered before its raise
        alert_record(4, "a3"),
    ]
    assert ingest(http, central, batch_json(records)).status_code == 200
    reply = http.get(
        f"/v1/sites/{central.site_id}/alerts/active", headers=central.platform_headers()
    )
    assert [(a["alert_id"], a["state"]) for a in reply.json()["items"]] == [("a2", "raised")]
    events = pull_all(http, central, "alerts", limit=2)
    assert [(a["alert_id"], a["state"]) for a in events] == [
        ("a1", "raised"),
        ("a2", "raised"),
        ("a1", "cleared"),
        ("a3", "cleared"),
        ("a3", "raised"),
    ]


@pytest.mark.parametrize(
    "path", ["summaries", "alerts", "alerts/active", "evictions", "access-events"]
)
def test_feeds_need_the_platform_token(http: httpx.Client, central: Central, path: str) -> None:
    url = f"/v1/sites/{central.site_id}/{path}"
    assert http.get(url).status_code == 401
    assert http.get(url, headers=central.gateway_headers()).status_code == 401
    assert http.get(url, headers=central.platform_headers()).status_code == 200
    unknown = http.get(f"/v1/sites/nowhere/{path}", headers=central.platform_headers())
    assert unknown.status_code == 404


INTEGER_PARAMETERS = integer_parameters()


def test_openapi_bounds_every_integer_parameter_to_64_bits() -> None:
    assert {(p.path.rsplit("/", 1)[-1], p.name) for p in INTEGER_PARAMETERS} >= {
        (feed, name)
        for feed in ("summaries", "alerts", "evictions", "access-events", "forecasts")
        for name in ("after", "limit")
    }
    for parameter in INTEGER_PARAMETERS:
        minimum, maximum = parameter.bounds()
        assert -(2**63) <= minimum <= maximum <= INT64_MAX, parameter
    cursors = {p.maximum for p in INTEGER_PARAMETERS if p.name == "after"}
    assert cursors == {INT64_MAX}
    assert {p.maximum for p in INTEGER_PARAMETERS if p.name == "limit"} == {1000}


def _out_of_range(parameter: IntegerParameter) -> list[int | str]:
    minimum, maximum = parameter.bounds()
    candidates = [minimum - 1, maximum + 1, 2**63, 2**64, 10**30, -(2**63) - 1, -1]
    huge = "9" * 5000  # more digits than Python converts to an int by default
    return [value for value in candidates if not parameter.holds(value)] + [huge]


@pytest.mark.parametrize("parameter", INTEGER_PARAMETERS, ids=str)
def test_an_integer_parameter_out_of_range_is_refused_naming_it(
    http: httpx.Client, central: Central, parameter: IntegerParameter
) -> None:
    """A cursor past 2**63 used to be a 500 (the database cannot compare with it)."""
    for value in _out_of_range(parameter):
        url, params = parameter.request(central.site_id, value)
        reply = http.get(url, params=params, headers=central.platform_headers())
        assert reply.status_code == 422, (parameter, str(value)[:40], reply.text[:300])
        assert [error["loc"] for error in reply.json()["detail"]] == [
            [parameter.where, parameter.name]
        ]


@pytest.mark.parametrize("parameter", INTEGER_PARAMETERS, ids=str)
def test_an_integer_parameter_at_its_bounds_is_served(
    http: httpx.Client, central: Central, parameter: IntegerParameter
) -> None:
    for value in parameter.bounds():
        url, params = parameter.request(central.site_id, value)
        reply = http.get(url, params=params, headers=central.platform_headers())
        assert reply.status_code == 200, (parameter, value, reply.text[:300])
    last = http.get(
        f"/v1/sites/{central.site_id}/summaries",
        params={"after": INT64_MAX},
        headers=central.platform_headers(),
    )
    assert last.json() == {"next_cursor": INT64_MAX, "items": []}


def test_health_needs_no_token(http: httpx.Client) -> None:
    reply = http.get("/v1/health")
    assert reply.status_code == 200
    assert reply.json() == {"status": "ok"}


def test_openapi_documents_the_ingest_body(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    body = spec["paths"]["/v1/ingest"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/IngestBatch"}
    assert {"IngestBatch", "SummaryRecord", "AlertRecord", "SummaryPage"} <= set(
        spec["components"]["schemas"]
    )


@pytest.mark.parametrize("token", ["", "   ", "changeme", "short-but-set"])
def test_settings_refuse_a_weak_platform_token(token: str) -> None:
    with pytest.raises(ValidationError, match="platform_token"):
        CentralSettings(platform_token=SecretStr(token))


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBEDGE_CENTRAL_PLATFORM_TOKEN", "x" * 32)
    monkeypatch.setenv("NBEDGE_CENTRAL_DATABASE_URL", "sqlite:///elsewhere.db")
    monkeypatch.setenv("NBEDGE_CENTRAL_MAX_BODY_BYTES", "1024")
    settings = CentralSettings()  # type: ignore[call-arg]
    assert settings.platform_token.get_secret_value() == "x" * 32
    assert "x" * 32 not in repr(settings)
    assert (settings.database_url, settings.max_body_bytes) == ("sqlite:///elsewhere.db", 1024)
    monkeypatch.delenv("NBEDGE_CENTRAL_PLATFORM_TOKEN")
    with pytest.raises(ValidationError, match="platform_token"):
        CentralSettings()  # type: ignore[call-arg]

"""Demand forecasts at the central API, on SQLite and on PostgreSQL: one row per gateway, series
and start hour whatever is sent twice, replaced or delivered out of order (the newest issued
wins), pulled by cursor, and refused whole when they break the wire schema."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from cloud_sync.central.tables import forecasts
from cloud_sync.schemas import (
    SCHEMA_VERSION,
    ForecastBody,
    ForecastRecord,
    IngestBatch,
    Record,
    SchemaVersion,
)
from tests.cloud_sync.central.test_api import ingest, pull_all
from tests.cloud_sync.central.test_ops import samples
from tests.cloud_sync.conftest import (
    GATEWAY,
    SITE,
    T0,
    Central,
    record_time,
    stored_count,
    summary_record,
)

PROFILE = [0.1 * h + 0.3 for h in range(24)]  # 0.30000000000000004 and friends


def forecast_record(
    n: int,
    *,
    start_hour: int = 1,
    issued_min: int = 0,
    scale: float = 1.0,
    series: str = "main",
) -> ForecastRecord:
    """A forecast of the 24 hours from ``T0 + start_hour``, issued ``issued_min`` minutes after
    ``T0``; record id unique per gateway and ``n``."""
    return ForecastRecord(
        record_id=f"{GATEWAY}:f:{n}",
        time=record_time(n),
        body=ForecastBody(
            series=series,
            issued_at=T0 + timedelta(minutes=issued_min),
            start=T0 + timedelta(hours=start_hour),
            hours=[v * scale for v in PROFILE],
            model="demand 1.0.0 3f9c2a1b7d4e",
            capacity_kwh=12.5,
        ),
    )


def batch(records: list[Record], schema_version: SchemaVersion = SCHEMA_VERSION) -> bytes:
    body = IngestBatch(
        schema_version=schema_version, gateway_id=GATEWAY, site_id=SITE, records=records
    )
    return body.model_dump_json().encode()


def rows(central: Central) -> list[tuple[str, datetime, list[float]]]:
    with central.engine.connect() as conn:
        found = conn.execute(
            select(forecasts.c.record_id, forecasts.c.start, forecasts.c.hours).order_by(
                forecasts.c.series, forecasts.c.start
            )
        ).all()
    return [(r.record_id, r.start, r.hours) for r in found]


def test_forecasts_are_ingested_and_pulled(http: httpx.Client, central: Central) -> None:
    records: list[Record] = [
        forecast_record(1, start_hour=1),
        summary_record(2),
        forecast_record(3, start_hour=1, series="annex", scale=0.5),
        forecast_record(4, start_hour=2, issued_min=60),
    ]
    assert ingest(http, central, batch(records)).json() == {"accepted": 4, "duplicates": 0}

    items = pull_all(http, central, "forecasts", limit=2)
    assert [(i["record_id"], i["series"], i["start"]) for i in items] == [
        ("gw-1:f:1", "main", "2024-03-01T01:00:00Z"),
        ("gw-1:f:3", "annex", "2024-03-01T01:00:00Z"),
        ("gw-1:f:4", "main", "2024-03-01T02:00:00Z"),
    ]
    first = items[0]
    assert first["hours"] == PROFILE  # every float exactly as sent
    assert (first["issued_at"], first["model"], first["capacity_kwh"]) == (
        "2024-03-01T00:00:00Z",
        "demand 1.0.0 3f9c2a1b7d4e",
        12.5,
    )
    assert (first["site_id"], first["gateway_id"], first["wall_time"]) == (
        "site-1",
        "gw-1",
        "2024-03-01T00:01:00Z",
    )
    assert items[1]["hours"] == [v * 0.5 for v in PROFILE]
    assert [s["record_id"] for s in pull_all(http, central, "summaries", limit=100)] == ["gw-1:s:2"]


def test_a_forecast_sent_twice_and_replaced_leaves_one_row_with_the_newest(
    http: httpx.Client, central: Central
) -> None:
    first = forecast_record(1, issued_min=0)
    replacement = forecast_record(2, issued_min=10, scale=2.0)  # a restart within the hour
    assert ingest(http, central, batch([first])).json() == {"accepted": 1, "duplicates": 0}
    seen = pull_all(http, central, "forecasts", limit=100)  # the platform pulls the first one
    assert ingest(http, central, batch([first])).json() == {"accepted": 0, "duplicates": 1}
    assert ingest(http, central, batch([replacement])).json() == {"accepted": 1, "duplicates": 0}
    assert ingest(http, central, batch([first, replacement])).json() == {
        "accepted": 0,
        "duplicates": 2,
    }

    assert rows(central) == [("gw-1:f:2", T0 + timedelta(hours=1), [v * 2.0 for v in PROFILE])]
    items = pull_all(http, central, "forecasts", limit=100)
    assert [(i["record_id"], i["hours"]) for i in items] == [
        ("gw-1:f:2", [v * 2.0 for v in PROFILE])
    ]
    # A reader that had the first one finds its replacement after its cursor.
    url = f"/v1/sites/{central.site_id}/forecasts"
    after = http.get(
        url, params={"after": seen[-1]["seq"]}, headers=central.platform_headers()
    ).json()
    assert [i["record_id"] for i in after["items"]] == ["gw-1:f:2"]
    assert after["items"][0]["seq"] > seen[-1]["seq"]


def test_the_newest_issued_wins_whatever_order_forecasts_arrive_in(
    http: httpx.Client, central: Central
) -> None:
    newest = forecast_record(3, issued_min=20, scale=3.0)
    older = forecast_record(2, issued_min=10, scale=2.0)
    oldest = forecast_record(1, issued_min=0)
    # The newest first, then an older one: the older is counted as held already.
    assert ingest(http, central, batch([newest])).json() == {"accepted": 1, "duplicates": 0}
    assert ingest(http, central, batch([older])).json() == {"accepted": 0, "duplicates": 1}
    # In one batch, oldest then a new hour's newest then a retry.
    other_hour = forecast_record(4, start_hour=2, issued_min=60)
    reply = ingest(http, central, batch([oldest, other_hour, older, other_hour]))
    assert reply.json() == {"accepted": 1, "duplicates": 3}
    assert [(r[0], r[2][0]) for r in rows(central)] == [
        ("gw-1:f:3", PROFILE[0] * 3.0),
        ("gw-1:f:4", PROFILE[0]),
    ]


def test_one_batch_holding_a_forecast_and_its_replacement_keeps_the_replacement(
    http: httpx.Client, central: Central
) -> None:
    records: list[Record] = [forecast_record(1), forecast_record(2, issued_min=5, scale=2.0)]
    # Both were new when they arrived; the first was replaced at once.
    assert ingest(http, central, batch(records)).json() == {"accepted": 2, "duplicates": 0}
    assert [r[0] for r in rows(central)] == ["gw-1:f:2"]
    assert [i["record_id"] for i in pull_all(http, central, "forecasts", limit=100)] == ["gw-1:f:2"]


def _spoiled(schema_version: SchemaVersion = 1, **changes: Any) -> bytes:
    """A batch of one good summary and one forecast whose body has ``changes``."""
    body = json.loads(batch([summary_record(1), forecast_record(2)], schema_version))
    body["records"][1]["body"].update(changes)
    return json.dumps(body).encode()  # json writes NaN and Infinity as the bare words


@pytest.mark.parametrize(
    "changes",
    [
        {"hours": PROFILE[:23]},
        {"hours": [*PROFILE, 1.0]},
        {"hours": [math.nan, *PROFILE[1:]]},
        {"hours": [math.inf, *PROFILE[1:]]},
        {"hours": [-0.5, *PROFILE[1:]]},
        {"start": "2024-03-01T01:30:00Z"},
        {"start": "2024-03-01T01:00:00"},  # no UTC offset
        {"series": "main meter"},
        {"capacity_kwh": 0},
        {"model": ""},
        {"temperature": [5.0] * 24},  # no field beyond the schema
    ],
    ids=[
        "23-hours",
        "25-hours",
        "nan",
        "infinite",
        "negative",
        "not-on-the-hour",
        "naive-start",
        "bad-series",
        "zero-capacity",
        "empty-model",
        "extra-field",
    ],
)
def test_a_forecast_that_breaks_the_schema_is_refused_and_counted(
    http: httpx.Client, central: Central, changes: dict[str, Any]
) -> None:
    # Version 1: the whole batch, nothing stored, counted as a refused batch.
    before = samples(http)
    reply = ingest(http, central, _spoiled(**changes))
    after = samples(http)
    assert reply.status_code == 422, reply.text
    with central.engine.connect() as conn:
        held = conn.execute(select(func.count()).select_from(forecasts)).scalar_one()
    assert stored_count(central.engine) == held == 0
    key = ("nbedge_central_ingest_refused_total", frozenset({("reason", "invalid")}))
    assert after[key] - before.get(key, 0.0) == 1
    # Version 2: the forecast alone, counted as a refused record; the summary is stored.
    reply = ingest(http, central, _spoiled(schema_version=2, **changes))
    again = samples(http)
    assert reply.status_code == 200, reply.text
    assert [(r["index"], r["reason"]) for r in reply.json()["refused"]] == [(1, "invalid")]
    assert stored_count(central.engine) == 1
    refused = ("nbedge_central_ingest_records_total", frozenset({("result", "refused")}))
    assert again[refused] - after.get(refused, 0.0) == 1


def test_the_forecast_feed_needs_the_platform_token_and_is_documented(
    http: httpx.Client, central: Central
) -> None:
    url = f"/v1/sites/{central.site_id}/forecasts"
    assert http.get(url, headers=central.gateway_headers()).status_code == 401
    assert http.get(url).status_code == 401
    assert http.get(
        "/v1/sites/nowhere/forecasts", headers=central.platform_headers()
    ).status_code == (404)
    spec = http.get("/openapi.json").json()
    operation = spec["paths"]["/v1/sites/{site_id}/forecasts"]["get"]
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/ForecastPage"}
    assert {"ForecastRecord", "ForecastBody", "ForecastItem"} <= set(spec["components"]["schemas"])

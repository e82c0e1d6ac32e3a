"""Access events (doors and gates) at the central API, on SQLite and on PostgreSQL: ingested once,
pulled by cursor, and refused whole when they break the wire schema."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from cloud_sync.schemas import SchemaVersion
from tests.cloud_sync.central.test_api import ingest, pull_all
from tests.cloud_sync.conftest import (
    Central,
    access_record,
    alert_record,
    batch_json,
    stored_count,
    summary_record,
)


def test_access_events_are_ingested_and_pulled(http: httpx.Client, central: Central) -> None:
    records = [
        access_record(1, "granted"),
        summary_record(2),
        access_record(3, "denied", credential_ref="b64:q0J3Xz-_4Aw="),
        access_record(4, "forced_open", credential_ref=None),
        alert_record(5, "a1"),
    ]
    assert ingest(http, central, batch_json(records)).json() == {"accepted": 5, "duplicates": 0}

    events = pull_all(http, central, "access-events", limit=100)
    assert [(e["record_id"], e["event"], e["credential_ref"]) for e in events] == [
        ("gw-1:x:1", "granted", "hmac-3f9c2a1b7d4e"),
        ("gw-1:x:3", "denied", "b64:q0J3Xz-_4Aw="),
        ("gw-1:x:4", "forced_open", None),
    ]
    first = events[0]
    assert (first["site_id"], first["gateway_id"], first["device"]) == (
        "site-1",
        "gw-1",
        "door-main",
    )
    assert (first["occurred_at"], first["detail"]) == ("2024-03-01T00:01:00Z", "event 1")
    assert first["wall_time"] == "2024-03-01T00:01:00Z"
    # The other kinds stay in their own feeds.
    assert [s["record_id"] for s in pull_all(http, central, "summaries", limit=100)] == ["gw-1:s:2"]
    assert len(pull_all(http, central, "alerts", limit=100)) == 1


def test_an_access_event_sent_twice_is_stored_once(http: httpx.Client, central: Central) -> None:
    body = batch_json([access_record(n, "opened" if n % 2 else "closed") for n in range(6)])
    assert ingest(http, central, body).json() == {"accepted": 6, "duplicates": 0}
    again = batch_json([access_record(n) for n in range(4, 8)])  # 4 and 5 are held already
    assert ingest(http, central, again).json() == {"accepted": 2, "duplicates": 2}
    events = pull_all(http, central, "access-events", limit=3)
    assert [e["record_id"] for e in events] == [f"gw-1:x:{n}" for n in range(8)]
    assert events[4]["event"] == "closed"  # the first delivery is the one kept


def test_access_event_pages_return_every_event_once(http: httpx.Client, central: Central) -> None:
    for start in range(0, 30, 10):
        records = [access_record(n, "held_open") for n in range(start, start + 10)]
        assert ingest(http, central, batch_json(records)).status_code == 200
    events = pull_all(http, central, "access-events", limit=7)
    assert [e["record_id"] for e in events] == [f"gw-1:x:{n}" for n in range(30)]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs))
    url = f"/v1/sites/{central.site_id}/access-events"
    tail = http.get(url, params={"after": seqs[-1]}, headers=central.platform_headers()).json()
    assert tail == {"items": [], "next_cursor": seqs[-1]}


def _spoiled(schema_version: SchemaVersion = 1, **changes: Any) -> bytes:
    """A batch of one good summary and one access event whose body has ``changes``."""
    batch = json.loads(
        batch_json([summary_record(1), access_record(2)], schema_version=schema_version)
    )
    batch["records"][1]["body"].update(changes)
    return json.dumps(batch).encode()


@pytest.mark.parametrize(
    "changes",
    [
        {"event": "unlocked"},
        {"credential_ref": "4929 1234 5678 9012"},  # spaces: a card number as printed
        {"credential_ref": ""},
        {"credential_ref": "f" * 65},
        {"detail": "x" * 201},
        {"detail": "nul\u0000byte"},
        {"occurred_at": "2024-03-01T00:00:00"},  # no UTC offset
        {"device": "door main"},
        {"card_number": "4929123456789012"},  # no field beyond the schema
    ],
    ids=[
        "unknown-event",
        "credential-with-spaces",
        "empty-credential",
        "long-credential",
        "long-detail",
        "nul-in-detail",
        "naive-time",
        "bad-device",
        "extra-field",
    ],
)
def test_an_access_event_that_breaks_the_schema_is_refused(
    http: httpx.Client, central: Central, changes: dict[str, Any]
) -> None:
    # Version 1: the whole batch, nothing stored.
    reply = ingest(http, central, _spoiled(**changes))
    assert reply.status_code == 422, reply.text
    assert stored_count(central.engine) == 0
    # Version 2: that record alone, by its place and id; the summary beside it is stored.
    reply = ingest(http, central, _spoiled(schema_version=2, **changes))
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert (answer["accepted"], answer["duplicates"]) == (1, 0)
    (refusal,) = answer["refused"]
    assert (refusal["index"], refusal["record_id"], refusal["reason"]) == (1, "gw-1:x:2", "invalid")
    assert refusal["detail"].startswith("access.body.")
    assert stored_count(central.engine) == 1


def test_the_access_feed_is_in_the_openapi_document(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    operation = spec["paths"]["/v1/sites/{site_id}/access-events"]["get"]
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/AccessPage"}
    assert {"AccessRecord", "AccessBody", "AccessItem"} <= set(spec["components"]["schemas"])

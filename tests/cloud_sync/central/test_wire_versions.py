"""Wire versions at the central API: records judged one by one (version 2), ``GET /v1/wire``, and
a central API that answers as an earlier release would (fewer kinds, or version 1 only)."""

from __future__ import annotations

import json
from typing import Any

import httpx

import nbedge
from cloud_sync.central.tables import record_tables
from cloud_sync.schemas import RECORD_KINDS, WireTerms
from tests.cloud_sync.central.test_api import ingest, pull_all
from tests.cloud_sync.conftest import (
    Central,
    access_record,
    alert_record,
    batch_json,
    central_api,
    eviction_record,
    stored_count,
    summary_record,
)


def test_the_central_api_says_which_versions_and_kinds_it_takes(http: httpx.Client) -> None:
    reply = http.get("/v1/wire")  # no credential needed: it says nothing about any site
    assert reply.status_code == 200
    assert reply.json() == {
        "schema_versions": [1, 2],
        "record_kinds": [kind for kind in RECORD_KINDS if kind in record_tables],
        "api_version": nbedge.__version__,
    }
    assert set(record_tables) == set(RECORD_KINDS)  # this release stores every kind
    spec = http.get("/openapi.json").json()
    assert "/v1/wire" in spec["paths"]
    assert {"RecordRefusal", "WireTerms"} <= set(spec["components"]["schemas"])


def _batch(records: list[dict[str, Any]]) -> bytes:
    body = json.loads(batch_json([summary_record(1)]))
    body["records"] = records
    return json.dumps(body).encode()


def _json(record: Any) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(record.model_dump_json())
    return value


def test_version_2_stores_the_good_records_and_names_each_refused_one(
    http: httpx.Client, central: Central
) -> None:
    no_samples = _json(summary_record(3))
    no_samples["body"]["count"] = 0
    future = {**_json(alert_record(5, "a5")), "kind": "work_order"}  # a kind from the future
    extra = _json(eviction_record(6))
    extra["body"]["colour"] = "blue"  # a field from the future
    no_id = _json(summary_record(8))
    del no_id["record_id"]
    records = [
        _json(summary_record(1)),
        _json(summary_record(2)),
        no_samples,
        _json(access_record(4)),
        future,
        extra,
        _json(summary_record(7)),
        no_id,
        "not a record",
    ]
    reply = ingest(http, central, _batch(records))
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert (answer["accepted"], answer["duplicates"]) == (4, 0)
    refused = {r["index"]: (r["record_id"], r["reason"]) for r in answer["refused"]}
    assert refused == {
        2: ("gw-1:s:3", "invalid"),
        4: ("gw-1:a:5", "unknown_kind"),
        5: ("gw-1:e:6", "invalid"),
        7: (None, "invalid"),
        8: (None, "invalid"),
    }
    details = {r["index"]: r["detail"] for r in answer["refused"]}
    assert "count" in details[2]
    assert "colour" in details[5]
    assert "record_id" in details[7]
    # Every record is accounted for, and the good ones are in the feeds.
    assert answer["accepted"] + answer["duplicates"] + len(answer["refused"]) == len(records)
    summaries = pull_all(http, central, "summaries", limit=100)
    assert [s["record_id"] for s in summaries] == ["gw-1:s:1", "gw-1:s:2", "gw-1:s:7"]
    assert [a["record_id"] for a in pull_all(http, central, "access-events", limit=100)] == [
        "gw-1:x:4"
    ]
    # Sent again: the good ones are duplicates, the bad ones refused again.
    again = ingest(http, central, _batch(records)).json()
    assert (again["accepted"], again["duplicates"], len(again["refused"])) == (0, 4, 5)


def test_a_batch_of_refused_records_only_stores_nothing_and_answers_for_each(
    http: httpx.Client, central: Central
) -> None:
    bad = _json(summary_record(1))
    bad["body"]["min"] = "low"
    reply = ingest(http, central, _batch([bad, bad]))
    assert reply.status_code == 200
    assert reply.json()["accepted"] == 0
    assert [r["index"] for r in reply.json()["refused"]] == [0, 1]
    assert stored_count(central.engine) == 0


def test_an_answer_without_refusals_reads_as_version_1_did(
    http: httpx.Client, central: Central
) -> None:
    for version in (1, 2):
        body = batch_json([summary_record(version)], schema_version=version)
        assert ingest(http, central, body).json() == {"accepted": 1, "duplicates": 0}


def test_a_central_api_that_does_not_take_a_kind_refuses_it_by_record(database_url: str) -> None:
    terms = WireTerms(
        schema_versions=[1, 2],
        record_kinds=[kind for kind in RECORD_KINDS if kind != "access"],
        api_version="0.0.9",
    )
    with (
        central_api(database_url, wire=terms) as central,
        httpx.Client(base_url=central.base_url, timeout=10) as http,
    ):
        assert http.get("/v1/wire").json()["record_kinds"] == terms.record_kinds
        records = [summary_record(1), access_record(2)]
        reply = ingest(http, central, batch_json(records))
        assert reply.json()["refused"] == [
            {
                "index": 1,
                "record_id": "gw-1:x:2",
                "reason": "unknown_kind",
                "detail": "this central API does not take records of kind 'access'",
            }
        ]
        assert ingest(http, central, batch_json(records, schema_version=1)).status_code == 422
        assert stored_count(central.engine) == 1


def test_a_central_api_of_version_1_has_no_wire_terms_and_refuses_version_2(
    database_url: str,
) -> None:
    with (
        central_api(database_url, wire=None) as central,
        httpx.Client(base_url=central.base_url, timeout=10) as http,
    ):
        assert http.get("/v1/wire").status_code == 404
        v2 = ingest(http, central, batch_json([summary_record(1)]))
        assert v2.status_code == 422
        assert "schema_version" in v2.text
        v1 = ingest(http, central, batch_json([summary_record(1)], schema_version=1))
        assert v1.json() == {"accepted": 1, "duplicates": 0}

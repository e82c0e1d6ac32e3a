"""``POST /v1/ingest``: a gateway delivers a batch of records.

The body is an ``IngestBatch`` as JSON, optionally ``Content-Encoding: gzip``. Both the body as
sent and its decompressed form are capped at ``max_body_bytes`` (413). Undecodable bodies (400),
a batch whose envelope breaks the schema (422) and batches naming another gateway or site than
the token's (403) store nothing. Within a valid envelope, a version 1 batch is stored whole or
refused whole (422); in a version 2 batch each record is judged on its own: the valid ones are
stored and the others named in ``IngestResult.refused`` with the reason.
"""

from __future__ import annotations

import zlib
from typing import Any, cast

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails
from starlette.concurrency import run_in_threadpool

from cloud_sync.central import db
from cloud_sync.central.deps import EngineDep, HeardGateway, MetricsDep, NowDep, SettingsDep
from cloud_sync.central.lifecycle import CENTRAL_ALERT_PREFIX, event_number
from cloud_sync.schemas import (
    MAX_REFUSAL_DETAIL,
    AlertEventRecord,
    IngestBatch,
    IngestEnvelope,
    IngestResult,
    Record,
    RecordRefusal,
    SchemaVersion,
    WireTerms,
)

router = APIRouter(tags=["gateways"])

_MAX_ERRORS_REPORTED = 20
_RECORD = TypeAdapter[Record](Record)
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # zlib window with a gzip header and trailer

_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "An `IngestBatch`, as JSON; `Content-Encoding: gzip` is welcome.",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/IngestBatch"}}},
}


def _too_large(limit: int) -> HTTPException:
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE, detail=f"the body exceeds {limit} bytes; send less"
    )


async def _read_capped(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it grows past ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


def _gunzip_capped(raw: bytes, limit: int) -> bytes:
    """Decompress one gzip member without ever holding more than ``limit + 1`` bytes of output."""
    decompressor = zlib.decompressobj(wbits=_GZIP_WBITS)
    try:
        data = decompressor.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, detail="the body is not valid gzip"
        ) from exc
    if len(data) > limit:
        raise _too_large(limit)
    if not decompressor.eof:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="the gzip body is truncated")
    if decompressor.unused_data:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="data after the gzip stream")
    return data


def _decode_batch(
    raw: bytes, content_encoding: str, limit: int, terms: WireTerms | None
) -> tuple[IngestBatch, list[RecordRefusal]]:
    """Decompress and validate a body (CPU work: called in a worker thread): the batch of the
    records to store, and the records refused (version 2 only)."""
    match content_encoding.strip().lower():
        case "gzip":
            data = _gunzip_capped(raw, limit)
        case "" | "identity":
            data = raw
        case other:
            raise HTTPException(
                status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                detail=f"unsupported Content-Encoding {other!r}; use gzip or none",
            )
    refused: list[RecordRefusal] = []
    version: SchemaVersion
    try:
        whole = IngestBatch.model_validate_json(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        if any(error["type"] == "json_invalid" for error in errors):
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, detail="the body is not valid JSON"
            ) from exc
        bad = _errors_by_record(errors)  # 422 when the envelope itself is invalid
        try:
            envelope = IngestEnvelope.model_validate_json(data)
        except ValidationError:  # it cannot be, its errors would be among ``errors``
            raise _schema_violation(list(errors)) from exc
        _check_version(envelope.schema_version, terms)
        if envelope.schema_version == 1:
            raise _schema_violation(list(errors)) from exc
        refused = [_refusal(i, envelope.records[i], bad[i]) for i in sorted(bad)]
        kept = [
            (i, _RECORD.validate_python(record))  # valid: its errors would be in ``bad``
            for i, record in enumerate(envelope.records)
            if i not in bad
        ]
        version, gateway_id, site_id = (
            envelope.schema_version,
            envelope.gateway_id,
            envelope.site_id,
        )
    else:
        _check_version(whole.schema_version, terms)
        kept = list(enumerate(whole.records))
        version, gateway_id, site_id = whole.schema_version, whole.gateway_id, whole.site_id
    unknown = _unknown_kinds(kept, terms) + _breaks_central_rules(kept)
    if unknown and version == 1:
        raise _schema_violation([{"loc": ["records", r.index], "msg": r.detail} for r in unknown])
    skipped = {refusal.index for refusal in unknown}
    batch = IngestBatch.model_construct(
        schema_version=version,
        gateway_id=gateway_id,
        site_id=site_id,
        records=[record for i, record in kept if i not in skipped],
    )
    return batch, sorted([*refused, *unknown], key=lambda refusal: refusal.index)


def _schema_violation(errors: list[Any]) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT, detail=errors[:_MAX_ERRORS_REPORTED]
    )


def _check_version(version: int, terms: WireTerms | None) -> None:
    accepted = [1] if terms is None else terms.schema_versions
    if version not in accepted:
        raise _schema_violation(
            [{"loc": ["schema_version"], "msg": f"this central API takes versions {accepted}"}]
        )


def _errors_by_record(errors: list[ErrorDetails]) -> dict[int, list[ErrorDetails]]:
    """The validation errors of each record; 422 if any error is outside the records."""
    bad: dict[int, list[ErrorDetails]] = {}
    for error in errors:
        loc = error["loc"]
        if len(loc) < 2 or loc[0] != "records" or not isinstance(loc[1], int):
            raise _schema_violation(list(errors))
        bad.setdefault(loc[1], []).append(error)
    return bad


def _refusal(index: int, raw: Any, errors: list[ErrorDetails]) -> RecordRefusal:
    """A record that breaks the schema: its id if it has a usable one, and where it breaks."""
    record_id = raw.get("record_id") if isinstance(raw, dict) else None
    usable = isinstance(record_id, str) and 0 < len(record_id) <= 128 and "\x00" not in record_id
    unknown = any(error["type"] in ("union_tag_invalid", "union_tag_not_found") for error in errors)
    detail = "; ".join(
        f"{'.'.join(str(part) for part in error['loc'][2:]) or 'record'}: {error['msg']}"
        for error in errors
    )
    return RecordRefusal(
        index=index,
        record_id=record_id if usable else None,
        reason="unknown_kind" if unknown else "invalid",
        detail=detail[:MAX_REFUSAL_DETAIL],
    )


def _unknown_kinds(
    records: list[tuple[int, Record]], terms: WireTerms | None
) -> list[RecordRefusal]:
    """Records of kinds this central API does not take (``terms.record_kinds``)."""
    if terms is None:
        return []
    kinds = set(terms.record_kinds)
    return [
        RecordRefusal(
            index=index,
            record_id=record.record_id,
            reason="unknown_kind",
            detail=f"this central API does not take records of kind {record.kind!r}",
        )
        for index, record in records
        if record.kind not in kinds
    ]


def _breaks_central_rules(records: list[tuple[int, Record]]) -> list[RecordRefusal]:
    """Alert events the central API cannot order or that claim one of its own alerts."""
    refused = []
    for index, record in records:
        if not isinstance(record, AlertEventRecord):
            continue
        body = record.body
        if event_number(body.event_id, body.alert_id) is None:
            detail = "alert_event.body.event_id: must be '<alert_id>.<n>', n a 64-bit count"
        elif body.alert_id.startswith(CENTRAL_ALERT_PREFIX):
            detail = f"alert_event.body.alert_id: {CENTRAL_ALERT_PREFIX}* are the central API's"
        else:
            continue
        refused.append(
            RecordRefusal(index=index, record_id=record.record_id, reason="invalid", detail=detail)
        )
    return refused


@router.post(
    "/ingest",
    response_model=IngestResult,
    summary="Deliver a batch of records",
    openapi_extra={"requestBody": _REQUEST_BODY},
    responses={
        400: {"description": "Not valid gzip or JSON; nothing stored"},
        401: {"description": "Missing or unknown gateway token"},
        403: {"description": "The batch names another gateway or site; nothing stored"},
        413: {"description": "Body too large; nothing stored"},
        415: {"description": "Unsupported Content-Encoding; nothing stored"},
        422: {
            "description": "The envelope violates the wire schema, or (version 1) a record"
            " does; nothing stored"
        },
        503: {"description": "The database is unavailable; retry later"},
    },
)
async def ingest(
    request: Request,
    gateway: HeardGateway,
    engine: EngineDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    now: NowDep,
) -> Response:
    """Store the new records of a batch; records already held are counted as duplicates, and
    (version 2) records that break the schema are named with the reason, not stored."""
    limit = settings.max_body_bytes
    raw = await _read_capped(request, limit)
    encoding = request.headers.get("content-encoding", "")
    terms = cast(WireTerms | None, request.app.state.wire)
    batch, refused = await run_in_threadpool(_decode_batch, raw, encoding, limit, terms)
    if batch.gateway_id != gateway.gateway_id or batch.site_id != gateway.site_id:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=(
                f"this token belongs to gateway {gateway.gateway_id!r} of site "
                f"{gateway.site_id!r}, not to {batch.gateway_id!r} of {batch.site_id!r}"
            ),
        )
    if batch.records:
        stored = await run_in_threadpool(db.store_batch, engine, batch, now)
        result = stored.result
        for (action, state), count in stored.commands.items():
            metrics.commands.labels(action, state).inc(count)
    else:
        result = IngestResult(accepted=0, duplicates=0)
    metrics.stored(result.accepted, result.duplicates, len(refused))
    # Without refusals, the answer reads as version 1's did (whose gateways know no ``refused``).
    answer = result.model_copy(update={"refused": refused})
    return Response(
        answer.model_dump_json(exclude=None if refused else {"refused"}),
        media_type="application/json",
    )

"""``POST /v1/ingest``: a gateway delivers a batch of records.

The body is an ``IngestBatch`` as JSON, optionally ``Content-Encoding: gzip``. Both the body as
sent and its decompressed form are capped at ``max_body_bytes`` (413). A batch is stored whole
or not at all: undecodable bodies (400), schema violations (422) and batches naming another
gateway or site than the token's (403) store nothing.
"""

from __future__ import annotations

import zlib
from typing import Any, cast

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from cloud_sync.central import db
from cloud_sync.central.deps import CurrentGateway, EngineDep, SettingsDep
from cloud_sync.central.metrics import CentralMetrics
from cloud_sync.schemas import IngestBatch, IngestResult

router = APIRouter(tags=["gateways"])

_MAX_ERRORS_REPORTED = 20
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


def _decode_batch(raw: bytes, content_encoding: str, limit: int) -> IngestBatch:
    """Decompress and validate a body (CPU work: called in a worker thread)."""
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
    try:
        return IngestBatch.model_validate_json(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        if any(error["type"] == "json_invalid" for error in errors):
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, detail="the body is not valid JSON"
            ) from exc
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, detail=errors[:_MAX_ERRORS_REPORTED]
        ) from exc


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
        422: {"description": "The batch violates the wire schema; nothing stored"},
        503: {"description": "The database is unavailable; retry later"},
    },
)
async def ingest(
    request: Request, gateway: CurrentGateway, engine: EngineDep, settings: SettingsDep
) -> IngestResult:
    """Store the new records of a batch; records already held are counted as duplicates."""
    limit = settings.max_body_bytes
    raw = await _read_capped(request, limit)
    encoding = request.headers.get("content-encoding", "")
    batch = await run_in_threadpool(_decode_batch, raw, encoding, limit)
    if batch.gateway_id != gateway.gateway_id or batch.site_id != gateway.site_id:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=(
                f"this token belongs to gateway {gateway.gateway_id!r} of site "
                f"{gateway.site_id!r}, not to {batch.gateway_id!r} of {batch.site_id!r}"
            ),
        )
    result = await run_in_threadpool(db.store_batch, engine, batch)
    cast(CentralMetrics, request.app.state.metrics).stored(result.accepted, result.duplicates)
    return result

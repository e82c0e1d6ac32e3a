"""``POST /v1/claim``: a new gateway exchanges a one-time code for its credential.

No authentication: the code is the credential, and it works once. The work per request is one
hash and one indexed UPDATE, so the endpoint costs little under a flood and a reverse proxy's
rate limit per client address (e.g. nginx ``limit_req``) is all it needs in front.
"""

from __future__ import annotations

from typing import cast

from fastapi import APIRouter, HTTPException, Request, Response, status
from starlette.concurrency import run_in_threadpool

from cloud_sync.central import claims
from cloud_sync.central.deps import EngineDep
from cloud_sync.central.metrics import CentralMetrics
from cloud_sync.schemas import ClaimRequest, ClaimResponse

router = APIRouter(tags=["gateways"])

_REFUSALS: dict[claims.ClaimProblem, tuple[int, str]] = {
    claims.ClaimProblem.UNKNOWN: (status.HTTP_404_NOT_FOUND, "no such claim code"),
    claims.ClaimProblem.USED: (status.HTTP_403_FORBIDDEN, "this claim code has been used"),
    claims.ClaimProblem.EXPIRED: (status.HTTP_403_FORBIDDEN, "this claim code has expired"),
    claims.ClaimProblem.CONFLICT: (
        status.HTTP_409_CONFLICT,
        "the gateway of this code now belongs to another site; ask for a new code",
    ),
}


@router.post(
    "/claim",
    summary="Claim a gateway's credential with a one-time code",
    responses={
        403: {"description": "The code has been used or has expired; nothing changed"},
        404: {"description": "No such code; nothing changed"},
        409: {"description": "The code's gateway now belongs to another site; nothing changed"},
    },
)
async def claim(
    body: ClaimRequest, engine: EngineDep, request: Request, response: Response
) -> ClaimResponse:
    """Redeem the code: register the gateway (or rotate its token) and return the token once."""
    metrics = cast(CentralMetrics, request.app.state.metrics)
    try:
        claimed = await run_in_threadpool(claims.redeem, engine, body.code)
    except claims.ClaimRefused as exc:
        metrics.claims.labels(str(exc.problem)).inc()
        code, detail = _REFUSALS[exc.problem]
        raise HTTPException(code, detail=detail) from exc
    metrics.claims.labels("claimed").inc()
    response.headers["Cache-Control"] = "no-store"
    return ClaimResponse(
        gateway_id=claimed.gateway_id, site_id=claimed.site_id, token=claimed.token
    )

"""FastAPI dependencies of the central API: settings, engine, who is calling, and the types of
the query parameters.

Two bearer tokens, two schemes in OpenAPI: a gateway token (per gateway, from
``admin.register_gateway``) to write, and the platform token (from the settings) to read.
Like the routes, this is the HTTP layer, so it answers with ``HTTPException``.

Every integer parameter is bounded here, once (``After``, ``PageLimit``): a value out of range
is refused with 422 naming the parameter, and OpenAPI shows the bounds.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, cast

from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine

from cloud_sync.central import db
from cloud_sync.central.metrics import CentralMetrics
from cloud_sync.central.schemas import Cursor
from cloud_sync.central.settings import CentralSettings
from cloud_sync.central.silence import Contacts

MAX_PAGE = 1000

_gateway_bearer = HTTPBearer(
    scheme_name="GatewayToken",
    description="The token issued when this gateway was registered.",
    auto_error=False,
)
_platform_bearer = HTTPBearer(
    scheme_name="PlatformToken",
    description="The platform token of the central API's settings.",
    auto_error=False,
)

Credentials = HTTPAuthorizationCredentials | None


def get_settings(request: Request) -> CentralSettings:
    return cast(CentralSettings, request.app.state.settings)


def get_engine(request: Request) -> Engine:
    return cast(Engine, request.app.state.engine)


def get_now(request: Request) -> datetime:
    """The time of this request, by the application's clock (``create_app(now=...)``)."""
    return cast(Callable[[], datetime], request.app.state.now)()


def get_metrics(request: Request) -> CentralMetrics:
    return cast(CentralMetrics, request.app.state.metrics)


SettingsDep = Annotated[CentralSettings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
NowDep = Annotated[datetime, Depends(get_now)]
MetricsDep = Annotated[CentralMetrics, Depends(get_metrics)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


def get_gateway(
    engine: EngineDep, credentials: Annotated[Credentials, Depends(_gateway_bearer)]
) -> db.GatewayIdentity:
    """The gateway whose token authorises this request (a sync function: FastAPI threads it)."""
    if credentials is None:
        raise _unauthorized("a gateway bearer token is required")
    gateway = db.gateway_for_token(engine, credentials.credentials)
    if gateway is None:
        raise _unauthorized("unknown gateway token")
    return gateway


def require_platform(
    settings: SettingsDep, credentials: Annotated[Credentials, Depends(_platform_bearer)]
) -> None:
    """Let the request through only with the platform token (compared in constant time)."""
    if credentials is None:
        raise _unauthorized("the platform bearer token is required")
    expected = settings.platform_token.get_secret_value().encode()
    if not secrets.compare_digest(credentials.credentials.encode(), expected):
        raise _unauthorized("wrong platform token")


CurrentGateway = Annotated[db.GatewayIdentity, Depends(get_gateway)]


def heard_gateway(
    request: Request, engine: EngineDep, now: NowDep, gateway: CurrentGateway
) -> db.GatewayIdentity:
    """The calling gateway, its contact noted (which clears its gateway_silent alert)."""
    contacts = cast(Contacts, request.app.state.contacts)
    if contacts.heard(engine, gateway.gateway_id, gateway.site_id, now).cleared:
        get_metrics(request).gateway_silent.labels("cleared").inc()
    return gateway


HeardGateway = Annotated[db.GatewayIdentity, Depends(heard_gateway)]
PlatformAccess = Depends(require_platform)

After = Annotated[Cursor, Query(description="The `next_cursor` of the previous page.")]
PageLimit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Most items in the page.")]

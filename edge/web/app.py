"""The local web app: the grid workers' console (pages) and the JSON API, one FastAPI app.

Routers: ``routes/api.py`` (``/api/...``), ``routes/console.py`` (alerts, residents, meters,
devices), ``routes/account.py`` (login, logout, passwords, language, text size). Static files
(the stylesheet, the script, the chart library, the icon and the web app manifest) ship in
``static/``: nothing is fetched from the internet.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from edge.people import PeopleStore
from edge.people.deps import install
from edge.web import metrics
from edge.web.auth import Access, LoginNeeded, RoleTooLow
from edge.web.pages import Console
from edge.web.routes import account, api, console
from edge.web.sessions import LoginThrottle, Sessions
from edge.web.view import ConsoleSite, GatewayView

STATIC = Path(__file__).resolve().parent / "static"


def create_local_app(
    gateway: GatewayView,
    people: PeopleStore,
    site: ConsoleSite | None = None,
    *,
    now: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """``now`` dates what pages show ("12 min ago"); ``monotonic`` times sessions and logins."""
    if site is None:
        site = ConsoleSite(site="site", gateway="gateway")
    app = FastAPI(title="nbedge gateway", docs_url="/api/docs", openapi_url="/api/openapi.json")
    guard = install(app, people)
    people.people()  # read the people file now, so that a problem with it is logged at start
    access = Access(
        guard,
        Sessions(site.session_idle_s, site.session_max_s, monotonic=monotonic),
        LoginThrottle(monotonic=monotonic),
    )
    app.state.console_access = access
    pages = Console(site, now=now)

    app.include_router(api.router(gateway, site, access))
    app.include_router(account.router(pages, access))
    app.include_router(console.router(gateway, pages, access))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        """The gateway for Prometheus (``edge.web.metrics``): no login, nothing of residents."""
        status = (await gateway.status()).model_copy(update={"local_api": access.status()})
        body = metrics.exposition(status, gateway.active_alerts(), now())
        return Response(body, media_type=metrics.CONTENT_TYPE)

    @app.get("/manifest.webmanifest", include_in_schema=False)
    async def manifest() -> Response:
        body = (STATIC / "manifest.webmanifest").read_bytes()
        return Response(body, media_type="application/manifest+json")

    @app.exception_handler(LoginNeeded)
    async def to_login(request: Request, exc: LoginNeeded) -> Response:
        if request.headers.get("x-fragment") == "1":
            return Response(status_code=401)  # the script reloads the page, which logs in
        return RedirectResponse(f"/login?next={quote(exc.next_path)}", status_code=303)

    @app.exception_handler(RoleTooLow)
    async def role_too_low(request: Request, exc: RoleTooLow) -> HTMLResponse:
        return pages.page(
            request, "forbidden.html", None, status=403, needed=str(exc.role), shown=exc.person
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if request.url.path.startswith("/api/"):
            from fastapi.exception_handlers import http_exception_handler

            return await http_exception_handler(request, exc)
        code = exc.status_code
        return pages.page(request, "error.html", None, status=code, detail=exc.detail, code=code)

    return app

"""A real central API inside the test's event loop: uvicorn on a free 127.0.0.1 port."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from cloud_sync.central import admin
from cloud_sync.central.app import create_app
from cloud_sync.central.settings import CentralSettings
from edge.asgi import serve_app
from tests.conftest import free_port


@contextlib.asynccontextmanager
async def serve_central(
    url: str, site: str, gateway: str, *, tls: tuple[Path, Path] | None = None
) -> AsyncIterator[dict[str, Any]]:
    """The central API on database ``url`` with ``site`` (if new) and ``gateway`` registered;
    yields its ``url``, the gateway's ``token`` and the ``platform`` token. With ``tls``
    (certificate and key files), over HTTPS."""
    engine = admin.make_engine(url)
    try:
        admin.init_db(engine)
        with contextlib.suppress(admin.AdminError):  # a database shared by a module's tests
            admin.register_site(engine, site, f"{site} building")
        token = admin.register_gateway(engine, site, gateway)
    finally:
        engine.dispose()
    platform = secrets.token_urlsafe(24)
    app = create_app(CentralSettings(database_url=url, platform_token=platform))  # type: ignore[arg-type]
    port = free_port()
    started = asyncio.Event()
    async with asyncio.TaskGroup() as tasks:
        server = tasks.create_task(
            serve_app(
                app,
                host="127.0.0.1",
                port=port,
                started=started,
                tls=None if tls is None else (str(tls[0]), str(tls[1])),
            )
        )
        await asyncio.wait_for(started.wait(), 10)
        try:
            scheme = "http" if tls is None else "https"
            yield {"url": f"{scheme}://127.0.0.1:{port}", "token": token, "platform": platform}
        finally:
            server.cancel()

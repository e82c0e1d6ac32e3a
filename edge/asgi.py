"""Serve an ASGI app (the local API, or the central API in the demo) inside our own event loop.

uvicorn's ``Server.serve`` installs its own signal handlers; the gateway owns SIGTERM and SIGINT
itself, so this server leaves them alone and stops when its task is cancelled, closing its socket.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import uvicorn


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_app(
    app: Any,
    *,
    host: str,
    port: int,
    started: asyncio.Event | None = None,
    tls: tuple[str, str] | None = None,
) -> None:
    """Serve ``app`` on ``host:port`` until cancelled; sets ``started`` once it listens. With
    ``tls`` (certificate and key files, PEM), over HTTPS."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_certfile=None if tls is None else tls[0],
        ssl_keyfile=None if tls is None else tls[1],
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = _EmbeddedServer(config)
    async with asyncio.TaskGroup() as tasks:
        serving = tasks.create_task(server.serve(), name=f"http {host}:{port}")
        try:
            while not server.started:
                if serving.done():
                    break
                await asyncio.sleep(0.02)
            if server.started and started is not None:
                started.set()
            await asyncio.shield(serving)
        except asyncio.CancelledError:
            server.should_exit = True
            await serving
            raise
    if not server.started:
        raise OSError(f"cannot serve HTTP on {host}:{port} (address in use?)")

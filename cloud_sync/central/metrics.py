"""Prometheus metrics of one central API process, served at ``GET /metrics``.

Each process keeps its own counters (a registry per application): with several uvicorn workers
or hosts, scrape each one and sum in Prometheus. Prometheus's multiprocess mode is not used.

| metric | labels | what |
|---|---|---|
| ``nbedge_central_ingest_batches_total`` | | batches stored |
| ``nbedge_central_ingest_records_total`` | ``result``: accepted, duplicate, refused | records |
| ``nbedge_central_ingest_refused_total`` | ``reason`` | batches refused, by reason |
| ``nbedge_central_claims_total`` | ``result`` | claim attempts: claimed, or why refused |
| ``nbedge_central_commands_total`` | ``action``, ``state`` | commands issued, applied... |
| ``nbedge_central_gateway_silent_total`` | ``event``: raised, cleared | gateway_silent alerts |
| ``nbedge_central_http_request_duration_seconds`` | ``method``, ``route``, ``status`` | latency |

Every label takes its values from a closed set, whatever clients send: ``route`` is one of the
application's route templates (``RouteLabels``) or ``unmatched``, ``method`` a standard method or
``other``, ``status`` a code the API answers or its class (``2xx``...).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud_sync.central.claims import ClaimProblem

__all__ = ["CONTENT_TYPE", "CentralMetrics", "MetricsMiddleware", "RouteLabels"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
INGEST_ROUTE = "/v1/ingest"
UNMATCHED = "unmatched"
OTHER_METHOD = "other"

METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
"""The ``method`` label: these as they are (methods are case-sensitive), anything else ``other``."""

STATUSES = frozenset(
    {200, 202, 204, 304, 307, 400, 401, 403, 404, 405, 409, 413, 415, 422, 500, 503}
)
"""The ``status`` label: these codes as they are, any other code as its class (``2xx``...)."""

REFUSAL_REASONS: dict[int, str] = {
    400: "undecodable",
    401: "unauthenticated",
    403: "forbidden",
    413: "too_large",
    415: "unsupported_encoding",
    422: "invalid",
    503: "database_unavailable",
}
"""The ``reason`` label of a refused batch, by the status of the answer."""

COMMAND_ACTIONS = ("acknowledge", "resolve")
COMMAND_STATES = ("issued", "applied", "refused", "expired")
"""The ``state`` label of ``commands``: a command issued, or the state it reached."""
SILENT_EVENTS = ("raised", "cleared")

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class CentralMetrics:
    """The metrics of one application, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.ingest_batches = Counter(
            "nbedge_central_ingest_batches", "Ingest batches stored.", registry=self.registry
        )
        self.ingest_records = Counter(
            "nbedge_central_ingest_records",
            "Records of stored batches: new (accepted), already held (duplicate) or refused one"
            " by one (refused).",
            ["result"],
            registry=self.registry,
        )
        self.ingest_refused = Counter(
            "nbedge_central_ingest_refused",
            "Ingest batches refused, nothing stored, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.claims = Counter(
            "nbedge_central_claims",
            "Claim attempts: claimed, or the reason of the refusal.",
            ["result"],
            registry=self.registry,
        )
        self.commands = Counter(
            "nbedge_central_commands",
            "Platform commands issued, and those that became applied, refused or expired (each"
            " counted by the process that made the change).",
            ["action", "state"],
            registry=self.registry,
        )
        self.gateway_silent = Counter(
            "nbedge_central_gateway_silent",
            "gateway_silent alerts raised and cleared (each by the process that did it).",
            ["event"],
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "nbedge_central_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        for result in ("accepted", "duplicate", "refused"):
            self.ingest_records.labels(result)
        for reason in REFUSAL_REASONS.values():
            self.ingest_refused.labels(reason)
        for outcome in ["claimed", *ClaimProblem]:
            self.claims.labels(str(outcome))
        for action in COMMAND_ACTIONS:
            for state in COMMAND_STATES:
                self.commands.labels(action, state)
        for event in SILENT_EVENTS:
            self.gateway_silent.labels(event)

    def stored(self, accepted: int, duplicates: int, refused: int = 0) -> None:
        self.ingest_batches.inc()
        self.ingest_records.labels("accepted").inc(accepted)
        self.ingest_records.labels("duplicate").inc(duplicates)
        self.ingest_records.labels("refused").inc(refused)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class RouteLabels:
    """The ``route`` label of a path: the template of the route that serves it, or ``unmatched``.

    The templates are read from the application once, at the first request (its OpenAPI paths
    and its top-level routes), so the label is one of them whatever the path; FastAPI's own
    route object cannot say it (an included router's route knows only its part of it).
    """

    def __init__(self, templates: Callable[[], Iterable[str]]) -> None:
        self._read_templates = templates
        self._patterns: tuple[tuple[re.Pattern[str], str], ...] | None = None

    @classmethod
    def of(cls, app: FastAPI) -> RouteLabels:
        """Every route of ``app`` as it is at its first request."""

        def templates() -> list[str]:
            top_level = (getattr(route, "path_format", None) for route in app.routes)
            return [*app.openapi()["paths"], *(path for path in top_level if path)]

        return cls(templates)

    def label(self, path: str) -> str:
        if self._patterns is None:  # the OpenAPI document costs about 0.1 s: build it once
            templates = dict.fromkeys(self._read_templates())
            self._patterns = tuple((compile_path(t)[0], t) for t in templates)
        for pattern, template in self._patterns:
            if pattern.match(path):
                return template
        return UNMATCHED


def method_label(method: str) -> str:
    return method if method in METHODS else OTHER_METHOD


def status_label(status: int) -> str:
    return str(status) if status in STATUSES else f"{status // 100}xx"


class MetricsMiddleware:
    """ASGI middleware: time every HTTP request and count refused ingest batches."""

    def __init__(self, app: ASGIApp, metrics: CentralMetrics, routes: RouteLabels) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # if the application fails before it answers

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            route = self.routes.label(_route_path(scope))
            self.metrics.request_duration.labels(
                method_label(scope["method"]), route, status_label(status)
            ).observe(time.perf_counter() - start)
            if route == INGEST_ROUTE and status in REFUSAL_REASONS:
                self.metrics.ingest_refused.labels(REFUSAL_REASONS[status]).inc()


def _route_path(scope: Scope) -> str:
    """The path the application routes on: without the ``root_path`` a proxy may have set."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path

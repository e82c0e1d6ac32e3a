"""Prometheus metrics of one central API process, served at ``GET /metrics``.

Each process keeps its own counters (a registry per application): with several uvicorn workers
or hosts, scrape each one and sum in Prometheus. Prometheus's multiprocess mode is not used.

| metric | labels | what |
|---|---|---|
| ``nbedge_central_ingest_batches_total`` | | batches stored |
| ``nbedge_central_ingest_records_total`` | ``result``: accepted, duplicate, refused | records |
| ``nbedge_central_ingest_refused_total`` | ``reason`` | batches refused, by reason |
| ``nbedge_central_claims_total`` | ``result`` | claim attempts: claimed, or why refused |
| ``nbedge_central_http_request_duration_seconds`` | ``method``, ``route``, ``status`` | latency |

``route`` is the route's template (``/v1/sites/{site_id}/summaries``), or ``unmatched`` for paths
the API does not serve, so that the number of series stays bounded.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud_sync.central.claims import ClaimProblem

__all__ = ["CONTENT_TYPE", "CentralMetrics", "MetricsMiddleware"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
INGEST_ROUTE = "/v1/ingest"

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

    def stored(self, accepted: int, duplicates: int, refused: int = 0) -> None:
        self.ingest_batches.inc()
        self.ingest_records.labels("accepted").inc(accepted)
        self.ingest_records.labels("duplicate").inc(duplicates)
        self.ingest_records.labels("refused").inc(refused)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """ASGI middleware: time every HTTP request and count refused ingest batches."""

    def __init__(self, app: ASGIApp, metrics: CentralMetrics) -> None:
        self.app = app
        self.metrics = metrics

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
            route = _route_template(scope)
            self.metrics.request_duration.labels(scope["method"], route, str(status)).observe(
                time.perf_counter() - start
            )
            if route == INGEST_ROUTE and status in REFUSAL_REASONS:
                self.metrics.ingest_refused.labels(REFUSAL_REASONS[status]).inc()


def _route_template(scope: Scope) -> str:
    """The matched route's path with its parameters as ``{name}``; ``unmatched`` if none.

    Rebuilt from the path and its parameters (FastAPI keeps included routers nested, so the
    route object knows only the last part of its template). Bounded: any value becomes a name.
    """
    if scope.get("route") is None:
        return "unmatched"
    params: dict[str, Any] = scope.get("path_params") or {}
    names = {str(value): name for name, value in params.items()}
    path: str = scope["path"]
    return "/".join(f"{{{names[part]}}}" if part in names else part for part in path.split("/"))

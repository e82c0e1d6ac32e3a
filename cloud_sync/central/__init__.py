"""The central API service: gateways post batches, the neighbourhood platform pulls feeds.

- ``create_app(settings)``: the FastAPI application (``app``, ``routes/``, ``deps``).
- ``CentralSettings``: configuration from ``NBEDGE_CENTRAL_*`` environment variables.
- ``admin``: create the database, register sites and gateways, make claim codes (the CLI's).
- ``claims``: one-time claim codes, redeemed at ``POST /v1/claim`` for a gateway's token.
- ``tables``: the schema (SQLAlchemy Core); ``migrations``: Alembic revisions that build it.
- ``db``: engine and queries, and why feed cursors never skip (its docstring).
- ``metrics``: Prometheus metrics per process; ``schemas``: the feeds' response bodies.

Needs the ``central`` extra (SQLAlchemy, Alembic, psycopg, prometheus-client); the gateway never
imports this package.
"""

from __future__ import annotations

from cloud_sync.central.app import create_app
from cloud_sync.central.settings import CentralSettings

__all__ = ["CentralSettings", "create_app"]

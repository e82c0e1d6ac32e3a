"""The central API service: gateways post batches, the neighbourhood platform pulls feeds.

- ``create_app(settings)``: the FastAPI application (``app``, ``routes/``, ``deps``).
- ``CentralSettings``: configuration from ``NBEDGE_CENTRAL_*`` environment variables.
- ``admin``: create the database, register sites and gateways, make claim codes (the CLI's).
- ``claims``: one-time claim codes, redeemed at ``POST /v1/claim`` for a gateway's token.
- ``tables``: the schema (SQLAlchemy Core); ``migrations``: Alembic revisions that build it.
- ``db``: engine, ingest and queries, and why feed cursors never skip (its docstring).
- ``alert_store``, ``lifecycle``: alert events and each alert's current state, folded from them.
- ``commands``: the platform's commands to gateways; ``silence``, ``watch``: ``gateway_silent``
  and the periodic work of each process.
- ``metrics``: Prometheus metrics per process; ``schemas``: the platform's response bodies.

Needs the ``central`` extra (SQLAlchemy, Alembic, psycopg); the gateway never
imports this package.
"""

from __future__ import annotations

from cloud_sync.central.app import create_app
from cloud_sync.central.settings import CentralSettings

__all__ = ["CentralSettings", "create_app"]

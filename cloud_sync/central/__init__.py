"""The central API service: gateways post batches, the neighbourhood platform pulls feeds.

- ``create_app(settings)``: the FastAPI application (``app``, ``routes/``, ``deps``).
- ``CentralSettings``: configuration from ``NBEDGE_CENTRAL_*`` environment variables.
- ``admin``: create the database, register sites and gateways (used by the CLI).
- ``db``: tables and queries (SQLAlchemy Core); ``schemas``: the feeds' response bodies.

Needs the ``central`` extra (SQLAlchemy); the gateway never imports this package.
"""

from __future__ import annotations

from cloud_sync.central.app import create_app
from cloud_sync.central.settings import CentralSettings

__all__ = ["CentralSettings", "create_app"]

"""The gateway's SQLite store: readings, alerts, summaries and the outbox, written by one thread."""

from edge.store.store import Store, StoreStats

__all__ = ["Store", "StoreStats"]

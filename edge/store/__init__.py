"""The gateway's SQLite store: readings, alerts, summaries and the outbox, written by one thread."""

from edge.store.quota import Quota, QuotaReport
from edge.store.retention import Retention
from edge.store.store import Housekeeping, Store, StoreStats

__all__ = ["Housekeeping", "Quota", "QuotaReport", "Retention", "Store", "StoreStats"]

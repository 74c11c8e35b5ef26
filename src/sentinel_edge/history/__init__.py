"""History: events and alerts kept in an embedded SQLite store, queried by the CLI and the API."""

from sentinel_edge.history.store import (
    LATENCY_BOUNDS,
    SCHEMA_VERSION,
    STATUS_ACKNOWLEDGED,
    STATUS_NEW,
    STATUS_RESOLVED,
    AlertChange,
    HistoryStore,
    StoredAlert,
    StoredEvent,
    WriteLatency,
)

__all__ = [
    "LATENCY_BOUNDS",
    "SCHEMA_VERSION",
    "STATUS_ACKNOWLEDGED",
    "STATUS_NEW",
    "STATUS_RESOLVED",
    "AlertChange",
    "HistoryStore",
    "StoredAlert",
    "StoredEvent",
    "WriteLatency",
]

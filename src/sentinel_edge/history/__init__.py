"""History: events and alerts kept in an embedded SQLite store, queried by the CLI and the API."""

from sentinel_edge.history.store import (
    SCHEMA_VERSION,
    STATUS_ACKNOWLEDGED,
    STATUS_NEW,
    STATUS_RESOLVED,
    AlertChange,
    HistoryStore,
    StoredAlert,
    StoredEvent,
)

__all__ = [
    "SCHEMA_VERSION",
    "STATUS_ACKNOWLEDGED",
    "STATUS_NEW",
    "STATUS_RESOLVED",
    "AlertChange",
    "HistoryStore",
    "StoredAlert",
    "StoredEvent",
]

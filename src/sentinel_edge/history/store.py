"""The embedded history store: events and alerts in one SQLite file (WAL mode).

Callers (the agent pipeline) never wait on disk: ``add_event`` and ``add_alert``
put the object on a bounded queue and return. One writer thread drains the
queue, commits batches in transactions, runs retention and handles a full disk.

Durability: alert transactions run with ``synchronous=FULL`` (the WAL is
fsynced at every commit, so a committed alert survives kill -9 and power loss).
Event transactions run with ``synchronous=NORMAL``: they survive kill -9 of the
agent (the WAL is in the page cache) but the last events before a power loss
may be lost. The file is never corrupt in either case (WAL + rollback).

Event objects are stored compressed (zstd, level 3) with a dictionary trained
on the store's own first events (kept in ``zdicts``): OCSF objects repeat the
same keys and most values, so a 2.5-3.5 KB event takes about 350 bytes (about
9x smaller; measured in benchmarks/history.py). Alerts stay JSON text (few, and
their status is updated in place).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import queue
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import zstandard

from sentinel_edge.errors import OutputError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3
SQLITE_FULL = 13
MINUTE_MS = 60_000
PAGE_SIZE = 8192  # for new files
# Upper bounds (seconds) of the write-latency histogram buckets (Prometheus style; +Inf is the total count).
LATENCY_BOUNDS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
WRITE_KINDS = ("events", "alerts")
WAL_SIZE_LIMIT = 4 * 1024 * 1024
STATUS_NEW = "new"
STATUS_ACKNOWLEDGED = "acknowledged"
STATUS_RESOLVED = "resolved"
# OCSF status_id / status for the three states we keep.
_OCSF_STATUS = {STATUS_NEW: (1, "New"), STATUS_ACKNOWLEDGED: (2, "In Progress"), STATUS_RESOLVED: (4, "Resolved")}
_STATUS_OF_ID = {1: STATUS_NEW, 2: STATUS_ACKNOWLEDGED, 4: STATUS_RESOLVED}

#: events compressed without a dictionary until this many have been seen, then a dictionary is trained on them
ZDICT_SAMPLES = 2000
ZDICT_BYTES = 64 * 1024
ZSTD_LEVEL = 3
# a compressed event: this marker, the dictionary id (2 bytes, little endian; 0 = none), the zstd frame
_ZMARK = b"Z"

_MIGRATIONS: list[tuple[str, ...]] = [
    # version 1
    (
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            time INTEGER NOT NULL,
            class_uid INTEGER NOT NULL,
            kind TEXT,
            pid INTEGER,
            exec_id TEXT,
            exe TEXT,
            user TEXT,
            obj TEXT NOT NULL)""",
        "CREATE INDEX events_time ON events(time)",
        "CREATE INDEX events_class_time ON events(class_uid, time)",
        "CREATE INDEX events_pid ON events(pid)",
        "CREATE INDEX events_exec_id ON events(exec_id)",
        "CREATE INDEX events_exe ON events(exe)",
        "CREATE INDEX events_user ON events(user)",
        "CREATE VIRTUAL TABLE events_fts USING fts5(cmd_line, path)",
        """CREATE TABLE alerts (
            id INTEGER PRIMARY KEY,
            uid TEXT NOT NULL UNIQUE,
            time INTEGER NOT NULL,
            rule TEXT,
            title TEXT,
            severity_id INTEGER,
            status TEXT NOT NULL,
            pid INTEGER,
            exec_id TEXT,
            exe TEXT,
            user TEXT,
            obj TEXT NOT NULL)""",
        "CREATE INDEX alerts_time ON alerts(time)",
        "CREATE INDEX alerts_rule ON alerts(rule, time)",
        "CREATE INDEX alerts_severity ON alerts(severity_id, time)",
        "CREATE INDEX alerts_status ON alerts(status, time)",
        "CREATE INDEX alerts_exec_id ON alerts(exec_id)",
        "CREATE VIRTUAL TABLE alerts_fts USING fts5(title, cmd_line, path)",
        """CREATE TABLE alert_changes (
            id INTEGER PRIMARY KEY,
            alert_uid TEXT NOT NULL,
            time INTEGER NOT NULL,
            who TEXT NOT NULL,
            action TEXT NOT NULL,
            old_status TEXT NOT NULL,
            new_status TEXT NOT NULL,
            comment TEXT NOT NULL)""",
        "CREATE INDEX alert_changes_uid ON alert_changes(alert_uid, id)",
    ),
    # version 2: events per (minute, class), kept by the writer (inserts) and a trigger (deletes), so the
    # overview counts millions of events without scanning them.
    (
        """CREATE TABLE event_counts (
            minute INTEGER NOT NULL,
            class_uid INTEGER NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (minute, class_uid)) WITHOUT ROWID""",
        f"INSERT INTO event_counts SELECT time / {MINUTE_MS}, class_uid, count(*) FROM events GROUP BY 1, 2",
        f"""CREATE TRIGGER events_count_delete AFTER DELETE ON events BEGIN
            UPDATE event_counts SET n = n - 1 WHERE minute = OLD.time / {MINUTE_MS} AND class_uid = OLD.class_uid;
        END""",
    ),
    # version 3: events.obj holds zstd-compressed JSON (a BLOB) with the dictionary of this table; rows of
    # earlier versions stay JSON text and are read as such.
    (
        """CREATE TABLE zdicts (
            id INTEGER PRIMARY KEY,
            created INTEGER NOT NULL,
            data BLOB NOT NULL)""",
    ),
]


class _Codec:
    """zstd with the store's trained dictionaries: compress on the writer thread, decompress anywhere."""

    def __init__(self) -> None:
        self._dicts: dict[int, zstandard.ZstdCompressionDict] = {}
        self._current = 0
        self._cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self._samples: list[bytes] = []
        self._pending: tuple[int, bytes] | None = None  # trained, its transaction not committed yet
        self._local = threading.local()
        self._lock = threading.Lock()

    def load(self, conn: sqlite3.Connection) -> None:
        for zid, data in conn.execute("SELECT id, data FROM zdicts ORDER BY id"):
            self._add(int(zid), bytes(data))
        if self._dicts:
            self._samples = []

    def _add(self, zid: int, data: bytes) -> None:
        d = zstandard.ZstdCompressionDict(data)
        d.precompute_compress(level=ZSTD_LEVEL)
        with self._lock:
            self._dicts[zid] = d
        self._current = zid
        self._cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, dict_data=d)

    @property
    def trained(self) -> bool:
        return self._current != 0

    def encode(self, raw: bytes) -> bytes:
        """Writer thread only."""
        return _ZMARK + self._current.to_bytes(2, "little") + self._cctx.compress(raw)

    def sample(self, raws: list[bytes]) -> None:
        """Writer thread: keep events (before they are encoded) until there are enough to train on."""
        if not self._current and len(self._samples) < ZDICT_SAMPLES:
            self._samples.extend(raws[:ZDICT_SAMPLES - len(self._samples)])

    def want_training(self) -> bool:
        return not self._current and len(self._samples) >= ZDICT_SAMPLES and self._pending is None

    def train(self, conn: sqlite3.Connection) -> None:
        """Writer thread, as a transaction's body: a dictionary from the samples, stored in ``zdicts``.

        It is used (``activate``) only once that transaction committed: rows never name a dictionary
        that a rolled-back transaction took with it.
        """
        samples = self._samples
        try:
            data = zstandard.train_dictionary(ZDICT_BYTES, list[bytes | bytearray | memoryview](samples)).as_bytes()
        except zstandard.ZstdError as exc:  # too few or too uniform samples: stay without a dictionary
            log.info("history store: no compression dictionary (%s); events are compressed without one", exc)
            self._samples = [b""] * ZDICT_SAMPLES  # do not try again
            return
        cur = conn.execute("INSERT INTO zdicts (created, data) VALUES (?, ?)", (_now_ms(), data))
        assert cur.lastrowid is not None
        self._pending = (int(cur.lastrowid), data)

    def activate(self, committed: bool) -> None:
        """After train()'s transaction: use the new dictionary (committed) or keep the samples to try again."""
        pending, self._pending = self._pending, None
        if pending is not None and committed:
            self._samples = []
            self._add(*pending)

    def decode(self, value: Any) -> Any:
        if isinstance(value, str):  # a row of schema 1-2 (or an alert): JSON text
            return orjson.loads(value)
        b = bytes(value)
        if not b.startswith(_ZMARK):
            return orjson.loads(b)
        zid = int.from_bytes(b[1:3], "little")
        cache: dict[int, zstandard.ZstdDecompressor] = self._local.__dict__.setdefault("d", {})
        dctx = cache.get(zid)
        if dctx is None:
            with self._lock:
                d = self._dicts.get(zid)
            if zid and d is None:
                raise OutputError(f"history store: an event needs compression dictionary {zid}, which is missing")
            dctx = zstandard.ZstdDecompressor(dict_data=d) if d is not None else zstandard.ZstdDecompressor()
            cache[zid] = dctx
        return orjson.loads(dctx.decompress(b[3:]))


@dataclass(frozen=True)
class StoredEvent:
    id: int
    time: int
    class_uid: int
    kind: str | None
    pid: int | None
    exec_id: str | None
    exe: str | None
    user: str | None
    obj: dict[str, Any]


@dataclass(frozen=True)
class AlertChange:
    time: int
    who: str
    action: str
    old_status: str
    new_status: str
    comment: str


@dataclass(frozen=True)
class StoredAlert:
    id: int
    uid: str
    time: int
    rule: str | None
    title: str | None
    severity_id: int | None
    status: str
    pid: int | None
    exec_id: str | None
    exe: str | None
    user: str | None
    obj: dict[str, Any]
    changes: tuple[AlertChange, ...] = field(default=())


@dataclass(frozen=True)
class WriteLatency:
    """Commit latency of one transaction kind, as a Prometheus histogram.

    ``counts[i]`` is the number of commits that took at most ``bounds[i]`` seconds (cumulative);
    ``count`` (the +Inf bucket) is every commit, ``sum_s`` their total time.
    """

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    sum_s: float
    count: int


class _Histogram:
    def __init__(self) -> None:
        self.buckets = [0] * (len(LATENCY_BOUNDS) + 1)  # the last one is above every bound
        self.sum_s = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        i = 0
        while i < len(LATENCY_BOUNDS) and seconds > LATENCY_BOUNDS[i]:
            i += 1
        self.buckets[i] += 1
        self.sum_s += seconds
        self.count += 1

    def snapshot(self) -> WriteLatency:
        cumulative: list[int] = []
        total = 0
        for n in self.buckets[:-1]:
            total += n
            cumulative.append(total)
        return WriteLatency(LATENCY_BOUNDS, tuple(cumulative), self.sum_s, self.count)


class _Flush:
    """Queue marker: set once everything queued before it has been handled."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False


class _Stop:
    pass


class _Retention:
    """Queue marker: run retention now (in the writer, the only user of the write connection)."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.deleted = 0


# -- field extraction from OCSF objects ------------------------------------------------------------


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _as_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _exe(proc: Any) -> str | None:
    return _as_str(_get(proc, "file", "path")) or _as_str(_get(proc, "path"))


def _user(obj: dict[str, Any]) -> str | None:
    for path in (("actor", "user"), ("actor", "process", "user")):
        user = _get(obj, *path)
        name = _as_str(_get(user, "name"))
        if name:
            return name
        uid = _get(user, "uid")
        if isinstance(uid, str | int) and not isinstance(uid, bool):
            return str(uid)
    return None


def _texts(obj: dict[str, Any]) -> tuple[str, str]:
    """Command lines and paths of an object, for full-text search."""
    cmds: list[str] = []
    paths: list[str] = []
    for proc in (_get(obj, "actor", "process"), _get(obj, "process")):
        cmd = _as_str(_get(proc, "cmd_line"))
        if cmd and cmd not in cmds:
            cmds.append(cmd)
        exe = _exe(proc)
        if exe and exe not in paths:
            paths.append(exe)
    for path in (("file", "path"), ("file", "parent_folder")):
        value = _as_str(_get(obj, *path))
        if value and value not in paths:
            paths.append(value)
    return "\n".join(cmds), "\n".join(paths)


def _fts_query(text: str) -> str:
    """User text as one FTS5 phrase (never FTS5 syntax: attacker-controlled input is searched verbatim)."""
    return '"' + text.replace('"', '""') + '"'


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF == SQLITE_FULL:
            return True
        return "database or disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


class HistoryStore:
    """Events and alerts in one SQLite file, written by one background thread.

    ``retention_days`` drops events and alerts older than that; ``max_bytes``
    bounds the space used in the file (oldest events removed first, then
    oldest alerts). Both run in the writer every ``retention_interval`` seconds.
    ``on_alerts_committed`` is called from the writer thread with the uids of
    alerts just committed durably.
    """

    def __init__(self, path: str | os.PathLike[str], *, retention_days: float | None = None,
                 max_bytes: int | None = None, queue_size: int = 65536, batch_size: int = 2048,
                 retention_interval: float = 60.0, retry_interval: float = 1.0,
                 max_pending_alerts: int = 100_000,
                 on_alerts_committed: Callable[[list[str]], None] | None = None) -> None:
        self.path = os.fspath(path)
        self.retention_days = retention_days
        self.max_bytes = max_bytes
        self._batch_size = batch_size
        self._retention_interval = retention_interval
        self._retry_interval = retry_interval
        self._max_pending_alerts = max_pending_alerts
        self._on_alerts_committed = on_alerts_committed
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._overflow_alerts: deque[dict[str, Any]] = deque()  # alerts that met a full queue
        self._pending_alerts: list[dict[str, Any]] = []  # alerts a full disk refused: retried
        self._lock = threading.Lock()
        self._written_events = 0
        self._written_alerts = 0
        self._dropped_full_queue = 0
        self._dropped_disk = 0
        self._dropped_alerts = 0
        self._dropped_invalid = 0
        self._retention_deleted = 0
        self._last_latency_ms = 0.0
        self._latency = {kind: _Histogram() for kind in WRITE_KINDS}
        self._health: str | None = None
        self._closed = False
        # Writer crash handling: what a round had taken but not committed is kept for the next writer.
        self._inflight_events: list[dict[str, Any]] = []
        self._inflight_alerts: list[dict[str, Any]] = []
        self._carry_events: list[dict[str, Any]] = []
        self._isolate = False  # set after a crash: the next round writes one object per transaction
        self.last_writer_error: str | None = None
        try:
            self._wconn = self._connect()
            self._migrate(self._wconn)
            self._codec = _Codec()
            self._codec.load(self._wconn)
            self._rconn = self._connect()
        except (sqlite3.Error, OSError) as exc:
            raise OutputError(f"history store {self.path}: {exc}") from exc
        self._rlock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="history-writer", daemon=True)
        self._thread.start()

    # -- setup ---------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise OutputError(f"history store {self.path}: schema version {version} is newer than "
                              f"this agent's ({SCHEMA_VERSION})")
        if version == 0:
            # Both must precede the first table. auto_vacuum lets retention give pages back to the file system;
            # 8 KiB pages hold the usual 2-4 KB event objects without one page per row (measured: ~20% smaller
            # and ~20% faster inserts than 4 KiB, see benchmarks/history.py).
            conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OutputError(f"history store {self.path}: cannot switch to WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous=FULL")
        # The WAL grows to one batch between checkpoints; cut it back to this size after each checkpoint.
        conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for stmt in _MIGRATIONS[target - 1]:
                    conn.execute(stmt)
                conn.execute(f"PRAGMA user_version={target}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        with self._rlock:
            return int(self._rconn.execute("PRAGMA user_version").fetchone()[0])

    # -- producer side (never blocks) ----------------------------------------------------------

    def add_event(self, obj: dict[str, Any]) -> bool:
        """Queue an OCSF event; False (and counted) when the queue is full."""
        try:
            self._queue.put_nowait(("e", obj))
            return True
        except queue.Full:
            with self._lock:
                self._dropped_full_queue += 1
            return False

    def add_alert(self, obj: dict[str, Any]) -> None:
        """Queue an OCSF Detection Finding; a full queue keeps it aside for the writer.

        Raises ValueError when the finding has no ``finding_info.uid`` (a caller bug).
        """
        _alert_uid(obj)
        try:
            self._queue.put_nowait(("a", obj))
        except queue.Full:
            with self._lock:
                self._overflow_alerts.append(obj)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued so far is committed; False on timeout or unwritten alerts."""
        if self._closed:
            return False
        marker = _Flush()
        try:
            self._queue.put(marker, timeout=timeout)
        except queue.Full:
            return False
        return self._wait(marker.done, timeout) and marker.ok

    def _wait(self, done: threading.Event, timeout: float) -> bool:
        """Wait for the writer to set done; False at once when the writer is dead (until restarted)."""
        deadline = time.monotonic() + timeout
        while not done.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline or not self._thread.is_alive():
                return done.is_set()
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Drain the queue, stop the writer, close the file."""
        if self._closed:
            return
        if not self._thread.is_alive() and self.last_writer_error is not None:
            self.restart_writer()  # drain what the dead writer left before closing
        self._closed = True
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            try:
                self._queue.put(_Stop(), timeout=0.1)
                break
            except queue.Full:
                continue
        self._thread.join(max(0.0, deadline - time.monotonic()))
        with self._rlock:
            self._rconn.close()
        if not self._thread.is_alive():
            self._wconn.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {
                "written_events": self._written_events,
                "written_alerts": self._written_alerts,
                "dropped_full_queue": self._dropped_full_queue,
                "dropped_disk": self._dropped_disk,
                "dropped_alerts": self._dropped_alerts,
                "dropped_invalid": self._dropped_invalid,
                "pending_alerts": len(self._pending_alerts) + len(self._overflow_alerts),
                "queue_depth": self._queue.qsize(),
                "retention_deleted": self._retention_deleted,
                "last_write_latency_ms": self._last_latency_ms,
                "healthy": self._health is None,
                "health": self._health,
                "writer_alive": self._thread.is_alive(),
                "last_writer_error": self.last_writer_error,
            }
        out["db_bytes"] = self.db_bytes()
        return out

    def db_bytes(self) -> int:
        """Bytes of the database file plus its WAL on disk."""
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += os.stat(self.path + suffix).st_size
        return total

    # -- writer --------------------------------------------------------------------------------

    def writer_alive(self) -> bool:
        """True while the writer thread runs (it ends only on close or on an unexpected exception)."""
        return self._thread.is_alive()

    def restart_writer(self) -> None:
        """Start a new writer on the same queue after the old one died; nothing it had taken is lost.

        The objects the dead writer had taken but not committed are written first, one per
        transaction, so an object that crashes the writer again is dropped (``dropped_invalid``)
        instead of killing every writer after it. A no-op while the writer is alive.
        """
        if self._closed:
            raise OutputError(f"history store {self.path}: closed")
        if self._thread.is_alive():
            return
        if self._wconn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._wconn.execute("ROLLBACK")
        with self._lock:
            if self._health is not None and self._health.startswith(self._dead_prefix()):
                self._health = None
        self._thread = threading.Thread(target=self._run, name="history-writer", daemon=True)
        self._thread.start()
        log.warning("history store %s: writer restarted (last error: %s)", self.path, self.last_writer_error)

    def _dead_prefix(self) -> str:
        return f"history store {self.path}: writer stopped: "

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # recorded and visible: the thread ends, the watchdog restarts it
            self.last_writer_error = f"{type(exc).__name__}: {exc}"
            with self._lock:
                self._health = self._dead_prefix() + self.last_writer_error
            log.error("history store %s: writer stopped: %s", self.path, self.last_writer_error, exc_info=exc)

    def _loop(self) -> None:
        next_retention = time.monotonic()
        next_retry = 0.0
        stopping = False
        while True:
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                first = None
            batch: list[Any] = [] if first is None else [first]
            while len(batch) < self._batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            events, self._carry_events = self._carry_events, []
            alerts: list[dict[str, Any]] = []
            markers: list[_Flush] = []
            retention: list[_Retention] = []
            for item in batch:
                if isinstance(item, _Flush):
                    markers.append(item)
                elif isinstance(item, _Retention):
                    retention.append(item)
                elif isinstance(item, _Stop):
                    stopping = True
                elif item[0] == "e":
                    events.append(item[1])
                else:
                    alerts.append(item[1])
            with self._lock:
                while self._overflow_alerts:
                    alerts.append(self._overflow_alerts.popleft())
            try:
                next_retry, next_retention = self._step(events, alerts, retention, markers, stopping, next_retry,
                                                        next_retention)
            except BaseException:
                self._salvage(markers, retention)
                raise
            ok = not self._pending_alerts
            for marker in markers:
                marker.ok = ok
                marker.done.set()
            if stopping and self._queue.empty():
                if self._pending_alerts:
                    log.error("history store %s: closing with %d alerts not written (%s)", self.path,
                              len(self._pending_alerts), self._health)
                return

    def _salvage(self, markers: list[_Flush], retention: list[_Retention]) -> None:
        """The round failed unexpectedly: keep what it had not committed, answer the waiters."""
        self._carry_events = self._inflight_events + self._carry_events
        self._pending_alerts = self._inflight_alerts + self._pending_alerts
        self._inflight_events = []
        self._inflight_alerts = []
        self._isolate = True
        for marker in markers:
            marker.ok = False
            marker.done.set()
        for req in retention:
            req.done.set()

    def _step(self, events: list[dict[str, Any]], alerts: list[dict[str, Any]], retention: list[_Retention],
              markers: list[_Flush], stopping: bool, next_retry: float, next_retention: float) -> tuple[float, float]:
        """One writer round: alerts (durable), events, retention. Returns the next retry and retention times."""
        now = time.monotonic()
        if self._pending_alerts and (now >= next_retry or markers or stopping or self._isolate):
            alerts = self._pending_alerts + alerts
            self._pending_alerts = []
        elif self._pending_alerts and alerts:
            self._keep_pending(alerts)  # disk still full: keep order, retry later
            alerts = []
        self._inflight_alerts = alerts
        self._inflight_events = events
        if self._isolate:
            self._write_isolated(alerts, events)
        else:
            if alerts and not self._write_alerts(alerts):
                next_retry = time.monotonic() + self._retry_interval
            self._inflight_alerts = []
            if events:
                self._write_events(events)
            self._inflight_events = []
        for req in retention:
            req.deleted = self._retention()
            req.done.set()
        if retention or time.monotonic() >= next_retention:
            if not retention:
                self._retention()
            next_retention = time.monotonic() + self._retention_interval
        return next_retry, next_retention

    def _write_isolated(self, alerts: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
        """After a crash: one object per transaction; one that raises unexpectedly is dropped, not fatal."""
        self._isolate = False
        for kind, objs, write in (("alert", alerts, self._write_alerts), ("event", events, self._write_events)):
            for obj in list(objs):
                try:
                    write([obj])
                except Exception as exc:
                    with self._lock:
                        self._dropped_invalid += 1
                    log.error("history store %s: dropped an %s that crashed the writer: %s: %s", self.path,
                              kind, type(exc).__name__, exc)
                objs.pop(0)
        self._inflight_alerts = []
        self._inflight_events = []

    def _keep_pending(self, alerts: list[dict[str, Any]]) -> None:
        self._pending_alerts.extend(alerts)
        over = len(self._pending_alerts) - self._max_pending_alerts
        if over > 0:
            del self._pending_alerts[:over]
            with self._lock:
                self._dropped_alerts += over

    def _txn(self, sync: str, body: Callable[[sqlite3.Connection], None]) -> float:
        """Run body in one write transaction; returns its duration in seconds."""
        conn = self._wconn
        conn.execute(f"PRAGMA synchronous={sync}")
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        try:
            body(conn)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        return time.perf_counter() - t0

    def _committed(self, kind: str, n: int, seconds: float) -> None:
        with self._lock:
            if kind == "alerts":
                self._written_alerts += n
            else:
                self._written_events += n
            self._last_latency_ms = seconds * 1000.0
            self._latency[kind].observe(seconds)

    def write_latency(self) -> dict[str, WriteLatency]:
        """Commit latency histograms of the ``events`` and ``alerts`` transactions since the store opened."""
        with self._lock:
            return {kind: h.snapshot() for kind, h in self._latency.items()}

    def _failed(self, what: str, exc: BaseException) -> None:
        full = _is_disk_full(exc)
        msg = f"history store {self.path}: {'disk full' if full else 'write failed'} writing {what}: {exc}"
        with self._lock:
            changed = self._health != msg
            self._health = msg
        if changed:
            log.warning("%s", msg)

    def _recovered(self) -> None:
        with self._lock:
            if self._health is not None:
                log.warning("history store %s: writing again", self.path)
            self._health = None

    def _write_alerts(self, alerts: list[dict[str, Any]]) -> bool:
        rows, bad = _serialise(alerts)
        if bad:
            with self._lock:
                self._dropped_invalid += bad
            alerts = [obj for obj, _ in rows]

        def body(conn: sqlite3.Connection) -> None:
            for obj, text in rows:
                _insert_alert(conn, obj, text)

        try:
            latency = self._txn("FULL", body)
        except (sqlite3.Error, OSError) as exc:
            self._failed(f"{len(alerts)} alerts", exc)
            self._keep_pending(alerts)
            return False
        self._committed("alerts", len(alerts), latency)
        self._recovered()
        if self._on_alerts_committed is not None:
            try:
                self._on_alerts_committed([_alert_uid(a) for a in alerts])
            except Exception:
                log.exception("history store: on_alerts_committed callback failed")
        return True

    def _write_events(self, events: list[dict[str, Any]]) -> None:
        rows, bad = _serialise(events)
        if bad:
            with self._lock:
                self._dropped_invalid += bad
            events = [obj for obj, _ in rows]

        codec = self._codec
        raws = [text.encode() for _, text in rows]
        codec.sample(raws)
        if codec.want_training():
            # the dictionary is trained (and committed) before this batch is encoded: the batch that
            # completes the samples is already compressed with it
            try:
                self._txn("NORMAL", codec.train)
            except (sqlite3.Error, OSError) as exc:
                codec.activate(committed=False)
                log.warning("history store: storing the compression dictionary failed (%s); will try again", exc)
            else:
                codec.activate(committed=True)
        packed = [(obj, codec.encode(raw)) for (obj, _), raw in zip(rows, raws, strict=True)]

        def body(conn: sqlite3.Connection) -> None:
            counts: Counter[tuple[int, int]] = Counter()
            for obj, data in packed:
                t, class_uid = _insert_event(conn, obj, data)
                counts[(_minute(t), class_uid)] += 1
            conn.executemany("INSERT INTO event_counts (minute, class_uid, n) VALUES (?, ?, ?) ON CONFLICT"
                             " (minute, class_uid) DO UPDATE SET n = n + excluded.n",
                             [(m, c, n) for (m, c), n in counts.items()])

        try:
            latency = self._txn("NORMAL", body)
        except (sqlite3.Error, OSError) as exc:
            self._failed(f"{len(events)} events", exc)
            with self._lock:
                self._dropped_disk += len(events)
            return
        self._committed("events", len(events), latency)
        if not self._pending_alerts:
            self._recovered()

    def run_retention(self, timeout: float = 60.0) -> int:
        """Run retention now in the writer; returns the rows deleted (-1 on timeout)."""
        marker = _Retention()
        try:
            self._queue.put(marker, timeout=timeout)
        except queue.Full:
            return -1
        return marker.deleted if self._wait(marker.done, timeout) else -1

    def _retention(self) -> int:
        deleted = 0
        try:
            if self.retention_days is not None:
                cutoff = _now_ms() - int(self.retention_days * 86_400_000)
                deleted += self._delete_older(cutoff)
            if self.max_bytes is not None:
                deleted += self._trim_to_size(self.max_bytes)
        except (sqlite3.Error, OSError) as exc:
            self._failed("retention", exc)
        if deleted:
            with self._lock:
                self._retention_deleted += deleted
        return deleted

    def _delete_older(self, cutoff: int) -> int:
        deleted = 0

        def body(conn: sqlite3.Connection) -> None:
            nonlocal deleted
            conn.execute("DELETE FROM events_fts WHERE rowid IN (SELECT id FROM events WHERE time < ?)", (cutoff,))
            deleted += conn.execute("DELETE FROM events WHERE time < ?", (cutoff,)).rowcount
            uids = "SELECT uid FROM alerts WHERE time < ?"
            conn.execute(f"DELETE FROM alert_changes WHERE alert_uid IN ({uids})", (cutoff,))
            conn.execute("DELETE FROM alerts_fts WHERE rowid IN (SELECT id FROM alerts WHERE time < ?)", (cutoff,))
            deleted += conn.execute("DELETE FROM alerts WHERE time < ?", (cutoff,)).rowcount
            _drop_empty_counts(conn)

        self._txn("NORMAL", body)
        if deleted:
            self._wconn.executescript("PRAGMA incremental_vacuum;")  # execute() would free one page only
        return deleted

    def _used_bytes(self) -> int:
        conn = self._wconn
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        return (pages - free) * page_size

    def _trim_to_size(self, max_bytes: int) -> int:
        """Delete the oldest rows (events first, then alerts) until the pages in use fit max_bytes."""
        deleted = 0
        for _ in range(1000):
            used = self._used_bytes()
            if used <= max_bytes:
                break
            n_events = int(self._wconn.execute("SELECT count(*) FROM events").fetchone()[0])
            table = "events" if n_events else "alerts"
            total = n_events or int(self._wconn.execute("SELECT count(*) FROM alerts").fetchone()[0])
            if total == 0:
                break
            # Remove a share proportional to the excess (at least 1% / 10 rows) so it converges fast.
            share = max(0.01, (used - max_bytes) / used)
            n = max(10, int(total * share))
            count = 0

            def body(conn: sqlite3.Connection, table: str = table, n: int = n) -> None:
                nonlocal count
                ids = f"SELECT id FROM {table} ORDER BY time, id LIMIT {n}"
                conn.execute(f"DELETE FROM {table}_fts WHERE rowid IN ({ids})")
                if table == "alerts":
                    conn.execute(f"DELETE FROM alert_changes WHERE alert_uid IN "
                                 f"(SELECT uid FROM alerts ORDER BY time, id LIMIT {n})")
                count = conn.execute(f"DELETE FROM {table} WHERE id IN ({ids})").rowcount

            self._txn("NORMAL", body)
            deleted += count
        if deleted:
            self._txn("NORMAL", _drop_empty_counts)
            self._wconn.executescript("PRAGMA incremental_vacuum;")  # execute() would free one page only
            self._wconn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return deleted

    # -- queries -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        with self._rlock:
            try:
                yield self._rconn
            except sqlite3.Error as exc:
                raise OutputError(f"history store {self.path}: {exc}") from exc

    def query_events(self, *, since: int | None = None, until: int | None = None, class_uid: int | None = None,
                     kind: str | None = None, pid: int | None = None, exec_id: str | None = None,
                     exe: str | None = None, user: str | None = None, text: str | None = None,
                     limit: int = 100, before_id: int | None = None) -> list[StoredEvent]:
        """Newest first; page with ``before_id`` = the last id of the previous page. Times in ms."""
        where, args = _time_filters("e", since, until, before_id)
        for column, value in (("class_uid", class_uid), ("kind", kind), ("pid", pid), ("exec_id", exec_id),
                              ("exe", exe), ("user", user)):
            if value is not None:
                where.append(f"e.{column} = ?")
                args.append(value)
        if text:
            where.append("e.id IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?)")
            args.append(_fts_query(text))
        args.append(int(limit))
        with self._reader() as conn:
            if (since is not None or until is not None) and class_uid is None and exec_id is None and not text \
                    and (pid is not None or exe is not None or user is not None or kind is not None):
                bounds = _window_ids(conn, since, until)
                if bounds is not None:
                    if bounds[0] is None:
                        return []
                    where.append("e.id BETWEEN ? AND ?")
                    args[-1:-1] = bounds
            # Ids first, then the rows: when an index covers the filters (class + time window, time window) the
            # matches are sorted as bare ids and only the page's rows are read, not every match in the window.
            sql = ("SELECT e.id, e.time, e.class_uid, e.kind, e.pid, e.exec_id, e.exe, e.user, e.obj FROM events e"
                   " WHERE e.id IN (SELECT e.id FROM events e" + (" WHERE " + " AND ".join(where) if where else "")
                   + " ORDER BY e.id DESC LIMIT ?) ORDER BY e.id DESC")
            rows = conn.execute(sql, args).fetchall()
        return [StoredEvent(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], self._codec.decode(r[8])) for r in rows]

    def query_alerts(self, *, since: int | None = None, until: int | None = None, rule: str | None = None,
                     severity: int | None = None, min_severity: int | None = None, status: str | None = None,
                     pid: int | None = None, exec_id: str | None = None, exe: str | None = None,
                     user: str | None = None, text: str | None = None, limit: int = 100,
                     before_id: int | None = None) -> list[StoredAlert]:
        """Newest first; page with ``before_id``. ``severity`` is exact, ``min_severity`` a floor."""
        where, args = _time_filters("a", since, until, before_id)
        for column, value in (("rule", rule), ("severity_id", severity), ("status", status), ("pid", pid),
                              ("exec_id", exec_id), ("exe", exe), ("user", user)):
            if value is not None:
                where.append(f"a.{column} = ?")
                args.append(value)
        if min_severity is not None:
            where.append("a.severity_id >= ?")
            args.append(min_severity)
        if text:
            where.append("a.id IN (SELECT rowid FROM alerts_fts WHERE alerts_fts MATCH ?)")
            args.append(_fts_query(text))
        # ids first (no big object read for rows that only get sorted), then the page's rows
        sql = (f"SELECT {_ALERT_COLS} FROM alerts a WHERE a.id IN (SELECT a.id FROM alerts a"
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY a.id DESC LIMIT ?) ORDER BY a.id DESC")
        args.append(int(limit))
        with self._reader() as conn:
            rows = conn.execute(sql, args).fetchall()
        return [_alert_row(r) for r in rows]

    def get_alert(self, uid: str) -> StoredAlert | None:
        """One alert with its history of status changes (oldest first)."""
        with self._reader() as conn:
            row = conn.execute(f"SELECT {_ALERT_COLS} FROM alerts a WHERE a.uid = ?", (uid,)).fetchone()
            if row is None:
                return None
            changes = conn.execute("SELECT time, who, action, old_status, new_status, comment FROM alert_changes"
                                   " WHERE alert_uid = ? ORDER BY id", (uid,)).fetchall()
        return _alert_row(row, tuple(AlertChange(*c) for c in changes))

    def overview(self, *, since: int, until: int, buckets: int = 24, top: int = 10) -> dict[str, Any]:
        """Counts for the console's overview over ``[since, until)`` (epoch ms), from one snapshot.

        ``alerts_over_time`` has ``ceil((until - since) / bucket_ms)`` (at most ``buckets``) buckets of
        ``bucket_ms = ceil((until - since) / buckets)``, every one present (``by_severity`` empty when no
        alert). Severity keys are the ``severity_id`` as a string ("0" when missing). ``alerts_by_status``
        always has the three statuses. ``top_rules`` / ``top_processes`` (alerts by executable) and
        ``events_by_class`` are sorted by count, largest first. Event counts come from the per-minute table
        plus exact index counts for the partial minutes at both ends, so they stay fast on millions of events.
        """
        if since < 0 or until <= since:
            raise ValueError(f"bad overview window [{since}, {until})")
        if buckets < 1 or top < 0:
            raise ValueError(f"bad overview buckets={buckets} top={top}")
        bucket_ms = -(-(until - since) // buckets)
        n_buckets = -(-(until - since) // bucket_ms)
        window = (since, until)
        over: list[dict[str, Any]] = [{"start": since + i * bucket_ms, "by_severity": {}} for i in range(n_buckets)]
        by_severity: dict[str, int] = {}
        by_status = {STATUS_NEW: 0, STATUS_ACKNOWLEDGED: 0, STATUS_RESOLVED: 0}
        with self._reader() as conn:
            conn.execute("BEGIN")  # one read snapshot for every count
            try:
                # one pass over the window's alerts (the columns only, never the objects), counted here
                rules: Counter[str | None] = Counter()
                titles: dict[str | None, tuple[int, int, str | None]] = {}
                exes: Counter[str] = Counter()
                for aid, t, sev, status, rule, title, exe in conn.execute(
                        "SELECT id, time, coalesce(severity_id, 0), status, rule, title, exe FROM alerts"
                        " WHERE time >= ? AND time < ?", window):
                    key = str(sev)
                    cell = over[(t - since) // bucket_ms]["by_severity"]
                    cell[key] = cell.get(key, 0) + 1
                    by_severity[key] = by_severity.get(key, 0) + 1
                    by_status[status] = by_status.get(status, 0) + 1
                    rules[rule] += 1
                    if rule not in titles or (t, aid) > titles[rule][:2]:
                        titles[rule] = (t, aid, title)  # the title of the rule's newest alert
                    if exe is not None:
                        exes[exe] += 1
                events = _events_by_class(conn, since, until)
            finally:
                conn.execute("COMMIT")
        return {
            "since": since,
            "until": until,
            "bucket_ms": bucket_ms,
            "alerts_over_time": over,
            "alerts_by_severity": by_severity,
            "alerts_by_status": by_status,
            "top_rules": [{"rule": r, "title": titles[r][2], "count": n}
                          for r, n in sorted(rules.items(), key=lambda kv: (-kv[1], kv[0] or ""))[:top]],
            "top_processes": [{"exe": e, "count": n}
                              for e, n in sorted(exes.items(), key=lambda kv: (-kv[1], kv[0]))[:top]],
            "events_by_class": [{"class_uid": c, "count": n}
                                for c, n in sorted(events.items(), key=lambda kv: (-kv[1], kv[0])) if n],
        }

    def ack(self, uid: str, who: str, comment: str = "") -> StoredAlert:
        """Mark an alert acknowledged (OCSF status In Progress); committed durably before returning."""
        return self._set_status(uid, who, comment, "ack", STATUS_ACKNOWLEDGED)

    def resolve(self, uid: str, who: str, comment: str = "") -> StoredAlert:
        """Mark an alert resolved; committed durably before returning."""
        return self._set_status(uid, who, comment, "resolve", STATUS_RESOLVED)

    def comment(self, uid: str, who: str, comment: str) -> StoredAlert:
        """Add a comment to an alert's history (status unchanged); committed durably before returning.

        Raises ValueError for an empty comment and OutputError for an unknown alert.
        """
        if not comment.strip():
            raise ValueError("empty comment")
        return self._set_status(uid, who, comment, "comment", None)

    def _set_status(self, uid: str, who: str, comment: str, action: str, new: str | None) -> StoredAlert:
        """Record a change (new status, or None to keep it) in one durable transaction."""
        with self._reader() as conn:
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT status FROM alerts WHERE uid = ?", (uid,)).fetchone()
                if row is None:
                    raise OutputError(f"history store {self.path}: no alert {uid!r}")
                old = str(row[0])
                if new is None:
                    new = old
                else:
                    status_id, status_name = _OCSF_STATUS[new]
                    conn.execute("UPDATE alerts SET status = ?, obj = json_set(obj, '$.status_id', ?, '$.status',"
                                 " ?) WHERE uid = ?", (new, status_id, status_name, uid))
                conn.execute("INSERT INTO alert_changes (alert_uid, time, who, action, old_status, new_status,"
                             " comment) VALUES (?, ?, ?, ?, ?, ?, ?)", (uid, _now_ms(), who, action, old, new,
                                                                       comment))
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        alert = self.get_alert(uid)
        assert alert is not None
        return alert

    def integrity_check(self) -> str:
        with self._reader() as conn:
            return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


_ALERT_COLS = "a.id, a.uid, a.time, a.rule, a.title, a.severity_id, a.status, a.pid, a.exec_id, a.exe, a.user, a.obj"


def _alert_row(r: tuple[Any, ...], changes: tuple[AlertChange, ...] = ()) -> StoredAlert:
    return StoredAlert(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], orjson.loads(r[11]), changes)


def _time_filters(t: str, since: int | None, until: int | None, before_id: int | None) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    if since is not None:
        where.append(f"{t}.time >= ?")
        args.append(int(since))
    if until is not None:
        where.append(f"{t}.time < ?")
        args.append(int(until))
    if before_id is not None:
        where.append(f"{t}.id < ?")
        args.append(int(before_id))
    return where, args


def _alert_uid(obj: dict[str, Any]) -> str:
    uid = _as_str(_get(obj, "finding_info", "uid")) or _as_str(_get(obj, "metadata", "uid"))
    if not uid:
        raise ValueError("alert has no finding_info.uid")
    return uid


def _dumps(obj: dict[str, Any]) -> str:
    """Compact JSON text (orjson: several times faster than json.dumps on the writer's hot path)."""
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()


def _serialise(objs: list[dict[str, Any]]) -> tuple[list[tuple[dict[str, Any], str]], int]:
    """JSON text of each object; objects that cannot be serialised are counted, not written."""
    out: list[tuple[dict[str, Any], str]] = []
    bad = 0
    for obj in objs:
        try:
            out.append((obj, _dumps(obj)))
        except (TypeError, ValueError) as exc:  # orjson.JSONEncodeError is a TypeError
            bad += 1
            log.warning("history store: cannot store %s object: %s", obj.get("class_uid"), exc)
    return out, bad


def _drop_empty_counts(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM event_counts WHERE n <= 0")


WINDOW_IDS_MAX = 500_000  # events in a time window up to which its id range is looked up (see _window_ids)


def _window_ids(conn: sqlite3.Connection, since: int | None, until: int | None) -> tuple[int | None, int | None] | None:
    """The smallest and largest id of the events in [since, until), when the window holds few enough events.

    Added to a query that filters on pid / exe / user / kind and a time window, the bounds let the
    single-column index scan only the window's part of its rowid-ordered entries instead of every entry
    newer than the window. (None, None): the window is empty; None: too many events to be worth it.
    """
    lo = -(1 << 62) if since is None else since
    hi = (1 << 62) if until is None else until
    if lo >= hi:
        return None, None
    n = conn.execute("SELECT coalesce(sum(n), 0) FROM event_counts WHERE minute >= ? AND minute <= ?",
                     (_minute(lo), _minute(hi - 1))).fetchone()[0]
    if n > WINDOW_IDS_MAX:
        return None
    row = conn.execute("SELECT min(id), max(id) FROM events WHERE time >= ? AND time < ?", (lo, hi)).fetchone()
    return row[0], row[1]


def _events_by_class(conn: sqlite3.Connection, since: int, until: int) -> Counter[int]:
    """Events per class in [since, until): whole minutes from event_counts, the partial ends counted exactly."""
    counts: Counter[int] = Counter()
    first = -(-since // MINUTE_MS)  # first whole minute
    end = until // MINUTE_MS  # whole minutes are [first, end)
    if first < end:
        for class_uid, n in conn.execute("SELECT class_uid, sum(n) FROM event_counts WHERE minute >= ? AND minute < ?"
                                         " GROUP BY class_uid", (first, end)):
            counts[class_uid] += n
        edges = [(since, first * MINUTE_MS), (end * MINUTE_MS, until)]
    else:
        edges = [(since, until)]
    for lo, hi in edges:
        if lo >= hi:
            continue
        classes = [r[0] for r in conn.execute("SELECT DISTINCT class_uid FROM event_counts WHERE minute >= ?"
                                              " AND minute <= ? AND n > 0", (_minute(lo), _minute(hi - 1)))]
        for class_uid in classes:
            counts[class_uid] += conn.execute("SELECT count(*) FROM events WHERE class_uid = ? AND time >= ?"
                                              " AND time < ?", (class_uid, lo, hi)).fetchone()[0]
    return counts


def _minute(t: int) -> int:
    """``t / 60000`` as SQLite computes it (truncated toward zero), the key of ``event_counts``."""
    return t // MINUTE_MS if t >= 0 else -(-t // MINUTE_MS)


def _insert_event(conn: sqlite3.Connection, obj: dict[str, Any], text: str | bytes) -> tuple[int, int]:
    """Insert one event (and its full-text row); returns the stored (time, class_uid)."""
    proc = _get(obj, "actor", "process")
    t = _as_int(obj.get("time")) or 0
    class_uid = _as_int(obj.get("class_uid")) or 0
    cur = conn.execute(
        "INSERT INTO events (time, class_uid, kind, pid, exec_id, exe, user, obj) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (t, class_uid,
         _as_str(_get(obj, "unmapped", "event")) or _as_str(_get(obj, "metadata", "event_code")),
         _as_int(_get(proc, "pid")), _as_str(_get(proc, "uid")), _exe(proc), _user(obj),
         text))
    cmd, paths = _texts(obj)
    if cmd or paths:
        conn.execute("INSERT INTO events_fts (rowid, cmd_line, path) VALUES (?, ?, ?)", (cur.lastrowid, cmd, paths))
    return t, class_uid


def _insert_alert(conn: sqlite3.Connection, obj: dict[str, Any], text: str) -> None:
    """Insert, or update a re-emitted finding (same uid, e.g. folded count) keeping its status."""
    uid = _alert_uid(obj)
    proc = _get(obj, "actor", "process")
    title = _as_str(_get(obj, "finding_info", "title"))
    existing = conn.execute("SELECT id, status FROM alerts WHERE uid = ?", (uid,)).fetchone()
    if existing is None:
        status = _STATUS_OF_ID.get(_as_int(obj.get("status_id")) or 1, STATUS_NEW)
    else:
        status = existing[1]
        if status != STATUS_NEW:  # keep an analyst's ack/resolve over a re-emitted finding
            obj = {**obj, "status_id": _OCSF_STATUS[status][0], "status": _OCSF_STATUS[status][1]}
            text = _dumps(obj)
    values = (_as_int(obj.get("time")) or 0, _as_str(_get(obj, "finding_info", "analytic", "uid")), title,
              _as_int(obj.get("severity_id")), status, _as_int(_get(proc, "pid")), _as_str(_get(proc, "uid")),
              _exe(proc), _user(obj), text)
    if existing is None:
        rowid = conn.execute("INSERT INTO alerts (time, rule, title, severity_id, status, pid, exec_id, exe, user,"
                             " obj, uid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (*values, uid)).lastrowid
    else:
        rowid = existing[0]
        conn.execute("UPDATE alerts SET time = ?, rule = ?, title = ?, severity_id = ?, status = ?, pid = ?,"
                     " exec_id = ?, exe = ?, user = ?, obj = ? WHERE uid = ?", (*values, uid))
        conn.execute("DELETE FROM alerts_fts WHERE rowid = ?", (rowid,))
    cmd, paths = _texts(obj)
    conn.execute("INSERT INTO alerts_fts (rowid, title, cmd_line, path) VALUES (?, ?, ?, ?)",
                 (rowid, title or "", cmd, paths))

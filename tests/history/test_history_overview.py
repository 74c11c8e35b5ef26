"""HistoryStore additions: overview counts, comments, write-latency histogram, writer crash and restart."""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from history_objs import make_alert, make_event

from sentinel_edge.errors import OutputError
from sentinel_edge.history import LATENCY_BOUNDS, SCHEMA_VERSION, HistoryStore, WriteLatency
from sentinel_edge.history import store as store_mod

MIN = 60_000
# A minute boundary well in the past, so the windows below never depend on the clock.
BASE = (int(time.time() * 1000) // MIN - 1000) * MIN


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    s = HistoryStore(tmp_path / "h.db", retention_days=None, max_bytes=None)
    try:
        yield s
    finally:
        s.close()


def _brute_by_class(events: list[dict[str, Any]], since: int, until: int) -> list[dict[str, int]]:
    c = Counter(e["class_uid"] for e in events if since <= e["time"] < until)
    return [{"class_uid": k, "count": n} for k, n in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))]


def _counts_table(path: Path) -> tuple[dict[tuple[int, int], int], dict[tuple[int, int], int]]:
    """(event_counts rows with n > 0, the same counted from the events table)."""
    conn = sqlite3.connect(path)
    try:
        kept = {(m, c): n for m, c, n in conn.execute("SELECT minute, class_uid, n FROM event_counts") if n}
        real = {(m, c): n for m, c, n in conn.execute(
            f"SELECT time / {MIN}, class_uid, count(*) FROM events GROUP BY 1, 2")}
        assert conn.execute("SELECT count(*) FROM event_counts WHERE n <= 0").fetchone()[0] == 0
    finally:
        conn.close()
    return kept, real


def test_overview_every_field(store: HistoryStore) -> None:
    since = BASE + 12_345  # not on a minute: the partial first and last minutes are counted exactly
    until = since + 24 * 10 * MIN  # 24 buckets of 10 minutes
    events: list[dict[str, Any]] = []
    offsets = [-1, 0, 1, 30_000, MIN - 12_346, MIN - 12_345, 5 * MIN, 5 * MIN + 7, 100 * MIN, 239 * MIN,
               240 * MIN - 12_346, 240 * MIN - 1, 240 * MIN, 240 * MIN + 1, 300 * MIN]
    for i, off in enumerate(offsets):
        for j, cls in enumerate((1007, 1001, 4001)):
            if (i + j) % 4 == 3:
                continue
            events.append(make_event(i * 10 + j, time_ms=since + off, class_uid=cls))
    for e in events:
        assert store.add_event(e)
    alerts = [
        make_alert("a0", time_ms=since - 1, severity_id=5, rule="se.x", exe="/usr/bin/nc"),  # before the window
        make_alert("a1", time_ms=since, severity_id=3, rule="se.r1", title="Rule one old", exe="/usr/bin/curl"),
        make_alert("a2", time_ms=since + 10 * MIN - 1, severity_id=4, rule="se.r1", title="Rule one",
                   exe="/usr/bin/curl"),
        make_alert("a3", time_ms=since + 10 * MIN, severity_id=4, rule="se.r2", title="Rule two",
                   exe="/usr/bin/wget"),
        make_alert("a4", time_ms=since + 100 * MIN, severity_id=3, rule="se.r1", title="Rule one new",
                   exe="/usr/bin/curl"),
        make_alert("a5", time_ms=until - 1, severity_id=1, rule="se.r3", title="Rule three", exe="/bin/sh"),
        make_alert("a6", time_ms=until, severity_id=5, rule="se.x", exe="/usr/bin/nc"),  # until is exclusive
    ]
    no_sev = make_alert("a7", time_ms=since + 100 * MIN + 1, rule="se.r3", title="Rule three")
    del no_sev["severity_id"]
    del no_sev["actor"]  # no process: not in top_processes
    alerts.append(no_sev)
    for a in alerts:
        store.add_alert(a)
    assert store.flush()
    store.ack("a3", "bob")
    store.resolve("a5", "bob")

    ov = store.overview(since=since, until=until)
    assert list(ov) == ["since", "until", "bucket_ms", "alerts_over_time", "alerts_by_severity", "alerts_by_status",
                        "top_rules", "top_processes", "events_by_class"]
    assert (ov["since"], ov["until"], ov["bucket_ms"]) == (since, until, 10 * MIN)
    want_buckets: list[dict[str, Any]] = [{"start": since + i * 10 * MIN, "by_severity": {}} for i in range(24)]
    want_buckets[0]["by_severity"] = {"3": 1, "4": 1}
    want_buckets[1]["by_severity"] = {"4": 1}
    want_buckets[10]["by_severity"] = {"3": 1, "0": 1}
    want_buckets[23]["by_severity"] = {"1": 1}
    assert ov["alerts_over_time"] == want_buckets
    assert ov["alerts_by_severity"] == {"0": 1, "1": 1, "3": 2, "4": 2}
    assert ov["alerts_by_status"] == {"new": 4, "acknowledged": 1, "resolved": 1}
    assert ov["top_rules"] == [{"rule": "se.r1", "title": "Rule one new", "count": 3},
                               {"rule": "se.r3", "title": "Rule three", "count": 2},
                               {"rule": "se.r2", "title": "Rule two", "count": 1}]
    assert ov["top_processes"] == [{"exe": "/usr/bin/curl", "count": 3}, {"exe": "/bin/sh", "count": 1},
                                   {"exe": "/usr/bin/wget", "count": 1}]
    assert ov["events_by_class"] == _brute_by_class(events, since, until)
    assert sum(x["count"] for x in ov["events_by_class"]) == 24  # guards the brute force too

    top1 = store.overview(since=since, until=until, buckets=5, top=1)
    assert top1["bucket_ms"] == 48 * MIN
    assert [b["start"] for b in top1["alerts_over_time"]] == [since + i * 48 * MIN for i in range(5)]
    assert top1["top_rules"] == [{"rule": "se.r1", "title": "Rule one new", "count": 3}]
    assert top1["top_processes"] == [{"exe": "/usr/bin/curl", "count": 3}]
    # every window shape: inside one minute, across one boundary, aligned, empty
    for lo, hi in ((since, since + 1), (since - 1, since + 2), (since + 30_000, since + MIN), (BASE, BASE + MIN),
                   (BASE + MIN, BASE + 2 * MIN), (since + MIN - 12_346, since + 240 * MIN), (0, 1),
                   (since + 5 * MIN, since + 5 * MIN + 8), (BASE, BASE + 400 * MIN)):
        got = store.overview(since=lo, until=hi, buckets=7)
        assert got["events_by_class"] == _brute_by_class(events, lo, hi), (lo, hi)
        assert len(got["alerts_over_time"]) == -(-(hi - lo) // got["bucket_ms"]) <= 7
    tiny = store.overview(since=since, until=since + 10, buckets=24)
    assert tiny["bucket_ms"] == 1
    assert [b["start"] for b in tiny["alerts_over_time"]] == list(range(since, since + 10))
    assert tiny["alerts_over_time"][0]["by_severity"] == {"3": 1}
    for bad in ({"since": 5, "until": 5}, {"since": -1, "until": 5}, {"since": 0, "until": 5, "buckets": 0}):
        with pytest.raises(ValueError, match="bad overview"):
            store.overview(**bad)
    kept, real = _counts_table(Path(store.path))
    assert kept == real


def test_event_counts_follow_retention_by_age_and_size(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    day = 86_400_000
    now = int(time.time() * 1000)
    events = [make_event(i, time_ms=now - (i % 5) * day + i, class_uid=(1007, 1001, 4001)[i % 3],
                         cmd_line="x" * 300) for i in range(3000)]
    with HistoryStore(path, retention_days=None, max_bytes=None) as s:
        for e in events:
            assert s.add_event(e)
        assert s.flush()
        assert s.overview(since=now - 6 * day, until=now + day)["events_by_class"] == \
            _brute_by_class(events, now - 6 * day, now + day)
    kept, real = _counts_table(path)
    assert kept == real
    with HistoryStore(path, retention_days=2.5, max_bytes=None, retention_interval=3600) as s:
        assert s.flush()
        left = [e for e in events if e["time"] >= now - int(2.5 * day)]
        assert s.stats()["retention_deleted"] == 3000 - len(left) > 0
        assert s.overview(since=now - 6 * day, until=now + day)["events_by_class"] == \
            _brute_by_class(left, now - 6 * day, now + day)
    kept, real = _counts_table(path)
    assert kept == real
    with HistoryStore(path, retention_days=None, max_bytes=1_000_000, retention_interval=3600) as s:
        assert s.flush()
        n = len(s.query_events(limit=5000))
        assert 0 < n < len(left)
        total = sum(x["count"] for x in s.overview(since=0, until=now + day)["events_by_class"])
        assert total == n
    kept, real = _counts_table(path)
    assert kept == real


def test_migration_from_version_1_fills_the_counts(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    conn.execute("PRAGMA journal_mode=WAL")
    for stmt in store_mod._MIGRATIONS[0]:
        conn.execute(stmt)
    conn.execute("PRAGMA user_version=1")
    rows = [(BASE + 5, 1007), (BASE + 6, 1007), (BASE + MIN + 1, 1001), (BASE + 3 * MIN, 4001)]
    for t, c in rows:
        conn.execute("INSERT INTO events (time, class_uid, obj) VALUES (?, ?, ?)",
                     (t, c, json.dumps(make_event(t, time_ms=t, class_uid=c))))
    conn.close()
    with HistoryStore(path, retention_days=None, max_bytes=None) as s:
        assert s.schema_version == SCHEMA_VERSION == 3
        # rows written as JSON text by schema 1 read back as they were, beside compressed ones
        assert [e.obj for e in s.query_events(class_uid=4001)] == [
            make_event(BASE + 3 * MIN, time_ms=BASE + 3 * MIN, class_uid=4001)]
        ov = s.overview(since=BASE, until=BASE + 4 * MIN)
        assert ov["events_by_class"] == [{"class_uid": 1007, "count": 2}, {"class_uid": 1001, "count": 1},
                                         {"class_uid": 4001, "count": 1}]
        s.add_event(make_event(9, time_ms=BASE + 7, class_uid=1001))
        assert s.flush()
        assert s.overview(since=BASE, until=BASE + MIN)["events_by_class"] == [
            {"class_uid": 1007, "count": 2}, {"class_uid": 1001, "count": 1}]
    kept, real = _counts_table(path)
    assert kept == real == {(BASE // MIN, 1007): 2, (BASE // MIN, 1001): 1, (BASE // MIN + 1, 1001): 1,
                            (BASE // MIN + 3, 4001): 1}


def test_comment_keeps_status_and_is_durable(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    with HistoryStore(path, retention_days=None, max_bytes=None) as s:
        s.add_alert(make_alert("c-1", time_ms=BASE))
        s.add_alert(make_alert("c-2", time_ms=BASE + 1))
        assert s.flush()
        t0 = int(time.time() * 1000)
        got = s.comment("c-1", "alice", "looking <b>into</b> it")
        assert got.status == "new"
        assert got.obj["status_id"] == 1
        assert [(c.who, c.action, c.old_status, c.new_status, c.comment) for c in got.changes] == [
            ("alice", "comment", "new", "new", "looking <b>into</b> it")]
        assert t0 <= got.changes[0].time <= int(time.time() * 1000)
        s.ack("c-1", "bob", "mine")
        got = s.comment("c-1", "carol", "still bad")
        assert got.status == "acknowledged"
        assert got.obj["status_id"] == 2
        assert got.obj["status"] == "In Progress"
        with pytest.raises(ValueError, match="empty comment"):
            s.comment("c-1", "alice", "  ")
        with pytest.raises(OutputError, match="no alert 'nope'"):
            s.comment("nope", "alice", "x")
        assert s.get_alert("c-2") is not None and s.get_alert("c-2").changes == ()  # type: ignore[union-attr]
    with HistoryStore(path, retention_days=None, max_bytes=None) as s:  # reopened: the history is on disk
        got2 = s.get_alert("c-1")
        assert got2 is not None
        assert [(c.who, c.action, c.old_status, c.new_status, c.comment) for c in got2.changes] == [
            ("alice", "comment", "new", "new", "looking <b>into</b> it"),
            ("bob", "ack", "new", "acknowledged", "mine"),
            ("carol", "comment", "acknowledged", "acknowledged", "still bad")]
        assert [a.uid for a in s.query_alerts(status="acknowledged")] == ["c-1"]


def test_histogram_buckets_are_cumulative_with_le_bounds() -> None:
    h = store_mod._Histogram()
    for v in (0.0005, 0.001, 0.0011, 0.003, 0.3, 5.0, 7.5):
        h.observe(v)
    snap = h.snapshot()
    assert snap == WriteLatency(LATENCY_BOUNDS, (2, 3, 4, 4, 4, 4, 4, 4, 5, 5, 5, 6), pytest.approx(12.8056), 7)
    assert LATENCY_BOUNDS == (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def test_write_latency_counts_every_committed_transaction(store: HistoryStore) -> None:
    empty = store.write_latency()
    assert set(empty) == {"events", "alerts"}
    for h in empty.values():
        assert h == WriteLatency(LATENCY_BOUNDS, (0,) * 12, 0.0, 0)
    for i in range(5):  # one event per flush: one transaction each
        assert store.add_event(make_event(i, time_ms=BASE + i))
        assert store.flush()
    for i in range(3):
        store.add_alert(make_alert(f"l-{i}", time_ms=BASE + i))
        assert store.flush()
    lat = store.write_latency()
    ev, al = lat["events"], lat["alerts"]
    assert (ev.count, al.count) == (5, 3)
    for h in (ev, al):
        assert h.bounds == LATENCY_BOUNDS
        assert list(h.counts) == sorted(h.counts)  # cumulative
        assert h.counts[-1] == h.count  # nothing took more than 5 s
        assert 0 < h.sum_s < 5 * h.count
    st = store.stats()
    assert (st["written_events"], st["written_alerts"]) == (5, 3)
    assert st["last_write_latency_ms"] > 0


def _wait_dead(s: HistoryStore) -> None:
    deadline = time.monotonic() + 10
    while s.writer_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not s.writer_alive()


def test_writer_crash_is_visible_and_restart_loses_nothing(store: HistoryStore,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    metric_keys = {"written_events", "written_alerts", "dropped_full_queue", "dropped_disk", "dropped_alerts",
                   "dropped_invalid", "pending_alerts", "queue_depth", "db_bytes", "healthy", "health",
                   "writer_alive", "last_writer_error"}
    assert metric_keys <= set(store.stats())
    for i in range(10):
        store.add_event(make_event(i, time_ms=BASE + i))
    store.add_alert(make_alert("pre", time_ms=BASE))
    assert store.flush()
    real = store._write_events
    calls: list[int] = []

    def crash_once(events: list[dict[str, Any]]) -> None:
        calls.append(len(events))
        if len(calls) == 1:
            raise RuntimeError("boom")
        real(events)

    monkeypatch.setattr(store, "_write_events", crash_once)
    for i in range(10, 60):
        assert store.add_event(make_event(i, time_ms=BASE + i))
    store.add_alert(make_alert("mid", time_ms=BASE + 1))
    t0 = time.monotonic()
    assert store.flush(timeout=20) is False  # the writer died on this round
    assert time.monotonic() - t0 < 5
    _wait_dead(store)
    assert store.last_writer_error == "RuntimeError: boom"
    st = store.stats()
    assert st["writer_alive"] is False
    assert st["healthy"] is False
    assert st["health"] == f"history store {store.path}: writer stopped: RuntimeError: boom"
    assert st["last_writer_error"] == "RuntimeError: boom"
    for i in range(60, 80):  # queued while dead
        assert store.add_event(make_event(i, time_ms=BASE + i))
    store.add_alert(make_alert("late", time_ms=BASE + 2))
    assert store.flush(timeout=1) is False
    store.restart_writer()
    assert store.writer_alive()
    assert store.flush()
    st = store.stats()
    assert st["healthy"] is True and st["health"] is None
    assert st["written_events"] == 80
    assert st["written_alerts"] == 3
    assert st["dropped_invalid"] == 0
    assert [int(e.obj["unmapped"]["seq"]) for e in store.query_events(limit=200)] == list(range(79, -1, -1))
    assert sorted(a.uid for a in store.query_alerts()) == ["late", "mid", "pre"]
    assert store.integrity_check() == "ok"
    thread = store._thread
    store.restart_writer()  # alive: nothing happens
    assert store._thread is thread
    store.close()
    with pytest.raises(OutputError, match="closed"):
        store.restart_writer()


def test_an_object_that_crashes_the_writer_twice_is_dropped_alone(store: HistoryStore,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    real = store._write_events

    def poisoned(events: list[dict[str, Any]]) -> None:
        if any(e["unmapped"].get("poison") for e in events):
            raise KeyError("poison")
        real(events)

    monkeypatch.setattr(store, "_write_events", poisoned)
    bad = make_event(5, time_ms=BASE + 5)
    bad["unmapped"]["poison"] = True
    for i in range(10):
        assert store.add_event(bad if i == 5 else make_event(i, time_ms=BASE + i))
    assert store.flush(timeout=20) is False
    _wait_dead(store)
    assert store.last_writer_error == "KeyError: 'poison'"
    store.restart_writer()  # writes the carried batch one event at a time: only the poison goes
    assert store.flush()
    assert store.writer_alive()
    st = store.stats()
    assert (st["written_events"], st["dropped_invalid"]) == (9, 1)
    assert [int(e.obj["unmapped"]["seq"]) for e in store.query_events()] == [9, 8, 7, 6, 4, 3, 2, 1, 0]
    store.add_event(make_event(10, time_ms=BASE + 10))
    assert store.flush()
    assert store.stats()["written_events"] == 10


def test_close_drains_what_a_dead_writer_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "h.db"
    s = HistoryStore(path, retention_days=None, max_bytes=None)
    real = s._write_alerts
    calls: list[int] = []

    def crash_once(alerts: list[dict[str, Any]]) -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise OSError(5, "injected")  # an OSError outside sqlite: unexpected here
        return real(alerts)

    monkeypatch.setattr(s, "_write_alerts", crash_once)
    s.add_alert(make_alert("x-1", time_ms=BASE))
    _wait_dead(s)
    assert s.last_writer_error == "OSError: [Errno 5] injected"
    s.close()
    with HistoryStore(path, retention_days=None, max_bytes=None) as s2:
        assert [a.uid for a in s2.query_alerts()] == ["x-1"]


@pytest.mark.parametrize("window_max", [store_mod.WINDOW_IDS_MAX, 0])
def test_filtered_time_window_queries_match_brute_force(store: HistoryStore, monkeypatch: pytest.MonkeyPatch,
                                                        window_max: int) -> None:
    monkeypatch.setattr(store_mod, "WINDOW_IDS_MAX", window_max)  # 0: the id bounds are never used
    events = []
    for i in range(600):
        # times not in id order everywhere: a late event every 7th (as from another CPU)
        t = BASE + i * 1000 - (30_000 if i % 7 == 0 else 0)
        events.append(make_event(i, time_ms=t, class_uid=(1007, 1001)[i % 2], kind=("exec", "open")[i % 2],
                                 pid=100 + i % 5, exe=f"/usr/bin/p{i % 3}", user=("alice", "bob")[i % 2]))
    for e in events:
        store.add_event(e)
    assert store.flush()
    seq_of = {id(e): i for i, e in enumerate(events)}
    for lo, hi in ((BASE + 100_000, BASE + 160_000), (BASE - 60_000, BASE + 5_000), (BASE + 599_000, None),
                   (None, BASE + 20_000), (BASE + 10_000_000, BASE + 20_000_000), (BASE + 50_500, BASE + 50_600)):
        for filt in ({"user": "bob"}, {"pid": 102}, {"exe": "/usr/bin/p1"}, {"kind": "open"},
                     {"user": "alice", "exe": "/usr/bin/p2"}):
            want = [seq_of[id(e)] for e in reversed(events)
                    if (lo is None or e["time"] >= lo) and (hi is None or e["time"] < hi)
                    and all((e["actor"]["process"]["pid"] if k == "pid" else e["actor"]["process"]["path"]
                             if k == "exe" else e["unmapped"]["event"] if k == "kind"
                             else e["actor"]["user"]["name"]) == v for k, v in filt.items())]
            got = [int(r.obj["unmapped"]["seq"]) for r in store.query_events(since=lo, until=hi, limit=1000,
                                                                             **filt)]  # type: ignore[arg-type]
            assert got == want, (lo, hi, filt)
            page = store.query_events(since=lo, until=hi, limit=3, **filt)  # type: ignore[arg-type]
            assert [int(r.obj["unmapped"]["seq"]) for r in page] == want[:3]

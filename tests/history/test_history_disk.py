"""HistoryStore against a real small ext4 file system (an image the test makes and loop-mounts), and kill -9.

Each file system is a file of a few tens of MB, formatted with mkfs.ext4, attached with losetup and
mounted; it is unmounted, detached and removed afterwards. Mounting needs root; the tests skip otherwise.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from history_objs import make_alert, make_event

from sentinel_edge.history import HistoryStore
from sentinel_edge.history.store import WAL_SIZE_LIMIT

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mkfs.ext4") is None
                                or shutil.which("losetup") is None,
                                reason="loop-mounts an ext4 image: needs root, mkfs.ext4 and losetup")

HERE = Path(__file__).resolve().parent
NOW = int(time.time() * 1000)


@pytest.fixture
def small_fs(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh ext4 file system of the given size (default 32 MiB, no reserved blocks), mounted."""
    size = getattr(request, "param", "32M")
    image = tmp_path / "fs.img"
    mnt = tmp_path / "fs"
    mnt.mkdir()
    subprocess.run(["truncate", "-s", size, str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-m", "0", "-F", str(image)], check=True)
    dev = subprocess.run(["losetup", "--find", "--show", str(image)], check=True, capture_output=True,
                         text=True).stdout.strip()
    mounted = False
    try:
        subprocess.run(["mount", "-t", "ext4", dev, str(mnt)], check=True)
        mounted = True
        yield mnt
    finally:
        if mounted:
            subprocess.run(["umount", str(mnt)], check=False)
        subprocess.run(["losetup", "-d", dev], check=False)
        image.unlink(missing_ok=True)


def _fill(path: Path) -> int:
    """Write until the file system is full; returns bytes written."""
    chunk = b"\0" * 65536
    written = 0
    with open(path, "wb", buffering=0) as f:
        for _ in range(100_000):
            try:
                written += f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
        else:
            pytest.fail("file system never filled")
        # the last partial chunk
        for _ in range(100_000):
            try:
                written += f.write(b"\0" * 512)
            except OSError:
                break
    return written


def test_disk_full_drops_events_keeps_alerts_and_recovers(small_fs: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    db = small_fs / "h.db"
    caplog.set_level(logging.WARNING, logger="sentinel_edge.history.store")
    with HistoryStore(db, retention_days=None, max_bytes=None, retry_interval=0.1) as s:
        s.add_event(make_event(0, time_ms=NOW))
        s.add_alert(make_alert("before", time_ms=NOW))
        assert s.flush()
        filler = small_fs / "filler"
        _fill(filler)
        assert shutil.disk_usage(small_fs).free < 64 * 1024
        for i in range(1, 301):
            s.add_event(make_event(i, time_ms=NOW + i, cmd_line="x" * 4096))
        assert s.flush()  # no alert waiting: the flush itself succeeds, the events are counted
        st = s.stats()
        assert st["dropped_disk"] == 300
        assert st["written_events"] == 1
        assert st["healthy"] is False
        assert st["health"].startswith(f"history store {db}: disk full writing ")
        assert "database or disk is full" in st["health"]
        assert st["writer_alive"] is True
        assert s.write_latency()["events"].count == 1  # failed transactions are not commits
        big = make_alert("during", time_ms=NOW + 1, cmd_line="y" * 300_000)  # cannot fit in the old WAL
        s.add_alert(big)
        assert s.flush(timeout=2) is False  # kept in memory, not written
        time.sleep(0.5)  # a few retries (every 0.1 s) while the disk is still full
        st = s.stats()
        assert st["pending_alerts"] == 1
        assert st["written_alerts"] == 1
        assert st["dropped_alerts"] == 0
        assert st["healthy"] is False
        assert s.get_alert("during") is None
        assert s.query_events(text="xxxx") == []
        warnings = [r.getMessage() for r in caplog.records if "disk full" in r.getMessage()]
        assert 1 <= len(warnings) <= 3  # one clear warning per distinct failure, not one per retry
        assert all(w.startswith(f"history store {db}: disk full writing ") for w in warnings)

        filler.unlink()  # space comes back: the retry writes the alert
        os.sync()
        assert s.flush(timeout=15)
        st = s.stats()
        assert st["pending_alerts"] == 0
        assert st["written_alerts"] == 2
        assert st["healthy"] is True
        assert st["health"] is None
        got = s.get_alert("during")
        assert got is not None
        assert got.obj == big
        s.add_event(make_event(999, time_ms=NOW + 999))
        assert s.flush()
        assert [e.obj["unmapped"]["seq"] for e in s.query_events()] == [999, 0]
        assert s.stats()["dropped_disk"] == 300
        assert s.write_latency()["alerts"].count == 2
        assert s.integrity_check() == "ok"
        assert any(r.getMessage() == f"history store {db}: writing again" for r in caplog.records)


def test_size_retention_keeps_the_file_bounded_while_a_stream_flows(small_fs: Path) -> None:
    db = small_fs / "h.db"
    max_bytes = 3 * 1024 * 1024
    total = 0
    peak = 0
    fs_size = shutil.disk_usage(small_fs).total
    with HistoryStore(db, retention_days=None, max_bytes=max_bytes, retention_interval=0.05, batch_size=256) as s:
        s.add_alert(make_alert("old-alert", time_ms=NOW - 1))
        n = 0
        for _ in range(40):  # 40 x 500 x ~2.5 KB = ~50 MB through a ~26 MB file system
            for _ in range(500):
                assert s.add_event(make_event(n, time_ms=NOW + n, cmd_line=f"{n} " + "z" * 2000))
                n += 1
            assert s.flush()
            total += 500
            peak = max(peak, s.db_bytes())
        assert total * 2000 > 1.5 * fs_size  # the stream is far bigger than the file system
        assert s.run_retention() >= 0
        st = s.stats()
        assert st["dropped_disk"] == 0
        assert st["dropped_full_queue"] == 0
        assert st["written_events"] == total == n
        assert st["healthy"] is True
        assert st["retention_deleted"] > total // 2
        # between two retention runs the file grows by at most a few batches over the limit
        assert peak <= max_bytes + WAL_SIZE_LIMIT + 4 * 1024 * 1024
        assert st["db_bytes"] <= max_bytes + WAL_SIZE_LIMIT + 65536  # pages in use + WAL limit
        kept = [e.obj["unmapped"]["seq"] for e in s.query_events(limit=total)]
        assert kept == list(range(n - 1, n - 1 - len(kept), -1))  # newest survive, oldest went first
        assert total - st["retention_deleted"] == len(kept)
        assert [e.obj["unmapped"]["seq"] for e in s.query_events(text=f"{n - 1}")] == [n - 1]
        assert s.query_events(text="0 zzzz") == []
        ov = s.overview(since=NOW, until=NOW + n)
        assert ov["events_by_class"] == [{"class_uid": 1007, "count": len(kept)}]
        assert [a.uid for a in s.query_alerts()] == ["old-alert"]  # alerts go only when no event is left
        assert s.integrity_check() == "ok"


_CHILD = textwrap.dedent("""
    import sys, threading, time
    sys.path.insert(0, {here!r})
    from history_objs import make_alert, make_event
    from sentinel_edge.history import HistoryStore

    out = threading.Lock()
    fresh = []

    def say(line):
        with out:
            sys.stdout.write(line + "\\n")
            sys.stdout.flush()

    def committed(uids):
        fresh.extend(uids)
        say("C " + " ".join(uids))

    s = HistoryStore({db!r}, retention_days=None, max_bytes=None, on_alerts_committed=committed)
    now = int(time.time() * 1000)
    deadline = time.monotonic() + 30
    i = 0
    while time.monotonic() < deadline:
        for k in range(300):
            s.add_event(make_event(i * 1000 + k, time_ms=now + i, cmd_line="burst " + "b" * 500))
        s.add_alert(make_alert(f"k-{{i}}", time_ms=now + i))
        while fresh:
            uid = fresh.pop(0)
            if int(uid[2:]) % 3 == 0:
                s.ack(uid, "child", "seen before the kill")
                say("A " + uid)
        i += 1
        time.sleep(0.002)
""")


@pytest.mark.parametrize("small_fs", ["64M"], indirect=True)
def test_kill_9_mid_burst_keeps_every_committed_alert(small_fs: Path) -> None:
    db = small_fs / "h.db"
    proc = subprocess.Popen([sys.executable, "-c", _CHILD.format(here=str(HERE), db=str(db))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    committed: list[str] = []
    acked: list[str] = []

    def take(line: str) -> None:
        kind, *uids = line.split()
        assert kind in ("C", "A"), line
        (committed if kind == "C" else acked).extend(uids)

    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 20
        while (len(committed) < 40 or len(acked) < 5) and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            take(line)
        assert len(committed) >= 40 and len(acked) >= 5, proc.stderr.read() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)  # mid burst: events and alerts still streaming in
        proc.wait(timeout=10)
        for line in proc.stdout.read().splitlines():  # reported before the kill, still in the pipe
            take(line)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("INSERT INTO events_fts(events_fts, rank) VALUES('integrity-check', 1)") is not None
        stored = {r[0] for r in conn.execute("SELECT uid FROM alerts")}
        n_events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        counted = conn.execute("SELECT sum(n) FROM event_counts").fetchone()[0]
    finally:
        conn.close()
    missing = [u for u in committed if u not in stored]
    assert missing == []
    assert n_events > 0
    assert counted == n_events  # the per-minute counts commit with their events
    with HistoryStore(db, retention_days=None, max_bytes=None) as s:  # reopens and writes again
        assert s.integrity_check() == "ok"
        for uid in committed:
            got = s.get_alert(uid)
            assert got is not None
            assert got.rule == "se.test.rule"
            if uid in acked:
                assert got.status == "acknowledged"
                assert [(c.who, c.action, c.comment) for c in got.changes] == [("child", "ack",
                                                                                 "seen before the kill")]
            else:
                assert got.status in ("new", "acknowledged")  # an ack may have committed unreported
        s.add_alert(make_alert("after", time_ms=NOW))
        assert s.flush()
        assert s.get_alert("after") is not None
        for e in s.query_events(limit=50):
            assert e.obj["actor"]["process"]["cmd_line"] == "burst " + "b" * 500

"""HistoryStore against a real small file system (tmpfs mounted by the test) and a real kill -9.

Mounting needs root; the tests skip otherwise.
"""

from __future__ import annotations

import errno
import os
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

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs: needs root")

HERE = Path(__file__).resolve().parent
NOW = int(time.time() * 1000)


@pytest.fixture
def small_fs(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    size = getattr(request, "param", "4m")
    mnt = tmp_path / "fs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


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


def test_disk_full_drops_events_keeps_alerts_and_recovers(small_fs: Path) -> None:
    db = small_fs / "h.db"
    with HistoryStore(db, retention_days=None, max_bytes=None, retry_interval=0.1) as s:
        s.add_event(make_event(0, time_ms=NOW))
        s.add_alert(make_alert("before", time_ms=NOW))
        assert s.flush()
        filler = small_fs / "filler"
        _fill(filler)
        for i in range(1, 301):
            s.add_event(make_event(i, time_ms=NOW + i, cmd_line="x" * 4096))
        assert s.flush()  # no alert waiting: the flush itself succeeds, the events are counted
        st = s.stats()
        assert st["dropped_disk"] == 300
        assert st["written_events"] == 1
        assert st["healthy"] is False
        assert st["health"].startswith(f"history store {db}: disk full writing ")
        assert "database or disk is full" in st["health"]
        big = make_alert("during", time_ms=NOW + 1, cmd_line="y" * 300_000)  # cannot fit in the old WAL
        s.add_alert(big)
        assert s.flush(timeout=2) is False  # kept in memory, not written
        st = s.stats()
        assert st["pending_alerts"] == 1
        assert st["written_alerts"] == 1
        assert st["healthy"] is False
        assert s.get_alert("during") is None
        assert s.query_events(text="xxxx") == []

        filler.unlink()  # space comes back: the retry writes the alert
        assert s.flush(timeout=10)
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
        assert s.integrity_check() == "ok"


@pytest.mark.parametrize("small_fs", ["24m"], indirect=True)
def test_size_retention_keeps_writing_on_a_small_file_system(small_fs: Path) -> None:
    db = small_fs / "h.db"
    max_bytes = 3 * 1024 * 1024
    total = 0
    with HistoryStore(db, retention_days=None, max_bytes=max_bytes, retention_interval=0.05, batch_size=256) as s:
        s.add_alert(make_alert("old-alert", time_ms=NOW - 1))
        n = 0
        for _ in range(30):  # 30 x 500 x ~2.5 KB = ~37 MB through a 24 MB file system
            for _ in range(500):
                s.add_event(make_event(n, time_ms=NOW + n, cmd_line=f"{n} " + "z" * 2000))
                n += 1
            assert s.flush()
            total += 500
        assert s.run_retention() >= 0
        st = s.stats()
        assert st["dropped_disk"] == 0
        assert st["dropped_full_queue"] == 0
        assert st["written_events"] == total == n
        assert st["healthy"] is True
        assert st["retention_deleted"] > total // 2
        assert st["db_bytes"] <= max_bytes + 4 * 1024 * 1024 + 65536  # pages in use + WAL limit
        kept = [e.obj["unmapped"]["seq"] for e in s.query_events(limit=total)]
        assert kept == list(range(n - 1, n - 1 - len(kept), -1))  # newest survive, oldest went first
        assert total - st["retention_deleted"] == len(kept)
        assert [e.obj["unmapped"]["seq"] for e in s.query_events(text=f"{n - 1}")] == [n - 1]
        assert s.query_events(text="0 zzzz") == []
        assert s.integrity_check() == "ok"


_CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {here!r})
    from history_objs import make_alert, make_event
    from sentinel_edge.history import HistoryStore

    def committed(uids):
        sys.stdout.write("C " + " ".join(uids) + "\\n")
        sys.stdout.flush()

    s = HistoryStore({db!r}, retention_days=None, max_bytes=None, on_alerts_committed=committed)
    now = int(time.time() * 1000)
    deadline = time.monotonic() + 30
    i = 0
    while time.monotonic() < deadline:
        for k in range(300):
            s.add_event(make_event(i * 1000 + k, time_ms=now + i, cmd_line="burst " + "b" * 500))
        s.add_alert(make_alert(f"k-{{i}}", time_ms=now + i))
        i += 1
        time.sleep(0.002)
""")


def test_kill_9_mid_burst_keeps_every_committed_alert(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    proc = subprocess.Popen([sys.executable, "-c", _CHILD.format(here=str(HERE), db=str(db))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    committed: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 20
        while len(committed) < 40 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            assert line.startswith("C ")
            committed += line.split()[1:]
        assert len(committed) >= 40, proc.stderr.read() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)  # mid burst: events and alerts still streaming in
        proc.wait(timeout=10)
        rest = proc.stdout.read()  # reported before the kill, still in the pipe
        for line in rest.splitlines():
            committed += line.split()[1:]
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
    finally:
        conn.close()
    missing = [u for u in committed if u not in stored]
    assert missing == []
    assert n_events > 0
    with HistoryStore(db, retention_days=None, max_bytes=None) as s:  # reopens and writes again
        assert s.integrity_check() == "ok"
        for uid in committed[:5]:
            got = s.get_alert(uid)
            assert got is not None
            assert got.rule == "se.test.rule"
            assert got.status == "new"
        s.add_alert(make_alert("after", time_ms=NOW))
        assert s.flush()
        assert s.get_alert("after") is not None
        for e in s.query_events(limit=50):
            assert e.obj["actor"]["process"]["cmd_line"] == "burst " + "b" * 500

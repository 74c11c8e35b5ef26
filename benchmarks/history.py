"""History store: sustained insert rate (indexes + full-text) and console query latency at scale.

    nice -n 10 .venv/bin/python benchmarks/history.py [--events 10000000] [--db PATH] [--baseline 200000]

Objects are the agent's own OCSF shapes: templates made by the real mappers (``to_ocsf`` for exec,
file open and network connect events of enriched processes, ``to_finding`` for alerts), then varied per
event (time, pid, exec id, executable, user, command line, file path, destination) with cheap shallow
copies. They are built in this process and fed through ``HistoryStore.add_event`` (the producer waits
when the queue is half full, so nothing is dropped); the rate is committed rows per second, FTS included.

Baselines measured in the same run, over the same generated objects (``--baseline`` of them), written
directly in 2048-row transactions (no queue, no writer thread):
  plain     one table (id, JSON text), no index
  indexed   the store's events table and its six indexes, no full-text
  full      the store's schema and insert code (indexes, full-text, per-minute counts)
plus the object generation alone. Query latencies are measured as the database grows (100k, 1M, the
end), with alerts added along (one per 2000 events). Everything made is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from sentinel_edge.alerts.ocsf import to_finding
from sentinel_edge.history import HistoryStore
from sentinel_edge.history import store as store_mod
from sentinel_edge.model import KIND_FILE, KIND_NET, Event, ProcessInfo
from sentinel_edge.output.ocsf import to_ocsf
from sentinel_edge.output.ocsf.common import HostInfo
from sentinel_edge.rules.model import Alert, Attack, RuleMeta

MS = 1_000_000
BOOT = 1_700_000_000_000_000_000
HOST = HostInfo(hostname="edge-01", boot_id="6f1c2d7e-3a4b-4c5d-8e9f-0a1b2c3d4e5f", boot_time_ns=BOOT,
                machine_id="0123456789abcdef0123456789abcdef", kernel_release="6.18.0-1-amd64")
DAY_MS = 86_400_000
USERS = ["root", "alice", "bob", "www-data", "postgres", "deploy", "nobody", "carol", "dave", "backup"]
WORDS = [f"{a}{b}" for a in ("alpha", "bravo", "delta", "kilo", "lima", "oscar", "sierra", "tango", "zulu",
                               "echo") for b in range(500)]  # 5000 words: each in ~1/2500 command lines
REAL_EXES = ["/usr/bin/python3", "/usr/bin/curl", "/usr/bin/bash", "/usr/sbin/nginx", "/usr/bin/git",
             "/usr/lib/postgresql/15/bin/postgres", "/usr/bin/ssh", "/usr/bin/cat", "/usr/bin/grep",
             "/usr/bin/find", "/usr/bin/tar", "/usr/bin/rsync", "/usr/bin/systemctl", "/usr/bin/sudo",
             "/usr/bin/node", "/usr/bin/java", "/usr/bin/wget", "/usr/bin/sh", "/usr/bin/ls", "/usr/bin/cp"]
EXES = REAL_EXES + [f"/opt/app{k}/bin/worker{k}" for k in range(180)]
DIRS = ["/etc", "/var/log", "/tmp", "/home/alice", "/var/lib/postgresql/15/main", "/usr/lib/python3/dist-packages",
        "/proc/self", "/srv/www/static", "/root/.ssh", "/var/cache/apt/archives"]


def _proc(pid: int, comm: bytes) -> dict[str, Any]:
    return {"pid": pid, "tid": pid, "ppid": 200, "ns_pid": pid, "uid": 1000, "euid": 1000, "gid": 100, "egid": 100,
            "loginuid": 1000, "sessionid": 4, "mnt_ns": 4026531841, "pid_ns": 4026531836, "net_ns": 4026531840,
            "_pad0": 0, "cgroup_id": 99, "start_ns": 3_000 * MS, "parent_start_ns": 2_000 * MS, "comm": comm}


def _info(pid: int, start_ms: int, exe: str, argv: list[str], **kw: Any) -> ProcessInfo:
    return ProcessInfo(pid=pid, start_ns=start_ms * MS, exec_id=f"{HOST.boot_id}:{pid}:{start_ms}",
                       parent_exec_id=None, ppid=kw.pop("ppid", 1), comm=exe.rsplit("/", 1)[-1][:15], exe=exe,
                       cmdline=argv, **kw)


SSHD = _info(100, 1_000, "/usr/sbin/sshd", ["sshd: alice [priv]"], uid=0, user="root")
BASH = _info(200, 2_000, "/usr/bin/bash", ["-bash"], ppid=100, uid=1000, gid=100, user="alice", group="users",
             cwd="/home/alice")
ME = _info(300, 3_000, "/usr/bin/python3", ["python3", "/srv/app/manage.py", "runserver"], ppid=200,
           cwd="/srv/app", uid=1000, euid=1000, gid=100, user="alice", group="users", loginuid=1000)


def _templates() -> dict[str, Event]:
    exec_data = {"flags": 0, "argc": 3, "old_uid": 1000, "old_euid": 1000, "old_gid": 100, "old_egid": 100,
                 "exe_dev": (8 << 8) | 2, "exe_nlink": 1, "exe_ino": 77, "exe_mode": 0o100755, "exe_uid": 0,
                 "fd_kind": [1, 2, 3], "filename": b"/usr/bin/python3", "interp": b"/usr/bin/python3",
                 "exe_path": b"/usr/bin/python3", "cwd": b"/srv/app",
                 "argv": b"python3\0/srv/app/manage.py\0runserver\0", "ld_preload": b"", "ld_library_path": b""}
    file_data = {"op": 1, "ret": 5, "syscall_nr": 257, "dirfd": -100, "open_flags": 0o2000001, "mode": 0o644,
                 "uid": 0, "gid": 0, "flags": 0b110, "dev": 0xFE00, "ino": 1234, "size": 0, "path": b"out.txt",
                 "path2": b"", "base": b"/srv/app", "base2": b"", "resolved": b"/srv/app/out.txt",
                 "xattr_name": b"", "dirfd2": -100, "resolve": 0}
    lo = [10, 0, 0, 5] + [0] * 12
    net_data = {"op": 2, "ret": 0, "fd": 3, "family": 2, "sock_type": 1, "protocol": 6, "sport": 40000,
                "dport": 443, "old_state": 0, "new_state": 0, "saddr": list(lo), "daddr": [93, 184, 216, 34] +
                [0] * 12, "cookie": 4097, "backlog": 0, "flags": 0, "owner_pid": 0, "_pad0": 0, "bytes": 0,
                "unix_path": b"", "_pad1": b""}
    return {
        "exec": Event("exec", 1, 5_000 * MS, 1, _proc(300, b"python3"), exec_data, ME, BASH, [BASH, SSHD]),
        "file": Event(KIND_FILE, 10, 5_000 * MS, 1, _proc(300, b"python3"), file_data, ME, BASH, [BASH, SSHD]),
        "net": Event(KIND_NET, 20, 5_000 * MS, 1, _proc(300, b"python3"), net_data, ME, BASH, [BASH, SSHD]),
    }


class Generator:
    """Varied OCSF events from real mapper output; ``event(i)`` is deterministic in i."""

    def __init__(self, n: int, start_ms: int) -> None:
        self.n = n
        self.start_ms = start_ms
        self.events = _templates()
        self.tmpl = {k: to_ocsf(ev, HOST) for k, ev in self.events.items()}
        self.rules = [RuleMeta(id=f"se.bench.rule_{k:02d}", title=f"Benchmark rule {k}",
                               severity=("info", "low", "medium", "high", "critical")[k % 5],
                               attack=(Attack("T1059.004", "execution"),)) for k in range(30)]

    def time_of(self, i: int) -> int:
        return self.start_ms + i * DAY_MS // self.n  # the n events span one day

    def event(self, i: int) -> dict[str, Any]:
        p = i // 8  # a process makes ~8 events
        pid = 1000 + p % 4_000_000
        exe = EXES[(p * 2654435761) % len(EXES)]
        name = exe.rsplit("/", 1)[-1]
        user = USERS[p % len(USERS)]
        exec_id = f"{HOST.boot_id}:{pid}:{p}"
        w1 = WORDS[(i * 7919) % len(WORDS)]
        w2 = WORDS[(p * 104729) % len(WORDS)]
        cmd = f"{name} --config /etc/{name}/{w2}.conf --job {w1} --id {i}"
        t = self.time_of(i)
        r = i % 20
        kind = "exec" if r < 3 else "net" if r < 8 else "file"
        tm = self.tmpl[kind]
        base_proc = tm["process"] if kind == "exec" else tm["actor"]["process"]
        fobj = {**base_proc["file"], "name": name, "path": exe, "parent_folder": exe.rsplit("/", 1)[0]}
        proc = {**base_proc, "pid": pid, "ptid": pid, "uid": exec_id, "name": name[:15], "path": exe, "file": fobj,
                "cmd_line": cmd, "user": {"uid": str(1000 + p % len(USERS)), "name": user},
                "created_time": t - 5}
        um = tm["unmapped"]
        unmapped: dict[str, Any] = {**um, "proc": {**um["proc"], "pid": pid, "tid": pid, "comm": name[:15],
                                                     "ktime_ns": i * 1000}}
        obj: dict[str, Any] = {**tm, "time": t, "unmapped": unmapped}
        if kind == "exec":
            obj["process"] = proc
            obj["message"] = f"exec {exe}"
            unmapped.update(argv=cmd.split(" "), argc=7, filename=exe, exe_path=exe, interp=exe)
        else:
            obj["actor"] = {**tm["actor"], "process": proc, "user": proc["user"]}
        if kind == "file":
            d = DIRS[(i * 31) % len(DIRS)]
            fname = f"{w1}.{('log', 'conf', 'py', 'db', 'json')[i % 5]}"
            obj["file"] = {**tm["file"], "name": fname, "path": f"{d}/{fname}", "parent_folder": d,
                           "uid": f"65024:{i}"}
            obj["message"] = f"open {d}/{fname}"
            unmapped.update(path=fname, base=d, ino=i)
        elif kind == "net":
            ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
            obj["dst_endpoint"] = {"ip": ip, "port": (443, 80, 5432, 22, 53)[i % 5]}
            obj["connection_info"] = {**tm["connection_info"], "uid": str(4097 + i)}
            unmapped.update(cookie=4097 + i)
        return obj

    def alert(self, k: int, i: int) -> dict[str, Any]:
        """A real Detection Finding (to_finding) for the k-th alert, triggered near event i."""
        rule = self.rules[k % len(self.rules)]
        base = self.events[("exec", "file", "net")[k % 3]]
        t_ms = self.time_of(i)
        ev = Event(base.kind, base.type_id, (t_ms - BOOT // MS) * MS + k, base.cpu,
                   {**base.proc, "pid": 1000 + (i // 8) % 4_000_000}, base.data, base.process, base.parent,
                   base.ancestry)
        return to_finding(Alert(rule, [ev], f"{rule.title} by python3 ({k})", t_ms * MS + k), HOST)


def _batches(gen: Generator, n: int, size: int = 2048) -> Iterator[list[dict[str, Any]]]:
    for lo in range(0, n, size):
        yield [gen.event(i) for i in range(lo, min(n, lo + size))]


def _raw_rate(path: str, gen: Generator, n: int, how: str) -> float:
    """Rows/s written directly in 2048-row transactions: ``plain``, ``indexed`` or ``full``."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        if how == "plain":
            conn.execute("CREATE TABLE plain (id INTEGER PRIMARY KEY, obj TEXT NOT NULL)")
        else:
            for stmts in store_mod._MIGRATIONS:
                for stmt in stmts:
                    if how == "full" or "fts5" not in stmt:
                        conn.execute(stmt)
        t0 = time.perf_counter()
        for batch in _batches(gen, n):
            conn.execute("BEGIN")
            if how == "plain":
                conn.executemany("INSERT INTO plain (obj) VALUES (?)",
                                 [(json.dumps(o, separators=(",", ":"), ensure_ascii=False),) for o in batch])
            elif how == "indexed":
                for o in batch:
                    proc = o.get("actor", {}).get("process") if "actor" in o else None
                    conn.execute("INSERT INTO events (time, class_uid, kind, pid, exec_id, exe, user, obj)"
                                 " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                 (o["time"], o["class_uid"], o["unmapped"]["event"], proc and proc["pid"],
                                  proc and proc["uid"], proc and proc["path"], store_mod._user(o),
                                  json.dumps(o, separators=(",", ":"), ensure_ascii=False)))
            else:
                counts: Counter[tuple[int, int]] = Counter()
                for o in batch:
                    t, c = store_mod._insert_event(conn, o, json.dumps(o, separators=(",", ":"), ensure_ascii=False))
                    counts[(store_mod._minute(t), c)] += 1
                conn.executemany("INSERT INTO event_counts (minute, class_uid, n) VALUES (?, ?, ?) ON CONFLICT"
                                 " (minute, class_uid) DO UPDATE SET n = n + excluded.n",
                                 [(m, c, k) for (m, c), k in counts.items()])
            conn.execute("COMMIT")
        return n / (time.perf_counter() - t0)
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.unlink(path + suffix)


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, int]:
    """(first call ms, median of the repeats ms, rows of the answer)."""
    t0 = time.perf_counter()
    out = fn()
    first = (time.perf_counter() - t0) * 1000
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    rows = len(out) if isinstance(out, list) else sum(c["count"] for c in out["events_by_class"])
    return first, statistics.median(times), rows


def _queries(store: HistoryStore, gen: Generator, n: int) -> dict[str, tuple[float, float, int]]:
    mid = n // 2
    mid_ev = gen.event(mid)
    exec_id = (mid_ev.get("process") or mid_ev["actor"]["process"])["uid"]
    t_mid = gen.time_of(mid)
    newest = store.query_alerts(limit=1)
    uid = newest[0].uid if newest else ""

    def alert_detail() -> list[Any]:
        a = store.get_alert(uid)
        assert a is not None
        return [a, *store.query_events(exec_id=a.exec_id, limit=100)]

    qs: dict[str, Callable[[], Any]] = {
        "alerts: newest page (50)": lambda: store.query_alerts(limit=50),
        "alerts: severity>=4 and status new": lambda: store.query_alerts(min_severity=4, status="new", limit=50),
        "alert detail (get + its process's events)": alert_detail,
        "events: newest page (100)": lambda: store.query_events(limit=100),
        "events: by exec_id": lambda: store.query_events(exec_id=exec_id, limit=100),
        "events: by exe (100)": lambda: store.query_events(exe="/usr/bin/curl", limit=100),
        "events: by exe, page at the middle": lambda: store.query_events(exe="/usr/bin/curl", before_id=mid,
                                                                         limit=100),
        "events: class 4001 in a 10 min window": lambda: store.query_events(class_uid=4001, since=t_mid,
                                                                            until=t_mid + 600_000, limit=100),
        "events: user bob in a 10 min window": lambda: store.query_events(user="bob", since=t_mid,
                                                                          until=t_mid + 600_000, limit=100),
        "events: text, a rare word": lambda: store.query_events(text=WORDS[1234], limit=100),
        "events: text, an executable name": lambda: store.query_events(text="rsync", limit=100),
        "events: text, a word, page at the middle": lambda: store.query_events(text=WORDS[1234], before_id=mid,
                                                                               limit=100),
        "events: deep page (before_id = middle)": lambda: store.query_events(before_id=mid, limit=100),
        "overview: 24 h": lambda: store.overview(since=gen.start_ms, until=gen.start_ms + DAY_MS),
    }
    return {name: _timed(fn, 5 if name.startswith("overview") else 20) for name, fn in qs.items()}


def _free(path: str) -> int:
    return shutil.disk_usage(path).free


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--db", help="database file to create (default: a new temporary directory)")
    ap.add_argument("--baseline", type=int, default=200_000, help="events for the baselines (0: skip)")
    ap.add_argument("--alert-every", type=int, default=2000)
    args = ap.parse_args()
    made_dir = None
    if args.db:
        db = os.path.abspath(args.db)
        if os.path.exists(db):
            print(f"{db} exists: give a new path", file=sys.stderr)
            return 2
    else:
        made_dir = tempfile.mkdtemp(prefix="se-history-bench-", dir="/var/tmp")
        db = os.path.join(made_dir, "history.db")
    try:
        return _run(args, db)
    finally:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.unlink(db + suffix)
        if made_dir:
            shutil.rmtree(made_dir, ignore_errors=True)


def _run(args: argparse.Namespace, db: str) -> int:
    n = args.events
    where = os.path.dirname(db)
    free0 = _free(where)
    print(f"database {db}; free space there {free0 / 1e9:.1f} GB; sqlite {sqlite3.sqlite_version}; "
          f"python {sys.version.split()[0]}")
    gen = Generator(n, int(time.time() * 1000) - DAY_MS)
    sample = [gen.event(i) for i in range(20_000)]
    avg_json = statistics.mean(len(json.dumps(o, separators=(",", ":"))) for o in sample)
    kinds = Counter(o["class_uid"] for o in sample)
    print(f"objects: {avg_json:.0f} bytes of JSON on average; classes {dict(kinds)}")
    t0 = time.perf_counter()
    for i in range(200_000):
        gen.event(i)
    gen_rate = 200_000 / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(2000):
        to_ocsf(gen.events[("exec", "file", "net")[i % 3]], HOST)
    print(f"generation alone: {gen_rate:,.0f} objects/s (to_ocsf itself: {2000 / (time.perf_counter() - t0):,.0f}/s)")

    if args.baseline:
        nb = args.baseline
        print(f"\nbaselines over {nb:,} events (direct inserts, 2048 per transaction, synchronous=NORMAL):")
        rates = {}
        for how in ("plain", "indexed", "full"):
            rates[how] = _raw_rate(db + f".{how}", gen, nb, how)
            print(f"  {how:8s} {rates[how]:9,.0f} rows/s")
        print(f"  indexes cost x{rates['plain'] / rates['indexed']:.2f}, full-text x"
              f"{rates['indexed'] / rates['full']:.2f} (full vs plain x{rates['plain'] / rates['full']:.2f})")

    checkpoints = sorted({c for c in (100_000, 1_000_000) if c < n} | {n})
    results: dict[int, dict[str, tuple[float, float, int]]] = {}
    store = HistoryStore(db, retention_days=None, max_bytes=None)
    qcap = 65536
    busy_base = 0.0  # seconds spent feeding and committing before the current interval (query pauses excluded)
    n_alerts = 0
    last_done, last_busy = 0, 0.0
    try:
        t_start = time.perf_counter()
        i = 0
        for cp in checkpoints:
            while i < cp:
                hi = min(cp, i + 1000)
                for j in range(i, hi):
                    store.add_event(gen.event(j))
                    if j % args.alert_every == args.alert_every - 1:
                        store.add_alert(gen.alert(n_alerts, j))
                        n_alerts += 1
                i = hi
                if store.stats()["queue_depth"] > qcap // 2:
                    for _ in range(100_000):
                        time.sleep(0.002)
                        if store.stats()["queue_depth"] < qcap // 4:
                            break
                if i % 500_000 == 0:
                    busy_now = busy_base + time.perf_counter() - t_start
                    st = store.stats()
                    done = st["written_events"]
                    print(f"  {i:>11,} fed, {done:>11,} committed, {(done - last_done) / (busy_now - last_busy):,.0f}"
                          f" rows/s since the last line, db {st['db_bytes'] / 1e9:.2f} GB", flush=True)
                    last_done, last_busy = done, busy_now
            assert store.flush(timeout=600)
            busy_base += time.perf_counter() - t_start
            st = store.stats()
            print(f"\n{cp:,} events, {n_alerts:,} alerts committed: {st['written_events'] / busy_base:,.0f} events/s"
                  f" sustained so far ({busy_base:.0f} s); db {st['db_bytes'] / 1e9:.2f} GB"
                  f" ({st['db_bytes'] / cp:.0f} bytes/event)", flush=True)
            assert st["dropped_full_queue"] == 0 and st["dropped_disk"] == 0 and st["written_events"] == cp
            if cp == checkpoints[0] and cp < n:
                projected = st["db_bytes"] / cp * n
                print(f"  projected size at {n:,} events: {projected / 1e9:.1f} GB (free {free0 / 1e9:.1f} GB)")
                if projected > 0.6 * free0:
                    print("  would not fit comfortably (over 60% of the free space): stopping here")
                    return 3
            results[cp] = _queries(store, gen, cp)
            for name, (first, med, rows) in results[cp].items():
                print(f"  {name:45s} first {first:8.2f} ms  median {med:8.2f} ms  ({rows} rows)")
            lat = store.write_latency()
            for kind, h in lat.items():
                print(f"  commit latency {kind}: {h.count} transactions, mean {h.sum_s / max(h.count, 1) * 1000:.1f}"
                      f" ms, <=100 ms {h.counts[6]}, <=1 s {h.counts[9]}", flush=True)
            last_done, last_busy = st["written_events"], busy_base
            t_start = time.perf_counter()
        _report(results)
    finally:
        store.close()
    return 0


def _report(results: dict[int, dict[str, tuple[float, float, int]]]) -> None:
    sizes = sorted(results)
    if len(sizes) < 2:
        return
    lo, hi = sizes[0], sizes[-1]
    print(f"\nquery latency (median ms) at {lo:,} / {hi:,} events, ratio:")
    for name in results[hi]:
        a, b = results[lo][name][1], results[hi][name][1]
        print(f"  {name:45s} {a:8.2f} {b:8.2f}  x{b / a if a else float('inf'):.2f}")


if __name__ == "__main__":
    sys.exit(main())

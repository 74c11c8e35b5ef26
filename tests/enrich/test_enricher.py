"""The Enricher: the stage the agent calls on every event."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from sentinel_edge.enrich import Enricher, exec_id, host_info
from sentinel_edge.enrich.proctable import TICK_NS, read_proc
from sentinel_edge.model import KIND_EXEC, KIND_FILE, KIND_FORK, KIND_HEALTH, Event
from sentinel_edge.output.ocsf.common import HostInfo

FAKE_PID = 5_000_000
SEC = 1_000_000_000


def proc(pid: int, start_ns: int, *, ppid: int = 0, parent_start_ns: int = 0, comm: bytes = b"x",
         uid: int = 0) -> dict[str, Any]:
    return {
        "pid": pid, "tid": pid, "ppid": ppid, "ns_pid": pid, "uid": uid, "euid": uid, "gid": 0,
        "egid": 0, "loginuid": 0xFFFFFFFF, "sessionid": 0xFFFFFFFF, "mnt_ns": 1, "pid_ns": 2, "net_ns": 3,
        "cgroup_id": 1, "start_ns": start_ns, "parent_start_ns": parent_start_ns, "comm": comm,
    }


def test_enrich_real_process_after_seed() -> None:
    host = host_info()
    e = Enricher(host=host)
    assert e.seed() == len(e) > 0
    me = read_proc(os.getpid())
    parent = read_proc(os.getppid())
    assert me is not None and parent is not None
    p = proc(os.getpid(), me.start_ticks * TICK_NS + 4321, ppid=os.getppid(),
             parent_start_ns=parent.start_ticks * TICK_NS + 99, comm=b"pytest")
    ev = e.enrich(Event(KIND_FILE, 10, time.clock_gettime_ns(time.CLOCK_BOOTTIME), 0, p, {"op": 1}))
    assert ev.process is not None and ev.parent is not None
    assert ev.process.exe == os.path.realpath(sys.executable)
    assert ev.process.cmdline == sys.orig_argv
    assert ev.process.exec_id == exec_id(host.boot_id, os.getpid(), p["start_ns"])
    assert ev.process.start_ns == p["start_ns"]  # made exact by the event
    assert ev.parent.pid == os.getppid() and ev.process.parent_exec_id == ev.parent.exec_id
    assert ev.ancestry[0] is ev.parent and 1 <= len(ev.ancestry) <= 8
    assert e.table.proc_reads == 0


def test_enrich_sets_process_parent_ancestry_for_each_kind(tmp_path: Path) -> None:
    host = HostInfo(hostname="h", boot_id="b", boot_time_ns=0)
    e = Enricher(host=host, proc_root=str(tmp_path), ancestry_depth=2)
    a, b, c = (FAKE_PID, SEC), (FAKE_PID + 1, 2 * SEC), (FAKE_PID + 2, 3 * SEC)
    ev = e.enrich(Event(KIND_EXEC, 1, SEC + 1, 0, proc(*a, comm=b"a"),
                        {"exe_path": b"/bin/a", "filename": b"a", "argv": b"a\0-x", "cwd": b"/"}))
    ia = ev.process
    assert ia is not None and ia.exe == "/bin/a" and ia.cmdline == ["a", "-x"]
    assert ev.parent is None and ev.ancestry == []
    e.enrich(Event(KIND_FORK, 2, 2 * SEC, 0, proc(*a), {"child_pid": b[0], "child_tid": b[0],
                                                         "child_start_ns": b[1], "is_thread": 0}))
    e.enrich(Event(KIND_FORK, 2, 3 * SEC, 0, proc(*b, ppid=a[0], parent_start_ns=a[1]),
                   {"child_pid": c[0], "child_tid": c[0], "child_start_ns": c[1], "is_thread": 0}))
    ev = e.enrich(Event(KIND_EXEC, 1, 4 * SEC, 0, proc(*c, ppid=b[0], parent_start_ns=b[1], comm=b"c"),
                        {"exe_path": b"/bin/c", "filename": b"c", "argv": b"c", "cwd": b"/"}))
    assert ev.process is not None and ev.process.exe == "/bin/c"  # the new image
    assert ev.parent is not None and ev.parent.pid == b[0] and ev.parent.exe == "/bin/a"
    assert [x.pid for x in ev.ancestry] == [b[0], a[0]]
    assert ev.ancestry[1] is ia
    assert len(e) == 3


def test_events_without_a_process_pass_through() -> None:
    e = Enricher(host=HostInfo(hostname="h", boot_id="b", boot_time_ns=0))
    ev = Event(KIND_HEALTH, 0, 1, 0, {}, {"lost": 3})
    assert e.enrich(ev) is ev and ev.process is None and ev.ancestry == []


def test_common_path_reads_nothing_and_is_fast(tmp_path: Path) -> None:
    """The per-event path is dict lookups only: no /proc read once a process is known."""
    e = Enricher(host=HostInfo(hostname="h", boot_id="b", boot_time_ns=0), proc_root=str(tmp_path))
    procs = [proc(FAKE_PID + i, SEC + i, ppid=FAKE_PID + i - 1, parent_start_ns=SEC + i - 1)
             for i in range(50)]
    events = [Event(KIND_FILE, 10, 2 * SEC + i, 0, procs[i % 50], {"op": 1}) for i in range(20_000)]
    for ev in events[:50]:
        e.enrich(ev)
    reads = e.table.proc_reads
    t0 = time.perf_counter()
    for ev in events:
        e.enrich(ev)
    per_event = (time.perf_counter() - t0) / len(events)
    assert e.table.proc_reads == reads
    assert all(ev.process is not None and len(ev.ancestry) == min(8, ev.process.pid - FAKE_PID)
               for ev in events)
    # generous bound (the target is well under 5 µs): catches a slow path, not a slow machine
    assert per_event < 50e-6, f"{per_event * 1e6:.1f} µs per event"

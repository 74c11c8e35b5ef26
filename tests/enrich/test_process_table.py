"""The process table: seeding from the real /proc, fork/exec/exit/comm, PID reuse, eviction, ancestry.

Hand-built events use pids above PID_MAX_LIMIT (4194304) and an empty proc
root, so no real process can answer for them: what the table knows comes
from the events alone.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sentinel_edge.enrich.containers import Container
from sentinel_edge.enrich.proctable import TICK_NS, ProcessTable, exec_id, read_proc
from sentinel_edge.errors import ConfigError
from sentinel_edge.model import KIND_COMM, KIND_EXEC, KIND_EXIT, KIND_FILE, KIND_FORK, Event

BOOT = "0d0f2a04-bf4b-4f73-9d08-65d4e9464c8f"
FAKE_PID = 5_000_000  # > PID_MAX_LIMIT: never a real pid
SEC = 1_000_000_000
ID_A = "3f4e9c2b1a0d8e7f6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928170615"
ID_B = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"


def proc(pid: int, start_ns: int, *, ppid: int = 0, parent_start_ns: int = 0, comm: bytes = b"x",
         uid: int = 0, gid: int = 0, tid: int | None = None, cgroup_id: int = 1) -> dict[str, Any]:
    return {
        "pid": pid, "tid": pid if tid is None else tid, "ppid": ppid, "ns_pid": pid,
        "uid": uid, "euid": uid, "gid": gid, "egid": gid, "loginuid": 1000, "sessionid": 3,
        "mnt_ns": 4026531841, "pid_ns": 4026531836, "net_ns": 4026531840, "cgroup_id": cgroup_id,
        "start_ns": start_ns, "parent_start_ns": parent_start_ns, "comm": comm,
    }


def file_ev(p: dict[str, Any], ts: int) -> Event:
    return Event(KIND_FILE, 10, ts, 0, p, {"op": 1, "ret": 3})


def fork_ev(p: dict[str, Any], ts: int, child_pid: int, child_start_ns: int) -> Event:
    return Event(KIND_FORK, 2, ts, 0, p, {"child_pid": child_pid, "child_tid": child_pid,
                                          "child_start_ns": child_start_ns, "is_thread": 0})


def exec_ev(p: dict[str, Any], ts: int, *, exe: bytes, argv: list[bytes], cwd: bytes = b"/tmp",
            filename: bytes | None = None) -> Event:
    return Event(KIND_EXEC, 1, ts, 0, p, {
        "flags": 0, "argc": len(argv), "old_uid": p["uid"], "old_euid": p["euid"], "old_gid": p["gid"],
        "old_egid": p["egid"], "exe_dev": 0x800001, "exe_nlink": 1, "exe_ino": 1234, "exe_mode": 0o100755,
        "exe_uid": 0, "fd_kind": [1, 1, 1], "filename": exe if filename is None else filename,
        "interp": exe, "exe_path": exe, "cwd": cwd, "argv": b"\0".join(argv),
        "ld_preload": b"", "ld_library_path": b"",
    })


def exit_ev(p: dict[str, Any], ts: int, code: int = 0) -> Event:
    return Event(KIND_EXIT, 3, ts, 0, p, {"exit_code": code, "exit_signal": 0, "core_dumped": 0,
                                          "is_thread": 0})


def comm_ev(p: dict[str, Any], ts: int, old: bytes, new: bytes) -> Event:
    return Event(KIND_COMM, 4, ts, 0, p, {"old_comm": old, "new_comm": new})


@pytest.fixture
def empty_proc(tmp_path: Path) -> str:
    root = tmp_path / "proc"
    root.mkdir()
    return str(root)


def table(proc_root: str, **kw: Any) -> ProcessTable:
    return ProcessTable(boot_id=BOOT, proc_root=proc_root, **kw)


# ---- seeding from the real /proc ---------------------------------------------------


def test_seed_finds_this_test_process_with_its_image() -> None:
    t = table("/proc")
    n = t.seed()
    assert n == len(t) >= 2
    me = next(i for i in t if i.pid == os.getpid())
    assert me.exe == os.path.realpath(sys.executable)
    assert me.cmdline == sys.orig_argv
    assert me.cwd == os.getcwd()
    assert me.ppid == os.getppid()
    assert me.comm == Path("/proc/self/comm").read_text().rstrip("\n")
    assert (me.uid, me.euid, me.gid) == (os.getuid(), os.geteuid(), os.getgid())
    assert me.user == pwd.getpwuid(os.getuid()).pw_name
    assert me.loginuid == int(Path("/proc/self/loginuid").read_text())
    assert me.container_id is None and me.container_runtime is None
    assert me.exec_ts_ns is None and not me.exited
    ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    assert me.start_ns == ticks * TICK_NS
    assert me.exec_id == exec_id(BOOT, os.getpid(), me.start_ns)
    parent = t.parent(os.getpid(), me.start_ns)
    assert parent is not None and parent.pid == os.getppid()
    assert me.parent_exec_id == parent.exec_id
    # pid 1 is in the table, its ancestry is empty; ours reaches it unless deeper than 8
    init = next(i for i in t if i.pid == 1)
    assert t.ancestry(1, init.start_ns) == []
    chain = t.ancestry(os.getpid(), me.start_ns)
    assert chain[0] == parent
    assert chain[-1].pid == 1 or len(chain) == 8
    # kernel threads are there too, without exe or cmdline
    kthreadd = next(i for i in t if i.pid == 2)
    assert kthreadd.comm == "kthreadd" and kthreadd.exe is None and kthreadd.cmdline is None
    assert t.seed() == 0  # seeding again adds nothing


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(["sleep", "30"], cwd="/tmp")
    try:
        yield child
    finally:
        child.kill()
        child.wait()


def test_seeded_start_matches_the_kernel_start_time_to_the_tick(
        sleeper: subprocess.Popen[bytes]) -> None:
    before = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    child = subprocess.Popen(["sleep", "30"])
    after = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    try:
        t = table("/proc")
        t.seed()
        info = next(i for i in t if i.pid == child.pid)
        # /proc gives floor(start_boottime / tick): the real start is in [seeded, seeded + tick)
        assert before - TICK_NS < info.start_ns <= after
        assert info.start_ns % TICK_NS == 0
    finally:
        child.kill()
        child.wait()


def test_seeded_entry_matches_exact_start_within_its_tick_and_becomes_exact(
        sleeper: subprocess.Popen[bytes]) -> None:
    t = table("/proc")
    t.seed()
    seeded = next(i for i in t if i.pid == sleeper.pid)
    assert seeded.exe == "/usr/bin/sleep" and seeded.cmdline == ["sleep", "30"] and seeded.cwd == "/tmp"
    exact = seeded.start_ns + 7_654_321  # what the sensors report, in ns
    me = next(i for i in t if i.pid == os.getpid())
    ev = file_ev(proc(sleeper.pid, exact, ppid=os.getpid(), parent_start_ns=me.start_ns + 1), 10 * SEC)
    img = t.resolve(ev)
    assert img.info.exec_id == seeded.exec_id  # same process, same id
    assert img.info.start_ns == exact
    assert t.get(sleeper.pid, exact) is img.info
    assert t.get(sleeper.pid, seeded.start_ns) is None  # now exact: the tick start is not it
    # a start in another tick is another process (pid reuse): not matched
    assert t.get(sleeper.pid, exact + TICK_NS) is None
    assert t.proc_reads == 0


def test_unknown_live_process_is_read_lazily_from_proc(sleeper: subprocess.Popen[bytes]) -> None:
    t = table("/proc")  # not seeded
    ticks = read_proc(sleeper.pid)
    assert ticks is not None
    start = ticks.start_ticks * TICK_NS + 123
    mine = read_proc(os.getpid())
    assert mine is not None
    ev = file_ev(proc(sleeper.pid, start, ppid=os.getpid(),
                      parent_start_ns=mine.start_ticks * TICK_NS + 456, comm=b"sleep"), SEC)
    img = t.resolve(ev)
    info = img.info
    assert (info.exe, info.cmdline, info.cwd) == ("/usr/bin/sleep", ["sleep", "30"], "/tmp")
    assert info.exec_id == exec_id(BOOT, sleeper.pid, start)
    assert img.parent is not None and img.parent.info.pid == os.getpid()
    assert img.parent.info.exe == os.path.realpath(sys.executable)
    assert info.parent_exec_id == img.parent.info.exec_id
    # the test process's own parent was found in /proc too
    assert t.ancestry(sleeper.pid, start)[1].pid == os.getppid()


# ---- fork / exec / exit from events -------------------------------------------------


def test_fork_exec_exit_sequence(empty_proc: str) -> None:
    t = table(empty_proc)
    P, C = FAKE_PID, FAKE_PID + 1
    p_start, c_start = 5 * SEC + 111, 9 * SEC + 222
    pp = proc(P, p_start, comm=b"bash")
    # bash, first met through an exec event (its parent unknown)
    bash = t.resolve(exec_ev(pp, 6 * SEC, exe=b"/usr/bin/bash", argv=[b"bash", b"-l"], cwd=b"/root")).info
    assert (bash.exe, bash.cmdline, bash.cwd, bash.comm) == ("/usr/bin/bash", ["bash", "-l"], "/root", "bash")
    assert bash.exec_id == exec_id(BOOT, P, p_start, 6 * SEC)
    assert bash.exec_ts_ns == 6 * SEC and bash.parent_exec_id is None
    # bash forks C: the child has the same image, its own identity
    fork_img = t.resolve(fork_ev(pp, 9 * SEC, C, c_start))
    assert fork_img.info is bash  # the event's process is the caller
    child = t.get(C, c_start)
    assert child is not None
    assert (child.exe, child.cmdline, child.cwd, child.comm) == (bash.exe, bash.cmdline, bash.cwd, "bash")
    assert child.exec_id == exec_id(BOOT, C, c_start) != bash.exec_id
    assert child.parent_exec_id == bash.exec_id and child.ppid == P
    assert child.exec_ts_ns is None
    # C execs cat: new exec_id, image from the event
    cp = proc(C, c_start, ppid=P, parent_start_ns=p_start, comm=b"cat")
    img = t.resolve(exec_ev(cp, 10 * SEC, exe=b"/usr/bin/cat", argv=[b"cat", b"/etc/hostname"],
                            cwd=b"/etc"))
    cat = img.info
    assert (cat.exe, cat.cmdline, cat.cwd) == ("/usr/bin/cat", ["cat", "/etc/hostname"], "/etc")
    assert cat.comm == "cat"
    assert cat.exec_id == exec_id(BOOT, C, c_start, 10 * SEC)
    assert cat.exec_id not in (child.exec_id, bash.exec_id)
    assert cat.parent_exec_id == bash.exec_id
    # a file event of cat
    ev = file_ev(cp, 11 * SEC)
    img2 = t.resolve(ev)
    assert img2.info is cat and img2.parent is not None and img2.parent.info is bash
    assert t.ancestry(C, c_start) == [bash]
    # cat exits: marked exited, still there for late events
    t.resolve(exit_ev(cp, 12 * SEC))
    after_exit = t.get(C, c_start)
    assert after_exit is not None and after_exit.exited and after_exit.exec_id == cat.exec_id
    assert t.resolve(file_ev(cp, 12 * SEC + 1)).info.exited
    assert len(t) == 2
    assert t.proc_reads == 0  # no lazy lookup: the events told everything


def test_short_lived_process_has_full_context_from_its_exec_event(empty_proc: str) -> None:
    """Forked, exec'd and exited before anyone could read /proc: the events tell everything."""
    t = table(empty_proc)
    P, C = FAKE_PID, FAKE_PID + 5
    pp = proc(P, SEC, comm=b"sh")
    sh = t.resolve(exec_ev(pp, 2 * SEC, exe=b"/bin/sh", argv=[b"sh"])).info
    cp = proc(C, 3 * SEC, ppid=P, parent_start_ns=SEC, comm=b"true")
    # no fork event (lost): the exec event alone
    tru = t.resolve(exec_ev(cp, 3 * SEC + 500_000, exe=b"/usr/bin/true", argv=[b"true", b"--x"],
                            cwd=b"/srv")).info
    t.resolve(exit_ev(cp, 3 * SEC + 900_000))
    got = t.get(C, 3 * SEC)
    assert got is not None
    assert (got.exe, got.cmdline, got.cwd, got.comm, got.ppid) == ("/usr/bin/true", ["true", "--x"], "/srv",
                                                                   "true", P)
    assert got.parent_exec_id == sh.exec_id and got.exec_id == tru.exec_id and got.exited
    assert t.parent(C, 3 * SEC) is sh


def test_pid_reuse_is_a_new_process_with_a_new_exec_id(empty_proc: str) -> None:
    t = table(empty_proc)
    X = FAKE_PID + 7
    old = proc(X, 100 * SEC, comm=b"old")
    new = proc(X, 200 * SEC, comm=b"new")
    old_info = t.resolve(exec_ev(old, 100 * SEC + 1, exe=b"/usr/bin/old", argv=[b"old"])).info
    t.resolve(exit_ev(old, 190 * SEC))
    new_info = t.resolve(exec_ev(new, 200 * SEC + 1, exe=b"/usr/bin/new", argv=[b"new"])).info
    assert new_info.exec_id != old_info.exec_id and not new_info.exited
    assert t.resolve(file_ev(new, 201 * SEC)).info is new_info
    # a late event of the old process still finds it during the grace period
    late = t.resolve(file_ev(old, 189 * SEC)).info
    assert late.exec_id == old_info.exec_id and late.exited and late.exe == "/usr/bin/old"
    # the same pid reused without an exit event seen: the old one is taken as dead
    newer = proc(X, 300 * SEC, comm=b"newer")
    t.resolve(file_ev(newer, 300 * SEC + 5))
    reused = t.get(X, 200 * SEC)
    assert reused is not None and reused.exited
    assert t.get(X, 300 * SEC) is not None


def test_exec_ids_do_not_depend_on_how_a_process_was_found(empty_proc: str) -> None:
    """A forked child, the same process met lazily, or seeded: one id (pid + start tick)."""
    by_fork = table(empty_proc)
    P, C = FAKE_PID, FAKE_PID + 1
    by_fork.resolve(fork_ev(proc(P, SEC), 2 * SEC, C, 2 * SEC + 345))
    lazily = table(empty_proc)
    lazily.resolve(file_ev(proc(C, 2 * SEC + 345, ppid=P, parent_start_ns=SEC), 3 * SEC))
    a, b = by_fork.get(C, 2 * SEC + 345), lazily.get(C, 2 * SEC + 345)
    assert a is not None and b is not None and a.exec_id == b.exec_id == exec_id(BOOT, C, 2 * SEC)


def test_fork_after_the_childs_own_event_links_the_parent(empty_proc: str) -> None:
    t = table(empty_proc)
    P, C = FAKE_PID, FAKE_PID + 1
    pp = proc(P, SEC, comm=b"make")
    make = t.resolve(exec_ev(pp, SEC + 10, exe=b"/usr/bin/make", argv=[b"make"])).info
    # the child's file event is handled before the fork event that created it
    first = t.resolve(file_ev(proc(C, 2 * SEC, ppid=P, parent_start_ns=SEC, comm=b"make"), 2 * SEC + 5))
    assert first.parent is not None and first.parent.info is make  # found through proc.ppid
    t.resolve(fork_ev(pp, 2 * SEC, C, 2 * SEC))
    assert len(t) == 2
    child = t.get(C, 2 * SEC)
    assert child is not None and child.exec_id == first.info.exec_id and child.parent_exec_id == make.exec_id


def test_late_event_from_before_an_exec_gets_the_old_image(empty_proc: str) -> None:
    t = table(empty_proc)
    pp = proc(FAKE_PID, SEC)
    a = t.resolve(exec_ev(pp, 2 * SEC, exe=b"/bin/a", argv=[b"a"])).info
    b = t.resolve(exec_ev(pp, 3 * SEC, exe=b"/bin/b", argv=[b"b"])).info
    assert t.resolve(file_ev(pp, 3 * SEC - 1)).info is a
    assert t.resolve(file_ev(pp, 3 * SEC + 1)).info is b


def test_thread_events_and_forks_belong_to_the_process(empty_proc: str) -> None:
    t = table(empty_proc)
    pp = proc(FAKE_PID, SEC, comm=b"java")
    java = t.resolve(exec_ev(pp, SEC + 1, exe=b"/usr/bin/java", argv=[b"java"])).info
    thread = proc(FAKE_PID, SEC, tid=FAKE_PID + 3, comm=b"GC Thread#0")
    assert t.resolve(file_ev(thread, 2 * SEC)).info is java
    ev = fork_ev(thread, 2 * SEC, FAKE_PID + 9, 2 * SEC)
    ev.data["is_thread"] = 1
    t.resolve(ev)
    assert len(t) == 1  # a new thread is not a process
    # a thread's fork gives a child named like the forking thread
    t.resolve(fork_ev(thread, 3 * SEC, FAKE_PID + 10, 3 * SEC))
    kid = t.get(FAKE_PID + 10, 3 * SEC)
    assert kid is not None and kid.comm == "GC Thread#0" and kid.exe == "/usr/bin/java"


def test_comm_changes_of_the_leader_only(empty_proc: str) -> None:
    t = table(empty_proc)
    pp = proc(FAKE_PID, SEC, comm=b"python3")
    eid = t.resolve(exec_ev(pp, SEC + 1, exe=b"/usr/bin/python3", argv=[b"python3"])).info.exec_id
    t.resolve(comm_ev(proc(FAKE_PID, SEC, tid=FAKE_PID + 1), 2 * SEC, b"python3", b"worker"))
    got = t.get(FAKE_PID, SEC)
    assert got is not None and got.comm == "python3"
    t.resolve(comm_ev(pp, 3 * SEC, b"python3", b"celery\xff"))
    got = t.get(FAKE_PID, SEC)
    assert got is not None and got.comm == "celery\\xff" and got.exec_id == eid


def test_credentials_follow_the_events(empty_proc: str) -> None:
    t = table(empty_proc)
    nobody = pwd.getpwnam("nobody")
    pp = proc(FAKE_PID, SEC, uid=0, gid=0)
    info = t.resolve(exec_ev(pp, SEC + 1, exe=b"/usr/sbin/nginx", argv=[b"nginx"])).info
    assert (info.uid, info.user, info.gid, info.group) == (0, "root", 0, "root")
    dropped = proc(FAKE_PID, SEC, uid=nobody.pw_uid, gid=nobody.pw_gid)
    after = t.resolve(file_ev(dropped, 2 * SEC)).info
    assert (after.uid, after.euid, after.user) == (nobody.pw_uid, nobody.pw_uid, "nobody")
    assert after.exec_id == info.exec_id
    assert info.uid == 0  # the object given to earlier events is not changed


def test_non_utf8_bytes_become_escaped_text(empty_proc: str) -> None:
    t = table(empty_proc)
    pp = proc(FAKE_PID, SEC, comm=b"ev\xffil")
    info = t.resolve(exec_ev(pp, SEC + 1, exe=b"/tmp/\xc3\x28bin", argv=[b"a\xfe", b"", b"\xe2\x82\xac"],
                             cwd=b"/tmp/\x80")).info
    assert info.exe == "/tmp/\\xc3(bin"
    assert info.cmdline == ["a\\xfe", "", "€"]
    assert info.cwd == "/tmp/\\x80" and info.comm == "ev\\xffil"


# ---- ancestry -------------------------------------------------------------------------


def chain(t: ProcessTable, n: int) -> list[tuple[int, int]]:
    """n processes, each forked by the previous one; returns their (pid, start_ns)."""
    procs = [(FAKE_PID, SEC)]
    t.resolve(exec_ev(proc(FAKE_PID, SEC, comm=b"p0"), SEC, exe=b"/bin/p0", argv=[b"p0"]))
    for i in range(1, n):
        ppid, pstart = procs[-1]
        pid, start = FAKE_PID + i, SEC + i * 1000
        t.resolve(fork_ev(proc(ppid, pstart), SEC + i * 1000, pid, start))
        t.resolve(exec_ev(proc(pid, start, ppid=ppid, parent_start_ns=pstart, comm=f"p{i}".encode()),
                          SEC + i * 1000 + 1, exe=f"/bin/p{i}".encode(), argv=[f"p{i}".encode()]))
        procs.append((pid, start))
    return procs


@pytest.mark.parametrize("depth", [0, 1, 3, 8])
def test_ancestry_depth(empty_proc: str, depth: int) -> None:
    t = table(empty_proc, ancestry_depth=depth)
    procs = chain(t, 12)
    pid, start = procs[-1]
    anc = t.ancestry(pid, start)
    assert [a.comm for a in anc] == [f"p{i}" for i in range(10, 10 - depth, -1)]
    assert [a.exe for a in anc] == [f"/bin/p{i}" for i in range(10, 10 - depth, -1)]
    me = t.get(pid, start)
    assert me is not None
    ids = [me.exec_id] + [a.exec_id for a in anc]
    parents = [me.parent_exec_id] + [a.parent_exec_id for a in anc]
    assert parents[:-1] == ids[1:]  # each one's parent_exec_id is the next one's exec_id
    parent = t.parent(pid, start)
    assert parent is not None and parent.comm == "p10"  # even with depth 0
    # short chains end at the root
    assert [a.comm for a in t.ancestry(*procs[2])] == ["p1", "p0"][:depth]


def test_ancestry_survives_a_parent_exit_and_eviction(empty_proc: str) -> None:
    t = table(empty_proc, exit_grace_s=1.0)
    procs = chain(t, 3)
    mid = procs[1]
    t.resolve(exit_ev(proc(*mid), 5 * SEC))
    t.expire(10 * SEC)
    assert t.get(*mid) is None
    assert [a.comm for a in t.ancestry(*procs[2])] == ["p1", "p0"]


# ---- eviction ---------------------------------------------------------------------------


def test_exited_entries_are_evicted_after_the_grace_period(empty_proc: str) -> None:
    t = table(empty_proc, exit_grace_s=30.0)
    a, b = proc(FAKE_PID, SEC), proc(FAKE_PID + 1, SEC)
    t.resolve(file_ev(a, SEC))
    t.resolve(file_ev(b, SEC))
    t.resolve(exit_ev(a, 10 * SEC))
    t.resolve(file_ev(b, 39 * SEC))  # 29 s after: still there
    assert t.get(FAKE_PID, SEC) is not None
    t.resolve(file_ev(b, 40 * SEC))  # time moves on with the events
    assert t.get(FAKE_PID, SEC) is None
    assert t.get(FAKE_PID + 1, SEC) is not None
    assert len(t) == 1 and t.evictions == 1


def test_size_bound_evicts_oldest_exited_first(empty_proc: str) -> None:
    t = table(empty_proc, max_processes=3, exit_grace_s=3600.0)
    ps = [proc(FAKE_PID + i, SEC) for i in range(4)]
    for p in ps[:3]:
        t.resolve(file_ev(p, 2 * SEC))
    t.resolve(exit_ev(ps[1], 3 * SEC))
    t.resolve(exit_ev(ps[0], 4 * SEC))
    t.resolve(file_ev(ps[3], 5 * SEC))  # full: the first to exit goes
    assert len(t) == 3
    assert t.get(FAKE_PID + 1, SEC) is None
    assert all(t.get(FAKE_PID + i, SEC) is not None for i in (0, 2, 3))


def test_size_bound_without_exited_entries_drops_dead_processes_then_oldest() -> None:
    """Entries whose exit was lost: found dead in /proc and dropped before live ones."""
    live = read_proc(os.getpid())
    assert live is not None
    t = table("/proc", max_processes=2)
    me = proc(os.getpid(), live.start_ticks * TICK_NS + 1)
    t.resolve(file_ev(me, SEC))
    t.resolve(file_ev(proc(FAKE_PID, SEC), SEC))  # dead: not in /proc
    t.resolve(file_ev(proc(FAKE_PID + 1, SEC), SEC))
    assert len(t) == 2
    assert t.get(os.getpid(), me["start_ns"]) is not None  # alive: kept although oldest
    assert t.get(FAKE_PID, SEC) is None
    # every entry alive: the oldest goes
    t2 = table("/proc", max_processes=1)
    t2.resolve(file_ev(me, SEC))
    parent = read_proc(os.getppid())
    assert parent is not None
    t2.resolve(file_ev(proc(os.getppid(), parent.start_ticks * TICK_NS), SEC))
    assert len(t2) == 1 and t2.get(os.getpid(), me["start_ns"]) is None


def test_bad_settings_are_rejected(empty_proc: str) -> None:
    with pytest.raises(ConfigError, match="max_processes must be >= 1, got 0"):
        table(empty_proc, max_processes=0)
    with pytest.raises(ConfigError, match="ancestry_depth must be >= 0, got -1"):
        table(empty_proc, ancestry_depth=-1)
    with pytest.raises(ConfigError, match="exit_grace_s must be >= 0, got -2"):
        table(empty_proc, exit_grace_s=-2)


# ---- containers -------------------------------------------------------------------------


def fake_proc_entry(root: Path, pid: int, *, ppid: int, start_ticks: int, comm: str, cgroup: str,
                    exe: str = "/usr/sbin/nginx", argv: list[str] | None = None) -> None:
    d = root / str(pid)
    d.mkdir(exist_ok=True)
    stat = (f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 "
            f"{start_ticks} 10000000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0")
    (d / "stat").write_text(stat)
    (d / "status").write_text(f"Name:\t{comm}\nPPid:\t{ppid}\nUid:\t101\t101\t101\t101\n"
                              "Gid:\t102\t102\t102\t102\n")
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in (argv or [comm])) + b"\0")
    (d / "loginuid").write_text("4294967295")
    (d / "cgroup").write_text(cgroup)
    if not (d / "exe").is_symlink():
        (d / "exe").symlink_to(exe)
        (d / "cwd").symlink_to("/")


def test_container_from_proc_is_inherited_by_forks_and_read_again_at_exec(tmp_path: Path) -> None:
    root = tmp_path / "proc"
    root.mkdir()
    P, C = FAKE_PID, FAKE_PID + 1
    fake_proc_entry(root, P, ppid=0, start_ticks=100, comm="nginx", cgroup=f"0::/docker/{ID_A}\n")
    t = table(str(root))
    assert t.seed() == 1
    pp = proc(P, 100 * TICK_NS + 5, comm=b"nginx", uid=101, gid=102)
    nginx = t.resolve(file_ev(pp, 2 * SEC)).info
    assert (nginx.container_id, nginx.container_runtime) == (ID_A, "docker")
    assert (nginx.exe, nginx.cmdline, nginx.uid) == ("/usr/sbin/nginx", ["nginx"], 101)
    # the fork child is in the same container, /proc not needed
    t.resolve(fork_ev(pp, 3 * SEC, C, 3 * SEC))
    child = t.get(C, 3 * SEC)
    assert child is not None and child.container_id == ID_A
    # C moved to another container (runc exec joins its cgroups) and execs: read again
    fake_proc_entry(root, C, ppid=P, start_ticks=300, comm="sh",
                    cgroup=f"4:memory:/kubepods/besteffort/pod1/crio-{ID_B}\n0::/\n")
    cp = proc(C, 3 * SEC, ppid=P, parent_start_ns=pp["start_ns"], comm=b"sh")
    sh = t.resolve(exec_ev(cp, 4 * SEC, exe=b"/bin/sh", argv=[b"sh"])).info
    assert (sh.container_id, sh.container_runtime) == (ID_B, "cri-o")
    # the process is gone before its exec is handled: the known container stays
    (root / str(C) / "stat").unlink()
    t.resolve(exec_ev(cp, 5 * SEC, exe=b"/bin/ls", argv=[b"ls"]))
    got = t.get(C, 3 * SEC)
    assert got is not None and got.container_id == ID_B and got.exe == "/bin/ls"


def test_cgroup_change_rereads_the_container(tmp_path: Path) -> None:
    root = tmp_path / "proc"
    root.mkdir()
    fake_proc_entry(root, FAKE_PID, ppid=0, start_ticks=100, comm="runc", cgroup="0::/init.scope\n")
    t = table(str(root))
    pp = proc(FAKE_PID, 100 * TICK_NS, cgroup_id=11)
    assert t.resolve(file_ev(pp, SEC)).info.container_id is None
    fake_proc_entry(root, FAKE_PID, ppid=0, start_ticks=100, comm="runc",
                    cgroup=f"0::/system.slice/libpod-{ID_A}.scope\n")
    assert t.resolve(file_ev(pp, 2 * SEC)).info.container_id is None  # same cgroup id: not read
    moved = dict(pp, cgroup_id=12)
    info = t.resolve(file_ev(moved, 3 * SEC)).info
    assert Container(info.container_id or "", info.container_runtime or "") == Container(ID_A, "podman")

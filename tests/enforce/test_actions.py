"""Response actions on real processes and files: kill through a pidfd, process groups, the safety list,
stale events, rate limits, the address-block policy (never-block list, cap, TTL book) and quarantine."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sentinel_edge.enforce.actions import (
    ACTION_BLOCK,
    ACTION_QUARANTINE,
    NEVER_BLOCK_ALWAYS,
    AddressBlockPolicy,
    IPAddress,
    ProcessKiller,
    ProcessRef,
    RateLimit,
    RateLimiter,
    ResponseActions,
    ResponseConfig,
    read_proc_stat,
)
from sentinel_edge.enforce.identity import identity_of_path
from sentinel_edge.enforce.model import ACTION_KILL, ACTION_NONE, MECH_RESPONSE, Enforcement
from sentinel_edge.enforce.quarantine import ActionRefused, Quarantine
from sentinel_edge.enrich.proctable import TICK_NS
from sentinel_edge.model import KIND_EXEC, KIND_FILE, KIND_NET, Event, ProcessInfo
from sentinel_edge.output.ocsf import network as ocsf_net
from sentinel_edge.rules.model import ActionSpec, Alert, RuleMeta

pytestmark = pytest.mark.kernel

SLEEP = shutil.which("sleep") or "/usr/bin/sleep"


# ------------------------------------------------------------------ helpers

class RecordingBlocker:
    """In-memory AddressBlocker: records every call (for the policy logic only; the kernel one is elsewhere)."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.blocked: dict[IPAddress, tuple[float, str]] = {}
        self.fail = fail

    def block(self, addr: IPAddress, ttl_s: float, reason: str) -> None:
        if self.fail is not None:
            raise self.fail
        self.calls.append(("block", addr, ttl_s, reason))
        self.blocked[addr] = (ttl_s, reason)

    def unblock(self, addr: IPAddress) -> None:
        self.calls.append(("unblock", addr))
        self.blocked.pop(addr, None)


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def start_ns_of(pid: int) -> int:
    st = read_proc_stat(pid)
    assert st is not None
    return st.start_ticks * TICK_NS + TICK_NS // 2


def proc_of(pid: int, start_ns: int, comm: bytes = b"sleep") -> dict[str, Any]:
    return {"pid": pid, "tid": pid, "ppid": os.getpid(), "uid": 0, "euid": 0, "start_ns": start_ns, "comm": comm}


def ev(kind: str, pid: int, start_ns: int, data: dict[str, Any] | None = None, comm: bytes = b"sleep",
       process: ProcessInfo | None = None) -> Event:
    return Event(kind, 1, 123_456_789, 0, proc_of(pid, start_ns, comm), data or {}, process=process)


def alert(events: list[Event], *actions: ActionSpec, rule_id: str = "se.test.respond") -> Alert:
    meta = RuleMeta(id=rule_id, title="t", severity="high", actions=actions)
    return Alert(meta, events, "m", time.time_ns())


def gone(pid: int, timeout: float = 5.0) -> bool:
    """True once pid has exited (no /proc entry, or a zombie)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        st = read_proc_stat(pid)
        if st is None or st.state in ("Z", "X"):
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(*argv: str, **kw: Any) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(list(argv) or [SLEEP, "1000"], **kw)
        started.append(p)
        assert read_proc_stat(p.pid) is not None
        return p

    yield start
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)


def wait_exec(p: subprocess.Popen[bytes], exe: str, timeout: float = 5.0) -> None:
    """Wait until the child runs ``exe`` (Popen returns after fork; the exec may not have happened yet)."""
    end = time.monotonic() + timeout
    want = os.path.realpath(exe)
    while time.monotonic() < end:
        try:
            if os.readlink(f"/proc/{p.pid}/exe") == want:
                return
        except OSError:
            pass
        time.sleep(0.005)
    raise AssertionError(f"pid {p.pid} did not exec {exe}")


def actions_with(tmp: Path, blocker: RecordingBlocker | None = None, **cfg: Any) -> ResponseActions:
    return ResponseActions(ResponseConfig(quarantine_dir=tmp / "quarantine", **cfg), blocker=blocker)


# ------------------------------------------------------------------ kill

def test_kill_a_real_child(tmp_path: Path, spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    p = spawn()
    wait_exec(p, SLEEP)
    start = start_ns_of(p.pid)
    e = ev("file", p.pid, start)
    out = actions_with(tmp_path).run(alert([e], ActionSpec("kill")))
    assert out == [Enforcement(
        policy_id="se.test.respond", mode="enforce", action=ACTION_KILL, mechanism=MECH_RESPONSE, target="sleep",
        ok=True, error=None, time_ns=123_456_789, proc=proc_of(p.pid, start),
        data={"requested": "kill", "pid": p.pid, "start_ns": start, "signal": "SIGKILL", "comm": "sleep"})]
    assert p.wait(timeout=5) == -signal.SIGKILL


def test_kill_of_an_exec_event_checks_the_exe_identity(tmp_path: Path,
                                                       spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    p = spawn()
    wait_exec(p, SLEEP)
    start = start_ns_of(p.pid)
    sleep_id = identity_of_path(SLEEP)
    true_id = identity_of_path(shutil.which("true") or "/usr/bin/true")
    ra = actions_with(tmp_path)
    # the event says the image was /usr/bin/true: the process at that pid runs sleep -> not killed
    wrong = ev(KIND_EXEC, p.pid, start, {"exe_dev": true_id.dev, "exe_ino": true_id.ino, "exe_path": b"/usr/bin/true"})
    [refused] = ra.run(alert([wrong], ActionSpec("kill")))
    assert refused.action == ACTION_NONE
    assert refused.ok is False
    assert refused.target == "/usr/bin/true"
    assert refused.error == (f"pid {p.pid} runs another executable than the event's (now dev {sleep_id.dev} inode "
                             f"{sleep_id.ino}, the event's dev {true_id.dev} inode {true_id.ino}): not killed")
    assert refused.data == {"requested": "kill", "pid": p.pid, "start_ns": start}
    time.sleep(0.1)
    assert p.poll() is None
    right = ev(KIND_EXEC, p.pid, start, {"exe_dev": sleep_id.dev, "exe_ino": sleep_id.ino,
                                        "exe_path": SLEEP.encode()})
    [done] = ra.run(alert([right], ActionSpec("kill")))
    assert (done.action, done.ok, done.error, done.target) == (ACTION_KILL, True, None, SLEEP)
    assert done.data == {"requested": "kill", "pid": p.pid, "start_ns": start, "signal": "SIGKILL", "comm": "sleep",
                         "exe": SLEEP}
    assert p.wait(timeout=5) == -signal.SIGKILL


def test_stale_event_does_not_kill_the_process_now_at_that_pid(
        tmp_path: Path, spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    p = spawn()
    ticks = (read_proc_stat(p.pid) or pytest.fail("no stat")).start_ticks
    ra = actions_with(tmp_path)
    for delta in (-2, 2, -1000):
        stale = ticks * TICK_NS + delta * TICK_NS
        [e] = ra.run(alert([ev("net", p.pid, stale)], ActionSpec("kill"), rule_id=f"stale{delta}"))
        assert e.action == ACTION_NONE
        assert e.ok is False
        assert e.error == (f"pid {p.pid} is now another process (started at tick {ticks}, the event's at tick "
                           f"{ticks + delta}): not killed")
        assert e.data == {"requested": "kill", "pid": p.pid, "start_ns": stale}
    time.sleep(0.1)
    assert p.poll() is None
    # one tick of rounding either way is the same process
    [e] = ra.run(alert([ev("net", p.pid, (ticks + 1) * TICK_NS)], ActionSpec("kill"), rule_id="round"))
    assert (e.action, e.ok) == (ACTION_KILL, True)
    assert p.wait(timeout=5) == -signal.SIGKILL
    # and a pid that has gone entirely
    [e] = ra.run(alert([ev("net", p.pid, (ticks + 1) * TICK_NS)], ActionSpec("kill"), rule_id="gone"))
    assert e.action == ACTION_NONE
    assert e.error in (f"pid {p.pid} is gone", f"pid {p.pid} has exited")


def test_kill_group_kills_the_whole_group(tmp_path: Path, spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    p = spawn("sh", "-c", f"{SLEEP} 1000 & {SLEEP} 1000 & echo ready; wait", start_new_session=True,
              stdout=subprocess.PIPE)
    try:
        assert p.stdout is not None
        assert p.stdout.readline() == b"ready\n"
        end = time.monotonic() + 5
        kids: list[int] = []
        while time.monotonic() < end:
            kids = [m.pid for m in ProcessKiller().group_members(p.pid) if m.pid != p.pid]
            if len(kids) == 2 and all(os.readlink(f"/proc/{k}/exe") == os.path.realpath(SLEEP) for k in kids):
                break
            time.sleep(0.01)
        assert len(kids) == 2
        target = kids[0]                        # a grandchild: the leader is checked on its own
        start = start_ns_of(target)
        [e] = actions_with(tmp_path).run(alert([ev("net", target, start)], ActionSpec("kill_group")))
        assert e == Enforcement(
            policy_id="se.test.respond", mode="enforce", action=ACTION_KILL, mechanism=MECH_RESPONSE,
            target="sleep", ok=True, error=None, time_ns=123_456_789, proc=proc_of(target, start),
            data={"requested": "kill_group", "pid": target, "start_ns": start, "pgid": p.pid, "signal": "SIGKILL",
                  "members": sorted([p.pid, *kids]), "leader_alive": True, "comm": "sleep"})
        assert p.wait(timeout=5) == -signal.SIGKILL
        for k in kids:
            assert gone(k)
        assert ProcessKiller().group_members(p.pid) == [] or all(
            m.state == "Z" for m in ProcessKiller().group_members(p.pid))
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)


def test_kill_group_refused_when_the_agent_is_in_the_group(
        tmp_path: Path, spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    p = spawn()                                  # same process group as this test process (the "agent")
    wait_exec(p, SLEEP)
    start = start_ns_of(p.pid)
    [e] = actions_with(tmp_path).run(alert([ev("net", p.pid, start)], ActionSpec("kill_group")))
    assert e.action == ACTION_NONE
    assert e.ok is False
    pgid = os.getpgid(p.pid)
    assert e.error is not None
    assert e.error.startswith(f"process group {pgid}: pid ")
    assert e.error.endswith(("is the agent itself", "is an ancestor of the agent"))
    time.sleep(0.1)
    assert p.poll() is None


def test_init_kernel_threads_and_the_agent_are_never_killed(tmp_path: Path) -> None:
    ra = actions_with(tmp_path)
    me = os.getpid()
    parent = os.getppid()
    kthread = next(pid for pid in (2, 3, 4) if (s := read_proc_stat(pid)) and s.flags & 0x00200000)
    cases = [
        (1, "pid 1 is init"),
        (kthread, f"pid {kthread} ({(read_proc_stat(kthread) or pytest.fail('gone')).comm.decode()}) "
                  "is a kernel thread"),
        (me, f"pid {me} is the agent itself"),
        (parent, f"pid {parent} ({(read_proc_stat(parent) or pytest.fail('gone')).comm.decode()}) "
                 "is an ancestor of the agent"),
    ]
    for pid, why in cases:
        for kind in ("kill", "kill_group"):
            [e] = ra.run(alert([ev("net", pid, start_ns_of(pid))], ActionSpec(kind), rule_id=f"r{pid}{kind}"))
            assert (e.action, e.ok) == (ACTION_NONE, False), (pid, kind)
            assert e.error == why, (pid, kind)
    assert read_proc_stat(1) is not None
    assert read_proc_stat(parent) is not None


def test_allow_listed_executable_is_never_killed(tmp_path: Path,
                                                 spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    allowed = tmp_path / "allowed-sleep"
    shutil.copy2(SLEEP, allowed)
    hardlink = tmp_path / "hardlink-sleep"
    os.link(allowed, hardlink)
    other = tmp_path / "other-sleep"             # a copy: another inode, not allow-listed
    shutil.copy2(SLEEP, other)
    ra = actions_with(tmp_path, allow_exes=(str(allowed),))
    ident = identity_of_path(allowed)
    for exe in (allowed, hardlink):
        p = spawn(str(exe), "1000")
        wait_exec(p, str(exe))
        [e] = ra.run(alert([ev("net", p.pid, start_ns_of(p.pid))], ActionSpec("kill"), rule_id=exe.name))
        assert (e.action, e.ok) == (ACTION_NONE, False)
        assert e.error == f"pid {p.pid} runs allow-listed executable {ident.path}"
        time.sleep(0.05)
        assert p.poll() is None
    p = spawn(str(other), "1000")
    wait_exec(p, str(other))
    [e] = ra.run(alert([ev("net", p.pid, start_ns_of(p.pid))], ActionSpec("kill"), rule_id="other"))
    assert (e.action, e.ok, e.error) == (ACTION_KILL, True, None)
    assert p.wait(timeout=5) == -signal.SIGKILL


def test_process_ref_from_events() -> None:
    info = ProcessInfo(pid=77, start_ns=5_000, exec_id="x", parent_exec_id=None, ppid=1, comm="c", exe="/bin/c")
    assert ProcessRef.from_event(ev("net", 42, 9_000, process=info)) == ProcessRef(42, 9_000, None, None, "/bin/c")
    replayed = Event("net", 1, 1, 0, {}, {}, process=info)          # replay: only enrichment knows the process
    assert ProcessRef.from_event(replayed) == ProcessRef(77, 5_000, None, None, "/bin/c")
    ex = ev(KIND_EXEC, 42, 9_000, {"exe_dev": 8, "exe_ino": 99, "exe_path": b"/tmp/x\xff"}, process=info)
    assert ProcessRef.from_event(ex) == ProcessRef(42, 9_000, 8, 99, "/tmp/x\\xff")
    assert ProcessRef.from_event(Event("net", 1, 1, 0, {}, {})) is None


# ------------------------------------------------------------------ rate limits

def test_token_buckets_per_kind_and_per_rule() -> None:
    clock = Clock()
    rl = RateLimiter({"kill": RateLimit(1.0, 3)}, {"kill": RateLimit(0.5, 2)}, clock=clock)
    assert rl.take("kill", "a") is None
    assert rl.take("kill", "a") is None
    assert rl.take("kill", "a") == "rate limited (kill: at most 0.5/s (burst 2) per rule)"
    assert rl.take("kill", "b") is None                     # kind bucket: 3rd token
    assert rl.take("kill", "c") == "rate limited (kill: at most 1/s (burst 3) for all rules)"
    assert rl.take("quarantine", "a") is None               # no limit configured for that kind
    clock.t += 1.0                                          # +1 kind token, +0.5 per-rule token
    assert rl.take("kill", "a") == "rate limited (kill: at most 0.5/s (burst 2) per rule)"
    assert rl.take("kill", "c") is None                     # refused takes consumed nothing
    clock.t += 100.0                                        # refill is capped at the burst
    assert [rl.take("kill", r) for r in "defg"] == [None, None, None,
                                                    "rate limited (kill: at most 1/s (burst 3) for all rules)"]
    with pytest.raises(ValueError, match="rate limit needs"):
        RateLimit(0, 1)


def test_actions_are_rate_limited(tmp_path: Path, spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    clock = Clock()
    ra = ResponseActions(ResponseConfig(quarantine_dir=tmp_path / "q",
                                        kind_limits={"kill": RateLimit(0.01, 2)},
                                        rule_limits={"kill": RateLimit(0.01, 1)}), clock=clock)
    procs = [spawn() for _ in range(3)]
    for p in procs:
        wait_exec(p, SLEEP)

    def kill(p: subprocess.Popen[bytes], rule: str) -> Enforcement:
        [e] = ra.run(alert([ev("net", p.pid, start_ns_of(p.pid))], ActionSpec("kill"), rule_id=rule))
        return e

    assert (kill(procs[0], "a").ok, procs[0].wait(timeout=5)) == (True, -signal.SIGKILL)
    e = kill(procs[1], "a")
    assert (e.action, e.ok, e.target) == (ACTION_NONE, False, "")
    assert e.error == "rate limited (kill: at most 0.01/s (burst 1) per rule)"
    assert e.data == {"requested": "kill"}
    assert kill(procs[1], "b").ok
    assert procs[1].wait(timeout=5) == -signal.SIGKILL
    e = kill(procs[2], "c")
    assert e.error == "rate limited (kill: at most 0.01/s (burst 2) for all rules)"
    time.sleep(0.05)
    assert procs[2].poll() is None
    clock.t += 100.0
    assert kill(procs[2], "c").ok
    assert procs[2].wait(timeout=5) == -signal.SIGKILL


# ------------------------------------------------------------------ block_address policy

def _ip_cmd(*args: str) -> list[dict[str, Any]]:
    out = subprocess.run(["ip", "-j", *args], capture_output=True, check=True).stdout
    data: list[dict[str, Any]] = json.loads(out or b"[]")
    return data


def test_never_block_list(tmp_path: Path) -> None:
    rb = RecordingBlocker()
    clock = Clock()
    pol = AddressBlockPolicy(rb, management=("10.99.0.0/16", "2001:db8:99::/48"), clock=clock)
    own = [ipaddress.ip_address(a["local"]) for link in _ip_cmd("addr") for a in link.get("addr_info", [])]
    gws = [ipaddress.ip_address(r["gateway"]) for r in _ip_cmd("route", "show", "default") + _ip_cmd(
        "-6", "route", "show", "default") if "gateway" in r]
    assert own and gws
    expect = {
        "127.0.0.1": "127.0.0.1 is loopback (127.0.0.0/8)",
        "127.9.9.9": "127.9.9.9 is loopback (127.0.0.0/8)",
        "::1": "::1 is loopback (::1/128)",
        "::ffff:127.0.0.1": "127.0.0.1 is loopback (127.0.0.0/8)",
        "169.254.3.4": "169.254.3.4 is link-local (169.254.0.0/16)",
        "fe80::1234": "fe80::1234 is link-local (fe80::/10)",
        "0.0.0.0": "0.0.0.0 is unspecified (0.0.0.0/32)",
        "::": ":: is unspecified (::/128)",
        "224.0.0.251": "224.0.0.251 is multicast (224.0.0.0/4)",
        "ff02::1": "ff02::1 is multicast (ff00::/8)",
        "255.255.255.255": "255.255.255.255 is broadcast (255.255.255.255/32)",
        "10.99.200.1": "10.99.200.1 is in management network 10.99.0.0/16",
        "2001:db8:99::5": "2001:db8:99::5 is in management network 2001:db8:99::/48",
    }
    for a in own:
        if not any(a.version == n.version and a in n for n, _ in NEVER_BLOCK_ALWAYS):
            expect[str(a)] = f"{a} is an address of this host"
    for g in gws:
        expect.setdefault(str(g), f"{g} is a gateway of this host")
    for addr, why in expect.items():
        with pytest.raises(ActionRefused) as ei:
            pol.block(ipaddress.ip_address(addr), 60, "test")
        assert str(ei.value) == f"not blocked: {why}", addr
    assert rb.calls == []
    assert pol.entries() == []
    listed = dict(pol.never_block())
    assert listed["127.0.0.0/8"] == "loopback"
    assert listed["10.99.0.0/16"] == "management network"
    for g in gws:
        assert str(g) in listed
    # ordinary addresses are blocked
    r4 = pol.block(ipaddress.ip_address("198.51.100.7"), 60, "rule x", "x")
    r6 = pol.block(ipaddress.ip_address("2001:db8:1::7"), 90, "rule y", "y")
    assert rb.calls == [("block", ipaddress.ip_address("198.51.100.7"), 60.0, "rule x"),
                        ("block", ipaddress.ip_address("2001:db8:1::7"), 90.0, "rule y")]
    assert (r4.entry.addr, r4.entry.ttl_s, r4.entry.blocked_at, r4.entry.expires_at, r4.entry.reason,
            r4.entry.rule_id, r4.renewed, r4.evicted) == (ipaddress.ip_address("198.51.100.7"), 60.0, 1000.0,
                                                          1060.0, "rule x", "x", False, None)
    assert pol.entries() == [r4.entry, r6.entry]


def test_cap_drops_the_entry_closest_to_expiry() -> None:
    rb = RecordingBlocker()
    clock = Clock()
    pol = AddressBlockPolicy(rb, max_entries=3, discover=False, clock=clock)
    a, b, c, d = (ipaddress.ip_address(f"203.0.113.{i}") for i in (1, 2, 3, 4))
    pol.block(a, 100, "a")
    pol.block(b, 50, "b")
    pol.block(c, 200, "c")
    r = pol.block(d, 10, "d")
    assert r.evicted is not None
    assert r.evicted.addr == b
    assert rb.calls[-2:] == [("block", d, 10.0, "d"), ("unblock", b)]
    assert [e.addr for e in pol.entries()] == [d, a, c]
    assert set(rb.blocked) == {a, c, d}
    # re-blocking an address already blocked does not take a slot; a shorter TTL keeps the later expiry
    clock.t += 5
    r = pol.block(a, 10, "a again")
    assert (r.renewed, r.evicted, r.entry.expires_at, r.entry.ttl_s) == (True, None, 1100.0, 95.0)
    r = pol.block(a, 500, "a longer")
    assert (r.renewed, r.entry.expires_at, r.entry.ttl_s) == (True, 1505.0, 500.0)
    assert len(pol.entries()) == 3


def test_ttl_book_expires_and_unblocks() -> None:
    rb = RecordingBlocker()
    clock = Clock()
    pol = AddressBlockPolicy(rb, discover=False, default_ttl_s=30, max_ttl_s=120, clock=clock)
    a, b = ipaddress.ip_address("192.0.2.200"), ipaddress.ip_address("2001:db8::200")
    assert pol.block(a).entry.ttl_s == 30.0                 # default
    assert pol.block(b, 10_000).entry.ttl_s == 120.0        # capped
    clock.t += 31
    assert [e.addr for e in pol.entries()] == [b]
    assert rb.calls[-1] == ("unblock", a)
    clock.t += 90
    expired = pol.expire()
    assert [e.addr for e in expired] == [b]
    assert pol.entries() == []
    assert rb.blocked == {}
    pol.block(a, 5)
    assert pol.unblock(a) is True
    assert pol.unblock(a) is False
    assert rb.calls[-2:] == [("unblock", a), ("unblock", a)]
    with pytest.raises(ActionRefused, match="ttl 0 is not positive"):
        pol.block(a, 0)


def test_adopt_blocks_found_in_the_kernel() -> None:
    rb = RecordingBlocker()
    clock = Clock()
    pol = AddressBlockPolicy(rb, max_entries=2, discover=False, clock=clock)
    a, b, c = (ipaddress.ip_address(x) for x in ("198.51.100.1", "198.51.100.2", "198.51.100.3"))
    lo, old = ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("198.51.100.9")
    n = pol.adopt([(a, 30.0, "rule a"), (lo, 30.0, "bad"), (old, 0.0, "expired"), (b, 60.0, "rule b"),
                   (c, 90.0, "over the cap")])
    assert n == 2
    assert [(e.addr, e.ttl_s, e.expires_at, e.reason) for e in pol.entries()] == [
        (a, 30.0, 1030.0, "rule a"), (b, 60.0, 1060.0, "rule b")]
    assert rb.calls == [("unblock", lo), ("unblock", old), ("unblock", c)]


def net_event(ip: str, pid: int = 4242) -> Event:
    addr = ipaddress.ip_address(ip)
    fam = ocsf_net.AF_INET if addr.version == 4 else ocsf_net.AF_INET6
    raw = list(addr.packed) + [0] * (16 - len(addr.packed))
    return Event(KIND_NET, 2, 555, 0, proc_of(pid, 1, b"curl"), {
        "op": ocsf_net.OP_CONNECT, "family": fam, "sock_type": 1, "protocol": 6, "sport": 40000, "dport": 443,
        "saddr": [0] * 16, "daddr": raw})


def test_block_address_from_an_alert(tmp_path: Path) -> None:
    rb = RecordingBlocker()
    ra = actions_with(tmp_path, rb, management=("10.99.0.0/16",))
    exec_ev = ev(KIND_EXEC, 4242, 1, {"exe_path": b"/usr/bin/curl"})
    [e] = ra.run(alert([net_event("198.51.100.9"), exec_ev], ActionSpec("block_address", 600.0)))
    assert e == Enforcement(
        policy_id="se.test.respond", mode="enforce", action=ACTION_BLOCK, mechanism=MECH_RESPONSE,
        target="198.51.100.9", ok=True, error=None, time_ns=555, proc=proc_of(4242, 1, b"curl"),
        data={"requested": "block_address", "address": "198.51.100.9", "ttl_s": 600.0, "renewed": False,
              "evicted": None})
    assert rb.calls == [("block", ipaddress.ip_address("198.51.100.9"), 600.0, "rule se.test.respond")]
    [e] = ra.run(alert([net_event("::ffff:10.99.1.1")], ActionSpec("block_address")))
    assert (e.action, e.ok, e.target) == (ACTION_NONE, False, "10.99.1.1")
    assert e.error == "not blocked: 10.99.1.1 is in management network 10.99.0.0/16"
    [e] = ra.run(alert([exec_ev], ActionSpec("block_address")))
    assert (e.action, e.ok, e.error) == (ACTION_NONE, False, "no event of the alert has a remote address")
    # no kernel blocker loaded
    [e] = actions_with(tmp_path).run(alert([net_event("198.51.100.9")], ActionSpec("block_address")))
    assert (e.action, e.ok, e.error) == (ACTION_NONE, False, "no address blocker (kernel enforcement is not loaded)")
    # a failing blocker is a failed action, a broken one an internal error: neither raises
    [e] = actions_with(tmp_path, RecordingBlocker(PermissionError(1, "Operation not permitted"))).run(
        alert([net_event("198.51.100.9")], ActionSpec("block_address")))
    assert (e.action, e.ok, e.error) == (ACTION_BLOCK, False, "block 198.51.100.9: Operation not permitted")
    [e] = actions_with(tmp_path, RecordingBlocker(RuntimeError("bug"))).run(
        alert([net_event("198.51.100.9")], ActionSpec("block_address")))
    assert (e.action, e.ok, e.error) == (ACTION_NONE, False, "internal error: RuntimeError('bug')")


# ------------------------------------------------------------------ quarantine from an alert

def test_quarantine_from_file_and_exec_events(tmp_path: Path) -> None:
    ra = actions_with(tmp_path)
    f = tmp_path / "dropped.bin"
    f.write_bytes(b"evil")
    ident = identity_of_path(f)
    file_ev = ev(KIND_FILE, 4242, 1, {"op": 1, "path": str(f).encode(), "base": b"", "resolved": b"", "flags": 0,
                                      "dev": ident.dev, "ino": ident.ino})
    [e] = ra.run(alert([file_ev], ActionSpec("quarantine")), alert_id="alert-7")
    q = Quarantine(tmp_path / "quarantine")
    [rec] = q.list()
    assert e == Enforcement(
        policy_id="se.test.respond", mode="enforce", action=ACTION_QUARANTINE, mechanism=MECH_RESPONSE,
        target=str(f), ok=True, error=None, time_ns=123_456_789, proc=proc_of(4242, 1),
        data={"requested": "quarantine", "qid": rec.qid, "path": str(f), "sha256": hashlib.sha256(b"evil").hexdigest(),
              "size": 4, "moved": "rename", "nlink": 1,
              "quarantine_path": str(tmp_path / "quarantine" / f"{rec.qid}.data")})
    assert (rec.rule_id, rec.alert_id, rec.path) == ("se.test.respond", "alert-7", str(f).encode())
    assert not f.exists()
    # an exec event: the executable is quarantined
    exe = tmp_path / "implant"
    exe.write_bytes(b"\x7fELF")
    exe.chmod(0o755)
    eid = identity_of_path(exe)
    exec_ev = ev(KIND_EXEC, 4242, 1, {"exe_path": str(exe).encode(), "exe_dev": eid.dev, "exe_ino": eid.ino})
    [e] = ra.run(alert([exec_ev], ActionSpec("quarantine"), rule_id="r2"))
    assert (e.action, e.ok, e.target) == (ACTION_QUARANTINE, True, str(exe))
    assert not exe.exists()
    # the name now holds another file than the event's: refused, left alone
    exe.write_bytes(b"innocent")
    [e] = ra.run(alert([exec_ev], ActionSpec("quarantine"), rule_id="r3"))
    now = identity_of_path(exe)
    assert (e.action, e.ok) == (ACTION_NONE, False)
    assert e.error == (f"quarantine {exe}: the file there now (dev {now.dev}, inode {now.ino}) is not the one of "
                       f"the event (dev {eid.dev}, inode {eid.ino}): refused")
    assert exe.read_bytes() == b"innocent"
    # never-quarantine prefixes, missing files, events without a file
    proc_ev = ev(KIND_FILE, 4242, 1, {"op": 1, "path": b"/dev/null", "base": b"", "resolved": b"",
                                      "flags": 0})
    [e] = ra.run(alert([proc_ev], ActionSpec("quarantine"), rule_id="r4"))
    assert (e.action, e.ok, e.error) == (ACTION_NONE, False,
                                         "quarantine /dev/null: under a never-quarantine prefix")
    gone_ev = ev(KIND_FILE, 4242, 1, {"op": 1, "path": str(tmp_path / "nope").encode(), "base": b"",
                                      "resolved": b"", "flags": 0})
    [e] = ra.run(alert([gone_ev], ActionSpec("quarantine"), rule_id="r5"))
    assert (e.action, e.ok, e.error) == (ACTION_QUARANTINE, False,
                                         f"quarantine {tmp_path}/nope: No such file or directory")
    [e] = ra.run(alert([net_event("198.51.100.1")], ActionSpec("quarantine"), rule_id="r6"))
    assert (e.action, e.ok, e.error) == (ACTION_NONE, False, "no event of the alert has a file")


def test_allow_listed_executable_is_never_quarantined(tmp_path: Path) -> None:
    allowed = tmp_path / "tool"
    allowed.write_bytes(b"\x7fELF tool")
    ra = actions_with(tmp_path, allow_exes=(str(allowed),))
    [e] = ra.run(alert([ev(KIND_EXEC, 4242, 1, {"exe_path": str(allowed).encode()})], ActionSpec("quarantine")))
    assert (e.action, e.ok) == (ACTION_NONE, False)
    assert e.error == f"quarantine {allowed}: the file is protected (allow-listed or the agent's own)"
    assert allowed.read_bytes() == b"\x7fELF tool"


def test_several_actions_run_in_order(tmp_path: Path, spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    rb = RecordingBlocker()
    ra = actions_with(tmp_path, rb)
    p = spawn()
    wait_exec(p, SLEEP)
    start = start_ns_of(p.pid)
    f = tmp_path / "payload"
    f.write_bytes(b"x")
    write = ev(KIND_FILE, p.pid, start, {"op": 1, "path": str(f).encode(), "base": b"", "resolved": b"",
                                         "flags": 0})
    conn = net_event("198.51.100.77", pid=p.pid)
    conn.proc["start_ns"] = start
    out = ra.run(alert([write, conn], ActionSpec("quarantine"), ActionSpec("block_address"), ActionSpec("kill")))
    assert [(e.action, e.ok, e.target, e.data["requested"]) for e in out] == [
        (ACTION_QUARANTINE, True, str(f), "quarantine"),
        (ACTION_BLOCK, True, "198.51.100.77", "block_address"),
        (ACTION_KILL, True, "curl", "kill"),
    ]
    assert out[1].data["ttl_s"] == 3600.0
    assert p.wait(timeout=5) == -signal.SIGKILL

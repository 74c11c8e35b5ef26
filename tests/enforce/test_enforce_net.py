"""Network enforcement (connect deny, XDP inbound drop, response blocks) on the real kernel.

One pinned installation with its own pin root serves the module; connect
tests run children that connect to addresses of 127.231.0.0/16 (loopback)
or, for IPv6, to addresses of a network namespace the module makes; XDP
tests send ICMP echo requests between two network namespaces joined by a
veth pair, with the XDP entry program on the receiving end.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sentinel_edge.enforce import netmaps
from sentinel_edge.enforce.identity import identity_of_path
from sentinel_edge.enforce.kernel import EnfMatchVal, EnforceKernel, KernelPlan, plan_policies
from sentinel_edge.enforce.model import ConnectDeny, InboundDrop, IPNetwork, Policy, PolicySet, Scope
from sentinel_edge.enforce.netmaps import (
    BLOCK_IDX,
    KernelAddressBlocker,
    close_networks,
    link_info,
    net_key,
    plan_network,
    sync_network,
)
from sentinel_edge.loader import libbpf
from sentinel_edge.model import Event
from sentinel_edge.wire.decode import Decoder

pytestmark = pytest.mark.kernel

PIN = f"/sys/fs/bpf/se-test-net-{os.getpid()}"
KIND_CONNECT, KIND_INBOUND = 4, 5
ACT_AUDIT, ACT_DENY, ACT_DROP = 0, 2, 3
BY_NETWORK = 4
AF_INET, AF_INET6 = 2, 10
IPPROTO_TCP, IPPROTO_ICMP, IPPROTO_ICMPV6 = 6, 1, 58
NOBODY = 65534
CHILD_PY = "/usr/bin/python3"          # children run stdlib only, also as nobody
TAG = os.getpid() % 100000
NS_A, NS_B = f"se-net-a-{TAG}", f"se-net-b-{TAG}"
VETH_A, VETH_B = f"sena{TAG}", f"senb{TAG}"
V4_A, V4_A2, V4_B = "10.231.0.1", "10.231.0.3", "10.231.0.2"
V6_A, V6_A2, V6_B = "fd00:5e::1", "fd00:5e::3", "fd00:5e::2"
CLONE_NEWNET = 0x40000000

Take = Callable[..., list[Event]]


def _net(text: str) -> IPNetwork:
    return ipaddress.ip_network(text)


def _boot_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


# -- the network namespaces -------------------------------------------------------------------

def _ip(*args: str, ns: str | None = None) -> str:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, f"{cmd}: {r.stderr}"
    return r.stdout


@dataclass(frozen=True)
class Netns:
    ifindex_b: int      # of VETH_B inside NS_B (where the XDP program sits)


@pytest.fixture(scope="module")
def netns() -> Iterator[Netns]:
    made: list[str] = []
    try:
        for ns in (NS_A, NS_B):
            _ip("netns", "add", ns)
            made.append(ns)
        _ip("link", "add", VETH_A, "netns", NS_A, "type", "veth", "peer", "name", VETH_B, "netns", NS_B)
        for ns, dev, addrs in ((NS_A, VETH_A, (V4_A, V4_A2, V6_A, V6_A2)), (NS_B, VETH_B, (V4_B, V6_B))):
            for a in addrs:
                plen = "24" if "." in a else "64"
                _ip("addr", "add", f"{a}/{plen}", "dev", dev, *(["nodad"] if ":" in a else []), ns=ns)
            _ip("link", "set", "lo", "up", ns=ns)
            _ip("link", "set", dev, "up", ns=ns)
        mac = {ns: json.loads(_ip("-j", "link", "show", dev, ns=ns))[0]["address"]
               for ns, dev in ((NS_A, VETH_A), (NS_B, VETH_B))}
        # static neighbours: no ARP / neighbour discovery traffic in the counts
        for a in (V4_B, V6_B):
            _ip("neigh", "replace", a, "lladdr", mac[NS_B], "nud", "permanent", "dev", VETH_A, ns=NS_A)
        for a in (V4_A, V4_A2, V6_A, V6_A2):
            _ip("neigh", "replace", a, "lladdr", mac[NS_A], "nud", "permanent", "dev", VETH_B, ns=NS_B)
        ifindex = json.loads(_ip("-j", "link", "show", VETH_B, ns=NS_B))[0]["ifindex"]
        yield Netns(ifindex_b=int(ifindex))
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


@contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the block with this thread in network namespace ``name`` (interface names and XDP attach)."""
    libc = ctypes.CDLL(None, use_errno=True)
    orig = os.open("/proc/self/ns/net", os.O_RDONLY)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        assert libc.setns(fd, CLONE_NEWNET) == 0, os.strerror(ctypes.get_errno())
        try:
            yield
        finally:
            assert libc.setns(orig, CLONE_NEWNET) == 0, os.strerror(ctypes.get_errno())
    finally:
        os.close(fd)
        os.close(orig)


PINGER = r"""
import os, socket, struct, sys, time
src, dst, count, interval = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
v6 = ":" in dst
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_RAW,
                  socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
s.bind((src, 0))
ident = os.getpid() & 0xFFFF
def csum(b):
    if len(b) % 2: b += b"\0"
    t = sum(struct.unpack(f"!{len(b) // 2}H", b)); t = (t >> 16) + (t & 0xFFFF); t += t >> 16
    return ~t & 0xFFFF
got = set()
def rx(until):
    while True:
        left = until - time.monotonic()
        if left <= 0: return
        s.settimeout(left)
        try: data = s.recv(2048)
        except socket.timeout: return
        if not v6: data = data[(data[0] & 0xF) * 4:]
        typ, _, _, rid, seq = struct.unpack("!BBHHH", data[:8])
        if typ == (129 if v6 else 0) and rid == ident: got.add(seq)
for seq in range(count):
    hdr = struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, ident, seq)
    pkt = hdr + b"sentinel-edge"
    if not v6: pkt = struct.pack("!BBHHH", 8, 0, csum(pkt), ident, seq) + b"sentinel-edge"
    s.sendto(pkt, (dst, 0))
    rx(time.monotonic() + interval)
rx(time.monotonic() + 0.3)
print(len(got))
"""


def ping(src: str, dst: str, count: int = 5, interval: float = 0.05) -> int:
    """ICMP echo requests from NS_A (source src) to dst in NS_B; returns the replies."""
    r = subprocess.run(["ip", "netns", "exec", NS_A, CHILD_PY, "-c", PINGER, src, dst, str(count), str(interval)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return int(r.stdout)


# -- connecting children ----------------------------------------------------------------------

CONNECTER = r"""
import ctypes, json, os, socket, sys
family, addr, listen, netns = sys.argv[1], sys.argv[2], sys.argv[4], sys.argv[6]
port, uid = int(sys.argv[3]), int(sys.argv[5])
if netns:
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.setns(os.open("/run/netns/" + netns, os.O_RDONLY), 0x40000000) == 0
fam = socket.AF_INET6 if family == "6" else socket.AF_INET
if listen:
    srv = socket.socket(socket.AF_INET6 if ":" in listen else socket.AF_INET)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((listen, port)); srv.listen(4)
if uid >= 0:
    os.setgroups([]); os.setgid(uid); os.setuid(uid)
s = socket.socket(fam)
try:
    s.connect((addr, port)); err = 0
except OSError as e:
    err = e.errno
def ino(p): return os.stat(p).st_ino
def read(p): return open(p).read().strip()
stat = read("/proc/self/stat"); st = stat[stat.rindex(")") + 2:].split()
pstat = read(f"/proc/{os.getppid()}/stat"); pst = pstat[pstat.rindex(")") + 2:].split()
cg = [l.split("::", 1)[1] for l in read("/proc/self/cgroup").splitlines() if l.startswith("0::")][0]
print(json.dumps({"errno": err, "pid": os.getpid(), "ppid": os.getppid(), "uid": os.getuid(), "euid": os.geteuid(),
    "gid": os.getgid(), "egid": os.getegid(), "loginuid": int(read("/proc/self/loginuid")),
    "sessionid": int(read("/proc/self/sessionid")), "mnt_ns": ino("/proc/self/ns/mnt"),
    "pid_ns": ino("/proc/self/ns/pid"),
    "net_ns": ino("/proc/self/ns/net"), "cgroup": cg, "start_ticks": int(st[19]), "parent_start_ticks": int(pst[19]),
    "comm": read("/proc/self/comm")}))
"""


def connect(addr: str, port: int, *, family: int = 4, listen: str = "", uid: int = -1,
            netns: str = "") -> dict[str, Any]:
    """A child connects to addr:port (after listening on listen:port, then dropping to uid); returns what it saw."""
    r = subprocess.run([CHILD_PY, "-c", CONNECTER, str(family), addr, str(port), listen, str(uid), netns],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout)
    return out


def _cgroup_id(cg_path: str) -> int:
    root = netmaps.cgroup2_root()
    return os.stat(os.path.join(root, cg_path.lstrip("/"))).st_ino


TICK = 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def check_connect_event(ev: Event, child: dict[str, Any], *, addr: str, port: int, action: int, policy_idx: int,
                        gen: int | None, family: int = AF_INET, result: int = 0, t0: int = 0) -> None:
    """Every field of a connect enforcement event, against what the child saw of itself."""
    ident = identity_of_path(os.path.realpath(CHILD_PY))
    assert ev.kind == "enforce"
    assert t0 <= ev.ts_ns <= _boot_ns()
    assert 0 <= ev.cpu < (os.cpu_count() or 1)
    p = ev.proc
    assert p["pid"] == child["pid"] and p["tid"] == child["pid"] and p["ns_pid"] == child["pid"]
    assert p["ppid"] == child["ppid"] == os.getpid()
    for k in ("uid", "euid", "gid", "egid", "loginuid", "sessionid", "mnt_ns", "pid_ns", "net_ns"):
        assert p[k] == child[k], k
    assert p["cgroup_id"] == _cgroup_id(child["cgroup"])
    assert p["start_ns"] // TICK == child["start_ticks"]
    assert p["parent_start_ns"] // TICK == child["parent_start_ticks"]
    assert p["comm"] == child["comm"].encode()
    d = ev.data
    packed = ipaddress.ip_address(addr).packed
    assert d == {
        "kind": KIND_CONNECT, "action": action, "result": result, "policy_idx": policy_idx,
        "gen": d["gen"] if gen is None else gen, "match": BY_NETWORK,
        "dev": ident.dev, "igen": ident.gen or 0, "ino": ident.ino,
        "family": family, "port": port, "protocol": IPPROTO_TCP,
        "addr": list(packed) + [0] * (16 - len(packed)), "ifindex": 0, "count": 1, "aux": 0,
        "path": b"", "filename": b"",
    }
    if gen is None:
        assert d["gen"] >= 1


def check_inbound_event(ev: Event, *, src: str, ifindex: int, action: int, policy_idx: int, gen: int | None,
                        count: int, protocol: int) -> None:
    assert ev.kind == "enforce"
    assert all(v in (0, b"") for v in ev.proc.values()), ev.proc   # no task in XDP
    assert set(ev.proc) >= {"pid", "tid", "uid", "comm", "cgroup_id", "start_ns"}
    assert 0 <= ev.cpu < (os.cpu_count() or 1)
    assert 0 < ev.ts_ns <= _boot_ns()
    d = ev.data
    packed = ipaddress.ip_address(src).packed
    assert d == {
        "kind": KIND_INBOUND, "action": action, "result": 0, "policy_idx": policy_idx,
        "gen": d["gen"] if gen is None else gen, "match": BY_NETWORK, "dev": 0, "igen": 0, "ino": 0,
        "family": AF_INET if len(packed) == 4 else AF_INET6, "port": 0, "protocol": protocol,
        "addr": list(packed) + [0] * (16 - len(packed)), "ifindex": ifindex, "count": count, "aux": 0,
        "path": b"", "filename": b"",
    }
    if gen is None:
        assert d["gen"] >= 1


# -- the installation -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def kern() -> Iterator[EnforceKernel]:
    k = EnforceKernel(pin_root=PIN)
    try:
        assert k.open(agent_pid=os.getpid()) == "installed"
        got = sync_network(k, PolicySet())
        assert got.connect and got.problems == [] and got.interfaces == {}
        assert {"enforce_connect4", "enforce_connect6"} <= set(k.pinned_links())
        yield k
    finally:
        k.uninstall()
    assert not Path(PIN).exists()


@pytest.fixture
def drain(kern: EnforceKernel) -> Iterator[Take]:
    dec = Decoder(kern.btf)
    ring = kern.ring()
    ring.drain([])

    def take(n: int = 1, timeout: float = 3.0, settle: float = 0.1) -> list[Event]:
        """At least n events (waiting up to timeout), plus whatever arrives within settle after."""
        out: list[bytes] = []
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            ring.drain(out)
            time.sleep(0.01)
        time.sleep(settle)
        ring.drain(out)
        return [dec.decode(r) for r in out]

    yield take
    kern.clear()
    blocker = KernelAddressBlocker(kern)
    for b in blocker.blocked():
        blocker.unblock(b.addr)
    for key in kern._keys("se_enf_xrate", ctypes.sizeof(netmaps.EnfRateKey)):   # report windows start afresh
        kern._delete("se_enf_xrate", key)


def apply(kern: EnforceKernel, *policies: Policy) -> KernelPlan:
    plan = plan_policies(PolicySet(policies=policies), extra=[plan_network])
    assert plan.problems == []
    kern.apply(plan)
    return plan


def connect_policy(pid: str, nets: tuple[str, ...], *, ports: tuple[int, ...] = (), mode: str = "enforce",
                   scope: Scope | None = None) -> Policy:
    return Policy(id=pid, kind="connect", mode=mode,  # type: ignore[arg-type]
                  spec=ConnectDeny(networks=tuple(_net(n) for n in nets), ports=ports), scope=scope or Scope())


def inbound_policy(pid: str, sources: tuple[str, ...], *, mode: str = "enforce") -> Policy:
    return Policy(id=pid, kind="inbound", mode=mode,  # type: ignore[arg-type]
                  spec=InboundDrop(interfaces=(VETH_B,), sources=tuple(_net(n) for n in sources)))


# -- tests: wire and planning ---------------------------------------------------------------

def test_wire_mirrors_match_the_btf(kern: EnforceKernel) -> None:
    for name, cls in netmaps.MIRRORS.items():
        t = kern.btf.struct(name)
        assert t.size_or_type == ctypes.sizeof(cls), name
        offsets = {m: bit // 8 for m, _, bit in t.members}
        assert offsets == {f[0]: getattr(cls, f[0]).offset for f in cls._fields_}, name
    enum = kern.btf.enum("se_enf_kind")
    assert (enum["SE_ENF_CONNECT"], enum["SE_ENF_INBOUND"]) == (KIND_CONNECT, KIND_INBOUND)


def _val(plan: KernelPlan, name: str, net: str) -> list[tuple[int, int]]:
    v = EnfMatchVal.from_buffer_copy(plan.entries[name][bytes(net_key(_net(net)))])
    assert v.expires_ns == 0 and v.has_igen == 0
    return [(v.idx[i], v.ports[i]) for i in range(v.n)]


def test_plan_gives_specific_prefixes_the_policies_of_covering_ones() -> None:
    ps = PolicySet(policies=(
        connect_policy("wide", ("10.0.0.0/8", "2001:db8::/32")),
        connect_policy("mid", ("10.1.0.0/16",), ports=(443,)),
        connect_policy("narrow", ("10.1.2.0/24", "2001:db8:1::/48", "::ffff:192.0.2.0/120"), ports=(22, 80)),
        connect_policy("other", ("192.168.0.0/16",)),
    ))
    plan = plan_policies(ps, extra=[plan_network])
    assert plan.index == {"wide": 0, "mid": 1, "narrow": 2, "other": 3}
    assert _val(plan, "se_enf_conn4", "10.0.0.0/8") == [(0, 0)]
    assert _val(plan, "se_enf_conn4", "10.1.0.0/16") == [(1, 443), (0, 0)]
    assert _val(plan, "se_enf_conn4", "10.1.2.0/24") == [(2, 0), (1, 443), (0, 0)]
    assert _val(plan, "se_enf_conn4", "192.0.2.0/24") == [(2, 0)]          # IPv4-mapped: the IPv4 trie
    assert _val(plan, "se_enf_conn4", "192.168.0.0/16") == [(3, 0)]
    assert _val(plan, "se_enf_conn6", "2001:db8::/32") == [(0, 0)]
    assert _val(plan, "se_enf_conn6", "2001:db8:1::/48") == [(2, 0), (0, 0)]
    assert len(plan.entries["se_enf_conn4"]) == 5 and len(plan.entries["se_enf_conn6"]) == 2
    # several ports: a port set in se_enf_scope and the PORT_SET flag on the policy
    from sentinel_edge.enforce.kernel import EnfPolicy, EnfPolicyKey, EnfScopeKey
    pol = EnfPolicy.from_buffer_copy(plan.entries["se_enf_policies"][bytes(EnfPolicyKey(0, 2))])
    assert pol.scope == netmaps.PORT_SET and pol.kind == KIND_CONNECT and pol.enforce == 1
    for idx in (0, 1, 3):
        assert EnfPolicy.from_buffer_copy(plan.entries["se_enf_policies"][bytes(EnfPolicyKey(0, idx))]).scope == 0
    scope = set(plan.entries["se_enf_scope"])
    assert scope == {bytes(EnfScopeKey(0, 2, netmaps.WHAT_PORT, p, 0)) for p in (22, 80)}


def test_plan_closes_ten_thousand_prefixes_quickly() -> None:
    nets = tuple(f"10.{i // 256}.{i % 256}.0/24" for i in range(10_000))
    ps = PolicySet(policies=(connect_policy("many", nets), connect_policy("all10", ("10.0.0.0/8",))))
    t = time.monotonic()
    plan = plan_policies(ps, extra=[plan_network])
    assert time.monotonic() - t < 5
    assert len(plan.entries["se_enf_conn4"]) == 10_001
    assert _val(plan, "se_enf_conn4", "10.39.15.0/24") == [(0, 0), (1, 0)]


def test_inbound_plan_names_interfaces_and_reports_missing_ones() -> None:
    ps = PolicySet(policies=(
        Policy(id="in", kind="inbound", mode="enforce",
               spec=InboundDrop(interfaces=("lo", "se-no-such-if"), sources=(_net("10.9.0.0/16"), _net("fd00::/8")))),
    ))
    plan = plan_policies(ps, extra=[plan_network])
    assert _val(plan, "se_enf_in4", "10.9.0.0/16") == [(0, 0)]
    assert _val(plan, "se_enf_in6", "fd00::/8") == [(0, 0)]
    from sentinel_edge.enforce.kernel import EnfScopeKey
    assert set(plan.entries["se_enf_scope"]) == {bytes(EnfScopeKey(0, 0, netmaps.WHAT_IFINDEX, 1, 0))}
    assert len(plan.problems) == 1 and "se-no-such-if" in plan.problems[0] and "policy in" in plan.problems[0]


def test_close_networks_is_idempotent() -> None:
    plan = plan_policies(PolicySet(policies=(connect_policy("a", ("10.0.0.0/8",)),
                                             connect_policy("b", ("10.1.0.0/16",)))), extra=[plan_network])
    before = {k: dict(v) for k, v in plan.entries.items()}
    close_networks(plan)
    assert plan.entries == before


def test_cgroup2_root_is_read_from_mountinfo(tmp_path: Path) -> None:
    mi = tmp_path / "mountinfo"
    mi.write_text("30 23 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n"
                  "31 30 0:27 / /sys/fs/cgroup/un\\040ified rw - cgroup2 cgroup2 rw,nsdelegate\n"
                  "32 30 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n")
    assert netmaps.cgroup2_root(str(mi)) == "/sys/fs/cgroup/un ified"
    mi.write_text("32 30 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n")
    with pytest.raises(Exception, match="cgroup2 is not mounted"):
        netmaps.cgroup2_root(str(mi))
    mi.write_text("31 30 0:27 /some/ns /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")
    with pytest.raises(Exception, match="only below its root"):
        netmaps.cgroup2_root(str(mi))
    real = netmaps.cgroup2_root()
    assert os.statvfs(real) and Path(real, "cgroup.procs").exists()


# -- tests: connect ----------------------------------------------------------------------------

def test_connect_denied_for_the_scoped_user_only(kern: EnforceKernel, drain: Take) -> None:
    apply(kern, connect_policy("no-231", ("127.231.0.0/16",), scope=Scope(users=(NOBODY,))))
    t0 = _boot_ns()
    denied = connect("127.231.0.5", 40001, listen="127.231.0.5", uid=NOBODY)
    assert denied["errno"] == errno.EPERM
    (ev,) = drain(1)
    check_connect_event(ev, denied, addr="127.231.0.5", port=40001, action=ACT_DENY, policy_idx=0, gen=None, t0=t0)
    other = connect("127.231.0.5", 40001, listen="127.231.0.5")          # root: not in scope
    assert other["errno"] == 0
    outside = connect("127.232.0.5", 40001, listen="127.232.0.5", uid=NOBODY)
    assert outside["errno"] == 0
    assert drain(0, timeout=0.2) == []
    assert kern.stats()["denies"] >= 1


UDP_SENDER = """
import errno, json, os, socket, sys
fam = socket.AF_INET6 if sys.argv[1] == "6" else socket.AF_INET
rx = socket.socket(fam, socket.SOCK_DGRAM)
rx.bind((sys.argv[2], int(sys.argv[3])))
tx = socket.socket(fam, socket.SOCK_DGRAM)
try:
    tx.sendto(b"x", (sys.argv[2], int(sys.argv[3])))
    err = 0
except OSError as exc:
    err = exc.errno
print(json.dumps({"pid": os.getpid(), "errno": err}))
"""


def udp_sendto(addr: str, port: int, family: int = 4) -> dict[str, Any]:
    """A child sends one datagram with sendto() on an unconnected UDP socket (to its own receiver)."""
    r = subprocess.run([CHILD_PY, "-c", UDP_SENDER, str(family), addr, str(port)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout)
    return out


def test_unconnected_udp_sendto_is_denied_like_connect(kern: EnforceKernel, drain: Take) -> None:
    apply(kern, connect_policy("no-udp-233", ("127.233.0.0/16",)))
    denied = udp_sendto("127.233.0.9", 40101)
    assert denied["errno"] == errno.EPERM
    (ev,) = drain(1)
    assert ev.proc["pid"] == denied["pid"]
    assert ev.data["kind"] == 4 and ev.data["action"] == ACT_DENY and ev.data["port"] == 40101
    assert bytes(ev.data["addr"][:4]) == bytes([127, 233, 0, 9]) and ev.data["family"] == AF_INET
    assert udp_sendto("127.234.0.9", 40102)["errno"] == 0
    assert drain(0, timeout=0.2) == []


def test_a_process_retrying_a_denied_destination_is_reported_once_a_second_with_the_count(
        kern: EnforceKernel, drain: Take) -> None:
    apply(kern, connect_policy("no-235", ("127.235.0.0/16",)))
    code = ("import errno, json, socket, time\n"
            "errs = []\n"
            "for i in range(50):\n"
            "    s = socket.socket()\n"
            "    try:\n"
            "        s.connect(('127.235.0.1', 40201)); errs.append(0)\n"
            "    except OSError as e:\n"
            "        errs.append(e.errno)\n"
            "    s.close()\n"
            "time.sleep(1.1)\n"
            "s = socket.socket()\n"
            "try:\n"
            "    s.connect(('127.235.0.1', 40201))\n"
            "except OSError as e:\n"
            "    errs.append(e.errno)\n"
            "print(json.dumps(errs))\n")
    r = subprocess.run([CHILD_PY, "-c", code], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [errno.EPERM] * 51      # every attempt is denied
    evs = drain(2)
    assert [e.data["count"] for e in evs] == [1, 50]       # the first, then the 49 since and this one
    assert drain(0, timeout=0.2) == []
    assert kern.stats()["denies"] >= 51


def test_connect_ports_are_honoured(kern: EnforceKernel, drain: Take) -> None:
    apply(kern, connect_policy("one-port", ("127.231.1.0/24",), ports=(40011,)),
          connect_policy("two-ports", ("127.231.2.0/24",), ports=(40021, 40022)))
    assert connect("127.231.1.7", 40011, listen="127.231.1.7")["errno"] == errno.EPERM
    assert connect("127.231.1.7", 40012, listen="127.231.1.7")["errno"] == 0
    assert connect("127.231.2.7", 40021, listen="127.231.2.7")["errno"] == errno.EPERM
    c = connect("127.231.2.7", 40022, listen="127.231.2.7")
    assert c["errno"] == errno.EPERM
    assert connect("127.231.2.7", 40023, listen="127.231.2.7")["errno"] == 0
    evs = drain(3)
    assert [(e.data["policy_idx"], e.data["port"]) for e in evs] == [(0, 40011), (1, 40021), (1, 40022)]
    check_connect_event(evs[2], c, addr="127.231.2.7", port=40022, action=ACT_DENY, policy_idx=1, gen=None)


def test_longest_match_still_applies_covering_policies(kern: EnforceKernel, drain: Take) -> None:
    apply(kern, connect_policy("wide", ("127.231.0.0/16",), scope=Scope(users=(NOBODY,))),
          connect_policy("narrow-audit", ("127.231.7.0/24",), mode="audit"))
    c = connect("127.231.7.5", 40031, listen="127.231.7.5", uid=NOBODY)
    assert c["errno"] == errno.EPERM                       # the /16 policy, found in the /24 entry
    (ev,) = drain(1)
    check_connect_event(ev, c, addr="127.231.7.5", port=40031, action=ACT_DENY, policy_idx=0, gen=None)
    r = connect("127.231.7.5", 40031, listen="127.231.7.5")    # root: only the audit policy applies
    assert r["errno"] == 0
    (ev,) = drain(1)
    check_connect_event(ev, r, addr="127.231.7.5", port=40031, action=ACT_AUDIT, policy_idx=1, gen=None)


def test_audit_mode_lets_connect_through_and_reports(kern: EnforceKernel, drain: Take) -> None:
    apply(kern, connect_policy("watch", ("127.231.3.0/24",), mode="audit"))
    before = kern.stats()
    c = connect("127.231.3.9", 40041, listen="127.231.3.9")
    assert c["errno"] == 0
    (ev,) = drain(1)
    check_connect_event(ev, c, addr="127.231.3.9", port=40041, action=ACT_AUDIT, policy_idx=0, gen=None)
    after = kern.stats()
    assert after["audits"] == before["audits"] + 1 and after["denies"] == before["denies"]


def test_the_agent_itself_is_never_denied(kern: EnforceKernel, drain: Take) -> None:
    import socket
    apply(kern, connect_policy("all", ("127.231.4.0/24",)))
    srv = socket.socket()
    srv.bind(("127.231.4.1", 0))
    srv.listen(1)
    try:
        s = socket.create_connection(srv.getsockname(), timeout=5)   # the test process is the agent
        s.close()
    finally:
        srv.close()
    (ev,) = drain(1)
    assert ev.proc["pid"] == os.getpid()
    assert (ev.data["action"], ev.data["result"], ev.data["kind"]) == (ACT_AUDIT, -1, KIND_CONNECT)


def test_ipv4_mapped_destination_of_an_ipv6_socket_is_denied(kern: EnforceKernel, drain: Take) -> None:
    apply(kern, connect_policy("no-231", ("127.231.5.0/24",)))
    c = connect("::ffff:127.231.5.5", 40051, family=6, listen="127.231.5.5")
    assert c["errno"] == errno.EPERM
    (ev,) = drain(1)
    check_connect_event(ev, c, addr="127.231.5.5", port=40051, action=ACT_DENY, policy_idx=0, gen=None)


def test_ipv6_connect_denied_for_the_scoped_user_only(kern: EnforceKernel, drain: Take, netns: Netns) -> None:
    apply(kern, connect_policy("no-fd00", ("fd00:5e::/64",), ports=(40061,), scope=Scope(users=(NOBODY,))))
    c = connect(V6_A2, 40061, family=6, listen=V6_A2, uid=NOBODY, netns=NS_A)
    assert c["errno"] == errno.EPERM
    (ev,) = drain(1)
    check_connect_event(ev, c, addr=V6_A2, port=40061, action=ACT_DENY, policy_idx=0, gen=None, family=AF_INET6)
    assert connect(V6_A2, 40061, family=6, listen=V6_A2, netns=NS_A)["errno"] == 0          # root
    assert connect(V6_A2, 40062, family=6, listen=V6_A2, uid=NOBODY, netns=NS_A)["errno"] == 0   # other port
    assert drain(0, timeout=0.2) == []


# -- tests: response blocks --------------------------------------------------------------------

def test_block_denies_connect_survives_policy_changes_and_expires_by_itself(kern: EnforceKernel,
                                                                            drain: Take) -> None:
    blocker = KernelAddressBlocker(kern)
    apply(kern, connect_policy("unrelated", ("127.231.6.0/24",), mode="audit"))
    blocker.block(ipaddress.ip_address("127.231.9.9"), 1.5, "rule x")
    t_block = _boot_ns()
    (b,) = blocker.blocked()
    assert (b.addr, b.reason) == (ipaddress.ip_address("127.231.9.9"), "rule x")
    assert 1.0 < b.remaining_s <= 1.5 and b.expires_ns > t_block
    c = connect("127.231.9.9", 40071, listen="127.231.9.9")
    assert c["errno"] == errno.EPERM
    (ev,) = drain(1)
    check_connect_event(ev, c, addr="127.231.9.9", port=40071, action=ACT_DENY, policy_idx=BLOCK_IDX, gen=0)
    # a new policy set (two generation flips) leaves the block alone
    apply(kern, connect_policy("unrelated", ("127.231.6.0/24",)))
    kern.clear()
    assert connect("127.231.9.9", 40071, listen="127.231.9.9")["errno"] == errno.EPERM
    drain(1)
    # no user space involved: the kernel honours the deadline
    time.sleep(max(0.0, (b.expires_ns - _boot_ns()) / 1e9) + 0.05)
    assert connect("127.231.9.9", 40071, listen="127.231.9.9")["errno"] == 0
    assert drain(0, timeout=0.2) == []
    assert blocker.blocked() == []
    assert kern.count_entries("se_enf_conn4") == 0 and kern.count_entries("se_enf_in4") == 0


def test_unblock_and_ipv6_block(kern: EnforceKernel, drain: Take, netns: Netns) -> None:
    blocker = KernelAddressBlocker(kern)
    blocker.block(ipaddress.ip_address(V6_A), 30, "rule y")
    blocker.block(ipaddress.ip_address("::ffff:127.231.9.10"), 30, "rule z")     # stored as IPv4
    assert {(b.addr, b.reason) for b in blocker.blocked()} == {
        (ipaddress.ip_address(V6_A), "rule y"), (ipaddress.ip_address("127.231.9.10"), "rule z")}
    c = connect(V6_A, 40081, family=6, listen=V6_A, netns=NS_A)
    assert c["errno"] == errno.EPERM
    (ev,) = drain(1)
    check_connect_event(ev, c, addr=V6_A, port=40081, action=ACT_DENY, policy_idx=BLOCK_IDX, gen=0, family=AF_INET6)
    blocker.unblock(ipaddress.ip_address(V6_A))
    blocker.unblock(ipaddress.ip_address("127.231.9.10"))
    assert blocker.blocked() == []
    assert connect(V6_A, 40081, family=6, listen=V6_A, netns=NS_A)["errno"] == 0
    with pytest.raises(Exception, match="time to live"):
        blocker.block(ipaddress.ip_address("127.231.9.11"), 0, "x")


# -- tests: XDP ------------------------------------------------------------------------------------

def _sync_xdp(kern: EnforceKernel, *policies: Policy, extra: tuple[str, ...] = ()) -> netmaps.NetSync:
    with in_netns(NS_B):
        if policies:
            apply(kern, *policies)
        got = sync_network(kern, PolicySet(policies=policies), extra_interfaces=extra)
    assert got.problems == []
    return got


def _wait_report_window(first: Event) -> None:
    """Sleep until the rate limit lets this source be reported again."""
    time.sleep(max(0.0, (first.ts_ns + 1_000_000_000 - _boot_ns()) / 1e9) + 0.05)


def test_xdp_drops_pings_from_a_denied_source_and_reports_with_count(kern: EnforceKernel, drain: Take,
                                                                    netns: Netns) -> None:
    got = _sync_xdp(kern, inbound_policy("no-a", (f"{V4_A}/32",)))
    assert got.interfaces == {VETH_B: netns.ifindex_b}
    info = link_info(Path(PIN) / "links" / f"xdp_{VETH_B}")
    assert info is not None and info.ifindex == netns.ifindex_b and info.type == netmaps.BPF_LINK_TYPE_XDP
    try:
        drops0 = kern.stats()["drops"]
        assert ping(V4_A, V4_B, count=5) == 0
        assert ping(V4_A2, V4_B, count=5) == 5
        (first,) = drain(1)
        check_inbound_event(first, src=V4_A, ifindex=netns.ifindex_b, action=ACT_DROP, policy_idx=0, gen=None,
                            count=1, protocol=IPPROTO_ICMP)
        assert kern.stats()["drops"] - drops0 == 5
        _wait_report_window(first)
        assert ping(V4_A, V4_B, count=1) == 0
        (second,) = drain(1)   # the 4 not reported in the first second, and this one
        check_inbound_event(second, src=V4_A, ifindex=netns.ifindex_b, action=ACT_DROP, policy_idx=0,
                            gen=first.data["gen"], count=5, protocol=IPPROTO_ICMP)
    finally:
        _sync_xdp(kern)
    assert not (Path(PIN) / "links" / f"xdp_{VETH_B}").exists()
    assert ping(V4_A, V4_B, count=2) == 2


def test_xdp_ipv6_and_audit_mode(kern: EnforceKernel, drain: Take, netns: Netns) -> None:
    try:
        _sync_xdp(kern, inbound_policy("no-a6", (f"{V6_A}/128",)), inbound_policy("watch-a2", (f"{V4_A2}/32",),
                                                                                   mode="audit"))
        assert ping(V6_A, V6_B, count=3) == 0
        assert ping(V6_A2, V6_B, count=3) == 3
        assert ping(V4_A2, V4_B, count=3) == 3          # audit: passes
        evs = drain(2)
        assert len(evs) == 2
        check_inbound_event(evs[0], src=V6_A, ifindex=netns.ifindex_b, action=ACT_DROP, policy_idx=0, gen=None,
                            count=1, protocol=IPPROTO_ICMPV6)
        check_inbound_event(evs[1], src=V4_A2, ifindex=netns.ifindex_b, action=ACT_AUDIT, policy_idx=1,
                            gen=evs[0].data["gen"], count=1, protocol=IPPROTO_ICMP)
    finally:
        _sync_xdp(kern)


def test_xdp_block_expires_and_tail_call_slot(kern: EnforceKernel, drain: Take, netns: Netns) -> None:
    blocker = KernelAddressBlocker(kern)
    try:
        _sync_xdp(kern, extra=(VETH_B,))          # no policy: attached for response blocks
        blocker.block(ipaddress.ip_address(V4_A2), 1.0, "rule w")
        deadline = blocker.blocked()[0].expires_ns
        assert ping(V4_A2, V4_B, count=2) == 0
        assert ping(V4_A, V4_B, count=2) == 2
        (ev,) = drain(1)
        check_inbound_event(ev, src=V4_A2, ifindex=netns.ifindex_b, action=ACT_DROP, policy_idx=BLOCK_IDX, gen=0,
                            count=1, protocol=IPPROTO_ICMP)
        time.sleep(max(0.0, (deadline - _boot_ns()) / 1e9) + 0.05)
        assert ping(V4_A2, V4_B, count=2) == 2
        # slot 0 of se_xdp_next gets every packet the entry program lets through
        prog_fd = _load_xdp_drop_all()
        try:
            kern._update("se_xdp_next", ctypes.c_uint32(0), ctypes.c_uint32(prog_fd))
            assert ping(V4_A, V4_B, count=2) == 0
            kern._delete("se_xdp_next", bytes(ctypes.c_uint32(0)))
            assert ping(V4_A, V4_B, count=2) == 2
        finally:
            os.close(prog_fd)
    finally:
        _sync_xdp(kern)


def _load_xdp_drop_all() -> int:
    """A two-instruction XDP program (r0 = XDP_DROP; exit), loaded with the raw libbpf call."""
    lib = libbpf.lib()
    fn = lib.bpf_prog_load
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    insns = (ctypes.c_uint64 * 2)(0x00000001_000000B7, 0x95)   # mov64 r0, 1 ; exit

    class LoadOpts(ctypes.Structure):   # struct bpf_prog_load_opts, up to kern_version
        _fields_ = [("sz", ctypes.c_size_t), ("attempts", ctypes.c_uint32), ("expected_attach_type", ctypes.c_uint32),
                    ("prog_btf_fd", ctypes.c_uint32), ("prog_flags", ctypes.c_uint32),
                    ("prog_ifindex", ctypes.c_uint32), ("kern_version", ctypes.c_uint32)]

    opts = LoadOpts(sz=ctypes.sizeof(LoadOpts), expected_attach_type=37)   # BPF_XDP, as libbpf loads SEC("xdp")
    fd = fn(6, b"se_test_drop", b"GPL", insns, 2, ctypes.addressof(opts))  # BPF_PROG_TYPE_XDP
    assert fd >= 0, libbpf.errno_text(fd)
    return int(fd)


# -- tests: persistence and replacement ------------------------------------------------------------

INSTALLER = r"""
import ipaddress, os, sys
from sentinel_edge.enforce.kernel import EnforceKernel, plan_policies
from sentinel_edge.enforce.model import ConnectDeny, Policy, PolicySet
from sentinel_edge.enforce.netmaps import plan_network, sync_network
k = EnforceKernel(pin_root=sys.argv[1])
print(k.open(agent_pid=os.getpid()))
ps = PolicySet(policies=(Policy(id="p", kind="connect", mode="enforce",
                                spec=ConnectDeny(networks=(ipaddress.ip_network("127.231.8.0/24"),))),))
sync_network(k, ps)
k.apply(plan_policies(ps, extra=[plan_network]))
sys.stdout.flush()
os._exit(0)   # no cleanup: what is pinned must keep working
"""


def test_enforcement_survives_the_loading_process_and_is_adopted(netns: Netns) -> None:
    pin = PIN + "-persist"
    try:
        r = subprocess.run([sys.executable, "-c", INSTALLER, pin], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout.strip() == "installed", r.stderr
        assert connect("127.231.8.8", 40091, listen="127.231.8.8")["errno"] == errno.EPERM
        k = EnforceKernel(pin_root=pin)
        assert k.open() == "adopted"
        assert {"enforce_connect4", "enforce_connect6"} <= set(k.pinned_links())
        assert k.count_entries("se_enf_conn4") == 1
        # adopted: what is pinned stays; a new XDP attachment comes from the object loaded again on its maps
        pol = inbound_policy("i", (f"{V4_A}/32",))
        with in_netns(NS_B):
            apply(k, pol)
            got = sync_network(k, PolicySet(policies=(pol,)))
        assert got.interfaces == {VETH_B: netns.ifindex_b} and got.problems == []
        assert ping(V4_A, V4_B, count=2) == 0
        assert connect("127.231.8.8", 40091, listen="127.231.8.8")["errno"] == 0   # that policy set is gone
        k.uninstall()
        assert ping(V4_A, V4_B, count=2) == 2
    finally:
        if Path(pin).exists():
            EnforceKernel(pin_root=pin).uninstall()
    assert not Path(pin).exists()


def test_replace_points_network_links_at_the_new_programs(netns: Netns) -> None:
    pin = PIN + "-replace"
    k = EnforceKernel(pin_root=pin)
    try:
        assert k.open() == "installed"
        pols = (connect_policy("p", ("127.231.10.0/24",)), inbound_policy("i", (f"{V4_A}/32",)))
        with in_netns(NS_B):
            apply(k, *pols)
            sync_network(k, PolicySet(policies=pols))
        links = {n: link_info(Path(pin) / "links" / n) for n in ("enforce_connect4", f"xdp_{VETH_B}")}
        k.close()
        k2 = EnforceKernel(pin_root=pin)
        k2.open()

        def write(kk: EnforceKernel) -> None:
            apply(kk, *pols)

        with in_netns(NS_B):
            k2.replace(write)
        for name, before in links.items():
            after = link_info(Path(pin) / "links" / name)
            assert before is not None and after is not None, name
            assert after.type == before.type and after.ifindex == before.ifindex
            assert after.prog_id != before.prog_id, name      # the same link, the new program
        assert connect("127.231.10.1", 40101, listen="127.231.10.1")["errno"] == errno.EPERM
        assert ping(V4_A, V4_B, count=2) == 0
        assert ping(V4_A2, V4_B, count=2) == 2
        k2.uninstall()
    finally:
        EnforceKernel(pin_root=pin).uninstall()
    assert not Path(pin).exists()
    assert ping(V4_A, V4_B, count=2) == 2


def test_sync_reports_a_missing_interface_and_attaches_the_rest(kern: EnforceKernel,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    pol = Policy(id="gone", kind="inbound", mode="enforce",
                 spec=InboundDrop(interfaces=("se-no-such-if",), sources=(_net("10.9.0.0/16"),)))
    with caplog.at_level("WARNING", logger="sentinel_edge.enforce.netmaps"):
        got = netmaps.sync_attachments(kern, PolicySet(policies=(pol,)))
    assert got.connect and got.interfaces == {} and got.cgroup_root == netmaps.cgroup2_root()
    assert len(got.problems) == 1 and got.problems[0].startswith("interface se-no-such-if: ")
    assert [r.getMessage() for r in caplog.records] == [f"network enforcement: {got.problems[0]}"]
    assert not any(p.startswith("xdp_") for p in kern.pinned_links())

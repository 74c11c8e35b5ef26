"""The network inspector on real interfaces: attach and detach in network namespaces, real traffic.

    netns <a>  va  10.<n>.0.1  fd<n>::1  ======  vb  10.<n>.0.2  fd<n>::2  netns <b>
                                                 ^ inspected: XDP (through the enforcement entry), TC in/out

The module makes both namespaces and the veth pair, turns GSO, GRO and TSO
off on both ends (every packet on the wire is one packet in the counts) and
sets static neighbours (no ARP / neighbour discovery in the counts); the
enforcement object is installed under a pin root of its own and uninstalled
at the end. Traffic: ping, and Python sockets run with ``ip netns exec``,
only between the two namespaces.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from netns_topology import in_netns

from sentinel_edge.enforce import netmaps
from sentinel_edge.enforce.kernel import EnforceKernel
from sentinel_edge.enforce.model import PolicySet
from sentinel_edge.errors import NetInspectError
from sentinel_edge.loader import libbpf
from sentinel_edge.model import Event
from sentinel_edge.netinspect.kernel import FlowEntry, Interface, NetInspectKernel, NiSettings
from sentinel_edge.wire.decode import Decoder

pytestmark = pytest.mark.kernel

TAG = os.getpid() % 100000
NET = 200 + os.getpid() % 50
NS_A, NS_B, NS_C = f"se-nia-{TAG}", f"se-nib-{TAG}", f"se-nic-{TAG}"
VA, VB = f"senia{TAG}", f"senib{TAG}"
IP_A, IP_B = f"10.{NET}.0.1", f"10.{NET}.0.2"
IP6_A, IP6_B = f"fd{NET:02x}::1", f"fd{NET:02x}::2"
PIN = f"/sys/fs/bpf/se-test-ni-{TAG}"
PY = "/usr/bin/python3"     # children use the standard library only
AF_INET, AF_INET6 = 2, 10
INIT_REMOTE = 1
TCP_SYN, TCP_ACK, TCP_FIN = 0x02, 0x10, 0x01
DET_ICMP, DET_SCAN = 4, 3
SO_COOKIE = 57


def sh(*cmd: str, check: bool = True, timeout: float = 30) -> str:
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, f"{' '.join(cmd)}: {r.stderr.strip()}"
    return r.stdout


def a16(text: str) -> bytes:
    import ipaddress

    return ipaddress.ip_address(text).packed.ljust(16, b"\0")


# -- the namespaces ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pair:
    ia: int     # ifindex of VA in NS_A
    ib: int     # ifindex of VB in NS_B


def _del_netns(name: str) -> None:
    if not Path(f"/run/netns/{name}").exists():
        return
    for pid in sh("ip", "netns", "pids", name, check=False).split():
        try:
            os.kill(int(pid), 9)
        except (ProcessLookupError, ValueError):
            pass
    sh("ip", "netns", "del", name, check=False)


def wait_quiet(quiet_s: float = 1.5, timeout: float = 15.0) -> None:
    """Wait until the link came to rest (the multicast listener reports of a new interface are over)."""
    def stats() -> tuple[int, int]:
        st = json.loads(sh("ip", "-n", NS_B, "-s", "-j", "link", "show", VB))[0]["stats64"]
        return int(st["rx"]["packets"]), int(st["tx"]["packets"])

    deadline = time.monotonic() + timeout
    last, since = stats(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        cur = stats()
        if cur != last:
            last, since = cur, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
    raise AssertionError(f"the veth pair kept sending for {timeout} s")


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    try:
        for ns in (NS_A, NS_B):
            sh("ip", "netns", "add", ns)
            # no router solicitations nor duplicate address detection: less IPv6 chatter in the counts
            for conf in ("all", "default"):
                sh("ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"net.ipv6.conf.{conf}.router_solicitations=0",
                   f"net.ipv6.conf.{conf}.accept_dad=0")
        sh("ip", "link", "add", VA, "netns", NS_A, "type", "veth", "peer", "name", VB, "netns", NS_B)
        for ns, dev, ip4, ip6 in ((NS_A, VA, IP_A, IP6_A), (NS_B, VB, IP_B, IP6_B)):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "addr", "add", f"{ip4}/24", "dev", dev)
            sh("ip", "-n", ns, "addr", "add", f"{ip6}/64", "dev", dev, "nodad")
            sh("ip", "netns", "exec", ns, "ethtool", "-K", dev, "gso", "off", "gro", "off", "tso", "off")
            sh("ip", "-n", ns, "link", "set", dev, "up")
        mac = {ns: json.loads(sh("ip", "-n", ns, "-j", "link", "show", dev))[0]["address"]
               for ns, dev in ((NS_A, VA), (NS_B, VB))}
        for peer_ns, dev, ns in ((NS_A, VA, NS_B), (NS_B, VB, NS_A)):
            for addr in ((IP_B, IP6_B) if ns == NS_B else (IP_A, IP6_A)):
                sh("ip", "-n", peer_ns, "neigh", "replace", addr, "lladdr", mac[ns], "nud", "permanent", "dev", dev)
        wait_quiet()
        ia = json.loads(sh("ip", "-n", NS_A, "-j", "link", "show", VA))[0]["ifindex"]
        ib = json.loads(sh("ip", "-n", NS_B, "-j", "link", "show", VB))[0]["ifindex"]
        yield Pair(int(ia), int(ib))
    finally:
        for ns in (NS_A, NS_B, NS_C):
            _del_netns(ns)
    assert not any(Path(f"/run/netns/{ns}").exists() for ns in (NS_A, NS_B, NS_C))


@pytest.fixture(scope="module")
def enforce() -> Iterator[EnforceKernel]:
    k = EnforceKernel(pin_root=PIN)
    try:
        assert k.open(agent_pid=os.getpid()) == "installed"
        yield k
    finally:
        k.uninstall()
    assert not Path(PIN).exists()


@pytest.fixture
def kern(pair: Pair, enforce: EnforceKernel) -> Iterator[NetInspectKernel]:
    k = NetInspectKernel(NiSettings(icmp=5, scan_ports=6, syn_src=0, syn_all=0, window_s=30.0))
    try:
        k.load()
        yield k
    finally:
        k.close()
    assert_clean(enforce)


# -- what is attached, seen from outside ------------------------------------------------------------

def xdp_prog_id(ns: str, dev: str) -> int:
    info = json.loads(sh("ip", "-n", ns, "-j", "link", "show", dev))[0]
    xdp = info.get("xdp")
    return int(xdp["prog"]["id"]) if xdp and "prog" in xdp else 0


def tc_filters(ns: str, dev: str, direction: str) -> list[str]:
    """Names of the BPF filters on one side of the clsact qdisc ([] when there is no qdisc)."""
    r = subprocess.run(["tc", "-n", ns, "-j", "filter", "show", "dev", dev, direction], capture_output=True,
                       text=True, timeout=20)
    if r.returncode != 0 or not r.stdout.strip():
        return []
    return [f["options"]["bpf_name"].split(":")[0] for f in json.loads(r.stdout)
            if "options" in f and "bpf_name" in f["options"]]


def has_clsact(ns: str, dev: str) -> bool:
    return any(q.get("kind") == "clsact" for q in json.loads(sh("tc", "-n", ns, "-j", "qdisc", "show", "dev", dev)))


def prog_id_of(fd: int) -> int:
    info = (ctypes.c_uint32 * 2)()
    n = ctypes.c_uint32(8)
    assert libbpf.lib().bpf_obj_get_info_by_fd(fd, info, ctypes.byref(n)) == 0
    return int(info[1])


def slot0(enforce: EnforceKernel) -> int:
    key, val = ctypes.c_uint32(0), ctypes.c_uint32()
    ret = libbpf.lib().bpf_map_lookup_elem(enforce.fd("se_xdp_next"), ctypes.byref(key), ctypes.byref(val))
    assert ret == 0 or -ret == errno.ENOENT
    return int(val.value) if ret == 0 else 0


def assert_clean(enforce: EnforceKernel) -> None:
    """Nothing of the inspector left on the veth: no XDP program, no filter, no qdisc, slot 0 empty."""
    if Path(f"/run/netns/{NS_B}").exists():
        assert xdp_prog_id(NS_B, VB) == 0
        assert not has_clsact(NS_B, VB)
    assert slot0(enforce) == 0
    assert not (Path(PIN) / "links" / netmaps.xdp_pin_name(VB)).exists()


# -- traffic -----------------------------------------------------------------------------------------

PINGER = r"""
import socket, struct, sys, time
dst, count, interval, ident = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(1.0)
def csum(b):
    t = sum(struct.unpack(f"!{len(b) // 2}H", b))
    t = (t >> 16) + (t & 0xFFFF)
    return ~(t + (t >> 16)) & 0xFFFF
got = 0
for seq in range(count):
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"p" * 56
    s.sendto(body[:2] + struct.pack("!H", csum(body)) + body[4:], (dst, 0))
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        try:
            pkt = s.recv(2048)
        except TimeoutError:
            break
        ihl = (pkt[0] & 15) * 4
        if pkt[ihl] == 0 and struct.unpack("!HH", pkt[ihl + 4:ihl + 8]) == (ident, seq):
            got += 1
            break
    time.sleep(interval)
print(got)
"""


def ping(src_ns: str, dst: str, count: int, ident: int = 0x5E01) -> int:
    """Echo replies received for ``count`` ICMP echo requests (84 bytes of IP each, id ``ident``), 20 ms apart."""
    return int(sh("ip", "netns", "exec", src_ns, PY, "-c", PINGER, dst, str(count), "0.02", str(ident)).strip())


UDP_SERVER = r"""
import socket, sys
addr, port, n_in, n_out, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((addr, port))
s.settimeout(10)
print("ready", flush=True)
peer = None
for _ in range(n_in):
    _, peer = s.recvfrom(65535)
for _ in range(n_out):
    s.sendto(b"r" * size, peer)
print(int.from_bytes(s.getsockopt(socket.SOL_SOCKET, 57, 8), "little"), flush=True)
"""

UDP_CLIENT = r"""
import socket, sys, time
addr, port, n_out, n_in, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
for _ in range(n_out):
    s.sendto(b"q" * size, (addr, port))
    time.sleep(0.002)
for _ in range(n_in):
    s.recvfrom(65535)
print(s.getsockname()[1], flush=True)
"""

TCP_SERVER = r"""
import socket, sys
addr, port, n_in, n_out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((addr, port))
ls.listen(1)
ls.settimeout(10)
print("ready", flush=True)
c, peer = ls.accept()
c.settimeout(10)
got = 0
while got < n_in:
    b = c.recv(65536)
    if not b:
        break
    got += len(b)
c.sendall(b"s" * n_out)
cookie = int.from_bytes(c.getsockopt(socket.SOL_SOCKET, 57, 8), "little")
c.shutdown(socket.SHUT_WR)
c.recv(1)
c.close()
print(got, peer[1], cookie, flush=True)
"""

TCP_CLIENT = r"""
import socket, sys
addr, port, n_out, n_in = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.create_connection((addr, port), timeout=10)
s.sendall(b"c" * n_out)
got = 0
while got < n_in:
    b = s.recv(65536)
    if not b:
        break
    got += len(b)
s.close()
print(got, flush=True)
"""


def serve_and_run(server: str, server_args: list[str], client: str, client_args: list[str]) -> tuple[str, str]:
    """Start ``server`` in NS_B, wait until it listens, run ``client`` in NS_A; both outputs."""
    srv = subprocess.Popen(["ip", "netns", "exec", NS_B, PY, "-c", server, *server_args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        assert srv.stdout is not None and srv.stderr is not None
        if srv.stdout.readline().strip() != "ready":
            srv.kill()
            raise AssertionError(f"server did not start: {srv.stderr.read()}")
        cli = subprocess.run(["ip", "netns", "exec", NS_A, PY, "-c", client, *client_args], capture_output=True,
                             text=True, timeout=30)
        assert cli.returncode == 0, cli.stderr
        out, err = srv.communicate(timeout=30)
        assert srv.returncode == 0, err
        return out.strip(), cli.stdout.strip()
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()


def snmp(ns: str) -> dict[str, int]:
    """The IPv4 and TCP counters of a network namespace (/proc/net/snmp and netstat)."""
    out: dict[str, int] = {}
    for f in ("/proc/net/snmp", "/proc/net/netstat"):
        lines = sh("ip", "netns", "exec", ns, "cat", f).splitlines()
        for head, vals in zip(lines[::2], lines[1::2], strict=True):
            prefix = head.split(":")[0]
            for k, v in zip(head.split()[1:], vals.split()[1:], strict=True):
                out[f"{prefix}.{k}"] = int(v)
    return out


def flows_where(kern: NetInspectKernel, pred: Callable[[FlowEntry], bool]) -> list[FlowEntry]:
    return [f for f in kern.read_flows() if pred(f)]


def take_events(kern: NetInspectKernel) -> list[Event]:
    dec = Decoder(kern.btf)
    out: list[bytes] = []
    kern.ring().drain(out)
    return [dec.decode(r) for r in out]


# -- tests -----------------------------------------------------------------------------------------------

def test_attach_in_another_netns_counts_ping_and_detects_the_echo_flood(kern: NetInspectKernel,
                                                                         enforce: EnforceKernel,
                                                                         pair: Pair) -> None:
    iface = Interface(VB, netns=NS_B)
    got = kern.attach(iface, enforce)
    assert (got.name, got.netns, got.ifindex, got.hooks) == (VB, NS_B, pair.ib, ("xdp", "tc_ingress", "tc_egress"))
    assert kern.attached() == [got]
    assert kern.attach(iface, enforce) == got                      # again: nothing changes
    # seen from outside: the entry program on the interface, ni_xdp in its slot 0, our two filters
    entry_id = xdp_prog_id(NS_B, VB)
    assert entry_id != 0 and entry_id != prog_id_of(kern.prog_fd("ni_xdp"))
    assert slot0(enforce) == prog_id_of(kern.prog_fd("ni_xdp"))
    assert tc_filters(NS_B, VB, "ingress") == ["ni_tc_ingress"] and tc_filters(NS_B, VB, "egress") == ["ni_tc_egress"]
    take_events(kern)
    c0 = kern.counters()
    t0 = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    assert ping(NS_A, IP_B, 5) == 5
    c1 = kern.counters()
    for hook in ("xdp", "tc_ingress", "tc_egress"):
        assert c1[hook]["packets"] - c0[hook]["packets"] == 5, hook
        assert c1[hook]["bytes"] - c0[hook]["bytes"] == 5 * (14 + 84), hook
    (f,) = flows_where(kern, lambda f: f.proto == 1 and f.raddr == a16(IP_A))
    assert (f.ifindex, f.family, f.laddr, f.lport, f.rport) == (pair.ib, AF_INET, a16(IP_B), 0x5E01, 8 << 8)
    assert f.initiator == INIT_REMOTE
    assert (f.pkts_in, f.bytes_in, f.pkts_out, f.bytes_out) == (5, 5 * 84, 5, 5 * 84)
    assert f.cookie == 0                     # replies come from the kernel
    assert t0 <= f.first_ns <= f.last_ns
    (ev,) = [e for e in take_events(kern) if e.kind == "netdet"]
    d = ev.data
    assert (d["kind"], d["ifindex"], d["family"], d["protocol"], d["port"]) == (DET_ICMP, pair.ib, AF_INET, 1, 0)
    assert bytes(d["saddr"]) == a16(IP_A) and bytes(d["daddr"]) == a16(IP_B)
    assert (d["count"], d["threshold"], d["window_ns"]) == (5, 5, 30_000_000_000)
    kern.detach(iface)
    assert kern.attached() == []
    assert_clean(enforce)
    assert tc_filters(NS_B, VB, "ingress") == [] and tc_filters(NS_B, VB, "egress") == []
    kern.detach(iface)                        # twice: nothing left to do
    c2 = kern.counters()
    assert ping(NS_A, IP_B, 2) == 2
    assert kern.counters() == c2              # detached: nothing counted


def test_udp_flow_matches_what_was_sent_and_names_the_sending_socket(kern: NetInspectKernel,
                                                                     enforce: EnforceKernel, pair: Pair) -> None:
    kern.attach(Interface(VB, netns=NS_B, xdp=False), None)
    n_in, n_out, q, r = 7, 3, 100, 700
    srv, cli = serve_and_run(UDP_SERVER, [IP6_B, "9053", str(n_in), str(n_out), str(r)],
                             UDP_CLIENT, [IP6_B, "9053", str(n_in), str(n_out), str(q)])
    cookie, cport = int(srv), int(cli)
    (f,) = flows_where(kern, lambda f: f.proto == 17 and f.lport == 9053)
    assert (f.ifindex, f.family, f.laddr, f.raddr, f.rport) == (pair.ib, AF_INET6, a16(IP6_B), a16(IP6_A), cport)
    assert (f.pkts_in, f.bytes_in) == (n_in, n_in * (40 + 8 + q))
    assert (f.pkts_out, f.bytes_out) == (n_out, n_out * (40 + 8 + r))
    assert f.initiator == INIT_REMOTE and f.cookie == cookie != 0
    assert kern.counters()["xdp"]["packets"] == 0           # TC only


def tcp_exchange(n_in: int, n_out: int) -> tuple[int, int]:
    """A TCP connection from NS_A to NS_B:8080 sending n_in bytes in, n_out out; (client port, accepted cookie)."""
    srv, cli = serve_and_run(TCP_SERVER, [IP_B, "8080", str(n_in), str(n_out)],
                             TCP_CLIENT, [IP_B, "8080", str(n_in), str(n_out)])
    got, cport, cookie = (int(x) for x in srv.split())
    assert got == n_in and int(cli) == n_out
    time.sleep(0.3)                            # the last ACKs
    return cport, cookie


def test_tcp_flow_matches_the_wire_and_names_the_accepted_socket(kern: NetInspectKernel, pair: Pair) -> None:
    """GRO off on both ends: each packet received is one skb, so the receiving namespace's counters are the wire's.
    Egress TC sees TCP's GSO packets before they are cut (TCP builds them whatever the device offloads): the
    flow table counts their segments and headers, as the peer receives them."""
    kern.attach(Interface(VB, netns=NS_B, xdp=False), None)
    a0, b0 = snmp(NS_A), snmp(NS_B)
    c0 = kern.counters()
    cport, cookie = tcp_exchange(20000, 30000)
    a1, b1 = snmp(NS_A), snmp(NS_B)
    c1 = kern.counters()
    (f,) = flows_where(kern, lambda f: f.proto == 6 and f.lport == 8080)
    assert (f.ifindex, f.family, f.laddr, f.raddr, f.rport) == (pair.ib, AF_INET, a16(IP_B), a16(IP_A), cport)
    # every IPv4 packet of the two namespaces in this time was this connection's
    assert f.pkts_in == b1["Tcp.InSegs"] - b0["Tcp.InSegs"] == a1["Tcp.OutSegs"] - a0["Tcp.OutSegs"]
    assert f.bytes_in == b1["IpExt.InOctets"] - b0["IpExt.InOctets"]
    assert f.pkts_out == a1["Tcp.InSegs"] - a0["Tcp.InSegs"] == b1["Tcp.OutSegs"] - b0["Tcp.OutSegs"]
    assert f.bytes_out == a1["IpExt.InOctets"] - a0["IpExt.InOctets"]
    # egress skbs were GSO packets (fewer than the segments), ingress ones single packets
    assert c1["tc_egress"]["packets"] - c0["tc_egress"]["packets"] < f.pkts_out
    assert c1["tc_ingress"]["packets"] - c0["tc_ingress"]["packets"] == f.pkts_in
    assert f.bytes_in > 20000 + 40 * f.pkts_in and f.bytes_out > 30000 + 40 * f.pkts_out
    assert f.flags_in & (TCP_SYN | TCP_ACK | TCP_FIN) == TCP_SYN | TCP_ACK | TCP_FIN
    assert f.flags_out & (TCP_SYN | TCP_ACK | TCP_FIN) == TCP_SYN | TCP_ACK | TCP_FIN
    assert f.initiator == INIT_REMOTE
    assert f.cookie == cookie != 0            # the accepted socket's, not the listener's SYN-ACK


def test_tcp_flow_counts_segments_of_gro_packets(kern: NetInspectKernel, enforce: EnforceKernel,
                                                 pair: Pair) -> None:
    """GRO on at the inspected end (the XDP entry program gives the veth NAPI, where GRO merges): TC ingress sees
    merged packets and the flow table counts their segments and headers."""
    sh("ip", "netns", "exec", NS_B, "ethtool", "-K", VB, "gro", "on")
    try:
        kern.attach(Interface(VB, netns=NS_B), enforce)
        a0, b0 = snmp(NS_A), snmp(NS_B)
        c0 = kern.counters()
        cport, _ = tcp_exchange(300000, 10)
        a1, b1 = snmp(NS_A), snmp(NS_B)
        c1 = kern.counters()
        (f,) = flows_where(kern, lambda f: f.proto == 6 and f.lport == 8080 and f.rport == cport)
        segs = a1["Tcp.OutSegs"] - a0["Tcp.OutSegs"]          # the sender counts segments
        assert f.pkts_in == segs > 300000 // 1448
        assert b1["Tcp.InSegs"] - b0["Tcp.InSegs"] < segs       # the receiver counts merged packets
        # every segment has 20 bytes of IP and 32 of TCP (timestamps); the SYN 8 more (MSS, SACK, window scale)
        assert f.bytes_in == 300000 + 52 * segs + 8
        assert c1["xdp"]["packets"] - c0["xdp"]["packets"] == segs                  # XDP: one frame each
        assert c1["tc_ingress"]["packets"] - c0["tc_ingress"]["packets"] < segs     # TC: merged by GRO
    finally:
        sh("ip", "netns", "exec", NS_B, "ethtool", "-K", VB, "gro", "off")


def test_malformed_frames_on_the_wire_are_counted_and_the_next_packet_parses(kern: NetInspectKernel,
                                                                             enforce: EnforceKernel,
                                                                             pair: Pair) -> None:
    kern.attach(Interface(VB, netns=NS_B), enforce)
    mac_b = bytes.fromhex(json.loads(sh("ip", "-n", NS_B, "-j", "link", "show", VB))[0]["address"].replace(":", ""))
    hdr4 = mac_b + b"\x02\0\0\0\0\x01" + b"\x08\x00"
    hdr6 = mac_b + b"\x02\0\0\0\0\x01" + b"\x86\xdd"
    frames = {
        "bad_ipv4": hdr4 + b"\x45\x00\x00\x14" + b"\0" * 6,                   # 10 bytes of IPv4 header
        "bad_ihl": hdr4 + b"\x43" + b"\0" * 19 + b"\0" * 8,                     # IHL 3
        "bad_ipv6": hdr6 + b"\x60" + b"\0" * 20,                                # 21 bytes of IPv6 header
    }
    sender = r"""
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
for h in sys.argv[2:]:
    s.send(bytes.fromhex(h))
"""
    c0 = kern.counters()
    sh("ip", "netns", "exec", NS_A, PY, "-c", sender, VA, *(f.hex() for f in frames.values()))
    assert ping(NS_A, IP_B, 1) == 1
    time.sleep(0.1)
    c1 = kern.counters()
    for hook in ("xdp", "tc_ingress"):
        for reason in frames:
            assert c1[hook][reason] - c0[hook][reason] == 1, (hook, reason)
        assert c1[hook]["packets"] - c0[hook]["packets"] == len(frames) + 1, hook
    assert c1["tc_egress"]["packets"] - c0["tc_egress"]["packets"] == 1
    assert len(flows_where(kern, lambda f: f.proto == 1 and f.raddr == a16(IP_A))) == 1


def test_xdp_through_the_pinned_enforcement_link_of_our_own_netns(kern: NetInspectKernel, enforce: EnforceKernel,
                                                                  pair: Pair) -> None:
    pin = Path(PIN) / "links" / netmaps.xdp_pin_name(VB)
    with in_netns(NS_B):          # the agent's "own" namespace here is NS_B: the interface has no netns name
        got = netmaps.sync_network(enforce, PolicySet(), extra_interfaces=(VB,))
        assert got.problems == [] and got.interfaces == {VB: pair.ib}
        entry_id = xdp_prog_id(NS_B, VB)
        att = kern.attach(Interface(VB, netns=None, tc=False), enforce)
    try:
        assert att.hooks == ("xdp",) and att.ifindex == pair.ib
        assert xdp_prog_id(NS_B, VB) == entry_id            # the pinned link's program: nothing attached again
        take_events(kern)
        assert ping(NS_A, IP_B, 5) == 5
        (ev,) = take_events(kern)
        assert ev.data["kind"] == DET_ICMP and bytes(ev.data["saddr"]) == a16(IP_A)
        with in_netns(NS_B):
            kern.detach(Interface(VB, netns=None, tc=False))
        assert pin.exists() and xdp_prog_id(NS_B, VB) == entry_id   # the enforcement's link stays
        assert slot0(enforce) == 0
    finally:
        with in_netns(NS_B):
            netmaps.sync_network(enforce, PolicySet())
    assert not pin.exists()
    wait_until_no_xdp()


def wait_until_no_xdp(timeout: float = 5.0) -> None:
    """An unpinned link is released by a kernel work item: its interface is free a moment later."""
    deadline = time.monotonic() + timeout
    while xdp_prog_id(NS_B, VB):
        assert time.monotonic() < deadline, "the XDP program stayed on the interface"
        time.sleep(0.02)


def test_an_existing_clsact_qdisc_is_kept_and_only_our_filters_go(kern: NetInspectKernel, pair: Pair) -> None:
    sh("tc", "-n", NS_B, "qdisc", "add", "dev", VB, "clsact")
    try:
        kern.attach(Interface(VB, netns=NS_B, xdp=False), None)
        assert tc_filters(NS_B, VB, "ingress") == ["ni_tc_ingress"]
        kern.detach(Interface(VB, netns=NS_B, xdp=False))
        assert has_clsact(NS_B, VB)
        assert tc_filters(NS_B, VB, "ingress") == [] and tc_filters(NS_B, VB, "egress") == []
    finally:
        sh("tc", "-n", NS_B, "qdisc", "del", "dev", VB, "clsact", check=False)


def test_failures_name_the_interface_and_leave_nothing(kern: NetInspectKernel, enforce: EnforceKernel,
                                                       pair: Pair) -> None:
    with pytest.raises(NetInspectError, match=f"interface {NS_B}/nope0: no such interface"):
        kern.attach(Interface("nope0", netns=NS_B), enforce)
    with pytest.raises(NetInspectError, match="interface se-no-such-ns/x0: network namespace /run/netns/se-no-such"):
        kern.attach(Interface("x0", netns="se-no-such-ns"), enforce)
    with pytest.raises(NetInspectError, match=f"interface {NS_B}/{VB}: XDP goes through the enforcement"):
        kern.attach(Interface(VB, netns=NS_B), None)
    with pytest.raises(NetInspectError, match="not a name under /run/netns"):
        kern.attach(Interface(VB, netns="../x", xdp=False), None)
    # another XDP program on the interface: the entry program cannot go there; the TC part is undone
    sh("ip", "-n", NS_B, "link", "set", "dev", VB, "xdpgeneric", "obj", xdp_pass_object(), "sec", "xdp")
    try:
        with pytest.raises(NetInspectError, match=f"interface {NS_B}/{VB}: attaching enforce_xdp"):
            kern.attach(Interface(VB, netns=NS_B), enforce)
        assert not has_clsact(NS_B, VB) and kern.attached() == [] and slot0(enforce) == 0
    finally:
        sh("ip", "-n", NS_B, "link", "set", "dev", VB, "xdpgeneric", "off")


def xdp_pass_object() -> str:
    """A one-program XDP object (XDP_PASS) for `ip link set ... xdp obj`, built once."""
    out = Path(f"/tmp/se-test-xdp-pass-{TAG}.o")
    if not out.exists():
        src = out.with_suffix(".c")
        src.write_text('__attribute__((section("xdp"), used)) int pass(void *ctx) { return 2; }\n'
                       'char _license[] __attribute__((section("license"), used)) = "GPL";\n')
        try:
            sh("clang", "-O2", "-target", "bpf", "-c", str(src), "-o", str(out))
        finally:
            src.unlink()
    return str(out)


@pytest.fixture(scope="module", autouse=True)
def _remove_xdp_pass_object() -> Iterator[None]:
    yield
    Path(f"/tmp/se-test-xdp-pass-{TAG}.o").unlink(missing_ok=True)


def test_a_vanished_netns_is_tolerated_on_detach_and_close(kern: NetInspectKernel, pair: Pair) -> None:
    sh("ip", "netns", "add", NS_C)
    try:
        sh("ip", "-n", NS_C, "link", "add", "d0", "type", "veth", "peer", "name", "d1")   # both ends in NS_C
        sh("ip", "-n", NS_C, "link", "set", "d0", "up")
        kern.attach(Interface("d0", netns=NS_C, xdp=False), None)
        kern.attach(Interface(VB, netns=NS_B, xdp=False), None)
        assert {a.name for a in kern.attached()} == {"d0", VB}
    finally:
        _del_netns(NS_C)
    kern.detach(Interface("d0", netns=NS_C, xdp=False))
    assert [a.name for a in kern.attached()] == [VB]
    kern.close()                                   # detaches VB too
    assert kern.attached() == [] and not has_clsact(NS_B, VB)


def test_close_detaches_every_interface_and_leaves_another_program_in_slot0(pair: Pair,
                                                                          enforce: EnforceKernel) -> None:
    k = NetInspectKernel(NiSettings())
    k.load()
    try:
        k.attach(Interface(VB, netns=NS_B), enforce)
        assert slot0(enforce) == prog_id_of(k.prog_fd("ni_xdp")) and xdp_prog_id(NS_B, VB) != 0
    finally:
        k.close()
    assert_clean(enforce)
    k.close()                                       # twice
    # a newer inspector took slot 0 over: closing the older one leaves it there
    old, new = NetInspectKernel(NiSettings()), NetInspectKernel(NiSettings())
    old.load()
    new.load()
    key = ctypes.c_uint32(0)
    try:
        old.attach(Interface(VB, netns=NS_B, tc=False), enforce)
        val = ctypes.c_uint32(new.prog_fd("ni_xdp"))
        assert libbpf.lib().bpf_map_update_elem(enforce.fd("se_xdp_next"), ctypes.byref(key), ctypes.byref(val),
                                                0) == 0
        old.close()
        assert slot0(enforce) == prog_id_of(new.prog_fd("ni_xdp"))
        assert xdp_prog_id(NS_B, VB) == 0           # old's link to the entry program is gone
    finally:
        libbpf.lib().bpf_map_delete_elem(enforce.fd("se_xdp_next"), ctypes.byref(key))
        old.close()
        new.close()
    assert_clean(enforce)

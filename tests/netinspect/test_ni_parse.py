"""The network inspector's BPF programs on crafted packets, through BPF_PROG_TEST_RUN.

Every program runs on packets built with scapy (malformed ones by cutting or
patching the bytes): each parse failure is counted once under its reason and
the next good packet is still parsed; the flow table keys and counts per
direction; DNS messages are copied with their bytes; a detection threshold
crossed emits exactly one se_netdet. Test runs use the loopback device of
this namespace (ifindex 1) and no packet leaves the kernel.
"""

from __future__ import annotations

import ipaddress
import os
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dns.message
import dns.rrset
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Packet, Raw

from sentinel_edge.errors import NetInspectError
from sentinel_edge.model import Event
from sentinel_edge.netinspect.kernel import FlowEntry, NetInspectKernel, NiSettings
from sentinel_edge.wire.decode import Decoder

pytestmark = pytest.mark.kernel

XDP, TC_IN, TC_OUT = "ni_xdp", "ni_tc_ingress", "ni_tc_egress"
HOOK_OF = {XDP: "xdp", TC_IN: "tc_ingress", TC_OUT: "tc_egress"}
XDP_PASS, TC_ACT_OK = 2, 0
PASS = {XDP: XDP_PASS, TC_IN: TC_ACT_OK, TC_OUT: TC_ACT_OK}
AF_INET, AF_INET6 = 2, 10
TCP_SYN, TCP_ACK, TCP_PSH, TCP_FIN = 0x02, 0x10, 0x08, 0x01
INIT_REMOTE, INIT_LOCAL = 1, 2
DIR_IN, DIR_OUT = 0, 1
DNS_TRUNC = 1
LO = 1                                   # test runs see the loopback device
EV_NETDET, EV_DNS = 60, 61
DET_SYN_SRC, DET_SYN_ALL, DET_SCAN, DET_ICMP = 1, 2, 3, 4
COUNTERS = ("packets", "bytes", "non_ip", "bad_l2", "bad_ipv4", "bad_ihl", "bad_ipv6", "ipv6_ext_limit", "bad_l4",
            "fragment", "flow_new", "flow_full", "dns", "detection", "ring_dropped")
MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def boot_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def a16(text: str) -> bytes:
    """An address as the wire has it: 16 bytes, IPv4 in the first 4."""
    return ipaddress.ip_address(text).packed.ljust(16, b"\0")


def eth(payload: Packet | bytes, *, src: str = MAC_A, dst: str = MAC_B) -> Packet:
    return Ether(src=src, dst=dst) / payload


def raw(p: Packet) -> bytes:
    return bytes(p)


@contextmanager
def loaded(**settings: Any) -> Iterator[NetInspectKernel]:
    k = NetInspectKernel(NiSettings(**settings))
    try:
        k.load()
        yield k
    finally:
        k.close()


@pytest.fixture(scope="module")
def kern() -> Iterator[NetInspectKernel]:
    # ICMP threshold 1: every first echo request of a source is reported, which shows ni_xdp parsed it
    with loaded(icmp=1, syn_src=0, syn_all=0, scan_ports=0, dns_max=1024, window_s=60.0) as k:
        yield k


class Probe:
    """Runs packets through one loaded object and reports counter deltas, flows and ring events."""

    def __init__(self, k: NetInspectKernel) -> None:
        self.k = k
        self.dec = Decoder(k.btf)
        self.k.ring().drain([])

    def run(self, prog: str, pkt: bytes, repeat: int = 1) -> dict[str, int]:
        """Run one packet; returns the counters of the program's hook that changed."""
        hook = HOOK_OF[prog]
        before = self.k.counters()
        rv, _ = self.k.test_run(prog, pkt, repeat)
        assert rv == PASS[prog], f"{prog} returned {rv}"
        after = self.k.counters()
        for other in HOOK_OF.values():
            if other != hook:
                assert after[other] == before[other], f"{prog} changed the counters of {other}"
        return {c: after[hook][c] - before[hook][c] for c in COUNTERS if after[hook][c] != before[hook][c]}

    def events(self) -> list[Event]:
        out: list[bytes] = []
        self.k.ring().drain(out)
        return [self.dec.decode(r) for r in out]

    def flows(self) -> dict[tuple[int, int, int, bytes, bytes, int, int], FlowEntry]:
        return {(f.ifindex, f.family, f.proto, f.laddr, f.raddr, f.lport, f.rport): f for f in self.k.read_flows()}

    def clear_flows(self) -> None:
        self.k.delete_flows(f.key for f in self.k.read_flows())


@pytest.fixture
def probe(kern: NetInspectKernel) -> Probe:
    p = Probe(kern)
    p.clear_flows()
    return p


# -- settings and layout -----------------------------------------------------------------------------

def test_settings_are_validated_naming_the_field() -> None:
    for kw, word in (({"window_s": 0}, "window_s"), ({"dns_max": 0}, "dns_max"), ({"dns_max": 1025}, "dns_max"),
                     ({"ring_bytes": 3 * 4096}, "ring_bytes"), ({"syn_src": -1}, "syn_src"),
                     ({"flow_entries": 0}, "flow_entries")):
        with pytest.raises(NetInspectError, match=word):
            NiSettings(**kw)


def test_config_bytes_follow_the_btf_layout(kern: NetInspectKernel) -> None:
    s = NiSettings(window_s=0.25, syn_src=7, syn_all=9, scan_ports=11, icmp=13, flows=False, dns=True, dns_max=99)
    k = NetInspectKernel(s)
    raw_cfg = k.config_bytes()
    assert len(raw_cfg) == 40
    assert struct.unpack("<QIIIIIIII", raw_cfg) == (250_000_000, 7, 9, 11, 13, 0, 1, 99, 0)
    assert kern.btf.struct("se_ni_flow_key").size_or_type == 48
    assert kern.btf.struct("se_ni_flow").size_or_type == 64


def test_unknown_program_and_not_loaded_are_errors(kern: NetInspectKernel) -> None:
    with pytest.raises(NetInspectError, match="unknown program"):
        kern.test_run("nope", b"\0" * 64)
    k = NetInspectKernel(NiSettings())
    with pytest.raises(NetInspectError, match="not loaded"):
        k.counters()


# -- malformed packets --------------------------------------------------------------------------------

def _ip4_bytes(*, ihl: int | None = None, version: int = 4) -> bytes:
    b = bytearray(raw(eth(IP(src="10.9.0.1", dst="10.9.0.2") / TCP(sport=1, dport=2))))
    if ihl is not None:
        b[14] = (b[14] & 0xF0) | ihl
    b[14] = (version << 4) | (b[14] & 0x0F)
    return bytes(b)


def _ext_chain(n: int) -> Packet:
    """n IPv6 destination-options headers, then UDP."""
    p: Packet = IPv6(src="fd09::1", dst="fd09::2")
    for _ in range(n):
        p = p / IPv6ExtHdrDestOpt()
    return p / UDP(sport=5, dport=6) / Raw(b"x")


MALFORMED: dict[str, tuple[bytes, str]] = {
    "truncated VLAN tag": (raw(Ether(src=MAC_A, dst=MAC_B, type=0x8100)) + b"\x00\x05", "bad_l2"),
    "three VLAN tags": (raw(eth(Dot1AD(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / IP() / UDP())), "bad_l2"),
    "ARP": (raw(eth(ARP(psrc="10.9.0.1", pdst="10.9.0.2"))), "non_ip"),
    "truncated IPv4": (raw(eth(IP(src="10.9.0.1", dst="10.9.0.2") / TCP()))[:14 + 12], "bad_ipv4"),
    "IPv4 version 5": (_ip4_bytes(version=5), "bad_ipv4"),
    "IPv4 total length below its header": (
        raw(eth(IP(src="10.9.0.1", dst="10.9.0.2", len=12) / TCP())), "bad_ipv4"),
    "IHL 4": (_ip4_bytes(ihl=4), "bad_ihl"),
    "IPv4 options past the packet": (
        raw(eth(IP(src="10.9.0.1", dst="10.9.0.2", ihl=15, options=[]) / Raw(b"\x01" * 12))), "bad_ihl"),
    "truncated IPv6": (raw(eth(IPv6(src="fd09::1", dst="fd09::2") / UDP()))[:14 + 30], "bad_ipv6"),
    "IPv6 version 4 in an IPv6 frame": (
        raw(Ether(src=MAC_A, dst=MAC_B, type=0x86DD) / IP(src="10.9.0.1", dst="10.9.0.2") / Raw(b"x" * 40)),
        "bad_ipv6"),
    "IPv6 extension header past the packet": (
        raw(eth(IPv6(src="fd09::1", dst="fd09::2", nh=0, plen=8) / Raw(b"\x11\x05" + b"\0" * 6))), "bad_ipv6"),
    "IPv6 extension header cut": (raw(eth(IPv6(src="fd09::1", dst="fd09::2", nh=60) / Raw(b"\x11\x00\x00"))),
                                  "bad_ipv6"),
    "nine IPv6 extension headers": (raw(eth(_ext_chain(9))), "ipv6_ext_limit"),
    "truncated TCP": (raw(eth(IP(src="10.9.0.1", dst="10.9.0.2", proto=6) / Raw(b"\0" * 10))), "bad_l4"),
    "TCP data offset 4": (raw(eth(IP(src="10.9.0.1", dst="10.9.0.2") / TCP(dataofs=4))), "bad_l4"),
    "truncated UDP": (raw(eth(IP(src="10.9.0.1", dst="10.9.0.2", proto=17) / Raw(b"\0" * 4))), "bad_l4"),
    "truncated ICMP": (raw(eth(IP(src="10.9.0.1", dst="10.9.0.2", proto=1) / Raw(b"\x08\x00\0\0"))), "bad_l4"),
    "truncated ICMPv6": (raw(eth(IPv6(src="fd09::1", dst="fd09::2", nh=58) / Raw(b"\x80\x00"))), "bad_l4"),
    "IPv4 fragment at offset 8": (
        raw(eth(IP(src="10.9.0.1", dst="10.9.0.2", proto=17, frag=1) / Raw(b"\0" * 16))), "fragment"),
    "IPv6 fragment at offset 8": (
        raw(eth(IPv6(src="fd09::1", dst="fd09::2") / IPv6ExtHdrFragment(nh=17, offset=1, m=1) / Raw(b"\0" * 16))),
        "fragment"),
}


# BPF_PROG_TEST_RUN of a TC program refuses an IP frame shorter than its IP header (EINVAL): these reach
# the TC programs only on a real interface (test_ni_attach sends them through a veth)
TC_TEST_RUN_REFUSES = ("truncated IPv4", "truncated IPv6")


def good_tcp(n: int, prog: str) -> tuple[bytes, tuple[int, int, int, bytes, bytes, int, int]]:
    """A good SYN from 10.8.<n>.1:40000+n to 10.8.<n>.2:80 and its flow key as `prog` files it."""
    src, dst = f"10.8.{n}.1", f"10.8.{n}.2"
    pkt = raw(eth(IP(src=src, dst=dst) / TCP(sport=40000 + n, dport=80, flags="S")))
    if prog == TC_IN:
        return pkt, (LO, AF_INET, 6, a16(dst), a16(src), 80, 40000 + n)
    return pkt, (LO, AF_INET, 6, a16(src), a16(dst), 40000 + n, 80)


def good_echo(n: int) -> tuple[bytes, str]:
    src = f"10.7.{n}.1"
    return raw(eth(IP(src=src, dst="10.7.0.254") / ICMP(type=8, id=n, seq=1) / Raw(b"p" * 8))), src


@pytest.mark.parametrize("prog", [XDP, TC_IN, TC_OUT])
def test_each_malformed_packet_counts_once_and_the_next_good_packet_parses(probe: Probe, prog: str) -> None:
    for n, (name, (pkt, reason)) in enumerate(MALFORMED.items()):
        if prog != XDP and name in TC_TEST_RUN_REFUSES:
            continue
        delta = probe.run(prog, pkt)
        assert delta == {"packets": 1, "bytes": len(pkt), reason: 1}, f"{name}: {delta}"
        assert probe.events() == [], name
        assert probe.flows() == {}, name
        if prog == XDP:
            good, src = good_echo(n)
            assert probe.run(prog, good) == {"packets": 1, "bytes": len(good), "detection": 1}, name
            (ev,) = probe.events()
            assert ev.data["kind"] == DET_ICMP and bytes(ev.data["saddr"]) == a16(src), name
        else:
            good, key = good_tcp(n, prog)
            assert probe.run(prog, good) == {"packets": 1, "bytes": len(good), "flow_new": 1}, name
            flows = probe.flows()
            assert list(flows) == [key], name
            f = flows[key]
            assert (f.pkts_in, f.pkts_out) == ((1, 0) if prog == TC_IN else (0, 1)), name
            probe.clear_flows()


# an authentication header (24 bytes: payload length 4 in 4-byte units, minus 2) before UDP
AH_UDP = bytes([17, 4, 0, 0]) + b"\0\0\0\x01" + b"\0\0\0\x01" + b"\xaa" * 12

GOOD_UNUSUAL: dict[str, tuple[bytes, tuple[int, int, int, bytes, bytes, int, int]]] = {
    # options are skipped: the ports are those of the TCP header after them
    "IPv4 with options": (
        raw(eth(IP(src="10.6.0.1", dst="10.6.0.2", options=[b"\x94\x04\x00\x00", b"\x01\x01\x01\x00"])
                / TCP(sport=1111, dport=2222, flags="S"))),
        (LO, AF_INET, 6, a16("10.6.0.1"), a16("10.6.0.2"), 1111, 2222)),
    "IPv4 first fragment": (
        raw(eth(IP(src="10.6.0.3", dst="10.6.0.4", flags="MF") / UDP(sport=3333, dport=4444) / Raw(b"f" * 32))),
        (LO, AF_INET, 17, a16("10.6.0.3"), a16("10.6.0.4"), 3333, 4444)),
    "five IPv6 extension headers of every kind": (
        raw(eth(IPv6(src="fd06::1", dst="fd06::2") / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
                / IPv6ExtHdrRouting() / IPv6ExtHdrFragment(nh=51, offset=0, m=1)
                / Raw(AH_UDP) / UDP(sport=5555, dport=6666) / Raw(b"u" * 8))),
        (LO, AF_INET6, 17, a16("fd06::1"), a16("fd06::2"), 5555, 6666)),
    "eight IPv6 extension headers": (
        raw(eth(_ext_chain(8))), (LO, AF_INET6, 17, a16("fd09::1"), a16("fd09::2"), 5, 6)),
    "two VLAN tags": (
        raw(eth(Dot1AD(vlan=7) / Dot1Q(vlan=8) / IP(src="10.6.0.5", dst="10.6.0.6") / UDP(sport=77, dport=88))),
        (LO, AF_INET, 17, a16("10.6.0.5"), a16("10.6.0.6"), 77, 88)),
    "GRE (ports 0)": (
        raw(eth(IP(src="10.6.0.7", dst="10.6.0.8", proto=47) / Raw(b"\0" * 8))),
        (LO, AF_INET, 47, a16("10.6.0.7"), a16("10.6.0.8"), 0, 0)),
}


def test_unusual_but_valid_headers_are_parsed(probe: Probe) -> None:
    for name, (pkt, key) in GOOD_UNUSUAL.items():
        assert probe.run(TC_OUT, pkt) == {"packets": 1, "bytes": len(pkt), "flow_new": 1}, name
        assert list(probe.flows()) == [key], name
        probe.clear_flows()


# -- the flow table --------------------------------------------------------------------------------

def ip_len(p: Packet) -> int:
    layer = p.getlayer(IP) or p.getlayer(IPv6)
    assert layer is not None
    return len(raw(layer))


def test_tcp_flow_both_directions_in_one_entry(probe: Probe) -> None:
    a, b = "10.5.0.1", "10.5.0.2"
    syn = eth(IP(src=a, dst=b) / TCP(sport=41000, dport=8080, flags="S", seq=1))
    synack = eth(IP(src=b, dst=a) / TCP(sport=8080, dport=41000, flags="SA", seq=9, ack=2), src=MAC_B, dst=MAC_A)
    data = eth(IP(src=a, dst=b) / TCP(sport=41000, dport=8080, flags="PA", seq=2, ack=10) / Raw(b"d" * 300))
    fin = eth(IP(src=b, dst=a) / TCP(sport=8080, dport=41000, flags="FA"), src=MAC_B, dst=MAC_A)
    t0 = boot_ns()
    assert probe.run(TC_OUT, raw(syn))["flow_new"] == 1
    assert "flow_new" not in probe.run(TC_IN, raw(synack))
    assert "flow_new" not in probe.run(TC_OUT, raw(data), repeat=3)
    assert "flow_new" not in probe.run(TC_IN, raw(fin))
    t1 = boot_ns()
    flows = probe.flows()
    key = (LO, AF_INET, 6, a16(a), a16(b), 41000, 8080)
    assert list(flows) == [key]
    f = flows[key]
    assert f.pkts_out == 1 + 3 and f.bytes_out == ip_len(syn) + 3 * ip_len(data) == 40 + 3 * 340
    assert f.pkts_in == 2 and f.bytes_in == ip_len(synack) + ip_len(fin) == 80
    assert f.flags_out == TCP_SYN | TCP_ACK | TCP_PSH and f.flags_in == TCP_SYN | TCP_ACK | TCP_FIN
    assert f.initiator == INIT_LOCAL
    assert t0 <= f.first_ns <= f.last_ns <= t1
    # a test run gives its packet a socket of its own: egress stores its cookie
    assert f.cookie != 0
    assert f.key == probe.k.read_flows()[0].key and len(f.key) == 48


def test_inbound_connection_is_initiated_remotely_and_keyed_by_the_destination(probe: Probe) -> None:
    r, local = "10.5.1.9", "10.5.1.1"
    syn = eth(IP(src=r, dst=local) / TCP(sport=50000, dport=22, flags="S"))
    reply = eth(IP(src=local, dst=r) / TCP(sport=22, dport=50000, flags="SA"))
    probe.run(TC_IN, raw(syn))
    probe.run(TC_OUT, raw(reply))
    (f,) = probe.flows().values()
    assert (f.laddr, f.raddr, f.lport, f.rport) == (a16(local), a16(r), 22, 50000)
    assert f.initiator == INIT_REMOTE and (f.pkts_in, f.pkts_out) == (1, 1)
    assert (f.bytes_in, f.bytes_out) == (40, 40) and (f.flags_in, f.flags_out) == (TCP_SYN, TCP_SYN | TCP_ACK)


def test_a_syn_ack_seen_first_names_the_other_side_initiator(probe: Probe) -> None:
    probe.run(TC_IN, raw(eth(IP(src="10.5.2.2", dst="10.5.2.1") / TCP(sport=443, dport=42000, flags="SA"))))
    (f,) = probe.flows().values()
    assert f.initiator == INIT_LOCAL and f.lport == 42000 and f.rport == 443


def test_udp_over_ipv6_and_icmp_echo_flows(probe: Probe) -> None:
    q = eth(IPv6(src="fd05::1", dst="fd05::2") / UDP(sport=5353, dport=9999) / Raw(b"q" * 20))
    a = eth(IPv6(src="fd05::2", dst="fd05::1") / UDP(sport=9999, dport=5353) / Raw(b"a" * 100))
    probe.run(TC_OUT, raw(q))
    probe.run(TC_IN, raw(a), repeat=2)
    req = eth(IP(src="10.5.3.1", dst="10.5.3.2") / ICMP(type=8, id=0x4242, seq=1) / Raw(b"p" * 56))
    rep = eth(IP(src="10.5.3.2", dst="10.5.3.1") / ICMP(type=0, id=0x4242, seq=1) / Raw(b"p" * 56))
    probe.run(TC_OUT, raw(req))
    probe.run(TC_IN, raw(rep))
    req6 = eth(IPv6(src="fd05::3", dst="fd05::1") / ICMPv6EchoRequest(id=7, seq=1))
    rep6 = eth(IPv6(src="fd05::1", dst="fd05::3") / ICMPv6EchoReply(id=7, seq=1))
    probe.run(TC_IN, raw(req6))            # the remote side pings us
    probe.run(TC_OUT, raw(rep6))
    unreach = eth(IP(src="10.5.3.2", dst="10.5.3.1") / ICMP(type=3, code=3) / Raw(b"\0" * 28))
    probe.run(TC_IN, raw(unreach))
    flows = probe.flows()
    assert set(flows) == {
        (LO, AF_INET6, 17, a16("fd05::1"), a16("fd05::2"), 5353, 9999),
        (LO, AF_INET, 1, a16("10.5.3.1"), a16("10.5.3.2"), 0x4242, 8 << 8),
        (LO, AF_INET6, 58, a16("fd05::1"), a16("fd05::3"), 7, 128 << 8),
        (LO, AF_INET, 1, a16("10.5.3.1"), a16("10.5.3.2"), 0, 3 << 8 | 3),
    }
    u = flows[(LO, AF_INET6, 17, a16("fd05::1"), a16("fd05::2"), 5353, 9999)]
    assert (u.pkts_out, u.bytes_out, u.pkts_in, u.bytes_in) == (1, 40 + 8 + 20, 2, 2 * (40 + 8 + 100))
    assert u.initiator == INIT_LOCAL and u.flags_in == u.flags_out == 0
    e = flows[(LO, AF_INET, 1, a16("10.5.3.1"), a16("10.5.3.2"), 0x4242, 8 << 8)]
    assert (e.pkts_out, e.bytes_out, e.pkts_in, e.bytes_in, e.initiator) == (1, 84, 1, 84, INIT_LOCAL)
    e6 = flows[(LO, AF_INET6, 58, a16("fd05::1"), a16("fd05::3"), 7, 128 << 8)]
    # the echo reply is the kernel's: no owner's cookie; our echo request has one
    assert (e6.pkts_in, e6.pkts_out, e6.initiator, e6.cookie) == (1, 1, INIT_REMOTE, 0)
    assert e.cookie != 0
    assert flows[(LO, AF_INET, 1, a16("10.5.3.1"), a16("10.5.3.2"), 0, 3 << 8 | 3)].cookie == 0  # inbound only


def test_the_cookie_comes_only_from_packets_of_the_local_socket(probe: Probe) -> None:
    def out(sport: int, flags: str, data: bytes = b"") -> bytes:
        return raw(eth(IP(src="10.5.4.1", dst="10.5.4.2") / TCP(sport=sport, dport=80, flags=flags) / Raw(data)))

    # a listener's SYN-ACK (request socket), a pure ACK (maybe the namespace's TIME_WAIT socket), a RST
    for sport, flags in ((1001, "SA"), (1002, "A"), (1003, "R"), (1004, "RA")):
        probe.run(TC_OUT, out(sport, flags))
    # a connecting SYN, data, a FIN: the local socket's own
    for sport, flags, data in ((2001, "S", b""), (2002, "PA", b"x"), (2003, "FA", b"")):
        probe.run(TC_OUT, out(sport, flags, data))
    got = {f.lport: f.cookie for f in probe.k.read_flows()}
    assert set(got) == {1001, 1002, 1003, 1004, 2001, 2002, 2003}
    assert [got[p] for p in (1001, 1002, 1003, 1004)] == [0, 0, 0, 0]
    assert all(got[p] != 0 for p in (2001, 2002, 2003))
    # the first cookie stays (each test run has a socket of its own): on one CPU, so both land in one value
    probe.clear_flows()
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        probe.run(TC_OUT, out(3001, "S"))
        first = probe.k.read_flows()[0].cookie
        probe.run(TC_OUT, out(3001, "PA", b"y"))
        assert probe.k.read_flows()[0].cookie == first != 0
    finally:
        os.sched_setaffinity(0, cpus)


def test_gso_and_gro_packets_count_their_segments_and_headers(probe: Probe) -> None:
    # one skb of 3 segments (TCP's GSO on egress, GRO on ingress): 3 packets, the 52 header bytes 3 times
    # (a test run takes at most a page of packet)
    opts = [("NOP", None), ("NOP", None), ("Timestamp", (1, 2))]
    out = eth(IP(src="10.5.5.1", dst="10.5.5.2") / TCP(sport=43000, dport=9000, flags="A", options=opts)
              / Raw(b"g" * 3 * 1000))
    back = eth(IPv6(src="fd05::9", dst="fd05::8") / UDP(sport=4789, dport=4790) / Raw(b"u" * 2 * 1000))
    p = probe.run(TC_OUT, raw(out))
    assert p["packets"] == 1 and p["flow_new"] == 1
    rv, _ = probe.k.test_run(TC_OUT, raw(out), gso_segs=3, gso_size=1000)
    assert rv == TC_ACT_OK
    probe.k.test_run(TC_IN, raw(back), gso_segs=2, gso_size=1000)
    probe.k.test_run(TC_IN, raw(back), gso_segs=0, gso_size=1000)    # no segment count: one packet
    flows = probe.flows()
    f = flows[(LO, AF_INET, 6, a16("10.5.5.1"), a16("10.5.5.2"), 43000, 9000)]
    assert (f.pkts_out, f.bytes_out) == (1 + 3, (52 + 3000) + (3 * 52 + 3000))
    u = flows[(LO, AF_INET6, 17, a16("fd05::8"), a16("fd05::9"), 4790, 4789)]
    assert (u.pkts_in, u.bytes_in) == (2 + 1, (2 * 48 + 2000) + (48 + 2000))
    with pytest.raises(NetInspectError, match="TC programs only"):
        probe.k.test_run(XDP, raw(out), gso_segs=2, gso_size=100)


def test_flows_off_keeps_no_table_and_delete_flows_forgets() -> None:
    with loaded(flows=False, dns=False) as k:
        p = Probe(k)
        assert p.run(TC_OUT, good_tcp(1, TC_OUT)[0]) == {"packets": 1, "bytes": 54}
        assert k.read_flows() == []
    with loaded(flow_entries=64) as k:
        p = Probe(k)
        for n in range(3):
            p.run(TC_OUT, good_tcp(n, TC_OUT)[0])
        flows = k.read_flows()
        assert len(flows) == 3
        k.delete_flows([flows[0].key, flows[0].key])     # twice: the second is already gone
        assert {f.key for f in k.read_flows()} == {flows[1].key, flows[2].key}


def test_read_flows_reads_a_table_larger_than_one_batch() -> None:
    with loaded(flow_entries=20000, dns=False) as k:
        p = Probe(k)
        pkts = [raw(eth(IP(src=f"10.{4 + n // 65536}.{n // 256 % 256}.{n % 256}", dst="10.3.0.1")
                        / UDP(sport=1000, dport=2000))) for n in range(9000)]
        for pkt in pkts:
            k.test_run(TC_IN, pkt)
        flows = k.read_flows()
        assert len(flows) == 9000 and len({f.key for f in flows}) == 9000
        assert all(f.pkts_in == 1 and f.bytes_in == 28 and f.pkts_out == 0 for f in flows)
        assert p.k.counters()["tc_ingress"]["flow_new"] == 9000


# -- DNS ------------------------------------------------------------------------------------------------

def dns_query(name: str) -> bytes:
    return bytes(dns.message.make_query(name, "A", id=0x1234).to_wire())


def dns_answer(name: str, n: int) -> bytes:
    q = dns.message.make_query(name, "A", id=0x1234)
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text(name, 300, "IN", "A", *[f"192.0.2.{i}" for i in range(1, n + 1)]))
    return bytes(r.to_wire())


def check_dns(ev: Event, *, dir: int, family: int, proto: int, sport: int, dport: int, saddr: str, daddr: str,
              msg: bytes, payload_len: int, flags: int, cookie: bool, t0: int) -> None:
    d = ev.data
    assert ev.kind == "dns" and ev.type_id == EV_DNS
    assert t0 <= ev.ts_ns <= boot_ns()
    assert all(v == 0 for k, v in ev.proc.items() if k != "comm") and ev.proc["comm"] == b""
    assert (d["ifindex"], d["dir"], d["family"], d["proto"]) == (LO, dir, family, proto)
    assert (d["sport"], d["dport"], d["payload_len"], d["flags"]) == (sport, dport, payload_len, flags)
    assert bytes(d["saddr"]) == a16(saddr) and bytes(d["daddr"]) == a16(daddr)
    assert (d["cookie"] != 0) == cookie
    assert d["msg"] == msg


def test_dns_query_and_response_over_udp_are_copied(probe: Probe) -> None:
    q = dns_query("www.example.org.")
    r = dns_answer("www.example.org.", 3)
    t0 = boot_ns()
    assert probe.run(TC_OUT, raw(eth(IP(src="10.4.0.1", dst="10.4.0.53") / UDP(sport=33333, dport=53) / Raw(q))))[
        "dns"] == 1
    assert probe.run(TC_IN, raw(eth(IPv6(src="fd04::53", dst="fd04::1") / UDP(sport=53, dport=33334) / Raw(r))))[
        "dns"] == 1
    evs = probe.events()
    assert len(evs) == 2
    check_dns(evs[0], dir=DIR_OUT, family=AF_INET, proto=17, sport=33333, dport=53, saddr="10.4.0.1",
              daddr="10.4.0.53", msg=q, payload_len=len(q), flags=0, cookie=True, t0=t0)
    check_dns(evs[1], dir=DIR_IN, family=AF_INET6, proto=17, sport=53, dport=33334, saddr="fd04::53",
              daddr="fd04::1", msg=r, payload_len=len(r), flags=0, cookie=False, t0=t0)
    assert dns.message.from_wire(evs[1].data["msg"]).answer[0].to_text().count("192.0.2.") == 3


def test_dns_over_tcp_keeps_the_length_prefix_and_skips_empty_segments(probe: Probe) -> None:
    q = dns_query("tcp.example.org.")
    framed = struct.pack(">H", len(q)) + q
    t0 = boot_ns()
    base = IP(src="10.4.1.1", dst="10.4.1.53")
    assert "dns" not in probe.run(TC_OUT, raw(eth(base / TCP(sport=40001, dport=53, flags="S"))))
    assert "dns" not in probe.run(TC_OUT, raw(eth(base / TCP(sport=40001, dport=53, flags="A"))))
    opts = [("NOP", None), ("NOP", None), ("Timestamp", (1, 2))]     # data offset 8: the payload is after them
    assert probe.run(TC_OUT, raw(eth(base / TCP(sport=40001, dport=53, flags="PA", options=opts) / Raw(framed))))[
        "dns"] == 1
    (ev,) = probe.events()
    check_dns(ev, dir=DIR_OUT, family=AF_INET, proto=6, sport=40001, dport=53, saddr="10.4.1.1",
              daddr="10.4.1.53", msg=framed, payload_len=len(framed), flags=0, cookie=True, t0=t0)


@pytest.mark.parametrize("size", [13, 256, 257, 512, 513, 1024, 1025, 1400])
def test_dns_sizes_up_to_the_limit_and_truncation(probe: Probe, size: int) -> None:
    payload = bytes((i * 7) & 0xFF for i in range(size))
    t0 = boot_ns()
    probe.run(TC_IN, raw(eth(IP(src="10.4.2.53", dst="10.4.2.1") / UDP(sport=53, dport=5000) / Raw(payload))))
    (ev,) = probe.events()
    n = min(size, 1024)
    check_dns(ev, dir=DIR_IN, family=AF_INET, proto=17, sport=53, dport=5000, saddr="10.4.2.53", daddr="10.4.2.1",
              msg=payload[:n], payload_len=size, flags=DNS_TRUNC if size > 1024 else 0, cookie=False, t0=t0)


def test_dns_max_setting_cuts_and_dns_off_copies_nothing() -> None:
    q = dns_query("a-rather-long-name-to-cut.example.org.")
    pkt = raw(eth(IP(src="10.4.3.1", dst="10.4.3.53") / UDP(sport=1053, dport=53) / Raw(q)))
    with loaded(dns_max=20) as k:
        p = Probe(k)
        t0 = boot_ns()
        p.run(TC_OUT, pkt)
        (ev,) = p.events()
        check_dns(ev, dir=DIR_OUT, family=AF_INET, proto=17, sport=1053, dport=53, saddr="10.4.3.1",
                  daddr="10.4.3.53", msg=q[:20], payload_len=len(q), flags=DNS_TRUNC, cookie=True, t0=t0)
    with loaded(dns=False) as k:
        p = Probe(k)
        assert p.run(TC_OUT, pkt) == {"packets": 1, "bytes": len(pkt), "flow_new": 1}
        assert p.events() == []


def test_udp_length_claiming_more_than_the_packet_is_cut_to_what_is_there(probe: Probe) -> None:
    q = dns_query("short.example.")
    ip = IP(src="10.4.4.53", dst="10.4.4.1", len=20 + 8 + len(q) + 50)
    pkt = raw(eth(ip / UDP(sport=53, dport=5001, len=8 + len(q) + 50) / Raw(q)))
    probe.run(TC_IN, pkt)
    (ev,) = probe.events()
    assert ev.data["msg"] == q and ev.data["payload_len"] == len(q) + 50 and ev.data["flags"] == DNS_TRUNC


# -- detections -----------------------------------------------------------------------------------------

def check_det(ev: Event, *, kind: int, family: int, protocol: int, port: int, saddr: str | None, daddr: str,
              count: int, threshold: int, window_ns: int, t0: int) -> None:
    d = ev.data
    assert ev.kind == "netdet" and ev.type_id == EV_NETDET
    assert t0 <= ev.ts_ns <= boot_ns()
    assert all(v == 0 for k, v in ev.proc.items() if k != "comm")
    assert (d["kind"], d["ifindex"], d["family"], d["protocol"], d["port"]) == (kind, LO, family, protocol, port)
    assert bytes(d["saddr"]) == (a16(saddr) if saddr else bytes(16))
    assert bytes(d["daddr"]) == a16(daddr)
    assert (d["count"], d["threshold"], d["window_ns"]) == (count, threshold, window_ns)
    assert t0 <= d["window_start_ns"] <= ev.ts_ns


def syn(src: str, dst: str, dport: int, flags: str = "S") -> bytes:
    fam = IP if ":" not in src else IPv6
    return raw(eth(fam(src=src, dst=dst) / TCP(sport=12345, dport=dport, flags=flags)))


def test_syn_flood_from_one_source_is_reported_once_at_the_threshold() -> None:
    with loaded(syn_src=5, syn_all=0, scan_ports=0, icmp=0, window_s=30.0) as k:
        p = Probe(k)
        t0 = boot_ns()
        assert p.run(XDP, syn("10.3.0.1", "10.3.0.2", 80), repeat=4) == {"packets": 4, "bytes": 4 * 54}
        p.run(XDP, syn("10.3.0.9", "10.3.0.2", 80), repeat=4)            # another source: its own count
        p.run(XDP, syn("10.3.0.1", "10.3.0.2", 80, flags="SA"), repeat=4)  # SYN-ACKs are no SYNs
        p.run(XDP, syn("10.3.0.1", "10.3.0.2", 80, flags="A"), repeat=4)
        assert p.events() == []
        assert p.run(XDP, syn("10.3.0.1", "10.3.0.2", 443)) == {"packets": 1, "bytes": 54, "detection": 1}
        assert p.run(XDP, syn("10.3.0.1", "10.3.0.2", 443), repeat=10) == {"packets": 10, "bytes": 540}
        (ev,) = p.events()
        check_det(ev, kind=DET_SYN_SRC, family=AF_INET, protocol=6, port=443, saddr="10.3.0.1", daddr="10.3.0.2",
                  count=5, threshold=5, window_ns=30_000_000_000, t0=t0)


def test_aggregate_syn_flood_of_many_sources_names_no_source() -> None:
    with loaded(syn_src=0, syn_all=6, scan_ports=0, icmp=0, window_s=30.0) as k:
        p = Probe(k)
        t0 = boot_ns()
        for n in range(5):
            p.run(XDP, syn(f"10.3.1.{n + 1}", "10.3.1.200", 80))
        assert p.events() == []
        p.run(XDP, syn("fd03::6", "fd03::200", 8443))
        p.run(XDP, syn("10.3.1.7", "10.3.1.200", 80), repeat=5)
        (ev,) = p.events()
        check_det(ev, kind=DET_SYN_ALL, family=0, protocol=6, port=8443, saddr=None, daddr="fd03::200",
                  count=6, threshold=6, window_ns=30_000_000_000, t0=t0)


def test_port_scan_counts_distinct_ports_of_tcp_syns_and_udp() -> None:
    with loaded(syn_src=0, syn_all=0, scan_ports=4, icmp=0, window_s=30.0) as k:
        p = Probe(k)
        t0 = boot_ns()
        s, d = "fd03::1", "fd03::2"
        p.run(XDP, syn(s, d, 21))
        p.run(XDP, syn(s, d, 22), repeat=3)                     # the same port again: still 2
        p.run(XDP, syn(s, d, 23, flags="SA"))                   # no SYN without ACK: not counted
        p.run(XDP, syn("fd03::9", d, 24))                       # another source
        p.run(XDP, raw(eth(IPv6(src=s, dst=d) / UDP(sport=1, dport=21))))   # UDP 21 is not TCP 21
        assert p.events() == []
        assert p.run(XDP, raw(eth(IPv6(src=s, dst=d) / UDP(sport=1, dport=161))))["detection"] == 1
        p.run(XDP, syn(s, d, 25))
        (ev,) = p.events()
        check_det(ev, kind=DET_SCAN, family=AF_INET6, protocol=17, port=161, saddr=s, daddr=d, count=4,
                  threshold=4, window_ns=30_000_000_000, t0=t0)


def test_icmp_flood_counts_echo_requests_only_and_each_window_reports_again() -> None:
    with loaded(syn_src=0, syn_all=0, scan_ports=0, icmp=3, window_s=0.3) as k:
        p = Probe(k)
        t0 = boot_ns()
        req = raw(eth(IP(src="10.3.2.1", dst="10.3.2.2") / ICMP(type=8, id=1)))
        rep = raw(eth(IP(src="10.3.2.1", dst="10.3.2.2") / ICMP(type=0, id=1)))
        req6 = raw(eth(IPv6(src="fd03::21", dst="fd03::22") / ICMPv6EchoRequest(id=1)))
        p.run(XDP, rep, repeat=5)
        p.run(XDP, req, repeat=2)
        assert p.events() == []
        p.run(XDP, req, repeat=3)
        p.run(XDP, req6, repeat=3)
        first = p.events()
        assert len(first) == 2
        check_det(first[0], kind=DET_ICMP, family=AF_INET, protocol=1, port=0, saddr="10.3.2.1", daddr="10.3.2.2",
                  count=3, threshold=3, window_ns=300_000_000, t0=t0)
        check_det(first[1], kind=DET_ICMP, family=AF_INET6, protocol=58, port=0, saddr="fd03::21",
                  daddr="fd03::22", count=3, threshold=3, window_ns=300_000_000, t0=t0)
        time.sleep(max(0.0, (first[0].data["window_start_ns"] + 300_000_000 - boot_ns()) / 1e9) + 0.02)
        t1 = boot_ns()
        p.run(XDP, req, repeat=3)
        (again,) = p.events()
        check_det(again, kind=DET_ICMP, family=AF_INET, protocol=1, port=0, saddr="10.3.2.1", daddr="10.3.2.2",
                  count=3, threshold=3, window_ns=300_000_000, t0=t1)
        assert again.data["window_start_ns"] >= first[0].data["window_start_ns"] + 300_000_000


def test_thresholds_of_zero_switch_detections_off() -> None:
    with loaded(syn_src=0, syn_all=0, scan_ports=0, icmp=0) as k:
        p = Probe(k)
        p.run(XDP, syn("10.3.3.1", "10.3.3.2", 80), repeat=50)
        p.run(XDP, raw(eth(IP(src="10.3.3.1", dst="10.3.3.2") / ICMP(type=8))), repeat=50)
        for port in range(50):
            p.run(XDP, raw(eth(IP(src="10.3.3.1", dst="10.3.3.2") / UDP(dport=port + 1))))
        assert p.events() == []
        assert k.counters()["xdp"]["detection"] == 0


def test_the_counters_are_per_hook(kern: NetInspectKernel) -> None:
    got = kern.counters()
    assert set(got) == {"xdp", "tc_ingress", "tc_egress"}
    for row in got.values():
        assert tuple(row) == COUNTERS

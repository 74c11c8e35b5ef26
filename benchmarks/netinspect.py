"""Cost of the network inspector's programs, and XDP drop against an nftables drop (prints figures; not a test).

    sudo .venv/bin/python benchmarks/netinspect.py [--rounds 5] [--repeat 200000] [--seconds 2]

1. Per-packet cost of ni_xdp, ni_tc_ingress and ni_tc_egress (and of the
   enforcement entry program alone and with ni_xdp tail-called from it) on
   crafted packets with BPF_PROG_TEST_RUN (this machine has no pktgen):
   TCP SYN, a UDP DNS query, a DNS response, IPv6 with four extension
   headers, an ICMP echo request. `repeat` runs per measurement, the median
   of `rounds` measurements. Thresholds are set high so no detection fires;
   the DNS packets emit a ring record per run in TC (at most 28,086 runs per
   measurement, the ring drained between them, so it never fills), the flow
   updates hit an existing entry.
2. Packets per second of one sender (a small C program: AF_PACKET, sendmmsg
   of 64 frames, qdisc bypassed, pinned to one CPU) in network namespace A
   to the veth peer in namespace B, 64-byte UDP frames from one source:
     - pass:      nothing on the peer (the frames reach UDP, no listener),
     - entry:     the enforcement entry program on the peer, nothing blocked, slot 0 empty (what an
                  XDP program on a veth costs by itself: the veth then converts every skb for XDP),
     - inspect:   the inspector on the peer (XDP through the enforcement entry + TC), frames passed,
     - xdp-drop:  the source blocked by the enforcement entry program (KernelAddressBlocker),
     - xdp-drop-generic: the same with the entry program attached in generic (skb) mode,
     - nft-drop:  an nftables netdev ingress rule dropping the source.
   The peer's work runs in the sender's softirq on the sender's CPU, so the
   sender's rate is the cost of the whole path. Variants interleave within
   each round (order rotated); each run is bounded in time and count; the
   drops are checked against the drop counters. Prints medians and ratios.
Traffic stays between two namespaces made here and removed at the end.
"""

from __future__ import annotations

import argparse
import ctypes
import ipaddress
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from sentinel_edge.enforce import netmaps
from sentinel_edge.enforce.kernel import EnforceKernel
from sentinel_edge.enforce.model import PolicySet
from sentinel_edge.loader import libbpf
from sentinel_edge.netinspect.kernel import Interface, NetInspectKernel, NiSettings

TAG = os.getpid() % 100000
NS_A, NS_B = f"se-nbench-a-{TAG}", f"se-nbench-b-{TAG}"
VA, VB = f"senba{TAG}", f"senbb{TAG}"
IP_A, IP_B = "10.250.0.1", "10.250.0.2"
PIN = f"/sys/fs/bpf/se-bench-ni-{TAG}"
CLONE_NEWNET = 0x40000000
HIGH = 1 << 30                      # thresholds no benchmark packet reaches

SENDER_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* sender IFNAME CPU MAX_PACKETS SECONDS HEXFRAME: prints "sent ns refused-calls" */
static int unhex(const char *s, unsigned char *out, int max) {
    int n = 0;
    for (; s[0] && s[1] && n < max; s += 2) { unsigned v; sscanf(s, "%2x", &v); out[n++] = (unsigned char)v; }
    return n;
}
int main(int argc, char **argv) {
    if (argc != 6) return 2;
    cpu_set_t set; CPU_ZERO(&set); CPU_SET(atoi(argv[2]), &set);
    if (sched_setaffinity(0, sizeof(set), &set)) { perror("affinity"); return 1; }
    long max = atol(argv[3]); double secs = atof(argv[4]);
    unsigned char frame[256]; int len = unhex(argv[5], frame, sizeof(frame));
    int fd = socket(AF_PACKET, SOCK_RAW, 0);
    if (fd < 0) { perror("socket"); return 1; }
    int one = 1;
    setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
    struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_ifindex = (int)if_nametoindex(argv[1]) };
    if (!sll.sll_ifindex || bind(fd, (struct sockaddr *)&sll, sizeof(sll))) { perror("bind"); return 1; }
    enum { B = 64 };
    struct mmsghdr msgs[B]; struct iovec iov[B];
    memset(msgs, 0, sizeof(msgs));
    for (int i = 0; i < B; i++) {
        iov[i].iov_base = frame; iov[i].iov_len = len;
        msgs[i].msg_hdr.msg_iov = &iov[i]; msgs[i].msg_hdr.msg_iovlen = 1;
    }
    struct timespec t0, t; clock_gettime(CLOCK_MONOTONIC, &t0);
    long sent = 0, refused = 0; double el = 0;
    while (sent < max) {
        int n = sendmmsg(fd, msgs, B, 0);
        if (n < 0 && errno == ENOBUFS) { refused++; sched_yield(); n = 0; }   /* the peer's queue is full */
        else if (n < 0) { perror("sendmmsg"); return 1; }
        sent += n;
        if (refused > 1000000) break;
        if ((sent & 4095) < B || n == 0) {
            clock_gettime(CLOCK_MONOTONIC, &t);
            el = (t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9;
            if (el >= secs) break;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t);
    el = (t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9;
    printf("%ld %.0f %ld\n", sent, el * 1e9, refused);
    return 0;
}
"""


def sh(*cmd: str, check: bool = True, input: str | None = None) -> str:
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=60, input=input)
    if check and r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r.stdout


# -- part 1: BPF_PROG_TEST_RUN ----------------------------------------------------------------------

def crafted() -> dict[str, bytes]:
    import dns.message
    import dns.rrset

    q = dns.message.make_query("www.example.org.", "A")
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text("www.example.org.", 300, "IN", "A", "192.0.2.1", "192.0.2.2"))
    eth = Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b")
    return {
        "tcp-syn": bytes(eth / IP(src="10.1.0.1", dst="10.1.0.2") / TCP(sport=40000, dport=443, flags="S")),
        "udp-dns-query": bytes(eth / IP(src="10.1.0.1", dst="10.1.0.53") / UDP(sport=40001, dport=53)
                               / Raw(q.to_wire())),
        "udp-dns-answer": bytes(eth / IP(src="10.1.0.53", dst="10.1.0.1") / UDP(sport=53, dport=40001)
                                / Raw(r.to_wire())),
        "ipv6-4-ext-udp": bytes(eth / IPv6(src="fd01::1", dst="fd01::2") / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
                                / IPv6ExtHdrRouting() / IPv6ExtHdrFragment(offset=0) / UDP(sport=5000, dport=6000)
                                / Raw(b"x" * 32)),
        "icmp-echo": bytes(eth / IP(src="10.1.0.1", dst="10.1.0.2") / ICMP(type=8, id=7) / Raw(b"p" * 56)),
    }


def prog_test_run(fd: int, packet: bytes, repeat: int) -> int:
    """ns per run of any program fd (the enforcement entry program is not the inspector's)."""
    from sentinel_edge.netinspect.kernel import _TestRunOpts

    data = ctypes.create_string_buffer(packet, len(packet))
    opts = _TestRunOpts(sz=ctypes.sizeof(_TestRunOpts), data_in=ctypes.addressof(data), data_size_in=len(packet),
                        repeat=repeat)
    ret = libbpf.lib().bpf_prog_test_run_opts(fd, ctypes.byref(opts))
    if ret < 0:
        raise SystemExit(f"test run: {libbpf.errno_text(ret)}")
    return int(opts.duration)


RING_BYTES = 1 << 24
DNS_RECORD = 448                    # ring bytes of one se_dns of a message up to 256 bytes


def per_packet(rounds: int, repeat: int, enforce: EnforceKernel) -> dict[str, dict[str, float]]:
    k = NetInspectKernel(NiSettings(syn_src=HIGH, syn_all=HIGH, scan_ports=HIGH, icmp=HIGH, ring_bytes=RING_BYTES))
    k.load()
    out: dict[str, dict[str, float]] = {}
    try:
        ring = k.ring()
        entry = enforce._find_prog(netmaps.XDP_PROGRAM)
        assert entry is not None
        entry_fd = libbpf.lib().bpf_program__fd(entry)
        key = ctypes.c_uint32(0)
        nextfd = enforce.fd("se_xdp_next")
        ni_fd = ctypes.c_uint32(k.prog_fd("ni_xdp"))
        # DNS packets put a record in the ring per run: fewer runs, so that it never fills
        dns_repeat = min(repeat, RING_BYTES // DNS_RECORD * 3 // 4)
        cases: dict[str, Callable[[bytes, int], int]] = {
            "ni_xdp": lambda p, n: k.test_run("ni_xdp", p, n)[1],
            "ni_tc_ingress": lambda p, n: k.test_run("ni_tc_ingress", p, n)[1],
            "ni_tc_egress": lambda p, n: k.test_run("ni_tc_egress", p, n)[1],
            "enforce_xdp (slot 0 empty)": lambda p, n: prog_test_run(entry_fd, p, n),
            "enforce_xdp -> ni_xdp": lambda p, n: prog_test_run(entry_fd, p, n),
        }
        packets = crafted()
        for name, run in cases.items():
            lib = libbpf.lib()
            if name == "enforce_xdp -> ni_xdp":
                assert lib.bpf_map_update_elem(nextfd, ctypes.byref(key), ctypes.byref(ni_fd), 0) == 0
            else:
                lib.bpf_map_delete_elem(nextfd, ctypes.byref(key))
            row: dict[str, float] = {}
            for pname, pkt in packets.items():
                samples = []
                n = dns_repeat if "dns" in pname and name.startswith("ni_tc") else repeat
                for _ in range(rounds):
                    samples.append(run(pkt, n))
                    ring.drain([])
                row[pname] = statistics.median(samples)
            out[name] = row
        libbpf.lib().bpf_map_delete_elem(nextfd, ctypes.byref(key))
        c = k.counters()
        assert c["xdp"]["detection"] == 0 and c["tc_egress"]["ring_dropped"] == 0, c
    finally:
        k.close()
    return out


# -- part 2: a sender through a veth pair ----------------------------------------------------------------

@contextmanager
def in_netns(name: str) -> Iterator[None]:
    libc = ctypes.CDLL(None, use_errno=True)
    orig = os.open("/proc/self/ns/net", os.O_RDONLY)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise SystemExit(f"setns {name}: {os.strerror(ctypes.get_errno())}")
        try:
            yield
        finally:
            libc.setns(orig, CLONE_NEWNET)
    finally:
        os.close(fd)
        os.close(orig)


def make_pair() -> str:
    """The two namespaces and the veth pair; returns the frame (hex) A sends to B."""
    for ns in (NS_A, NS_B):
        sh("ip", "netns", "add", ns)
    sh("ip", "link", "add", VA, "netns", NS_A, "type", "veth", "peer", "name", VB, "netns", NS_B)
    for ns, dev, addr in ((NS_A, VA, IP_A), (NS_B, VB, IP_B)):
        sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
    mac_b = json.loads(sh("ip", "-n", NS_B, "-j", "link", "show", VB))[0]["address"]
    mac_a = json.loads(sh("ip", "-n", NS_A, "-j", "link", "show", VA))[0]["address"]
    frame = Ether(src=mac_a, dst=mac_b) / IP(src=IP_A, dst=IP_B) / UDP(sport=9999, dport=9) / Raw(b"\0" * 18)
    return bytes(frame).hex()


def remove_pair() -> None:
    for ns in (NS_A, NS_B):
        if Path(f"/run/netns/{ns}").exists():
            sh("ip", "netns", "del", ns, check=False)


def wait_no_xdp(timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while json.loads(sh("ip", "-n", NS_B, "-j", "link", "show", VB))[0].get("xdp"):
        if time.monotonic() > deadline:
            raise SystemExit(f"an XDP program stayed on {VB}")
        time.sleep(0.02)


def send(sender: str, cpu: int, max_packets: int, seconds: float, frame: str) -> tuple[int, float, int]:
    """Frames the device took, ns, and sendmmsg calls refused with ENOBUFS (the peer's queue full)."""
    out = sh("ip", "netns", "exec", NS_A, sender, VA, str(cpu), str(max_packets), str(seconds), frame)
    sent, ns, refused = out.split()
    return int(sent), float(ns), int(refused)


NFT_RULES = f"""
table netdev se_bench {{
    chain ingress {{
        type filter hook ingress device "{VB}" priority 0; policy accept;
        ip saddr {IP_A} counter drop
    }}
}}
"""


def nft_dropped() -> int:
    out = json.loads(sh("ip", "netns", "exec", NS_B, "nft", "-j", "list", "table", "netdev", "se_bench"))
    for item in out["nftables"]:
        rule = item.get("rule")
        if rule:
            for e in rule["expr"]:
                if "counter" in e:
                    return int(e["counter"]["packets"])
    raise SystemExit("nft counter not found")


def entry_prog_id(enforce: EnforceKernel) -> int:
    """Kernel id of the enforcement entry program (loaded by sync_network)."""
    from sentinel_edge.netinspect.kernel import ENTRY_PROGRAM, _prog_id

    prog = enforce._find_prog(ENTRY_PROGRAM)
    if prog is None:
        raise SystemExit(f"{ENTRY_PROGRAM} is not loaded")
    return _prog_id(libbpf.lib().bpf_program__fd(prog))


def pps(rounds: int, seconds: float, max_packets: int, enforce: EnforceKernel, tmp: Path) -> dict[str, list[float]]:
    sender = str(tmp / "sender")
    (tmp / "sender.c").write_text(SENDER_C)
    sh("cc", "-O2", "-o", sender, str(tmp / "sender.c"))
    frame = make_pair()
    cpu = min(os.sched_getaffinity(0))
    blocker = netmaps.KernelAddressBlocker(enforce)
    src = ipaddress.ip_address(IP_A)
    results: dict[str, list[float]] = {"pass": [], "entry": [], "inspect": [], "xdp-drop": [],
                                       "xdp-drop-generic": [], "nft-drop": []}
    inspector = NetInspectKernel(NiSettings(syn_src=HIGH, syn_all=HIGH, scan_ports=HIGH, icmp=HIGH))
    inspector.load()
    order = list(results)
    busy = dict.fromkeys(results, 0)
    # what saw the packets of each variant (pass, entry: nothing counts them)
    checks: dict[str, Callable[[], int]] = {
        "pass": lambda: 0,
        "entry": lambda: 0,
        "inspect": lambda: inspector.counters()["xdp"]["packets"],
        "xdp-drop": lambda: enforce.stats()["drops"],
        "xdp-drop-generic": lambda: enforce.stats()["drops"],
        "nft-drop": nft_dropped,
    }
    try:
        for r in range(rounds):
            for variant in order[r % len(order):] + order[:r % len(order)]:
                if variant == "inspect":
                    inspector.attach(Interface(VB, netns=NS_B), enforce)
                elif variant in ("xdp-drop", "entry"):
                    with in_netns(NS_B):
                        netmaps.sync_network(enforce, PolicySet(), extra_interfaces=(VB,))
                    if variant == "xdp-drop":
                        blocker.block(src, 600, "benchmark")
                elif variant == "xdp-drop-generic":
                    # the same entry program in generic (skb) mode: bpftool in the namespace, by program id
                    with in_netns(NS_B):
                        netmaps.sync_network(enforce, PolicySet(), extra_interfaces=(VB,))
                        prog_id = entry_prog_id(enforce)
                        netmaps.sync_network(enforce, PolicySet())
                    wait_no_xdp()
                    sh("ip", "netns", "exec", NS_B, "bpftool", "net", "attach", "xdpgeneric", "id", str(prog_id),
                       "dev", VB)
                    blocker.block(src, 600, "benchmark")
                elif variant == "nft-drop":
                    sh("ip", "netns", "exec", NS_B, "nft", "-f", "-", input=NFT_RULES)
                check = checks[variant]
                before = check()
                sent, ns, refused = send(sender, cpu, max_packets, seconds, frame)
                busy[variant] += refused
                time.sleep(0.05)
                handled = check() - before
                if variant not in ("pass", "entry") and handled < 0.99 * sent:
                    raise SystemExit(f"{variant}: {handled} of {sent} packets seen by the drop / inspection")
                results[variant].append(sent / (ns / 1e9))
                if variant == "inspect":
                    inspector.detach(Interface(VB, netns=NS_B))
                elif variant in ("xdp-drop", "entry"):
                    blocker.unblock(src)
                    with in_netns(NS_B):
                        netmaps.sync_network(enforce, PolicySet())
                    wait_no_xdp()   # the unpinned link leaves the interface through a kernel work item
                elif variant == "xdp-drop-generic":
                    blocker.unblock(src)
                    sh("ip", "netns", "exec", NS_B, "bpftool", "net", "detach", "xdpgeneric", "dev", VB)
                elif variant == "nft-drop":
                    sh("ip", "netns", "exec", NS_B, "nft", "delete", "table", "netdev", "se_bench")
    finally:
        inspector.close()
        blocker.unblock(src)
        with in_netns(NS_B):
            netmaps.sync_network(enforce, PolicySet())
    for variant, n in busy.items():
        if n:
            print(f"  ({variant}: {n} sendmmsg calls refused, the peer's queue full)")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=200_000, help="test runs per BPF_PROG_TEST_RUN measurement")
    ap.add_argument("--seconds", type=float, default=2.0, help="length of one sender run")
    ap.add_argument("--max-packets", type=int, default=5_000_000, help="packets of one sender run at most")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (loads BPF programs, makes network namespaces)")
    enforce = EnforceKernel(pin_root=PIN)
    figures: dict[str, object] = {}
    try:
        enforce.open(agent_pid=os.getpid())
        print(f"BPF_PROG_TEST_RUN, ns per packet (median of {args.rounds} x {args.repeat} runs)")
        pp = per_packet(args.rounds, args.repeat, enforce)
        names = list(next(iter(pp.values())))
        print(f"{'program':28}" + "".join(f"{n:>16}" for n in names))
        for prog, row in pp.items():
            print(f"{prog:28}" + "".join(f"{row[n]:>16.0f}" for n in names))
        figures["test_run_ns"] = pp
        with tempfile.TemporaryDirectory(prefix="se-nbench-") as tmp:
            res = pps(args.rounds, args.seconds, args.max_packets, enforce, Path(tmp))
        med = {k: statistics.median(v) for k, v in res.items()}
        print(f"\nveth, one sender on one CPU, 64-byte UDP frames from one source ({args.rounds} rounds of "
              f"{args.seconds:g} s, median packets/s)")
        for k, v in med.items():
            print(f"  {k:16} {v:>12,.0f} pps   (runs: {', '.join(f'{x:,.0f}' for x in res[k])})")
        ratio = [x / y for x, y in zip(res["xdp-drop"], res["nft-drop"], strict=True)]
        print(f"  {'xdp-drop / nft-drop:':20} {statistics.median(ratio):.2f} (median of per-round ratios "
              f"{', '.join(f'{x:.2f}' for x in ratio)})")
        for a, b in (("xdp-drop-generic", "nft-drop"), ("xdp-drop-generic", "xdp-drop"), ("inspect", "pass"),
                     ("entry", "pass"), ("inspect", "entry")):
            q = [x / y for x, y in zip(res[a], res[b], strict=True)]
            print(f"  {a + ' / ' + b + ':':20} {statistics.median(q):.2f} (median of per-round ratios "
                  f"{', '.join(f'{x:.2f}' for x in q)})")
        figures["pps"] = res
        figures["pps_median"] = med
    finally:
        remove_pair()
        enforce.uninstall()
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()

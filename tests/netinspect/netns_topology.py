"""Two network namespaces joined by a veth pair, made and removed by the tests that use them.

    netns <a> (client, scanner)                netns <b> (server, target)
    va  index ia  10.<n>.0.1/24  fd<n>::1/64 ===== vb  index ib  10.<n>.0.2/24  fd<n>::2/64

The veth ends get explicit, distinct interface indexes (the inspector keys
its flow table by ifindex, which is only unique within one namespace) and
have GSO, GRO and TSO turned off, so every packet on the wire is one packet
in the kernel's counters. Traffic stays between the two namespaces.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CLONE_NEWNET = 0x40000000


def sh(*cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


@dataclass
class Topology:
    a: str
    b: str
    va: str
    vb: str
    ia: int
    ib: int
    ip_a: str
    ip_b: str
    ip6_a: str
    ip6_b: str

    def exec_a(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.a, *cmd]

    def exec_b(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.b, *cmd]

    def popen(self, ns: str, cmd: Sequence[str], **kw: object) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["ip", "netns", "exec", ns, *cmd], **kw)  # type: ignore[call-overload,no-any-return]

    def add_address_a(self, addr: str) -> None:
        sh("ip", "-n", self.a, "addr", "add", f"{addr}/24", "dev", self.va)


def make(tag: str, net: int) -> Topology:
    """Create the pair (names made from ``tag``, addresses from ``net`` in 10.<net>.0.0/24)."""
    ia, ib = 4000 + 2 * net, 4001 + 2 * net
    t = Topology(a=f"{tag}a", b=f"{tag}b", va=f"{tag}va", vb=f"{tag}vb", ia=ia, ib=ib,
                 ip_a=f"10.{net}.0.1", ip_b=f"10.{net}.0.2", ip6_a=f"fd{net:02x}::1", ip6_b=f"fd{net:02x}::2")
    remove(t)
    sh("ip", "netns", "add", t.a)
    sh("ip", "netns", "add", t.b)
    try:
        sh("ip", "link", "add", t.va, "index", str(ia), "netns", t.a, "type", "veth", "peer", "name", t.vb,
           "index", str(ib), "netns", t.b)
        for ns, dev, ip4, ip6 in ((t.a, t.va, t.ip_a, t.ip6_a), (t.b, t.vb, t.ip_b, t.ip6_b)):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "addr", "add", f"{ip4}/24", "dev", dev)
            sh("ip", "-n", ns, "addr", "add", f"{ip6}/64", "dev", dev, "nodad")
            sh("ip", "netns", "exec", ns, "ethtool", "-K", dev, "gso", "off", "gro", "off", "tso", "off")
            sh("ip", "-n", ns, "link", "set", dev, "up")
        deadline = time.monotonic() + 10
        while not all(_up(ns, dev) for ns, dev in ((t.a, t.va), (t.b, t.vb))):
            if time.monotonic() > deadline:
                raise AssertionError("the veth pair did not come up")
            time.sleep(0.05)
    except BaseException:
        remove(t)
        raise
    return t


@contextmanager
def in_netns(name: str) -> Iterator[None]:
    """This thread in network namespace ``name`` for the block."""
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


def _up(ns: str, dev: str) -> bool:
    out = sh("ip", "-n", ns, "-j", "link", "show", dev).stdout
    return bool(json.loads(out)[0].get("operstate") == "UP")


def remove(t: Topology) -> None:
    for ns in (t.a, t.b):
        if Path(f"/run/netns/{ns}").exists():
            # processes left in the namespace would keep it alive: kill them first
            res = sh("ip", "netns", "pids", ns, check=False)
            for pid in res.stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            sh("ip", "netns", "del", ns, check=False)


# -- traffic of known shape (python -c SCRIPT args...), run inside the namespaces ------------------

#: UDP_SINK ip port n replies size: receive n datagrams, answer with `replies` datagrams of `size` bytes
UDP_SINK = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(10)
print("ready", flush=True)
n, replies, size = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
peer = None
for _ in range(n):
    data, peer = s.recvfrom(65536)
for _ in range(replies):
    s.sendto(b"r" * size, peer)
print("done", flush=True)
"""

#: UDP_SEND ip port dst dport n size replies: a connected socket sends n datagrams, reads the replies;
#: prints its pid first, "ok" last
UDP_SEND = r"""
import os, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.connect((sys.argv[3], int(sys.argv[4])))
print(os.getpid(), flush=True)
n, size, replies = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
for _ in range(n):
    s.send(b"x" * size)
    time.sleep(0.001)
s.settimeout(10)
for _ in range(replies):
    s.recv(65536)
print("ok", flush=True)
"""

#: TCP_SERVER ip port [connections]: answers each connection with "ok <bytes received>" (IPv4 or IPv6)
TCP_SERVER = r"""
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(8)
print("ready", flush=True)
s.settimeout(15)
for _ in range(int(sys.argv[3]) if len(sys.argv) > 3 else 1):
    c, _ = s.accept()
    got = 0
    while True:
        d = c.recv(65536)
        if not d:
            break
        got += len(d)
    c.sendall(b"ok %d" % got)
    c.close()
"""

#: TCP_CLIENT ip port nbytes: prints "<pid> <local port>", sends, prints the server's answer
TCP_CLIENT = r"""
import os, socket, sys
c = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
c.connect((sys.argv[1], int(sys.argv[2])))
print(os.getpid(), c.getsockname()[1], flush=True)
c.sendall(b"y" * int(sys.argv[3]))
c.shutdown(socket.SHUT_WR)
print(c.recv(100).decode(), flush=True)
c.close()
"""


def start_dnsmasq(t: Topology, tmp: Path, records: Sequence[str], probe: tuple[str, str]) -> subprocess.Popen[bytes]:
    """dnsmasq answering on b's address, authoritative for sentinel.test (unknown names: NXDOMAIN).

    ``records``: more dnsmasq options (``--host-record=...``, ``--txt-record=...``); ``probe``: a name
    and the address it must resolve to before this returns. The caller kills the process.
    """
    proc = t.popen(t.b, ["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces",
                         f"--listen-address={t.ip_b}", "--port=53", "--user=root", f"--pid-file={tmp / 'pid'}",
                         "--local=/sentinel.test/", *records, "--log-facility=-"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while sh(*t.exec_a("dig", f"@{t.ip_b}", "+time=1", "+tries=1", "+short", probe[0]),
             check=False).stdout.strip() != probe[1]:
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            proc.wait()
            raise AssertionError(f"dnsmasq in {t.b} does not answer {probe[0]}")
        time.sleep(0.1)
    return proc


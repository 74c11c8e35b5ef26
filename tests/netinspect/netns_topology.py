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
import json
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


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

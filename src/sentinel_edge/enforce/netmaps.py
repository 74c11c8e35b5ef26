"""Network enforcement in the pinned enforcement object: connect deny and XDP inbound drop.

    ConnectDeny --plan_network--> se_enf_conn4 / se_enf_conn6 (LPM tries)  <-- cgroup/connect4|6 (EPERM)
    InboundDrop --plan_network--> se_enf_in4 / se_enf_in6 (LPM tries)      <-- XDP entry program (drop)
    block_address (a rule's response) --KernelAddressBlocker--> both, under generation 0, with a deadline

The kernel side is bpf/enforce/net.h, connect4.bpf.c, connect6.bpf.c and
xdp_entry.bpf.c. The maps are pinned with the rest of the object
(:func:`register`); the programs are attached here and pinned as links
(:func:`sync_network`): connect4/6 on the cgroup v2 root, so they run for
every process and scope by map lookups (hybrid hosts such as this one have
no v1 attach point that would do), and the XDP entry program on each
interface an inbound policy names, as the one XDP program of that interface
(its slot 0 of ``se_xdp_next`` belongs to the network inspector).

Response blocks live under generation 0, which :meth:`EnforceKernel.apply`
never writes nor drops, so they survive every policy set change; their
deadline (``expires_ns``, CLOCK_BOOTTIME) is checked in the kernel, so an
expired block stops working even while no agent runs. Expired entries are
removed by :meth:`KernelAddressBlocker.sweep` (also run by ``block`` and
``blocked``).
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import logging
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sentinel_edge.enforce.kernel import (
    EnfMatchVal,
    EnforceKernel,
    EnfPolicy,
    EnfPolicyKey,
    EnfScopeKey,
    KernelPlan,
    _boot_ns,
    _match_union,
)
from sentinel_edge.enforce.model import ConnectDeny, InboundDrop, IPNetwork, PolicySet
from sentinel_edge.errors import EnforceError, LoaderError
from sentinel_edge.loader import libbpf

__all__ = [
    "BLOCK_GEN",
    "BLOCK_IDX",
    "CONNECT_PROGRAMS",
    "NET_MAPS",
    "XDP_PROGRAM",
    "Block",
    "EnfV4Key",
    "EnfV6Key",
    "KernelAddressBlocker",
    "NetSync",
    "cgroup2_root",
    "plan_network",
    "register",
    "relink",
    "sync_attachments",
    "sync_network",
    "xdp_pin_name",
]

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# maps of bpf/enforce/net.h and the offset of the generation in their keys (None: not keyed)
NET_MAPS: dict[str, int | None] = {
    "se_enf_conn4": 4,
    "se_enf_conn6": 4,
    "se_enf_in4": 4,
    "se_enf_in6": 4,
    "se_xdp_next": None,
    "se_enf_xrate": None,
}
CONNECT_PROGRAMS = ("enforce_connect4", "enforce_connect6", "enforce_sendmsg4", "enforce_sendmsg6")
XDP_PROGRAM = "enforce_xdp"
XDP_PIN_PREFIX = "xdp_"

BLOCK_GEN = 0                  # generation of the response blocks (SE_ENF_BLOCK_GEN)
BLOCK_IDX = 0xFFFFFFFF         # policy_idx of an event caused by a response block (SE_ENF_IDX_BLOCK)
PORT_SET = 1 << 8              # se_enf_policy.scope: the policy's ports are in se_enf_scope (SE_ENF_NET_PORT_SET)
WHAT_PORT = 4                  # se_enf_scope_key.what (SE_SCOPE_WHAT_PORT)
WHAT_IFINDEX = 5               # se_enf_scope_key.what (SE_SCOPE_WHAT_IFINDEX)
AF_INET, AF_INET6 = 2, 10


# -- the wire mirror of the trie keys (checked against BTF in tests) -------------------

class EnfV4Key(ctypes.Structure):
    _fields_ = [("prefixlen", ctypes.c_uint32), ("gen", ctypes.c_uint32), ("addr", ctypes.c_uint8 * 4)]


class EnfV6Key(ctypes.Structure):
    _fields_ = [("prefixlen", ctypes.c_uint32), ("gen", ctypes.c_uint32), ("addr", ctypes.c_uint8 * 16)]


class EnfRateKey(ctypes.Structure):
    _fields_ = [("ifindex", ctypes.c_uint32), ("family", ctypes.c_uint32), ("addr", ctypes.c_uint8 * 16)]


class EnfRate(ctypes.Structure):
    _fields_ = [("last_ns", ctypes.c_uint64), ("pending", ctypes.c_uint64)]


MIRRORS: dict[str, type[ctypes.Structure]] = {
    "se_enf_v4_key": EnfV4Key, "se_enf_v6_key": EnfV6Key, "se_enf_rate_key": EnfRateKey, "se_enf_rate": EnfRate,
}


# -- registration in the pinned set ------------------------------------------------------

def register(kernel: EnforceKernel) -> None:
    """Make the network maps part of the pinned set and keep the network links across a replace.

    Must happen before :meth:`EnforceKernel.open` (EnforceKernel's constructor does it).
    """
    kernel.maps.update(NET_MAPS)
    relinkers = getattr(kernel, "relinkers", None)
    if relinkers is not None and relink not in relinkers:
        relinkers.append(relink)


# -- planning ---------------------------------------------------------------------------

def _as_v4(net: IPNetwork) -> IPNetwork:
    """An IPv4-mapped IPv6 network is the IPv4 network (connect6 looks those up in the IPv4 trie)."""
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96 and \
            int(net.network_address) >> 32 == 0xFFFF:  # within ::ffff:0:0/96
        v4 = ipaddress.IPv4Address(int(net.network_address) & 0xFFFFFFFF)
        return ipaddress.IPv4Network((v4, net.prefixlen - 96))
    return net


def net_key(net: IPNetwork, gen: int = 0) -> EnfV4Key | EnfV6Key:
    """The trie key of a network (host bits cleared)."""
    k: EnfV4Key | EnfV6Key = EnfV4Key() if net.version == 4 else EnfV6Key()
    k.prefixlen = 32 + net.prefixlen
    k.gen = gen
    raw = net.network_address.packed
    ctypes.memmove(ctypes.addressof(k) + 8, raw, len(raw))
    return k


def _union_into(plan: KernelPlan, map_name: str, key: bytes, idx: int, port: int) -> None:
    table = plan.entries.setdefault(map_name, {})
    table[key] = bytes(_match_union(table.get(key), idx, port=port))


def plan_network(policies: PolicySet, index: dict[str, int], plan: KernelPlan, *,
                 ifindex_of: Callable[[str], int] = socket.if_nametoindex) -> None:
    """The ``extra`` planner of :func:`plan_policies` for ConnectDeny and InboundDrop policies.

    Connect policies: one trie entry per network (an IPv4-mapped IPv6 network
    goes to the IPv4 trie), with the policy's port (one port) or a port set
    in se_enf_scope (several). Inbound policies: one entry per source and the
    interfaces by ifindex of this network namespace (an interface that does
    not exist is reported in ``plan.problems``). Then every entry gets the
    policies of the prefixes that cover it (:func:`close_networks`).
    """
    for pol in policies.policies:
        spec = pol.spec
        if not isinstance(spec, ConnectDeny | InboundDrop) or pol.id not in index:
            continue
        idx = index[pol.id]
        if isinstance(spec, ConnectDeny):
            port = 0
            if len(spec.ports) == 1:
                port = spec.ports[0]
            elif len(spec.ports) > 1:
                _add_policy_flag(plan, idx, PORT_SET)
                for p in spec.ports:
                    plan.add("se_enf_scope", EnfScopeKey(0, idx, WHAT_PORT, p, 0), ctypes.c_uint32(1))
            for net in spec.networks:
                n = _as_v4(net)
                _union_into(plan, "se_enf_conn4" if n.version == 4 else "se_enf_conn6", bytes(net_key(n)), idx, port)
        else:
            for ifname in spec.interfaces:
                try:
                    ifindex = ifindex_of(ifname)
                except OSError as exc:
                    plan.problems.append(f"policy {pol.id}: interface {ifname}: {exc.strerror or exc} (the policy "
                                         "drops nothing there until it exists and the policy set is applied again)")
                    continue
                plan.add("se_enf_scope", EnfScopeKey(0, idx, WHAT_IFINDEX, ifindex, 0), ctypes.c_uint32(1))
            for net in spec.sources:
                n = _as_v4(net)
                _union_into(plan, "se_enf_in4" if n.version == 4 else "se_enf_in6", bytes(net_key(n)), idx, 0)
    close_networks(plan)


def _add_policy_flag(plan: KernelPlan, idx: int, flag: int) -> None:
    table = plan.entries.get("se_enf_policies", {})
    key = bytes(EnfPolicyKey(0, idx))
    if key not in table:
        raise EnforceError(f"policy idx {idx} has no se_enf_policies entry in the plan")
    pol = EnfPolicy.from_buffer_copy(table[key])
    pol.scope |= flag
    table[key] = bytes(pol)


def close_networks(plan: KernelPlan) -> None:
    """Give every trie entry the policies of the shorter prefixes that cover it.

    The trie answers with the longest match only: without this, a policy on
    10.0.0.0/8 would not apply to 10.1.2.3 when another policy names
    10.1.0.0/16. Each entry looks up its supernets (at most 32 or 128), so
    10,000 entries cost well under a second.
    """
    for name, bits in (("se_enf_conn4", 32), ("se_enf_conn6", 128), ("se_enf_in4", 32), ("se_enf_in6", 128)):
        table = plan.entries.get(name)
        if not table:
            continue
        nbytes = bits // 8
        by_net: dict[tuple[int, int], bytes] = {}
        for key in table:
            plen = int.from_bytes(key[0:4], "little") - 32
            by_net[(plen, int.from_bytes(key[8:8 + nbytes], "big"))] = key
        original = dict(table)
        full = (1 << bits) - 1
        for (plen, addr), key in by_net.items():
            val = table[key]
            for q in range(plen - 1, -1, -1):
                sup = addr & (full ^ ((1 << (bits - q)) - 1))
                okey = by_net.get((q, sup))
                if okey is None:
                    continue
                cover = EnfMatchVal.from_buffer_copy(original[okey])
                for i in range(cover.n):
                    val = bytes(_match_union(val, cover.idx[i], port=cover.ports[i]))
            table[key] = val


# -- attaching ------------------------------------------------------------------------------

def _unescape_mount(path: str) -> str:
    """Mount points in mountinfo escape space, tab, newline and backslash as \\ooo."""
    out, i = [], 0
    while i < len(path):
        if path[i] == "\\" and path[i + 1:i + 4].isdigit() and len(path[i + 1:i + 4]) == 3:
            out.append(chr(int(path[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(path[i])
            i += 1
    return "".join(out)


def cgroup2_root(mountinfo: str = "/proc/self/mountinfo") -> str:
    """Where the cgroup v2 hierarchy's root is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts)."""
    try:
        text = Path(mountinfo).read_text()
    except OSError as exc:
        raise EnforceError(f"cannot read {mountinfo}: {exc}") from exc
    found: list[tuple[str, str]] = []
    for line in text.splitlines():
        pre, sep, post = line.partition(" - ")
        if not sep or post.split(" ", 1)[0] != "cgroup2":
            continue
        parts = pre.split(" ")
        if len(parts) >= 5:
            found.append((parts[3], _unescape_mount(parts[4])))
    for root, mnt in found:
        if root == "/":
            return mnt
    if found:
        raise EnforceError(f"cgroup2 is mounted only below its root ({found[0][1]} is {found[0][0]}): "
                           "connect enforcement needs the root of the hierarchy (a cgroup namespace?)")
    raise EnforceError("cgroup2 is not mounted (no cgroup2 line in /proc/self/mountinfo): "
                       "connect enforcement needs the cgroup v2 hierarchy")


def xdp_pin_name(ifname: str) -> str:
    return XDP_PIN_PREFIX + ifname


class _BpfLinkInfo(ctypes.Structure):
    # struct bpf_link_info: type, id, prog_id, then an 8-aligned union (xdp: ifindex; cgroup: cgroup_id, attach_type)
    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("prog_id", ctypes.c_uint32),
                ("_pad", ctypes.c_uint32), ("u0", ctypes.c_uint64), ("u1", ctypes.c_uint64),
                ("rest", ctypes.c_uint8 * 64)]


BPF_LINK_TYPE_CGROUP, BPF_LINK_TYPE_XDP = 3, 6


@dataclass(frozen=True, slots=True)
class LinkInfo:
    type: int
    prog_id: int
    ifindex: int         # XDP links: 0 once the interface is gone
    cgroup_id: int       # cgroup links


def link_info(path: str | os.PathLike[str]) -> LinkInfo | None:
    """What a pinned link is attached to (None when there is no such pin)."""
    lib = libbpf.lib()
    fd = lib.bpf_obj_get(os.fsencode(path))
    if fd < 0:
        return None
    try:
        fn = lib.bpf_obj_get_info_by_fd
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32)]
        info = _BpfLinkInfo()
        n = ctypes.c_uint32(ctypes.sizeof(info))
        ret = fn(fd, ctypes.byref(info), ctypes.byref(n))
        if ret < 0:
            raise LoaderError(f"reading link info of {path}: {libbpf.errno_text(ret)}")
        ifindex = info.u0 & 0xFFFFFFFF if info.type == BPF_LINK_TYPE_XDP else 0
        cg = info.u0 if info.type == BPF_LINK_TYPE_CGROUP else 0
        return LinkInfo(info.type, info.prog_id, ifindex, cg)
    finally:
        os.close(fd)


@dataclass(slots=True)
class NetSync:
    """What :func:`sync_network` left attached."""

    connect: bool = False                               # connect4/6 on the cgroup v2 root
    cgroup_root: str = ""
    interfaces: dict[str, int] = field(default_factory=dict)   # XDP entry program: ifname -> ifindex
    detached: list[str] = field(default_factory=list)          # interfaces whose XDP link was removed
    problems: list[str] = field(default_factory=list)


def wanted_interfaces(policies: PolicySet) -> set[str]:
    return {i for p in policies.policies if isinstance(p.spec, InboundDrop) for i in p.spec.interfaces}


def sync_network(kernel: EnforceKernel, policies: PolicySet, *, extra_interfaces: Iterable[str] = (),
                 cgroup_root: str | None = None) -> NetSync:
    """Attach (pinned) what the network part needs for this policy set; detach what it no longer needs.

    connect4/6 are always attached to the cgroup v2 root (response blocks use
    them too; a connect that matches nothing costs two trie lookups). The XDP
    entry program is attached to every interface of this network namespace
    an inbound policy names, plus ``extra_interfaces`` (where response blocks
    should drop inbound packets too), and detached from the others. An
    interface that is missing, or already has another XDP program, is a
    problem reported in the result; the rest is still done.
    """
    out = NetSync()
    root = cgroup_root or cgroup2_root()
    out.cgroup_root = root
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise EnforceError(f"opening the cgroup v2 root {root}: {exc}") from exc
    try:
        for prog in CONNECT_PROGRAMS:
            kernel.attach_program(prog, target=fd, how="cgroup")
    finally:
        os.close(fd)
    out.connect = True

    want = wanted_interfaces(policies) | set(extra_interfaces)
    for ifname in sorted(want):
        pin = xdp_pin_name(ifname)
        try:
            ifindex = socket.if_nametoindex(ifname)
        except OSError as exc:
            out.problems.append(f"interface {ifname}: {exc.strerror or exc}; no XDP entry program attached")
            if kernel.detach_program(pin):
                out.detached.append(ifname)
            continue
        info = link_info(kernel.pin_root / "links" / pin)
        if info is not None and info.ifindex != ifindex:
            kernel.detach_program(pin)   # the interface went away (or was made again): its link is dead
        try:
            kernel.attach_program(XDP_PROGRAM, target=ifindex, how="xdp", pin_name=pin)
        except EnforceError as exc:
            out.problems.append(f"interface {ifname}: {exc}")
            continue
        out.interfaces[ifname] = ifindex
    for pin in kernel.pinned_links():
        if pin.startswith(XDP_PIN_PREFIX) and pin[len(XDP_PIN_PREFIX):] not in want:
            kernel.detach_program(pin)
            out.detached.append(pin[len(XDP_PIN_PREFIX):])
    return out


def sync_attachments(kernel: EnforceKernel, policies: PolicySet) -> NetSync:
    """:func:`sync_network` for the enforcement stage: its problems are logged, not raised."""
    got = sync_network(kernel, policies)
    for p in got.problems:
        log.warning("network enforcement: %s", p)
    return got


def network_pins(kernel: EnforceKernel) -> list[str]:
    """The pinned links of the network part."""
    return [p for p in kernel.pinned_links() if p in CONNECT_PROGRAMS or p.startswith(XDP_PIN_PREFIX)]


def relink(kernel: EnforceKernel) -> set[str]:
    """Point the network links at the programs of the object just loaded (EnforceKernel.replace).

    cgroup and XDP links can swap their program in place (BPF_LINK_UPDATE):
    no gap, and no second XDP program on an interface, which would not fit.
    Returns the pins it kept (replace must not remove them).
    """
    lib = libbpf.lib()
    update = lib.bpf_link_update
    update.restype = ctypes.c_int
    update.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    kept: set[str] = set()
    for pin in network_pins(kernel):
        prog_name = XDP_PROGRAM if pin.startswith(XDP_PIN_PREFIX) else pin
        prog = kernel._find_prog(prog_name)
        if prog is None:
            raise EnforceError(f"program {prog_name} is not in {kernel.obj_path}")
        path = kernel.pin_root / "links" / pin
        fd = lib.bpf_obj_get(os.fsencode(path))
        if fd < 0:
            raise EnforceError(f"opening pinned link {path}: {libbpf.errno_text(fd)}")
        try:
            ret = update(fd, lib.bpf_program__fd(prog), None)
            if ret < 0 and -ret != errno.ENOLINK:
                raise EnforceError(f"updating link {pin} to the new {prog_name}: {libbpf.errno_text(ret)}")
        finally:
            os.close(fd)
        if ret < 0:
            log.info("pinned link %s is detached (its interface is gone); dropped", pin)
            continue
        kept.add(pin)
    return kept


# -- response blocks -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Block:
    """One response block in force."""

    addr: IPAddress
    expires_ns: int          # CLOCK_BOOTTIME deadline (0: never)
    remaining_s: float
    reason: str = ""


def _normalize(addr: IPAddress) -> IPAddress:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


class KernelAddressBlocker:
    """Blocks remote addresses in the kernel for a time: outbound connects (EPERM) and inbound packets (XDP).

    Implements the AddressBlocker protocol of actions.py. The entries sit in
    the connect and inbound tries under generation 0 (net.h): they survive
    every policy set change, and the kernel stops honouring one at its
    deadline with no help from user space. Inbound drops happen only on the
    interfaces the XDP entry program is attached to (see ``sync_network``'s
    ``extra_interfaces``). The never-block list and the cap on entries are the
    caller's (actions.AddressBlockPolicy); this class only does the kernel part.
    """

    def __init__(self, kernel: EnforceKernel) -> None:
        self.kernel = kernel
        self._reasons: dict[IPAddress, str] = {}

    @staticmethod
    def _maps(addr: IPAddress) -> tuple[str, str, int]:
        return ("se_enf_conn4", "se_enf_in4", 12) if addr.version == 4 else ("se_enf_conn6", "se_enf_in6", 24)

    def block(self, addr: IPAddress, ttl_s: float, reason: str) -> None:
        """Block ``addr`` for ``ttl_s`` seconds (blocking it again sets a new deadline)."""
        if not ttl_s > 0:
            raise EnforceError(f"block of {addr}: the time to live must be positive, got {ttl_s}")
        a = _normalize(addr)
        val = EnfMatchVal()
        val.expires_ns = _boot_ns() + int(ttl_s * 1e9)
        key = net_key(ipaddress.ip_network(a), BLOCK_GEN)
        conn, inbound, _ = self._maps(a)
        self.kernel._update(conn, key, val)
        self.kernel._update(inbound, key, val)
        self._reasons[a] = reason
        log.info("blocked %s for %.0f s: %s", a, ttl_s, reason)

    def unblock(self, addr: IPAddress) -> None:
        a = _normalize(addr)
        key = bytes(net_key(ipaddress.ip_network(a), BLOCK_GEN))
        conn, inbound, _ = self._maps(a)
        self.kernel._delete(conn, key)
        self.kernel._delete(inbound, key)
        self._reasons.pop(a, None)

    def _entries(self) -> list[tuple[IPAddress, int, str, bytes]]:
        out: list[tuple[IPAddress, int, str, bytes]] = []
        vsize = ctypes.sizeof(EnfMatchVal)
        for conn, size in (("se_enf_conn4", 12), ("se_enf_conn6", 24)):
            for key in self.kernel._keys(conn, size):
                if int.from_bytes(key[4:8], "little") != BLOCK_GEN:
                    continue
                raw = self.kernel._lookup(conn, key, vsize)
                if raw is None:
                    continue
                a = ipaddress.ip_address(key[8:size])
                out.append((a, EnfMatchVal.from_buffer_copy(raw).expires_ns, conn, key))
        return out

    def sweep(self) -> int:
        """Remove the blocks past their deadline (the kernel already ignores them). Returns how many."""
        now = _boot_ns()
        n = 0
        for a, expires, _, _ in self._entries():
            if expires and expires <= now:
                self.unblock(a)
                n += 1
        return n

    def blocked(self) -> list[Block]:
        """The blocks in force, soonest deadline first."""
        self.sweep()
        now = _boot_ns()
        out = [Block(a, exp, (exp - now) / 1e9 if exp else float("inf"), self._reasons.get(a, ""))
               for a, exp, _, _ in self._entries()]
        return sorted(out, key=lambda b: b.remaining_s)

"""Response actions named by detection rules: kill, kill_group, block_address, quarantine.

    Alert (rule.actions) --> ResponseActions.run --> one Enforcement per action
        kill / kill_group  --> ProcessKiller  (pidfd, start-time and exe identity checks, safety list)
        block_address      --> AddressBlockPolicy (never-block list, cap, TTL book) --> AddressBlocker
        quarantine         --> Quarantine (quarantine.py)

Each action is rate limited twice (a token bucket per action kind, and one
per action kind and rule) and logged; a refused, rate-limited or failed action
gives an Enforcement with ``ok=False`` and the reason in ``error``, never an
exception. See docs/actions.md for the defaults and what each check guards.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import signal
import struct
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sentinel_edge.enforce.identity import identity_of_fd, identity_of_path, mount_devices
from sentinel_edge.enforce.model import (
    ACTION_KILL,
    ACTION_NONE,
    MECH_RESPONSE,
    Enforcement,
    FileIdentity,
    IPNetwork,
)
from sentinel_edge.enforce.quarantine import DEFAULT_QUARANTINE_DIR, ActionRefused, Quarantine
from sentinel_edge.enrich.proctable import TICK_NS
from sentinel_edge.errors import EnforceError
from sentinel_edge.model import KIND_EXEC, KIND_EXIT, KIND_FILE, KIND_NET, Event
from sentinel_edge.output.ocsf import file as ocsf_file
from sentinel_edge.output.ocsf.common import text, untext
from sentinel_edge.rules.fields import FIELDS
from sentinel_edge.rules.model import ActionSpec, Alert

__all__ = [
    "ACTION_BLOCK",
    "ACTION_QUARANTINE",
    "DEFAULT_KIND_LIMITS",
    "DEFAULT_RULE_LIMITS",
    "NEVER_BLOCK_ALWAYS",
    "ActionRefused",
    "AddressBlockPolicy",
    "AddressBlocker",
    "BlockEntry",
    "IPAddress",
    "ProcStat",
    "ProcessKiller",
    "ProcessRef",
    "RateLimit",
    "RateLimiter",
    "ResponseActions",
    "ResponseConfig",
    "TokenBucket",
    "default_gateways",
    "host_addresses",
    "read_proc_stat",
]

log = logging.getLogger(__name__)

ACTION_QUARANTINE = "quarantine"   # Enforcement.action of a quarantine (model.py has kill/deny/drop/audit/none)
ACTION_BLOCK = "block"             # Enforcement.action of a block_address

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
PF_KTHREAD = 0x00200000


def boottime_s() -> float:
    """CLOCK_BOOTTIME in seconds: what the kernel's own TTL check counts in (it does not stop in suspend)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


# ============================================================== rate limits

@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: ``burst`` actions at once, refilled at ``rate_per_s``."""

    rate_per_s: float
    burst: float

    def __post_init__(self) -> None:
        if self.rate_per_s <= 0 or self.burst < 1:
            raise ValueError(f"rate limit needs rate_per_s > 0 and burst >= 1, not {self.rate_per_s}/{self.burst}")


#: all rules together, per action kind
DEFAULT_KIND_LIMITS: Mapping[str, RateLimit] = {
    "kill": RateLimit(5.0, 20),
    "kill_group": RateLimit(1.0, 5),
    "block_address": RateLimit(2.0, 20),
    "quarantine": RateLimit(1.0, 10),
}
#: one rule, per action kind
DEFAULT_RULE_LIMITS: Mapping[str, RateLimit] = {
    "kill": RateLimit(1.0, 5),
    "kill_group": RateLimit(0.2, 2),
    "block_address": RateLimit(1.0, 10),
    "quarantine": RateLimit(0.5, 5),
}


class TokenBucket:
    __slots__ = ("last", "limit", "tokens")

    def __init__(self, limit: RateLimit, now: float) -> None:
        self.limit = limit
        self.tokens = float(limit.burst)
        self.last = now

    def refill(self, now: float) -> float:
        if now > self.last:
            self.tokens = min(float(self.limit.burst), self.tokens + (now - self.last) * self.limit.rate_per_s)
        self.last = max(self.last, now)
        return self.tokens


class RateLimiter:
    """Two buckets per action: one per kind (all rules) and one per (kind, rule); both must have a token."""

    def __init__(self, per_kind: Mapping[str, RateLimit] = DEFAULT_KIND_LIMITS,
                 per_rule: Mapping[str, RateLimit] = DEFAULT_RULE_LIMITS, *,
                 clock: Callable[[], float] = time.monotonic, max_rules: int = 4096) -> None:
        self.per_kind = dict(per_kind)
        self.per_rule = dict(per_rule)
        self.clock = clock
        self.max_rules = max_rules
        self._kind: dict[str, TokenBucket] = {}
        self._rule: dict[tuple[str, str], TokenBucket] = {}

    def take(self, kind: str, rule_id: str) -> str | None:
        """Take a token for one action; None when allowed, else why not."""
        now = self.clock()
        buckets: list[tuple[TokenBucket, str]] = []
        klim = self.per_kind.get(kind)
        if klim is not None:
            b = self._kind.get(kind)
            if b is None:
                b = self._kind[kind] = TokenBucket(klim, now)
            buckets.append((b, f"{kind}: at most {klim.rate_per_s:g}/s (burst {klim.burst:g}) for all rules"))
        rlim = self.per_rule.get(kind)
        if rlim is not None:
            rb = self._rule.get((kind, rule_id))
            if rb is None:
                if len(self._rule) >= self.max_rules:  # forget the buckets that are full again
                    for key in [k for k, v in self._rule.items() if v.refill(now) >= v.limit.burst]:
                        del self._rule[key]
                rb = self._rule[(kind, rule_id)] = TokenBucket(rlim, now)
            buckets.append((rb, f"{kind}: at most {rlim.rate_per_s:g}/s (burst {rlim.burst:g}) per rule"))
        for b, why in buckets:
            if b.refill(now) < 1.0:
                return f"rate limited ({why})"
        for b, _ in buckets:
            b.tokens -= 1.0
        return None


# ============================================================== processes

@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of /proc/PID/stat the kill checks use."""

    pid: int
    comm: bytes
    state: str
    ppid: int
    pgrp: int
    session: int
    flags: int
    start_ticks: int            # start_boottime in USER_HZ ticks


def read_proc_stat(pid: int, proc_root: str = "/proc") -> ProcStat | None:
    """/proc/PID/stat of a live process (None when there is no such process)."""
    try:
        with open(f"{proc_root}/{pid}/stat", "rb") as f:
            raw = f.read()
        lpar, rpar = raw.index(b"("), raw.rindex(b")")
        rest = raw[rpar + 2:].split()
        return ProcStat(pid, raw[lpar + 1:rpar], rest[0].decode(), int(rest[1]), int(rest[2]), int(rest[3]),
                        int(rest[6]), int(rest[19]))
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True, slots=True)
class ProcessRef:
    """The process an event names: (pid, start_ns), and the exe identity when the event is an exec."""

    pid: int
    start_ns: int
    exe_dev: int | None = None
    exe_ino: int | None = None
    exe: str = ""               # for messages

    @classmethod
    def from_event(cls, e: Event) -> ProcessRef | None:
        pid = e.proc.get("pid")
        start = e.proc.get("start_ns")
        if (not pid or start is None) and e.process is not None:
            pid, start = e.process.pid, e.process.start_ns
        if not pid or start is None:
            return None
        exe = e.process.exe if e.process is not None and e.process.exe else ""
        dev = ino = None
        if e.kind == KIND_EXEC and e.data.get("exe_ino"):
            dev, ino = int(e.data.get("exe_dev", 0)), int(e.data["exe_ino"])
            raw = e.data.get("exe_path")
            if raw:
                exe = text(raw) or exe
        return cls(int(pid), int(start), dev, ino, exe)


def _same_start(st: ProcStat, start_ns: int) -> bool:
    """/proc gives start_boottime floored to a tick; the event has it in ns: allow one tick of rounding."""
    return abs(st.start_ticks - start_ns // TICK_NS) <= 1


class ProcessKiller:
    """SIGKILL through a pidfd, after checking the pid still names the event's process.

    Never killed: PID 1, kernel threads, the agent and its ancestors, and
    processes running an allow-listed executable (by identity: a copy or
    rename of the file is not allow-listed, a hard link or symlink to it is).
    """

    def __init__(self, allow_exes: Iterable[str | Path | FileIdentity] = (), *, self_pid: int | None = None,
                 proc_root: str = "/proc") -> None:
        self.proc_root = proc_root
        self.self_pid = os.getpid() if self_pid is None else self_pid
        self.allow: list[FileIdentity] = [a if isinstance(a, FileIdentity) else identity_of_path(a)
                                          for a in allow_exes]
        self._devices: dict[int, int] | None = None

    # -- what may not be killed

    def agent_lineage(self) -> set[int]:
        """The agent's pid and every ancestor's (read now: the agent may have been reparented)."""
        out: set[int] = set()
        pid = self.self_pid
        for _ in range(4096):
            if pid <= 0 or pid in out:
                break
            out.add(pid)
            st = read_proc_stat(pid, self.proc_root)
            if st is None:
                break
            pid = st.ppid
        return out

    def exe_identity(self, pid: int) -> FileIdentity | None:
        """Identity of the executable a process runs (None: a kernel thread, or it is gone)."""
        try:
            fd = os.open(f"{self.proc_root}/{pid}/exe", os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError:
            return None
        try:
            if self._devices is None:
                self._devices = mount_devices()
            try:
                return identity_of_fd(fd, f"/proc/{pid}/exe", self._devices)
            except EnforceError:
                # a mount made since, or one of another mount namespace (a container): mount ids are global
                with contextlib.suppress(EnforceError):
                    self._devices = {**mount_devices(), **mount_devices(f"{self.proc_root}/{pid}/mountinfo")}
                return identity_of_fd(fd, f"/proc/{pid}/exe", self._devices)
        except EnforceError:
            return None
        finally:
            os.close(fd)

    def _allowed(self, ident: FileIdentity | None) -> FileIdentity | None:
        if ident is None:
            return None
        for a in self.allow:
            same_gen = a.gen is None or ident.gen is None or a.gen == ident.gen
            if (a.dev, a.ino) == (ident.dev, ident.ino) and same_gen:
                return a
        return None

    def protected(self, st: ProcStat, lineage: set[int] | None = None) -> str | None:
        """Why this process may never be killed, or None."""
        if st.pid <= 1:
            return f"pid {st.pid} is init"
        if st.flags & PF_KTHREAD:
            return f"pid {st.pid} ({text(st.comm)}) is a kernel thread"
        lineage = self.agent_lineage() if lineage is None else lineage
        if st.pid == self.self_pid:
            return f"pid {st.pid} is the agent itself"
        if st.pid in lineage:
            return f"pid {st.pid} ({text(st.comm)}) is an ancestor of the agent"
        hit = self._allowed(self.exe_identity(st.pid))
        if hit is not None:
            return f"pid {st.pid} runs allow-listed executable {hit.path}"
        return None

    # -- the checks every kill goes through

    def _verify(self, ref: ProcessRef) -> tuple[int, ProcStat]:
        """pidfd of the event's process, checked; ActionRefused when it cannot be that process or is protected."""
        if ref.pid <= 1:
            raise ActionRefused(f"pid {ref.pid} is init" if ref.pid == 1 else f"pid {ref.pid} is not a process")
        try:
            pidfd = os.pidfd_open(ref.pid)
        except ProcessLookupError as exc:
            raise ActionRefused(f"pid {ref.pid} is gone") from exc
        except OSError as exc:
            raise EnforceError(f"pidfd_open({ref.pid}): {exc.strerror}") from exc
        try:
            # the pidfd holds whatever process had the pid when it was opened; /proc read after it shows
            # that process, or a later one if it died meanwhile - never the event's if the pidfd is not
            st = read_proc_stat(ref.pid, self.proc_root)
            if st is None or st.state in ("Z", "X"):
                raise ActionRefused(f"pid {ref.pid} has exited")
            if not _same_start(st, ref.start_ns):
                raise ActionRefused(f"pid {ref.pid} is now another process (started at tick {st.start_ticks}, "
                                    f"the event's at tick {ref.start_ns // TICK_NS}): not killed")
            why = self.protected(st)
            if why is not None:
                raise ActionRefused(why)
            if ref.exe_ino is not None:
                ident = self.exe_identity(ref.pid)
                if ident is None or (ident.dev, ident.ino) != (ref.exe_dev, ref.exe_ino):
                    now = f"dev {ident.dev} inode {ident.ino}" if ident else "unknown"
                    raise ActionRefused(f"pid {ref.pid} runs another executable than the event's (now {now}, "
                                        f"the event's dev {ref.exe_dev} inode {ref.exe_ino}): not killed")
            return pidfd, st
        except BaseException:
            os.close(pidfd)
            raise

    def kill(self, ref: ProcessRef) -> dict[str, object]:
        """SIGKILL the event's process; what was done (raises ActionRefused / EnforceError)."""
        pidfd, st = self._verify(ref)
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except ProcessLookupError as exc:
            raise ActionRefused(f"pid {ref.pid} exited before the signal") from exc
        except OSError as exc:
            raise EnforceError(f"pidfd_send_signal({ref.pid}, SIGKILL): {exc.strerror}") from exc
        finally:
            os.close(pidfd)
        return {"pid": ref.pid, "start_ns": ref.start_ns, "signal": "SIGKILL", "comm": text(st.comm),
                **({"exe": ref.exe} if ref.exe else {})}

    def group_members(self, pgid: int) -> list[ProcStat]:
        out = []
        for name in os.listdir(self.proc_root):
            if name.isdigit():
                st = read_proc_stat(int(name), self.proc_root)
                if st is not None and st.pgrp == pgid:
                    out.append(st)
        return out

    def kill_group(self, ref: ProcessRef, known_starts: Mapping[int, int] | None = None) -> dict[str, object]:
        """SIGKILL the process group of the event's process.

        The process is checked as for :meth:`kill`; its group is the one it is
        in now (a group id cannot be reused while the process is in it). The
        group leader, when alive, is checked the same way: it must be in the
        same session, and have the start time ``known_starts[pgid]`` (start
        times the event knows: its process, parent and ancestry) or, when not
        known, have started no later than the process. No member may be
        protected: if PID 1, the agent, an ancestor of the agent or an
        allow-listed program is in the group, nothing is killed.
        """
        pidfd, st = self._verify(ref)
        leader_fd: int | None = None
        try:
            pgid = st.pgrp
            leader: ProcStat | None = st
            if pgid != ref.pid:
                try:
                    leader_fd = os.pidfd_open(pgid)
                except ProcessLookupError:
                    leader = None           # the leader exited: the group lives on without it
                except OSError as exc:
                    raise EnforceError(f"pidfd_open({pgid}): {exc.strerror}") from exc
                else:
                    leader = read_proc_stat(pgid, self.proc_root)
            if leader is not None and leader is not st:
                if leader.pgrp != pgid or leader.session != st.session:
                    raise ActionRefused(f"pid {pgid} is not the leader of process group {pgid} of pid {ref.pid}")
                known = (known_starts or {}).get(pgid)
                if known is not None and not _same_start(leader, known):
                    raise ActionRefused(f"group leader {pgid} is not the process the event names")
                if known is None and leader.start_ticks > st.start_ticks + 1:
                    raise ActionRefused(f"group leader {pgid} started after pid {ref.pid}: not the same group")
            members = self.group_members(pgid)
            lineage = self.agent_lineage()
            checked = members if leader is None or any(m.pid == leader.pid for m in members) \
                else [leader, *members]
            for m in checked:
                why = self.protected(m, lineage)
                if why is not None:
                    raise ActionRefused(f"process group {pgid}: {why}")
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError as exc:
                raise ActionRefused(f"process group {pgid} is gone") from exc
            except OSError as exc:
                raise EnforceError(f"killpg({pgid}, SIGKILL): {exc.strerror}") from exc
            with contextlib.suppress(OSError):  # it may have left the group meanwhile
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        finally:
            os.close(pidfd)
            if leader_fd is not None:
                os.close(leader_fd)
        return {"pid": ref.pid, "start_ns": ref.start_ns, "pgid": pgid, "signal": "SIGKILL",
                "members": sorted(m.pid for m in members), "leader_alive": leader is not None,
                "comm": text(st.comm), **({"exe": ref.exe} if ref.exe else {})}


# ============================================================== addresses

class AddressBlocker(Protocol):
    """What blocks an address in the kernel (XDP source drop + cgroup connect deny, TTL checked in the kernel)."""

    def block(self, addr: IPAddress, ttl_s: float, reason: str) -> None: ...

    def unblock(self, addr: IPAddress) -> None: ...


#: never blocked, whatever the host: loopback, link-local, unspecified, multicast, broadcast
NEVER_BLOCK_ALWAYS: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(n), why) for n, why in (
        ("127.0.0.0/8", "loopback"), ("::1/128", "loopback"),
        ("169.254.0.0/16", "link-local"), ("fe80::/10", "link-local"),
        ("0.0.0.0/32", "unspecified"), ("::/128", "unspecified"),
        ("224.0.0.0/4", "multicast"), ("ff00::/8", "multicast"), ("255.255.255.255/32", "broadcast"),
    ))


def normalize(addr: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address is the IPv4 address."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def host_addresses(proc_root: str = "/proc") -> list[IPAddress]:
    """Every address on this host's interfaces (``ip -j addr``; /proc/net when ip is missing)."""
    try:
        res = subprocess.run(["ip", "-j", "addr"], capture_output=True, timeout=5, check=True)
        out: list[IPAddress] = []
        for link in json.loads(res.stdout):
            for a in link.get("addr_info", []):
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    out.append(ipaddress.ip_address(str(a["local"]).split("%")[0]))
        return out
    except (OSError, subprocess.SubprocessError, ValueError):
        return _proc_addresses(proc_root)


def _proc_addresses(proc_root: str) -> list[IPAddress]:
    out: list[IPAddress] = []
    with contextlib.suppress(OSError):
        for line in Path(f"{proc_root}/net/if_inet6").read_text().splitlines():
            with contextlib.suppress(ValueError, IndexError):
                out.append(ipaddress.IPv6Address(bytes.fromhex(line.split()[0])))
    with contextlib.suppress(OSError):
        last = ""
        for line in Path(f"{proc_root}/net/fib_trie").read_text().splitlines():
            s = line.strip()
            if s.startswith(("|--", "+--")):
                last = s[3:].strip().split("/")[0]
            elif s == "/32 host LOCAL" and last:
                with contextlib.suppress(ValueError):
                    out.append(ipaddress.IPv4Address(last))
    return out


def default_gateways(proc_root: str = "/proc") -> list[IPAddress]:
    """Every next-hop router in the routing tables (/proc/net/route, /proc/net/ipv6_route)."""
    out: list[IPAddress] = []
    with contextlib.suppress(OSError):
        for line in Path(f"{proc_root}/net/route").read_text().splitlines()[1:]:
            f = line.split()
            with contextlib.suppress(ValueError, IndexError):
                gw = int(f[2], 16)
                if gw and int(f[3], 16) & 0x2:  # RTF_GATEWAY
                    out.append(ipaddress.IPv4Address(struct.pack("<I", gw)))
    with contextlib.suppress(OSError):
        for line in Path(f"{proc_root}/net/ipv6_route").read_text().splitlines():
            f = line.split()
            with contextlib.suppress(ValueError, IndexError):
                nh = int(f[4], 16)
                if nh:
                    out.append(ipaddress.IPv6Address(nh))
    return sorted(set(out), key=lambda a: (a.version, int(a)))


@dataclass(frozen=True, slots=True)
class BlockEntry:
    addr: IPAddress
    ttl_s: float
    blocked_at: float           # CLOCK_BOOTTIME s (the policy's clock)
    expires_at: float
    reason: str
    rule_id: str = ""


@dataclass(frozen=True, slots=True)
class BlockResult:
    entry: BlockEntry
    renewed: bool               # the address was blocked already (its TTL was extended)
    evicted: BlockEntry | None  # dropped to make room (the cap was reached)


class AddressBlockPolicy:
    """The rules around an :class:`AddressBlocker`: what may be blocked, how many, for how long.

    Never blocked: :data:`NEVER_BLOCK_ALWAYS`, the host's own addresses, the
    next-hop gateways, and the ``management`` networks (re-read every
    ``refresh_s``, since DHCP and routes change). At most ``max_entries``
    addresses are blocked; when full, the entry closest to expiry is dropped
    to make room (see docs/actions.md for why). Blocking an address already
    blocked extends its expiry when the new one is later. TTLs are kept here
    too (``entries()``), and expired entries are removed from the kernel map
    when noticed (the kernel already ignores them).
    """

    def __init__(self, blocker: AddressBlocker, *, management: Iterable[str | IPNetwork] = (),
                 max_entries: int = 1024, default_ttl_s: float = 3600.0, max_ttl_s: float = 86400.0,
                 refresh_s: float = 60.0, discover: bool = True, proc_root: str = "/proc",
                 clock: Callable[[], float] = boottime_s) -> None:
        if max_entries < 1:
            raise EnforceError(f"block_address: max_entries must be at least 1, not {max_entries}")
        self.blocker = blocker
        self.management = tuple(ipaddress.ip_network(m, strict=False) if isinstance(m, str) else m
                                for m in management)
        self.max_entries = max_entries
        self.default_ttl_s = default_ttl_s
        self.max_ttl_s = max_ttl_s
        self.refresh_s = refresh_s
        self.discover = discover
        self.proc_root = proc_root
        self.clock = clock
        self._entries: dict[IPAddress, BlockEntry] = {}
        self._host: dict[IPAddress, str] = {}
        self._refreshed = float("-inf")

    # -- never-block list

    def refresh(self) -> None:
        """Read the host's addresses and gateways again."""
        host: dict[IPAddress, str] = {}
        if self.discover:
            for a in host_addresses(self.proc_root):
                host[normalize(a)] = "an address of this host"
            for g in default_gateways(self.proc_root):
                host.setdefault(normalize(g), "a gateway of this host")
        self._host = host
        self._refreshed = self.clock()

    def never_block_reason(self, addr: IPAddress) -> str | None:
        addr = normalize(addr)
        if self.clock() - self._refreshed >= self.refresh_s:
            self.refresh()
        for net, why in NEVER_BLOCK_ALWAYS:
            if addr.version == net.version and addr in net:
                return f"{addr} is {why} ({net})"
        why_host = self._host.get(addr)
        if why_host is not None:
            return f"{addr} is {why_host}"
        for net in self.management:
            if addr.version == net.version and addr in net:
                return f"{addr} is in management network {net}"
        return None

    def never_block(self) -> list[tuple[str, str]]:
        """The never-block list as (address or network, why), for status output."""
        if self.clock() - self._refreshed >= self.refresh_s:
            self.refresh()
        out = [(str(n), why) for n, why in NEVER_BLOCK_ALWAYS]
        out += [(str(a), why) for a, why in sorted(self._host.items(), key=lambda kv: (kv[0].version, int(kv[0])))]
        out += [(str(n), "management network") for n in self.management]
        return out

    # -- the book

    def expire(self) -> list[BlockEntry]:
        """Drop entries whose TTL has passed (and their kernel map entries); what was dropped."""
        now = self.clock()
        gone = [e for e in self._entries.values() if e.expires_at <= now]
        for e in gone:
            del self._entries[e.addr]
            with contextlib.suppress(EnforceError, OSError):
                self.blocker.unblock(e.addr)
        return gone

    def entries(self) -> list[BlockEntry]:
        """What is blocked now, soonest to expire first."""
        self.expire()
        return sorted(self._entries.values(), key=lambda e: (e.expires_at, e.blocked_at))

    def block(self, addr: IPAddress, ttl_s: float | None = None, reason: str = "", rule_id: str = "") -> BlockResult:
        """Block ``addr`` for ``ttl_s`` (default_ttl_s; at most max_ttl_s). Raises ActionRefused / EnforceError."""
        addr = normalize(addr)
        why = self.never_block_reason(addr)
        if why is not None:
            raise ActionRefused(f"not blocked: {why}")
        ttl = min(self.default_ttl_s if ttl_s is None else float(ttl_s), self.max_ttl_s)
        if ttl <= 0:
            raise ActionRefused(f"not blocked: ttl {ttl_s} is not positive")
        self.expire()
        now = self.clock()
        old = self._entries.get(addr)
        evicted: BlockEntry | None = None
        if old is None and len(self._entries) >= self.max_entries:
            evicted = min(self._entries.values(), key=lambda e: (e.expires_at, e.blocked_at))
        expires = now + ttl
        if old is not None and old.expires_at > expires:
            expires, ttl = old.expires_at, old.expires_at - now
        try:
            self.blocker.block(addr, ttl, reason)
        except OSError as exc:
            raise EnforceError(f"block {addr}: {exc.strerror or exc}") from exc
        if evicted is not None:
            del self._entries[evicted.addr]
            with contextlib.suppress(EnforceError, OSError):
                self.blocker.unblock(evicted.addr)
        entry = BlockEntry(addr, ttl, now, expires, reason, rule_id)
        self._entries[addr] = entry
        return BlockResult(entry, old is not None, evicted)

    def adopt(self, entries: Iterable[tuple[IPAddress, float, str]]) -> int:
        """Take over blocks found in the kernel at start (address, remaining TTL s, reason); how many.

        The kernel entries outlive the agent; without this the book would not
        know them (they would still expire in the kernel). Entries beyond the
        cap or on the never-block list are not adopted (and are unblocked).
        """
        now = self.clock()
        n = 0
        for addr, remaining, reason in entries:
            addr = normalize(addr)
            if remaining <= 0 or self.never_block_reason(addr) is not None or len(self._entries) >= self.max_entries:
                with contextlib.suppress(EnforceError, OSError):
                    self.blocker.unblock(addr)
                continue
            self._entries[addr] = BlockEntry(addr, remaining, now, now + remaining, reason)
            n += 1
        return n

    def unblock(self, addr: IPAddress) -> bool:
        """Lift a block now; False when the address was not blocked."""
        addr = normalize(addr)
        had = self._entries.pop(addr, None) is not None
        try:
            self.blocker.unblock(addr)
        except OSError as exc:
            raise EnforceError(f"unblock {addr}: {exc.strerror or exc}") from exc
        return had


# ============================================================== the runner

@dataclass(frozen=True, slots=True)
class ResponseConfig:
    """Settings of the response actions (defaults: see docs/actions.md)."""

    quarantine_dir: Path = DEFAULT_QUARANTINE_DIR
    allow_exes: tuple[str, ...] = ()                 # never killed; their files never quarantined
    management: tuple[str, ...] = ()                 # CIDRs never blocked
    max_blocked: int = 1024
    default_ttl_s: float = 3600.0
    max_ttl_s: float = 86400.0
    never_quarantine: tuple[str, ...] = ("/proc/", "/sys/", "/dev/")   # path prefixes
    kind_limits: Mapping[str, RateLimit] = field(default_factory=lambda: dict(DEFAULT_KIND_LIMITS))
    rule_limits: Mapping[str, RateLimit] = field(default_factory=lambda: dict(DEFAULT_RULE_LIMITS))


def _latest(events: list[Event], ok: Callable[[Event], bool]) -> Event | None:
    for e in reversed(events):
        if ok(e):
            return e
    return None


def _remote_ip(e: Event) -> IPAddress | None:
    if e.kind != KIND_NET:
        return None
    raw = FIELDS["net.remote_ip"].get(e)
    if not raw:
        return None
    try:
        return normalize(ipaddress.ip_address(raw))
    except ValueError:
        return None


def _file_target(e: Event) -> tuple[bytes, tuple[int, int] | None] | None:
    """(path, (dev, inode) the event saw or None) of the file a file or exec event is about."""
    d = e.data
    if e.kind == KIND_FILE:
        if d.get("op") in (ocsf_file.OP_RENAME, ocsf_file.OP_LINK):
            path = ocsf_file.event_abs_path2(d) if d.get("path2") else b""
            shown = FIELDS["file.new_path"].get(e)
        else:
            path = ocsf_file.event_abs_path(d) if d.get("path") or d.get("resolved") else b""
            shown = FIELDS["file.path"].get(e)
        if not path and shown:
            path = untext(shown)
        ino = d.get("ino")
        expect = (int(d.get("dev", 0)), int(ino)) if ino and d.get("op") not in (
            ocsf_file.OP_RENAME, ocsf_file.OP_LINK) else None
        return (path, expect) if path else None
    if e.kind == KIND_EXEC:
        path = d.get("exe_path") or b""
        if not path and e.process is not None and e.process.exe:
            path = untext(e.process.exe)
        ino = d.get("exe_ino")
        expect = (int(d.get("exe_dev", 0)), int(ino)) if ino else None
        return (bytes(path), expect) if path else None
    return None


class ResponseActions:
    """Runs the actions an alert's rule names; one :class:`Enforcement` each, never an exception."""

    def __init__(self, config: ResponseConfig | None = None, *, blocker: AddressBlocker | None = None,
                 killer: ProcessKiller | None = None, quarantine: Quarantine | None = None,
                 blocks: AddressBlockPolicy | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = cfg = config or ResponseConfig()
        self.killer = killer or ProcessKiller(cfg.allow_exes)
        self.quarantine = quarantine or Quarantine(cfg.quarantine_dir)
        if blocks is None and blocker is not None:
            blocks = AddressBlockPolicy(blocker, management=cfg.management, max_entries=cfg.max_blocked,
                                        default_ttl_s=cfg.default_ttl_s, max_ttl_s=cfg.max_ttl_s)
        self.blocks = blocks
        self.limiter = RateLimiter(cfg.kind_limits, cfg.rule_limits, clock=clock)
        self._protected_files: set[tuple[int, int]] | None = None

    def protected_files(self) -> set[tuple[int, int]]:
        """(dev, inode) of files never quarantined: allow-listed executables and the agent's own."""
        if self._protected_files is None:
            out = {(a.dev, a.ino) for a in self.killer.allow}
            ident = self.killer.exe_identity(os.getpid())
            if ident is not None:
                out.add((ident.dev, ident.ino))
            self._protected_files = out
        return self._protected_files

    def run(self, alert: Alert, alert_id: str = "") -> list[Enforcement]:
        out = []
        for spec in alert.rule.actions:
            try:
                enf = self._run_one(alert, spec, alert_id)
            except Exception as exc:  # a bug must not take the pipeline down: report it as a failure
                log.exception("response %s for rule %s failed", spec.kind, alert.rule.id)
                enf = self._enf(alert, spec, alert.event, ACTION_NONE, "", ok=False, error=f"internal error: {exc!r}")
            out.append(enf)
        return out

    def _enf(self, alert: Alert, spec: ActionSpec, event: Event | None, action: str, target: str, *,
             ok: bool, error: str | None = None, data: dict[str, object] | None = None) -> Enforcement:
        enf = Enforcement(policy_id=alert.rule.id, mode="enforce", action=action, mechanism=MECH_RESPONSE,
                          target=target, ok=ok, error=error, time_ns=event.ts_ns if event is not None else 0,
                          proc=dict(event.proc) if event is not None else {},
                          data={"requested": spec.kind, **(data or {})})
        if ok:
            log.warning("response %s (rule %s): %s", spec.kind, alert.rule.id, target)
        elif action == ACTION_NONE:
            log.info("response %s (rule %s) not done: %s", spec.kind, alert.rule.id, error)
        else:
            log.error("response %s (rule %s) failed on %s: %s", spec.kind, alert.rule.id, target, error)
        return enf

    def _run_one(self, alert: Alert, spec: ActionSpec, alert_id: str) -> Enforcement:
        event: Event | None
        if spec.kind in ("kill", "kill_group"):
            event = _latest(alert.events, lambda e: e.kind != KIND_EXIT) or alert.event
        elif spec.kind == "block_address":
            event = _latest(alert.events, lambda e: _remote_ip(e) is not None)
        elif spec.kind == "quarantine":
            event = _latest(alert.events, lambda e: _file_target(e) is not None)
        else:
            return self._enf(alert, spec, alert.event, ACTION_NONE, "", ok=False,
                             error=f"unknown action '{spec.kind}'")
        if event is None:
            what = "a remote address" if spec.kind == "block_address" else "a file"
            return self._enf(alert, spec, alert.event, ACTION_NONE, "", ok=False,
                             error=f"no event of the alert has {what}")
        limited = self.limiter.take(spec.kind, alert.rule.id)
        if limited is not None:
            return self._enf(alert, spec, event, ACTION_NONE, "", ok=False, error=limited)
        if spec.kind in ("kill", "kill_group"):
            return self._kill(alert, spec, event)
        if spec.kind == "block_address":
            return self._block(alert, spec, event)
        return self._quarantine(alert, spec, event, alert_id)

    def _kill(self, alert: Alert, spec: ActionSpec, event: Event) -> Enforcement:
        ref = ProcessRef.from_event(event)
        if ref is None:
            return self._enf(alert, spec, event, ACTION_NONE, "", ok=False, error="the event names no process")
        target = ref.exe or text(event.proc.get("comm") or b"") or f"pid {ref.pid}"
        try:
            if spec.kind == "kill":
                data = self.killer.kill(ref)
            else:
                known = {p.pid: p.start_ns for p in (*reversed(event.ancestry), event.parent, event.process)
                         if p is not None}
                known[ref.pid] = ref.start_ns
                data = self.killer.kill_group(ref, known)
        except ActionRefused as exc:
            return self._enf(alert, spec, event, ACTION_NONE, target, ok=False, error=str(exc),
                             data={"pid": ref.pid, "start_ns": ref.start_ns})
        except EnforceError as exc:
            return self._enf(alert, spec, event, ACTION_KILL, target, ok=False, error=str(exc),
                             data={"pid": ref.pid, "start_ns": ref.start_ns})
        return self._enf(alert, spec, event, ACTION_KILL, target, ok=True, data=data)

    def _block(self, alert: Alert, spec: ActionSpec, event: Event) -> Enforcement:
        addr = _remote_ip(event)
        assert addr is not None
        target = str(addr)
        if self.blocks is None:
            return self._enf(alert, spec, event, ACTION_NONE, target, ok=False,
                             error="no address blocker (kernel enforcement is not loaded)")
        reason = f"rule {alert.rule.id}"
        try:
            res = self.blocks.block(addr, spec.ttl_s, reason, alert.rule.id)
        except ActionRefused as exc:
            return self._enf(alert, spec, event, ACTION_NONE, target, ok=False, error=str(exc))
        except EnforceError as exc:
            return self._enf(alert, spec, event, ACTION_BLOCK, target, ok=False, error=str(exc))
        return self._enf(alert, spec, event, ACTION_BLOCK, target, ok=True, data={
            "address": target, "ttl_s": res.entry.ttl_s, "renewed": res.renewed,
            "evicted": str(res.evicted.addr) if res.evicted is not None else None})

    def _quarantine(self, alert: Alert, spec: ActionSpec, event: Event, alert_id: str) -> Enforcement:
        ft = _file_target(event)
        assert ft is not None
        path, expect = ft
        target = text(path) or ""
        if any(path.startswith(os.fsencode(p)) for p in self.config.never_quarantine):
            return self._enf(alert, spec, event, ACTION_NONE, target, ok=False,
                             error=f"quarantine {target}: under a never-quarantine prefix")
        try:
            rec = self.quarantine.quarantine(path, rule_id=alert.rule.id, alert_id=alert_id, expect=expect,
                                             protected=self.protected_files())
        except ActionRefused as exc:
            return self._enf(alert, spec, event, ACTION_NONE, target, ok=False, error=str(exc))
        except EnforceError as exc:
            return self._enf(alert, spec, event, ACTION_QUARANTINE, target, ok=False, error=str(exc))
        return self._enf(alert, spec, event, ACTION_QUARANTINE, target, ok=True, data={
            "qid": rec.qid, "path": rec.path_text, "sha256": rec.sha256, "size": rec.size, "moved": rec.moved,
            "nlink": rec.nlink, "quarantine_path": str(self.quarantine.data_path(rec.qid))})

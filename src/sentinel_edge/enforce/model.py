"""Policies and enforcement outcomes: the typed objects shared by the enforcement parts.

    policy files --(policy.py)--> Policy --(compile.py)--> CompiledPolicySet
        CompiledPolicySet --(kernel.py)--> pinned BPF maps (exec, connect, xdp, kernel tamper)
        CompiledPolicySet --(fanotify.py)--> fanotify marks (sha256 / script exec, protected files)
    kernel ring / fanotify --> Enforcement --> alert (OCSF Detection Finding, security_control profile)

A policy has one ``kind`` and one ``spec`` of the matching class. Paths named
in a policy are resolved to :class:`FileIdentity` when the policy set is
applied (compile.py); identities are what the kernel compares.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["audit", "enforce"]
MODES: tuple[str, ...] = ("audit", "enforce")

KIND_EXEC = "exec"          # deny exec
KIND_FILE = "file"          # deny file access (protected paths)
KIND_CONNECT = "connect"    # deny outbound connect
KIND_INBOUND = "inbound"    # drop inbound packets by source (XDP)
KIND_KERNEL = "kernel"      # deny module / BPF program loads
KINDS: tuple[str, ...] = (KIND_EXEC, KIND_FILE, KIND_CONNECT, KIND_INBOUND, KIND_KERNEL)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """What the kernel sees of a file: the superblock device (``i_sb->s_dev`` as
    ``new_encode_dev``, which is what /proc/self/mountinfo's major:minor shows,
    not ``st_dev``: btrfs subvolumes and overlayfs report other numbers to
    stat), the inode number and the inode generation (``FS_IOC_GETVERSION``;
    None where the filesystem does not report it, e.g. tmpfs: then only
    (dev, ino) is compared). ``path`` is where it was found, for messages only."""

    dev: int
    ino: int
    gen: int | None
    path: str = ""


@dataclass(frozen=True, slots=True)
class Scope:
    """Who a policy applies to; an empty field means everybody.

    ``users``: uids (compared with the task's uid and euid: either matches).
    ``containers``: ``"any"`` (all), ``"host"`` (only processes outside
    containers), ``"containers"`` (only processes in a container) or a tuple
    of container ids (64-hex or a unique prefix of at least 12).
    ``parents``: executables (paths, resolved to identities at apply time)
    whose direct children the policy applies to.
    """

    users: tuple[int, ...] = ()
    containers: str | tuple[str, ...] = "any"
    parents: tuple[str, ...] = ()

    @property
    def everybody(self) -> bool:
        return not self.users and self.containers == "any" and not self.parents


@dataclass(frozen=True, slots=True)
class ExecDeny:
    """Deny running a program.

    ``files``: executables denied by identity (a symlink, hard link or
    relative path to the same inode is the same file). ``prefixes``: absolute
    path prefixes ending in ``/`` (``/tmp/``) or whole absolute paths, matched
    on the resolved path of the executable, and of the script for ``#!``
    scripts; they cover files that do not exist yet. ``sha256``: lowercase
    hex digests, decided on the open-for-exec permission event (fanotify).
    """

    files: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    sha256: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FileDeny:
    """Refuse opens of protected files (before any byte is read or any truncation)."""

    paths: tuple[str, ...]                      # absolute paths (globs allowed: /etc/ssh/ssh_host_*_key)
    access: frozenset[str] = frozenset({"read", "write"})   # subset of {"read", "write"}
    allow: tuple[str, ...] = ()                 # executables (paths -> identities) still allowed


@dataclass(frozen=True, slots=True)
class ConnectDeny:
    """Refuse outbound connect() (EPERM) to these networks, optionally only these ports."""

    networks: tuple[IPNetwork, ...]
    ports: tuple[int, ...] = ()                 # empty: every port


@dataclass(frozen=True, slots=True)
class InboundDrop:
    """Drop inbound packets from these source networks in XDP on these interfaces."""

    interfaces: tuple[str, ...]
    sources: tuple[IPNetwork, ...]


@dataclass(frozen=True, slots=True)
class KernelDeny:
    """Refuse kernel module loads and/or BPF program loads except by allowed executables."""

    module_load: bool = True
    bpf_load: bool = True
    allow: tuple[str, ...] = ()                 # executables (paths -> identities)


Spec = ExecDeny | FileDeny | ConnectDeny | InboundDrop | KernelDeny


@dataclass(frozen=True, slots=True)
class Policy:
    id: str
    kind: str                                   # one of KINDS
    mode: Mode
    spec: Spec
    scope: Scope = field(default_factory=Scope)
    description: str = ""
    severity: str = "high"                      # rules.model.SEVERITIES
    techniques: tuple[str, ...] = ()            # ATT&CK technique ids
    file: str = ""                              # where it was defined
    line: int = 0


@dataclass(frozen=True, slots=True)
class PolicySet:
    policies: tuple[Policy, ...] = ()
    files: tuple[str, ...] = ()                 # the files it was read from

    def by_id(self, policy_id: str) -> Policy | None:
        for p in self.policies:
            if p.id == policy_id:
                return p
        return None


# -- what enforcement did ---------------------------------------------------------

ACTION_KILL = "kill"            # SIGKILL sent (exec deny, kernel tamper)
ACTION_DENY = "deny"            # the call failed with EPERM (fanotify, cgroup connect)
ACTION_DROP = "drop"            # packet dropped (XDP)
ACTION_AUDIT = "audit"          # audit mode: observed and let through
ACTION_NONE = "none"            # a response action that did nothing (rate limited, not allowed)

MECH_SIGKILL = "tracepoint-sigkill"
MECH_FANOTIFY = "fanotify"
MECH_CGROUP = "cgroup-sock-addr"
MECH_XDP = "xdp"
MECH_RESPONSE = "response"      # a response action run by the agent for a rule


@dataclass(slots=True)
class Enforcement:
    """One enforcement decision that hit something (or would have, in audit mode).

    ``target`` says what was hit: the executable path, the protected file, the
    remote address as ``ip:port``, the packet source, or the syscall. ``ok`` is
    False when the action was attempted and failed (``error`` says why).
    ``proc`` has the keys of ``struct se_proc`` (pid, tid, ppid, uid, euid,
    start_ns, comm, ...) for the acting process; ``data`` holds the rest
    (identity, hash, address, interface, counts).
    """

    policy_id: str
    mode: Mode
    action: str
    mechanism: str
    target: str
    ok: bool = True
    error: str | None = None
    time_ns: int = 0                            # boot-time ns of the kernel event (0: unknown)
    proc: dict[str, object] = field(default_factory=dict)
    data: dict[str, object] = field(default_factory=dict)

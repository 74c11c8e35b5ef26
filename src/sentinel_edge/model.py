"""Typed objects passed between pipeline stages.

decode (wire) -> :class:`Event` -> enrich (adds :class:`ProcessInfo`) -> output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# event kinds, one per se_event_type in bpf/shared/events.h
KIND_EXEC = "exec"
KIND_FORK = "fork"
KIND_EXIT = "exit"
KIND_COMM = "comm"
KIND_FILE = "file"
KIND_NET = "net"
KIND_CRED = "cred"
KIND_NS = "ns"
KIND_MEM = "mem"
KIND_PTRACE = "ptrace"
KIND_MEMFD = "memfd"
KIND_MODULE = "module"
KIND_BPF = "bpf"
KIND_IO_URING = "io_uring"
KIND_HEALTH = "health"
# network inspector (netinspect.bpf.o): in-kernel detections, DNS messages, flows (from the flow table)
KIND_NETDET = "netdet"
KIND_DNS = "dns"
KIND_FLOW = "flow"


@dataclass(slots=True)
class ProcessInfo:
    """What enrichment knows about one process image (one exec)."""

    pid: int
    start_ns: int  # boot-time ns of the process start (identity with pid)
    exec_id: str  # unique per host and exec, immune to PID reuse
    parent_exec_id: str | None
    ppid: int
    comm: str
    exe: str | None = None
    cmdline: list[str] | None = None
    cwd: str | None = None
    uid: int | None = None
    euid: int | None = None
    gid: int | None = None
    user: str | None = None
    group: str | None = None
    loginuid: int | None = None
    container_id: str | None = None
    container_runtime: str | None = None
    exec_ts_ns: int | None = None
    exited: bool = False
    # known at exec (from the exec event), inherited by forked children; for
    # processes found in /proc, what /proc gives (None: not known)
    argc: int | None = None
    filename: str | None = None  # path as given to execve
    interp: str | None = None  # bprm->interp (differs from filename for #! scripts)
    fds: tuple[str, str, str] | None = None  # kind of fds 0, 1, 2: none tty pipe socket file char other
    exe_deleted: bool | None = None
    exe_memfd: bool | None = None
    ld_preload: str | None = None
    ld_library_path: str | None = None
    setuid_exec: bool | None = None  # the exec raised euid or egid (set-id binary)
    euser: str | None = None  # name of euid
    login_user: str | None = None  # name of loginuid
    cmdline_text: str | None = None  # joined command line when only that is known (replayed OCSF)


@dataclass(slots=True)
class Event:
    """One decoded kernel event.

    ``proc`` is the decoded ``struct se_proc`` of the calling task (ints, and
    ``comm`` as bytes). ``data`` holds every other field of the event struct by
    its C name; ``struct se_str`` fields are ``bytes`` (raw, possibly invalid
    UTF-8) and fixed char arrays are ``bytes`` cut at the first NUL.
    Enrichment fills ``process``, ``parent`` and ``ancestry``.
    """

    kind: str
    type_id: int
    ts_ns: int
    cpu: int
    proc: dict[str, Any]
    data: dict[str, Any]
    process: ProcessInfo | None = None
    parent: ProcessInfo | None = None
    ancestry: list[ProcessInfo] = field(default_factory=list)

"""OCSF Process Activity (class 1007) for the process sensor: exec, fork, exit, comm.

=========  ==========================  ===================  =========================
kind       activity                    ``process``          ``actor.process``
=========  ==========================  ===================  =========================
exec       1 Launch, launch_type Exec  the new image        its parent
fork       1 Launch, launch_type Fork  the child            the caller (the parent)
exit       2 Terminate                 the exiting process  the same process
comm       99 Other "Set Name"         the renamed process  the same process
=========  ==========================  ===================  =========================

Thread creation / thread exit (``is_thread``; the sensors do not report them
today) become activity 99 "Thread Create" / "Thread Exit".
What OCSF has no attribute for is kept under ``unmapped`` (see docs/ocsf.md).
Without enrichment (``event.process`` is None) every object is still complete
from the raw kernel fields.
"""

from __future__ import annotations

import os
import signal
import stat
from typing import Any

from sentinel_edge.model import KIND_COMM, KIND_EXEC, KIND_EXIT, KIND_FORK, Event, ProcessInfo
from sentinel_edge.output.ocsf.common import (
    ACTIVITY_OTHER,
    STATUS_SUCCESS,
    HostInfo,
    base,
    boot_ns_to_ms,
    file_object,
    process_entity,
    process_object,
    register,
    split_nul,
    text,
    with_lineage,
)

CLASS_PROCESS_ACTIVITY = 1007
CATEGORY_SYSTEM = 1
ACTIVITY_LAUNCH = 1
ACTIVITY_TERMINATE = 2
LAUNCH_TYPE_FORK = 2
LAUNCH_TYPE_EXEC = 3

#: enum se_exec_flags, bit -> name
EXEC_FLAGS: tuple[tuple[int, str], ...] = (
    (1 << 0, "argv_truncated"),
    (1 << 1, "filename_truncated"),
    (1 << 2, "exe_deleted"),
    (1 << 3, "exe_memfd"),
    (1 << 4, "setuid"),
    (1 << 5, "setgid"),
    (1 << 6, "secureexec"),
    (1 << 7, "env_truncated"),
    (1 << 8, "cwd_truncated"),
    (1 << 9, "exe_truncated"),
)
EXEC_SETUID = 1 << 4
EXEC_SETGID = 1 << 5
EXEC_EXE_DELETED = 1 << 2

#: enum se_fd_kind
FD_KINDS: dict[int, str] = {0: "none", 1: "tty", 2: "pipe", 3: "socket", 4: "file", 5: "char", 6: "other"}

#: Process attributes a forked child inherits from its parent.
_INHERITED = (
    "name",
    "path",
    "file",
    "cmd_line",
    "working_directory",
    "user",
    "group",
    "euid",
    "egid",
    "auid",
    "container",
)
_ENTITY_KEYS = ("pid", "uid", "name", "path", "cmd_line", "created_time")


def exec_flag_names(flags: int) -> list[str]:
    """Names of the set se_exec_flags bits; unknown bits as ``bit<N>``."""
    names = [name for bit, name in EXEC_FLAGS if flags & bit]
    known = 0
    for bit, _ in EXEC_FLAGS:
        known |= bit
    rest = flags & ~known
    names += [f"bit{i}" for i in range(32) if rest & (1 << i)]
    return names


def fd_kind_name(kind: int) -> str:
    return FD_KINDS.get(kind, f"unknown({kind})")


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"SIG{sig}"


def _actor_from(proc: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"process": proc}
    if "user" in proc:
        out["user"] = dict(proc["user"])
    return out


def _same(a: ProcessInfo, b: ProcessInfo) -> bool:
    return a.pid == b.pid and a.start_ns == b.start_ns


def _parent_process(event: Event, host: HostInfo) -> dict[str, Any]:
    """The parent of the exec'ing process as a full process object."""
    parent = event.parent
    if parent is None:
        pp: dict[str, Any] = {"pid": event.proc["ppid"]}
        if event.proc.get("parent_start_ns"):
            pp["created_time"] = boot_ns_to_ms(event.proc["parent_start_ns"], host)
        return pp
    up = list(event.ancestry)
    if up and _same(up[0], parent):
        up = up[1:]
    obj = process_object(parent, host=host)
    if up:
        obj["parent_process"] = process_object(up[0], host=host)
        obj["ancestry"] = [process_entity(a, host) for a in up]
    return obj


def _entity_of(proc: dict[str, Any]) -> dict[str, Any]:
    return {k: proc[k] for k in _ENTITY_KEYS if k in proc}


# ---------------------------------------------------------------- exec


def _exe_details(d: dict[str, Any]) -> dict[str, Any]:
    dev = int(d.get("exe_dev", 0))
    mode = int(d.get("exe_mode", 0))
    return {
        "dev": dev,
        "dev_major": os.major(dev),
        "dev_minor": os.minor(dev),
        "ino": int(d.get("exe_ino", 0)),
        "nlink": int(d.get("exe_nlink", 0)),
        "mode": mode,
        "mode_str": stat.filemode(mode),
        "uid": int(d.get("exe_uid", 0)),
    }


@register(KIND_EXEC)
def map_exec(event: Event, host: HostInfo) -> dict[str, Any]:
    """A successful exec: Launch of the new image by its parent."""
    d = event.data
    flags = int(d.get("flags", 0))
    flag_names = exec_flag_names(flags)
    argv = split_nul(d.get("argv"))
    exe_path = text(d.get("exe_path")) or ""
    filename = text(d.get("filename")) or ""
    cwd = text(d.get("cwd")) or ""
    exe = _exe_details(d)

    msg = f"exec {exe_path or filename}"
    if flags & (EXEC_SETUID | EXEC_SETGID):
        msg += " (" + ", ".join(n for n in flag_names if n in ("setuid", "setgid")) + ")"
    obj = base(
        event,
        host,
        class_uid=CLASS_PROCESS_ACTIVITY,
        category_uid=CATEGORY_SYSTEM,
        activity_id=ACTIVITY_LAUNCH,
        status_id=STATUS_SUCCESS,
        message=msg,
    )
    obj["launch_type_id"] = LAUNCH_TYPE_EXEC
    obj["launch_type"] = "Exec"

    # the new image: enrichment gives identity (exec_id, names, container),
    # the event is the truth about what was executed at that instant
    proc = process_object(event.process, event, host=host)
    if exe_path:
        proc["path"] = exe_path
        proc["file"] = file_object(
            exe_path,
            uid=f"{exe['dev_major']}:{exe['dev_minor']}:{exe['ino']}",
            owner={"uid": str(exe["uid"])},
            is_deleted=True if flags & EXEC_EXE_DELETED else None,
        )
    if argv:
        proc["cmd_line"] = " ".join(argv)
    if cwd:
        proc["working_directory"] = cwd
    obj["process"] = with_lineage(proc, event, host=host)
    obj["actor"] = _actor_from(_parent_process(event, host))

    unm = obj["unmapped"]
    unm["filename"] = filename
    unm["interp"] = text(d.get("interp")) or ""
    unm["exe_path"] = exe_path
    unm["cwd"] = cwd
    unm["argc"] = int(d.get("argc", len(argv)))
    unm["argv"] = argv
    unm["flags"] = flag_names
    unm["flags_raw"] = flags
    unm["exe"] = exe
    kinds = list(d.get("fd_kind") or [0, 0, 0])
    unm["fd"] = {
        name: fd_kind_name(int(k)) for name, k in zip(("stdin", "stdout", "stderr"), kinds[:3], strict=False)
    }
    for key in ("ld_preload", "ld_library_path"):
        raw = d.get(key)
        if raw:
            unm[key] = text(raw)
    if flags & (EXEC_SETUID | EXEC_SETGID):
        p = event.proc
        unm["credentials"] = {
            "old": {k: int(d.get(f"old_{k}", 0)) for k in ("uid", "euid", "gid", "egid")},
            "new": {k: int(p[k]) for k in ("uid", "euid", "gid", "egid")},
        }
    return obj


# ---------------------------------------------------------------- fork


@register(KIND_FORK)
def map_fork(event: Event, host: HostInfo) -> dict[str, Any]:
    """fork/clone: Launch of the child (a copy of the caller) by the caller."""
    d = event.data
    is_thread = bool(d.get("is_thread", 0))
    child_pid = int(d["child_pid"])
    child_tid = int(d.get("child_tid", child_pid))
    if is_thread:
        obj = base(
            event,
            host,
            class_uid=CLASS_PROCESS_ACTIVITY,
            category_uid=CATEGORY_SYSTEM,
            activity_id=ACTIVITY_OTHER,
            activity_name="Thread Create",
            status_id=STATUS_SUCCESS,
            message=f"new thread {child_tid} in process {event.proc['pid']}",
        )
    else:
        obj = base(
            event,
            host,
            class_uid=CLASS_PROCESS_ACTIVITY,
            category_uid=CATEGORY_SYSTEM,
            activity_id=ACTIVITY_LAUNCH,
            status_id=STATUS_SUCCESS,
            message=f"fork {event.proc['pid']} -> {child_pid}",
        )
        obj["launch_type_id"] = LAUNCH_TYPE_FORK
        obj["launch_type"] = "Fork"
    caller: dict[str, Any] = obj["actor"]["process"]
    if is_thread:
        child = {k: v for k, v in caller.items() if k != "ptid"}
        child["ptid"] = child_tid
    else:
        child = {k: caller[k] for k in _INHERITED if k in caller}
        child["pid"] = child_pid
        child["ptid"] = child_tid
        if d.get("child_start_ns"):
            child["created_time"] = boot_ns_to_ms(int(d["child_start_ns"]), host)
        child["parent_process"] = {k: v for k, v in caller.items() if k not in ("parent_process", "ancestry")}
        child["ancestry"] = [_entity_of(caller), *caller.get("ancestry", [])]
    obj["process"] = child
    obj["unmapped"]["fork"] = {
        "child_pid": child_pid,
        "child_tid": child_tid,
        "child_start_ns": int(d.get("child_start_ns", 0)),
        "is_thread": is_thread,
    }
    return obj


# ---------------------------------------------------------------- exit


@register(KIND_EXIT)
def map_exit(event: Event, host: HostInfo) -> dict[str, Any]:
    """The last thread of a process exited: Terminate (the process is its own actor)."""
    d = event.data
    code = int(d.get("exit_code", 0))
    sig = int(d.get("exit_signal", 0))
    core = bool(d.get("core_dumped", 0))
    is_thread = bool(d.get("is_thread", 0))
    if sig:
        msg = f"killed by {signal_name(sig)}" + (" (core dumped)" if core else "")
    else:
        msg = f"exited with code {code}"
    if is_thread:
        obj = base(
            event,
            host,
            class_uid=CLASS_PROCESS_ACTIVITY,
            category_uid=CATEGORY_SYSTEM,
            activity_id=ACTIVITY_OTHER,
            activity_name="Thread Exit",
            message=f"thread {msg}",
        )
    else:
        obj = base(
            event,
            host,
            class_uid=CLASS_PROCESS_ACTIVITY,
            category_uid=CATEGORY_SYSTEM,
            activity_id=ACTIVITY_TERMINATE,
            message=f"process {msg}",
        )
    proc = with_lineage(process_object(event.process, event, host=host), event, host=host)
    if not is_thread:
        proc["terminated_time"] = obj["time"]
    obj["process"] = proc
    obj["exit_code"] = code
    unm = obj["unmapped"]
    unm["exit_code"] = code
    unm["exit_signal"] = sig
    if sig:
        unm["signal_name"] = signal_name(sig)
    unm["core_dumped"] = core
    unm["is_thread"] = is_thread
    return obj


# ---------------------------------------------------------------- comm


@register(KIND_COMM)
def map_comm(event: Event, host: HostInfo) -> dict[str, Any]:
    """comm changed (prctl PR_SET_NAME, /proc/<pid>/comm): Other "Set Name"."""
    d = event.data
    old = text(d.get("old_comm")) or ""
    new = text(d.get("new_comm")) or ""
    obj = base(
        event,
        host,
        class_uid=CLASS_PROCESS_ACTIVITY,
        category_uid=CATEGORY_SYSTEM,
        activity_id=ACTIVITY_OTHER,
        activity_name="Set Name",
        status_id=STATUS_SUCCESS,
        message=f"comm {old!r} -> {new!r}",
    )
    proc = with_lineage(process_object(event.process, event, host=host), event, host=host)
    proc["name"] = new
    obj["process"] = proc
    obj["unmapped"]["old_comm"] = old
    obj["unmapped"]["new_comm"] = new
    return obj

"""Replay: enriched Events rebuilt from the OCSF objects the agent wrote.

``sentinel-edge rules test --events FILE`` feeds a JSON-lines file of OCSF
objects (what ``sentinel-edge run --format json`` writes) through the rules.
:func:`event_from_ocsf` rebuilds one :class:`~sentinel_edge.model.Event`:
``kind`` and the raw ``se_proc`` from ``unmapped`` (``event``, ``proc``), the
kernel fields under their C names from ``unmapped`` and the OCSF attributes
that carry them (endpoints, file paths), and ``process`` / ``parent`` /
``ancestry`` from the process objects. Strings go back through
:func:`~sentinel_edge.output.ocsf.common.untext`, so every field reads the
same text as on the live event.

What OCSF does not carry is left unknown (None), never guessed; docs/rules.md
(section Replay) lists it. :class:`ReplayContext` (used by :func:`iter_events`)
recovers part of it from earlier objects of the same file: the exec event of
an image gives its argv, exec-time fields and ancestry to the later events of
that image (same ``process.uid``).
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from sentinel_edge.enrich.proctable import EXEC_EXE_MEMFD
from sentinel_edge.errors import RuleError
from sentinel_edge.model import (
    KIND_BPF,
    KIND_COMM,
    KIND_CRED,
    KIND_EXEC,
    KIND_EXIT,
    KIND_FILE,
    KIND_FORK,
    KIND_IO_URING,
    KIND_MEM,
    KIND_MEMFD,
    KIND_MODULE,
    KIND_NET,
    KIND_NS,
    KIND_PTRACE,
    Event,
    ProcessInfo,
)
from sentinel_edge.output.ocsf import file as ocsf_file
from sentinel_edge.output.ocsf import network as ocsf_net
from sentinel_edge.output.ocsf import privilege as ocsf_priv
from sentinel_edge.output.ocsf import process as ocsf_process
from sentinel_edge.output.ocsf.common import untext
from sentinel_edge.rules.fields import FILE_NEW_PATH_KEY, FILE_PATH_KEY, HOST_KEY, op_number

__all__ = ["ReplayContext", "event_from_ocsf", "iter_events"]

#: enum se_event_type (bpf/shared/events.h)
TYPE_IDS: dict[str, int] = {
    KIND_EXEC: 1, KIND_FORK: 2, KIND_EXIT: 3, KIND_COMM: 4, KIND_FILE: 10, KIND_NET: 20, KIND_CRED: 30,
    KIND_NS: 31, KIND_MEM: 40, KIND_PTRACE: 41, KIND_MEMFD: 42, KIND_MODULE: 43, KIND_BPF: 44, KIND_IO_URING: 45,
}
_PROC_KEYS = ("pid", "tid", "ppid", "ns_pid", "uid", "euid", "gid", "egid", "loginuid", "sessionid", "mnt_ns",
              "pid_ns", "net_ns", "cgroup_id", "start_ns", "parent_start_ns")
_UNSET = 0xFFFFFFFF
_FD_KIND_NUMBERS = {name: n for n, name in ocsf_process.FD_KINDS.items()}


class ReplayError(ValueError):
    """An OCSF object of a kernel event lacks what replay needs."""


# ---------------------------------------------------------------- small helpers


def _b(s: Any) -> bytes:
    """Kernel bytes back from OCSF text."""
    return untext(s) if isinstance(s, str) and s else b""


def _fs(s: Any) -> str | None:
    """Enrichment text back from OCSF text (an os.fsdecode string, as enrichment holds)."""
    return os.fsdecode(untext(s)) if isinstance(s, str) else None


def _int(v: Any, default: int = 0) -> int:
    if v is None:
        return default
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        try:
            return int(v, 0)
        except ValueError:
            pass
    raise ReplayError(f"expected an integer, got {v!r}")


def _names_to_bits(names: Any, table: tuple[tuple[int, str], ...]) -> int:
    """Inverse of the OCSF flag-name lists: known names by the table, unknown bits as hex."""
    if not isinstance(names, list):
        return 0
    by_name = {name: bit for bit, name in table}
    value = 0
    for n in names:
        if n in by_name:
            value |= by_name[n]
        elif isinstance(n, str) and n.startswith("0x"):
            value |= int(n, 16)
    return value


def _open_flags(names: Any) -> int:
    if not isinstance(names, list) or not names:
        return 0
    acc = {v: k for k, v in ocsf_file._ACCMODE.items()}
    return acc.get(names[0], 0) | _names_to_bits(names[1:], ocsf_file._O_FLAGS)


def _op_flags(op: int, names: Any) -> int:
    if op == ocsf_file.OP_RENAME:
        return _names_to_bits(names, ocsf_file._RENAME_FLAGS)
    if op == ocsf_file.OP_SETXATTR:
        return _names_to_bits(names, ocsf_file._XATTR_FLAGS + ocsf_file._AT_FLAGS)
    return _names_to_bits(names, ocsf_file._AT_FLAGS)


def _op(kind: str, um: dict[str, Any]) -> int:
    name = um.get("op")
    n = op_number(kind, name) if isinstance(name, str) else None
    if n is None:
        raise ReplayError(f"unknown {kind} op {name!r}")
    return n


def _tcp_state(name: Any) -> int:
    for n, s in ocsf_net.TCP_STATE_NAMES.items():
        if s == name:
            return n
    return _int(name) if isinstance(name, str) and name.isdigit() else 0


def _addr(ep: Any) -> tuple[list[int], int] | None:
    """(16 address bytes, port) of an OCSF network endpoint with an ip."""
    if not isinstance(ep, dict) or "ip" not in ep:
        return None
    packed = ipaddress.ip_address(ep["ip"]).packed
    return list(packed.ljust(16, b"\0")), _int(ep.get("port"))


# ---------------------------------------------------------------- data of each kind


def _data_exec(obj: dict[str, Any], um: dict[str, Any]) -> dict[str, Any]:
    exe = um.get("exe") or {}
    fd = um.get("fd") or {}
    d: dict[str, Any] = {
        "flags": _int(um.get("flags_raw")),
        "argc": _int(um.get("argc")),
        "exe_dev": _int(exe.get("dev")), "exe_nlink": _int(exe.get("nlink")), "exe_ino": _int(exe.get("ino")),
        "exe_mode": _int(exe.get("mode")), "exe_uid": _int(exe.get("uid")),
        "fd_kind": [_FD_KIND_NUMBERS.get(fd.get(k, "none"), 6) for k in ("stdin", "stdout", "stderr")],
        "filename": _b(um.get("filename")), "interp": _b(um.get("interp")), "exe_path": _b(um.get("exe_path")),
        "cwd": _b(um.get("cwd")),
        "argv": b"\0".join(_b(a) for a in um.get("argv") or []),
        "ld_preload": _b(um.get("ld_preload")), "ld_library_path": _b(um.get("ld_library_path")),
    }
    old = (um.get("credentials") or {}).get("old")
    if isinstance(old, dict):  # set-id execs only: otherwise OCSF does not say
        for k in ("uid", "euid", "gid", "egid"):
            d[f"old_{k}"] = _int(old.get(k))
    return d


def _data_fork(obj: dict[str, Any], um: dict[str, Any]) -> dict[str, Any]:
    f = um.get("fork") or {}
    return {k: _int(f.get(k)) for k in ("child_pid", "child_tid", "child_start_ns", "is_thread")}


def _data_exit(obj: dict[str, Any], um: dict[str, Any]) -> dict[str, Any]:
    return {k: _int(um.get(k)) for k in ("exit_code", "exit_signal", "core_dumped", "is_thread")}


def _data_comm(obj: dict[str, Any], um: dict[str, Any]) -> dict[str, Any]:
    return {"old_comm": _b(um.get("old_comm")), "new_comm": _b(um.get("new_comm"))}


def _data_file(obj: dict[str, Any], um: dict[str, Any]) -> dict[str, Any]:
    op = _op(KIND_FILE, um)
    d: dict[str, Any] = {
        "op": op, "ret": _int(um.get("ret")), "syscall_nr": _int(um.get("syscall_nr")),
        "dirfd": _int(um.get("dirfd"), ocsf_file.AT_FDCWD),
        "open_flags": _open_flags(um.get("open_flags")) if op == ocsf_file.OP_OPEN
        else _op_flags(op, um.get("op_flags")),
        "mode": int(um["mode"], 8) if isinstance(um.get("mode"), str) else 0,
        "uid": _int(um.get("uid"), _UNSET), "gid": _int(um.get("gid"), _UNSET),
        "flags": _names_to_bits(um.get("flags"), ocsf_file.FILE_FLAGS),
        "dev": _int(um.get("dev")), "ino": _int(um.get("ino")), "size": _int(um.get("size")),
        "path": _b(um.get("path")), "path2": _b(um.get("path2")), "base": _b(um.get("base")),
        "base2": _b(um.get("base2")), "resolved": _b(um.get("resolved")), "xattr_name": _b(um.get("xattr_name")),
        "dirfd2": _int(um.get("dirfd2"), ocsf_file.AT_FDCWD),
        "resolve": _names_to_bits(um.get("resolve"), ocsf_file._RESOLVE_FLAGS),
    }
    # the paths as the agent resolved them when it wrote the object (file.path, file.new_path)
    d[FILE_PATH_KEY] = (obj.get("file") or {}).get("path", "")
    result = obj.get("file_result")
    if isinstance(result, dict):
        d[FILE_NEW_PATH_KEY] = result.get("path", "")
    return d


def _data_net(obj: dict[str, Any], um: dict[str, Any]) -> dict[str, Any]:
    op = _op(KIND_NET, um)
    d: dict[str, Any] = {
        "op": op, "ret": _int(um.get("ret")), "fd": _int(um.get("fd")), "family": _int(um.get("family")),
        "sock_type": _int(um.get("sock_type")), "protocol": _int(um.get("protocol")),
        "cookie": _int(um.get("cookie")), "flags": _int(um.get("flags")),
        "old_state": _tcp_state(um.get("old_state")), "new_state": _tcp_state(um.get("new_state")),
        "owner_pid": _int(um.get("owner_pid")), "backlog": _int(um.get("backlog")), "bytes": _int(um.get("bytes")),
        "unix_path": _b(um.get("unix_path")),
        "saddr": [0] * 16, "sport": 0, "daddr": [0] * 16, "dport": 0,
    }
    src, dst = obj.get("src_endpoint"), obj.get("dst_endpoint")
    if op == ocsf_net.OP_ACCEPT:
        local, remote = dst, src
    elif op == ocsf_net.OP_LISTEN:
        local, remote = dst, None
    elif op == ocsf_net.OP_BIND:
        local, remote = src, None
    else:
        local, remote = src, dst
    for ep, addr, port in ((local, "saddr", "sport"), (remote, "daddr", "dport")):
        got = _addr(ep)
        if got is not None:
            d[addr], d[port] = got
    return d


def _data_cred(obj: dict[str, Any], um: dict[str, Any]) -> dict[str, Any]:
    op = _op(KIND_CRED, um)
    if op == ocsf_priv.OP_CAPSET:
        args = [_int(um.get("cap_version")), _int(um.get("cap_target_pid")), 0]
    else:
        args = [_UNSET if a == -1 else _int(a) for a in um.get("args") or []]
        args += [0] * (3 - len(args))
    d: dict[str, Any] = {
        "op": op, "ret": _int(um.get("ret")), "args": args[:3],
        "old_ids": {k: _int((um.get("old_ids") or {}).get(k)) for k in ocsf_priv.ID_KEYS},
        "new_ids": {k: _int((um.get("new_ids") or {}).get(k)) for k in ocsf_priv.ID_KEYS},
    }
    for when in ("old", "new"):
        caps = um.get(f"{when}_caps") or {}
        for s in ocsf_priv.CAP_SETS:
            d[f"{when}_cap_{s}"] = _int((caps.get(s) or {}).get("mask"))
    return d


def _data_ns(obj: dict[str, Any], um: dict[str, Any]) -> dict[str, Any]:
    d: dict[str, Any] = {
        "op": _op(KIND_NS, um), "ret": _int(um.get("ret")), "flags": _int(um.get("flags")),
        "fd": _int(um.get("fd"), -1), "nstype": _int(um.get("nstype")),
        "source": _b(um.get("source")), "target": _b(um.get("target")), "fstype": _b(um.get("fstype")),
    }
    for when in ("old", "new"):
        ids = um.get(f"{when}_ns") or {}
        for k in ocsf_priv.NS_KEYS:
            d[f"{when}_{k}_ns"] = _int(ids.get(k))
    return d


def _data_mem(obj: dict[str, Any], um: dict[str, Any]) -> dict[str, Any]:
    return {
        "op": _op(KIND_MEM, um), "prot": _int(um.get("prot")), "mmap_flags": _int(um.get("mmap_flags")),
        "fd": _int(um.get("fd"), -1), "addr": _int(um.get("addr")), "len": _int(um.get("len")),
        "ret": _int(um.get("ret")), "vma_flags": _int(um.get("vma_flags")), "anon": _int(um.get("anon")),
    }


def _data_ptrace(obj: dict[str, Any], um: dict[str, Any]) -> dict[str, Any]:
    return {
        "op": _op(KIND_PTRACE, um), "ret": _int(um.get("ret")), "request": _int(um.get("request")),
        "addr": _int(um.get("addr")), "target_pid": _int(um.get("target_pid")),
        "target_start_ns": _int(um.get("target_start_ns")), "target_comm": _b(um.get("target_comm")),
    }


def _data_memfd(obj: dict[str, Any], um: dict[str, Any]) -> dict[str, Any]:
    return {"mfd_flags": _int(um.get("mfd_flags")), "ret": _int(um.get("ret")), "name": _b(um.get("name"))}


def _data_module(obj: dict[str, Any], um: dict[str, Any]) -> dict[str, Any]:
    return {
        "op": _op(KIND_MODULE, um), "ret": _int(um.get("ret")), "fd": _int(um.get("fd"), -1),
        "mod_flags": _int(um.get("flags")), "len": _int(um.get("len")), "syscall_nr": _int(um.get("syscall_nr")),
        "via_raw_tp": _int(um.get("via_raw_tp")), "name": _b(um.get("name")),
    }


def _data_bpf(obj: dict[str, Any], um: dict[str, Any]) -> dict[str, Any]:
    return {
        "cmd": _int(um.get("cmd")), "ret": _int(um.get("ret")), "prog_type": _int(um.get("prog_type")),
        "insn_cnt": _int(um.get("insn_cnt")), "attach_type": _int(um.get("attach_type")),
        "prog_name": _b(um.get("prog_name")),
    }


def _data_io_uring(obj: dict[str, Any], um: dict[str, Any]) -> dict[str, Any]:
    return {
        "op": _op(KIND_IO_URING, um), "ret": _int(um.get("ret")), "entries": _int(um.get("entries")),
        "setup_flags": _int(um.get("setup_flags")), "opcode": _int(um.get("opcode")),
        "sq_thread": _int(um.get("sq_thread")), "req_flags": _int(um.get("req_flags")),
        "user_data": _int(um.get("user_data")), "ring_ctx": _int(um.get("ring_ctx")),
        "suppressed": _int(um.get("suppressed")), "ring_fd": _int(um.get("ring_fd"), -1),
    }


_DATA = {
    KIND_EXEC: _data_exec, KIND_FORK: _data_fork, KIND_EXIT: _data_exit, KIND_COMM: _data_comm,
    KIND_FILE: _data_file, KIND_NET: _data_net, KIND_CRED: _data_cred, KIND_NS: _data_ns, KIND_MEM: _data_mem,
    KIND_PTRACE: _data_ptrace, KIND_MEMFD: _data_memfd, KIND_MODULE: _data_module, KIND_BPF: _data_bpf,
    KIND_IO_URING: _data_io_uring,
}


# ---------------------------------------------------------------- processes


def _obj(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _id(obj: Any) -> int | None:
    if not isinstance(obj, dict) or obj.get("uid") is None:
        return None
    return _int(obj["uid"])


def _info(o: Any, proc: dict[str, Any] | None) -> ProcessInfo | None:
    """ProcessInfo of an OCSF Process (or Process Entity) built from enrichment (it has ``uid``, the exec_id)."""
    if not isinstance(o, dict) or not isinstance(o.get("uid"), str):
        return None
    pid = _int(o.get("pid"))
    same = proc is not None and proc.get("pid") == pid
    parent = o.get("parent_process")
    user = _obj(o.get("user"))
    group = _obj(o.get("group"))
    container = _obj(o.get("container"))
    uid = _id(user)
    euid = _int(o["euid"]) if "euid" in o else None
    loginuid = _int(o["auid"]) if "auid" in o else None
    name = user.get("name")
    return ProcessInfo(
        pid=pid,
        start_ns=proc["start_ns"] if same and proc is not None else 0,
        exec_id=o["uid"],
        parent_exec_id=parent.get("uid") if isinstance(parent, dict) else None,
        ppid=_int(parent.get("pid")) if isinstance(parent, dict) else (proc["ppid"] if same and proc else 0),
        comm=_fs(o.get("name")) or "",
        exe=_fs(o.get("path")),
        cmdline=None,
        cmdline_text=o.get("cmd_line"),
        cwd=_fs(o.get("working_directory")),
        uid=uid,
        euid=euid,
        gid=_id(group),
        user=name,
        group=group.get("name"),
        loginuid=loginuid,
        container_id=container.get("uid"),
        container_runtime=container.get("runtime"),
        # the name of an id equal to the real uid is the real user's name; any other is not in OCSF
        euser=name if euid is not None and euid == uid else None,
        login_user=name if loginuid is not None and loginuid == uid else None,
    )


def _exec_image(info: ProcessInfo, d: dict[str, Any], um: dict[str, Any]) -> ProcessInfo:
    """The new image of an exec event: argv and the exec-time fields from ``unmapped``."""
    argv = um.get("argv")
    flags = d["flags"]
    fd = um.get("fd")
    return replace(
        info,
        cmdline=[_fs(a) or "" for a in argv] if isinstance(argv, list) else None,
        cmdline_text=None if isinstance(argv, list) else info.cmdline_text,
        argc=d["argc"],
        filename=_fs(um.get("filename")) or None,
        interp=_fs(um.get("interp")) or None,
        fds=(fd.get("stdin", "none"), fd.get("stdout", "none"), fd.get("stderr", "none"))
        if isinstance(fd, dict) else None,
        exe_deleted=bool(flags & ocsf_process.EXEC_EXE_DELETED),
        exe_memfd=bool(flags & EXEC_EXE_MEMFD),
        ld_preload=_fs(um.get("ld_preload")),
        ld_library_path=_fs(um.get("ld_library_path")),
        setuid_exec=bool(flags & (ocsf_process.EXEC_SETUID | ocsf_process.EXEC_SETGID)),
        exec_ts_ns=None,
    )


class ReplayContext:
    """What earlier objects of a replayed file said about images (by exec_id), bounded."""

    def __init__(self, max_images: int = 65536) -> None:
        self.max_images = max_images
        self.images: dict[str, tuple[ProcessInfo, list[ProcessInfo]]] = {}

    def remember(self, info: ProcessInfo, ancestry: list[ProcessInfo]) -> None:
        if len(self.images) >= self.max_images:
            self.images.pop(next(iter(self.images)))
        self.images[info.exec_id] = (info, ancestry)

    def complete(self, event: Event) -> None:
        """Fill what the object did not carry from an earlier exec/fork object of the same image."""
        p = event.process
        if p is None:
            return
        known = self.images.get(p.exec_id)
        if known is None:
            known = (p, [])
        info, ancestry = known
        if p.cmdline is None and info.cmdline is not None:
            event.process = replace(
                p, cmdline=info.cmdline, cmdline_text=None, argc=info.argc, filename=info.filename,
                interp=info.interp, fds=info.fds, exe_deleted=info.exe_deleted, exe_memfd=info.exe_memfd,
                ld_preload=info.ld_preload, ld_library_path=info.ld_library_path, setuid_exec=info.setuid_exec,
            )
        if not event.ancestry and ancestry:
            event.ancestry = ancestry
        if event.parent is not None and event.parent.cmdline is None:
            known_parent = self.images.get(event.parent.exec_id)
            if known_parent is not None and known_parent[0].cmdline is not None:
                event.parent = known_parent[0]


def event_from_ocsf(obj: dict[str, Any], context: ReplayContext | None = None) -> Event | None:
    """The enriched Event an OCSF object was written from; None for objects that are not kernel events.

    Raises :class:`ReplayError` (a ValueError) when a kernel event object lacks what replay needs.
    """
    if not isinstance(obj, dict):
        raise ReplayError("not a JSON object")
    if obj.get("class_uid") == 2004:
        return None  # an alert (Detection Finding) written in the same stream
    um = obj.get("unmapped")
    if not isinstance(um, dict):
        return None
    kind = um.get("event")
    if kind not in TYPE_IDS:
        return None  # the agent's health events, or not ours
    p = um.get("proc")
    if not isinstance(p, dict) or "pid" not in p or "ktime_ns" not in p:
        raise ReplayError(f"{kind} event without unmapped.proc (pid, ktime_ns)")
    try:
        proc: dict[str, Any] = {k: _int(p.get(k)) for k in _PROC_KEYS}
        proc["comm"] = _b(p.get("comm"))
        data = _DATA[kind](obj, um)
        device = obj.get("device")
        if isinstance(device, dict) and isinstance(device.get("hostname"), str):
            data[HOST_KEY] = device["hostname"]
        event = Event(kind, TYPE_IDS[kind], _int(p["ktime_ns"]), _int(p.get("cpu")), proc, data)
        actor = _obj(obj.get("actor"))
        own = obj.get("process") if kind == KIND_EXEC else actor.get("process")
        info = _info(own, proc)
        if info is not None and kind == KIND_EXEC:
            info = _exec_image(info, data, um)
        event.process = info
        if isinstance(own, dict):
            event.parent = _info(own.get("parent_process"), None)
            chain = own.get("ancestry")
            if isinstance(chain, list) and chain:
                ancestry = [_info(a, None) for a in chain]
                event.ancestry = [a for a in ancestry if a is not None]
                if event.parent is not None and event.ancestry and event.ancestry[0].exec_id == event.parent.exec_id:
                    event.ancestry[0] = event.parent
    except ReplayError as exc:
        raise ReplayError(f"{kind} event: {exc}") from exc
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ReplayError(f"{kind} event: {exc.__class__.__name__}: {exc}") from exc
    if context is not None and info is not None:
        context.complete(event)
        if kind == KIND_EXEC or (kind == KIND_FORK and info.exec_id not in context.images):
            context.remember(event.process or info, event.ancestry)
    return event


def iter_events(path: str | Path) -> Iterator[tuple[int, Event]]:
    """(line number, Event) for every kernel event of a JSON-lines file of OCSF objects.

    Blank lines and non-kernel objects (health) are skipped. A line that is not
    a JSON object, or a kernel event object replay cannot rebuild, raises
    :class:`RuleError` naming ``file:line``.
    """
    name = str(path)
    context = ReplayContext()
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise RuleError(f"cannot read events: {exc.strerror or exc}", file=name) from exc
    with fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except ValueError as exc:
                col = getattr(exc, "colno", 0)
                raise RuleError(f"not JSON: {getattr(exc, 'msg', exc)}", file=name, line=lineno,
                                col=col) from exc
            if not isinstance(obj, dict):
                raise RuleError(f"expected an OCSF object, got {type(obj).__name__}", file=name, line=lineno, col=1)
            try:
                event = event_from_ocsf(obj, context)
            except ReplayError as exc:
                raise RuleError(f"cannot replay this object: {exc}", file=name, line=lineno, col=1) from exc
            if event is not None:
                yield lineno, event

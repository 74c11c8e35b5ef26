"""The field table: every name a condition can use, and how to read it from an Event.

Contract used by the compiler (``rules.compiler``), Sigma (``rules.sigma``)
and output templates:

- ``FIELDS[name]`` is a :class:`FieldSpec`; ``lookup(name)`` raises KeyError
  with a suggestion, ``suggest(name)`` returns the closest known name or None.
- ``spec.get(event)`` returns the value or None when the event has none.
  Values are ``str``, ``int``, ``bool`` or ``list`` of those (never bytes:
  raw kernel bytes are decoded with surrogateescape-free replacement, the
  same text the OCSF output shows).
- ``spec.kinds`` is the set of event kinds the field can have a value for
  (None: every kind); the engine indexes rules with it.
- ``spec.get_index(event, n)`` exists for the ``[N]`` forms (``proc.aname[2]``).

The table is documented in docs/rules.md (section Fields); a test checks the
two agree.

Getters run once per event per rule, so they do no parsing and no regex:
name tables are the ones of the OCSF mappers (``output.ocsf.*``, one place
for every flag name), flag-name lists are cached per value and shared (never
mutate a returned list), and what is costly to compute once per event (the
resolved file path, IP addresses) is memoized in ``event.data`` under an
``se_`` key (which replay also uses to carry what the OCSF object says).
"""

from __future__ import annotations

import difflib
import errno
import functools
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sentinel_edge.enrich import PTRACE_TARGET_KEY  # set by the Enricher
from sentinel_edge.model import (
    KIND_BPF,
    KIND_COMM,
    KIND_CRED,
    KIND_DNS,
    KIND_EXEC,
    KIND_EXIT,
    KIND_FILE,
    KIND_FLOW,
    KIND_FORK,
    KIND_IO_URING,
    KIND_MEM,
    KIND_MEMFD,
    KIND_MODULE,
    KIND_NET,
    KIND_NETDET,
    KIND_NS,
    KIND_PTRACE,
    Event,
    ProcessInfo,
)
from sentinel_edge.output.ocsf import file as ocsf_file
from sentinel_edge.output.ocsf import kernel as ocsf_kernel
from sentinel_edge.output.ocsf import memory as ocsf_memory
from sentinel_edge.output.ocsf import netinspect as ocsf_ni
from sentinel_edge.output.ocsf import network as ocsf_net
from sentinel_edge.output.ocsf import privilege as ocsf_priv
from sentinel_edge.output.ocsf.common import text as _text


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    type: str                                  # str | int | bool | list[str] | list[int]
    get: Callable[[Event], Any]
    kinds: frozenset[str] | None = None        # None: every event kind
    get_index: Callable[[Event, int], Any] | None = None
    doc: str = ""


FIELDS: dict[str, FieldSpec] = {}


def _add(spec: FieldSpec) -> None:
    FIELDS[spec.name] = spec


def suggest(name: str) -> str | None:
    hits = difflib.get_close_matches(name, list(FIELDS), n=1, cutoff=0.75)
    return hits[0] if hits else None


def lookup(name: str) -> FieldSpec:
    try:
        return FIELDS[name]
    except KeyError:
        hint = suggest(name)
        raise KeyError(f"unknown field '{name}'" + (f" (did you mean '{hint}'?)" if hint else "")) from None


# ---------------------------------------------------------------- event.data keys added outside the decoder

#: hostname of the event's device (replayed events; live events are this host's)
HOST_KEY = "se_host"
#: memoized file.path / file.new_path (text, "" when none)
FILE_PATH_KEY = "se_file_path"
FILE_NEW_PATH_KEY = "se_file_new_path"
#: memoized net.local_ip / net.remote_ip ("" when none)
LOCAL_IP_KEY = "se_local_ip"
REMOTE_IP_KEY = "se_remote_ip"

_HOSTNAME = socket.gethostname()  # what host_info() reports for this host

ALL_KINDS = frozenset({
    KIND_EXEC, KIND_FORK, KIND_EXIT, KIND_COMM, KIND_FILE, KIND_NET, KIND_CRED, KIND_NS, KIND_MEM,
    KIND_PTRACE, KIND_MEMFD, KIND_MODULE, KIND_BPF, KIND_IO_URING,
})
_PROCESS_KINDS = frozenset({KIND_EXEC, KIND_FORK, KIND_EXIT, KIND_COMM})


# ---------------------------------------------------------------- text


def _t(s: str | None) -> str | None:
    """Enrichment text as the OCSF output shows it (common.text), without work for plain ASCII."""
    if s is None:
        return None
    if s.isascii() and "\\" not in s:
        return s
    return _text(s)


def _tb(raw: bytes | None) -> str | None:
    """Kernel bytes as the OCSF output shows them; empty means no value."""
    if not raw:
        return None
    return _text(raw)


_CACHE_MAX = 4096
_join_cache: dict[int, tuple[list[str], str]] = {}
_args_cache: dict[int, tuple[list[str], list[str]]] = {}
_base_cache: dict[str, str] = {}


def _joined(args: list[str]) -> str:
    """argv joined by spaces (cached per list object: ProcessInfo lists are never mutated)."""
    hit = _join_cache.get(id(args))
    if hit is not None and hit[0] is args:
        return hit[1]
    s = " ".join(_t(a) or "" for a in args)
    if len(_join_cache) >= _CACHE_MAX:
        _join_cache.clear()
    _join_cache[id(args)] = (args, s)  # the reference keeps the id from being reused
    return s


def _tail(args: list[str]) -> list[str]:
    hit = _args_cache.get(id(args))
    if hit is not None and hit[0] is args:
        return hit[1]
    out = [_t(a) or "" for a in args[1:]]
    if len(_args_cache) >= _CACHE_MAX:
        _args_cache.clear()
    _args_cache[id(args)] = (args, out)
    return out


def _basename(path: str | None) -> str | None:
    if path is None:
        return None
    hit = _base_cache.get(path)
    if hit is None:
        hit = path.rsplit("/", 1)[-1] or path
        if len(_base_cache) >= _CACHE_MAX:
            _base_cache.clear()
        _base_cache[path] = hit
    return hit


def _dirname(path: str) -> str:
    """Directory of a path as OCSF's parent_folder has it."""
    if "/" not in path:
        return ""
    return path.rsplit("/", 1)[0] or "/"


_flag_names = functools.lru_cache(maxsize=4096)(ocsf_memory.flag_names)
_cap_names = functools.lru_cache(maxsize=1024)(ocsf_priv.cap_names)


# ---------------------------------------------------------------- name tables (from the OCSF mappers)


def _strip(name: str, prefix: str) -> str:
    return name[len(prefix):].lower() if name.startswith(prefix) else name.lower()


_OPS: dict[str, dict[int, str]] = {
    KIND_FILE: {n: name for n, (name, _) in ocsf_file.OPS.items()},
    KIND_NET: dict(ocsf_net.OP_NAMES),
    KIND_CRED: {n: name for n, (name, _) in ocsf_priv.CRED_OPS.items()},
    KIND_NS: dict(ocsf_priv.NS_OP_NAMES),
    KIND_MEM: {ocsf_memory.OP_MMAP: "mmap", ocsf_memory.OP_MPROTECT: "mprotect"},
    KIND_PTRACE: dict(ocsf_memory.PTRACE_OP_NAMES),
    KIND_MODULE: dict(ocsf_kernel.MODULE_OP_NAMES),
    KIND_IO_URING: {ocsf_kernel.OP_IO_URING_SETUP: "setup", ocsf_kernel.OP_IO_URING_SUBMIT: "submit",
                    ocsf_kernel.OP_IO_URING_REGISTER: "register"},
}
#: event.op of the kinds without an op: the kind itself
_SELF_OP = frozenset({KIND_EXEC, KIND_FORK, KIND_EXIT, KIND_COMM, KIND_MEMFD})
BPF_CMD_NAMES: tuple[str, ...] = tuple(_strip(n, "BPF_") for n in ocsf_kernel.BPF_CMDS)
BPF_PROG_TYPE_NAMES: tuple[str, ...] = tuple(_strip(n, "BPF_PROG_TYPE_") for n in ocsf_kernel.BPF_PROG_TYPES)
IORING_OP_NAMES: tuple[str, ...] = tuple(n.lower() for n in ocsf_kernel.IORING_OPS)
FAMILY_NAMES: dict[int, str] = {n: _strip(name, "AF_") for n, name in ocsf_net.FAMILY_NAMES.items()}
SOCK_TYPE_NAMES: dict[int, str] = {n: _strip(name, "SOCK_") for n, name in ocsf_net.SOCK_TYPE_NAMES.items()}
#: setns nstype (a CLONE_NEW* value) -> namespace type
NS_TYPE_NAMES: dict[int, str] = {
    0x00020000: "mnt", 0x02000000: "cgroup", 0x04000000: "uts", 0x08000000: "ipc", 0x10000000: "user",
    0x20000000: "pid", 0x40000000: "net", 0x00000080: "time",
}


def op_name(kind: str, op: int) -> str:
    """event.op of an op number (``op<N>`` when unknown)."""
    if kind == KIND_BPF:
        return BPF_CMD_NAMES[op] if 0 <= op < len(BPF_CMD_NAMES) else f"cmd_{op}"
    return _OPS.get(kind, {}).get(op, f"op{op}")


def op_number(kind: str, name: str) -> int | None:
    """Inverse of :func:`op_name` (None when the name is not one of the kind's)."""
    if kind == KIND_BPF:
        if name in BPF_CMD_NAMES:
            return BPF_CMD_NAMES.index(name)
        return int(name[4:]) if name.startswith("cmd_") and name[4:].isdigit() else None
    for n, s in _OPS.get(kind, {}).items():
        if s == name:
            return n
    return int(name[2:]) if name.startswith("op") and name[2:].isdigit() else None


# ---------------------------------------------------------------- event.*


def _event_op(e: Event) -> str | None:
    kind = e.kind
    if kind in _SELF_OP:
        return kind
    d = e.data
    if kind == KIND_BPF:
        cmd = d.get("cmd")
        if cmd is None:
            return None
        return BPF_CMD_NAMES[cmd] if 0 <= cmd < len(BPF_CMD_NAMES) else f"cmd_{cmd}"
    table = _OPS.get(kind)
    if table is None:
        return None
    op = d.get("op")
    if op is None:
        return None
    name = table.get(op)
    return name if name is not None else f"op{op}"


def _event_ret(e: Event) -> int | None:
    if e.kind == KIND_IO_URING and e.data.get("op") == ocsf_kernel.OP_IO_URING_SUBMIT:
        return None  # a submission has no result
    ret: int | None = e.data.get("ret")
    return ret


def _event_success(e: Event) -> bool | None:
    if e.kind in _PROCESS_KINDS:
        return True  # reported only when it happened
    ret = _event_ret(e)
    if ret is None:
        return True if e.kind == KIND_IO_URING else None
    return ret >= 0


def _event_errno(e: Event) -> str | None:
    ret = _event_ret(e)
    if ret is None or ret >= 0:
        return None
    return errno.errorcode.get(-ret, str(-ret))


_RET_KINDS = ALL_KINDS - _PROCESS_KINDS

_add(FieldSpec("event.kind", "str", lambda e: e.kind, doc="event kind"))
_add(FieldSpec("event.op", "str", _event_op, doc="operation within the kind"))
_add(FieldSpec("event.ret", "int", _event_ret, _RET_KINDS, doc="syscall result"))
_add(FieldSpec("event.success", "bool", _event_success, doc="the operation succeeded"))
_add(FieldSpec("event.errno", "str", _event_errno, _RET_KINDS, doc="errno name when it failed"))
_add(FieldSpec("event.time", "int", lambda e: e.ts_ns, doc="boot-time ns of the event"))


# ---------------------------------------------------------------- proc.* (the event's process)


def _proc_key(key: str) -> Callable[[Event], Any]:
    def get(e: Event) -> Any:
        return e.proc.get(key)

    return get


def _proc_name(e: Event) -> str | None:
    p = e.process
    if p is not None:
        return _t(p.comm)
    comm = e.proc.get("comm")
    return None if comm is None else _text(comm)


def _info_field(attr: str, convert: Callable[[Any], Any] | None = None) -> Callable[[Event], Any]:
    """Getter of one ProcessInfo attribute of the event's process."""
    if convert is None:
        def get(e: Event) -> Any:
            p = e.process
            return None if p is None else getattr(p, attr)
    else:
        def get(e: Event) -> Any:
            p = e.process
            if p is None:
                return None
            v = getattr(p, attr)
            return None if v is None else convert(v)
    return get


def info_exe(p: ProcessInfo) -> str | None:
    return _t(p.exe)


def info_exe_name(p: ProcessInfo) -> str | None:
    return _basename(_t(p.exe))


def info_cmdline(p: ProcessInfo) -> str | None:
    if p.cmdline is not None:
        return _joined(p.cmdline)
    return p.cmdline_text


def info_args(p: ProcessInfo) -> list[str] | None:
    return None if p.cmdline is None else _tail(p.cmdline)


def info_argv0(p: ProcessInfo) -> str | None:
    return _t(p.cmdline[0]) if p.cmdline else None


def info_argc(p: ProcessInfo) -> int | None:
    if p.argc is not None:
        return p.argc
    return None if p.cmdline is None else len(p.cmdline)


def _of_process(fn: Callable[[ProcessInfo], Any]) -> Callable[[Event], Any]:
    def get(e: Event) -> Any:
        p = e.process
        return None if p is None else fn(p)

    return get


def _of_parent(fn: Callable[[ProcessInfo], Any]) -> Callable[[Event], Any]:
    def get(e: Event) -> Any:
        p = e.parent
        return None if p is None else fn(p)

    return get


def _fd(n: int) -> Callable[[Event], str | None]:
    def get(e: Event) -> str | None:
        p = e.process
        if p is None or p.fds is None:
            return None
        return p.fds[n]

    return get


def _tty(e: Event) -> bool | None:
    p = e.process
    if p is None or p.fds is None:
        return None
    return "tty" in p.fds


def _interp(e: Event) -> str | None:
    p = e.process
    if p is None or not p.interp or p.interp == p.filename:
        return None
    return _t(p.interp)


def _nonempty_t(attr: str) -> Callable[[Event], str | None]:
    def get(e: Event) -> str | None:
        p = e.process
        if p is None:
            return None
        v = getattr(p, attr)
        return _t(v) if v else None

    return get


def _loginuid(e: Event) -> int | None:
    p = e.process
    if p is not None and p.loginuid is not None:
        return p.loginuid
    v: int | None = e.proc.get("loginuid")
    return v


def _ancestor(e: Event, n: int) -> ProcessInfo | None:
    if n == 0:
        return e.process
    if n == 1:
        return e.parent
    if n < 0 or n > len(e.ancestry):
        return None
    return e.ancestry[n - 1]


def _ancestry(fn: Callable[[ProcessInfo], Any]) -> tuple[Callable[[Event], Any], Callable[[Event, int], Any]]:
    # the enricher hands out the same ancestry list for every event of an image while it is
    # unchanged: the derived list is cached per list object (and is then the same object too,
    # which lets the compiler cache tests of it)
    cache: dict[int, tuple[list[ProcessInfo], list[Any]]] = {}

    def get(e: Event) -> list[Any] | None:
        anc = e.ancestry
        if not anc:
            return None
        hit = cache.get(id(anc))
        if hit is not None and hit[0] is anc:
            return hit[1]
        out = []
        for a in anc:
            v = fn(a)
            if v is not None:
                out.append(v)
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[id(anc)] = (anc, out)  # the reference keeps the id from being reused
        return out

    def get_index(e: Event, n: int) -> Any:
        a = _ancestor(e, n)
        return None if a is None else fn(a)

    return get, get_index


_add(FieldSpec("proc.pid", "int", _proc_key("pid"), doc="host pid"))
_add(FieldSpec("proc.tid", "int", _proc_key("tid"), doc="host tid"))
_add(FieldSpec("proc.ppid", "int", _proc_key("ppid"), doc="host pid of the parent"))
_add(FieldSpec("proc.name", "str", _proc_name, doc="comm"))
_add(FieldSpec("proc.exe", "str", _of_process(info_exe), doc="executable path"))
_add(FieldSpec("proc.exe_name", "str", _of_process(info_exe_name), doc="basename of proc.exe"))
_add(FieldSpec("proc.cmdline", "str", _of_process(info_cmdline), doc="arguments joined by spaces"))
_add(FieldSpec("proc.args", "list[str]", _of_process(info_args), doc="arguments after argv[0]"))
_add(FieldSpec("proc.argv0", "str", _of_process(info_argv0), doc="argv[0] as given"))
_add(FieldSpec("proc.argc", "int", _of_process(info_argc), doc="number of arguments"))
_add(FieldSpec("proc.cwd", "str", _info_field("cwd", _t), doc="working directory at exec"))
_add(FieldSpec("proc.exec_id", "str", _info_field("exec_id"), doc="unique id of this image"))
_add(FieldSpec("proc.parent_exec_id", "str", _info_field("parent_exec_id"), doc="exec_id of the parent"))
_add(FieldSpec("proc.filename", "str", _nonempty_t("filename"), doc="path as given to execve"))
_add(FieldSpec("proc.interp", "str", _interp, doc="interpreter when it differs"))
_add(FieldSpec("proc.stdin", "str", _fd(0), doc="what fd 0 was at exec"))
_add(FieldSpec("proc.stdout", "str", _fd(1), doc="what fd 1 was at exec"))
_add(FieldSpec("proc.stderr", "str", _fd(2), doc="what fd 2 was at exec"))
_add(FieldSpec("proc.tty", "bool", _tty, doc="one of fds 0-2 is a terminal"))
_add(FieldSpec("proc.exe_deleted", "bool", _info_field("exe_deleted"), doc="the image's file is unlinked"))
_add(FieldSpec("proc.exe_memfd", "bool", _info_field("exe_memfd"), doc="the image is a memfd"))
_add(FieldSpec("proc.ld_preload", "str", _nonempty_t("ld_preload"), doc="LD_PRELOAD at exec"))
_add(FieldSpec("proc.ld_library_path", "str", _nonempty_t("ld_library_path"), doc="LD_LIBRARY_PATH at exec"))
_add(FieldSpec("proc.setuid_exec", "bool", _info_field("setuid_exec"), doc="the exec raised euid or egid"))
_add(FieldSpec("proc.loginuid", "int", _loginuid, doc="audit login uid"))

for _name, _fn, _type in (
    ("proc.aname", lambda a: _t(a.comm), "list[str]"),
    ("proc.aexe", info_exe, "list[str]"),
    ("proc.acmdline", info_cmdline, "list[str]"),
    ("proc.apid", lambda a: a.pid, "list[int]"),
):
    _g, _gi = _ancestry(_fn)
    _add(FieldSpec(_name, _type, _g, get_index=_gi, doc="ancestry, parent first; [0] = the process itself"))


# ---------------------------------------------------------------- parent.*

_add(FieldSpec("parent.pid", "int", _of_parent(lambda p: p.pid), doc="parent pid"))
_add(FieldSpec("parent.name", "str", _of_parent(lambda p: _t(p.comm)), doc="parent comm"))
_add(FieldSpec("parent.exe", "str", _of_parent(info_exe), doc="parent executable"))
_add(FieldSpec("parent.exe_name", "str", _of_parent(info_exe_name), doc="basename of parent.exe"))
_add(FieldSpec("parent.cmdline", "str", _of_parent(info_cmdline), doc="parent command line"))
_add(FieldSpec("parent.args", "list[str]", _of_parent(info_args), doc="parent arguments after argv[0]"))
_add(FieldSpec("parent.exec_id", "str", _of_parent(lambda p: p.exec_id), doc="parent exec_id"))


# ---------------------------------------------------------------- user, group, container, host

_add(FieldSpec("user.uid", "int", _proc_key("uid"), doc="real uid"))
_add(FieldSpec("user.euid", "int", _proc_key("euid"), doc="effective uid"))
_add(FieldSpec("user.name", "str", _info_field("user"), doc="name of the real uid"))
_add(FieldSpec("user.ename", "str", _info_field("euser"), doc="name of the effective uid"))
_add(FieldSpec("user.loginuid", "int", _loginuid, doc="audit login uid"))
_add(FieldSpec("user.loginname", "str", _info_field("login_user"), doc="name of the login uid"))
_add(FieldSpec("group.gid", "int", _proc_key("gid"), doc="real gid"))
_add(FieldSpec("group.name", "str", _info_field("group"), doc="name of the real gid"))
_add(FieldSpec("container.id", "str", _info_field("container_id"), doc="container id"))
_add(FieldSpec("container.runtime", "str", _info_field("container_runtime"), doc="container runtime"))


def _host_name(e: Event) -> str:
    name: str | None = e.data.get(HOST_KEY)
    return _HOSTNAME if name is None else name


_add(FieldSpec("host.name", "str", _host_name, doc="host name"))


# ---------------------------------------------------------------- file.*

_FILE = frozenset({KIND_FILE})
_O_CREAT = 0o100
_O_TRUNC = 0o1000
_O_TMPFILE = 0o20000000
_OP_OPEN, _OP_CHMOD, _OP_CHOWN, _OP_MKDIR = 1, 4, 5, 11


def _file_path(e: Event) -> str | None:
    if e.kind != KIND_FILE:
        return None
    d = e.data
    p: str | None = d.get(FILE_PATH_KEY)
    if p is None:
        p = _text(ocsf_file.event_abs_path(d)) or ""
        d[FILE_PATH_KEY] = p
    return p or None


def _file_new_path(e: Event) -> str | None:
    if e.kind != KIND_FILE:
        return None
    d = e.data
    op = d.get("op")
    if op == ocsf_file.OP_SYMLINK:
        return _file_path(e)
    if op not in (ocsf_file.OP_RENAME, ocsf_file.OP_LINK):
        return None
    p: str | None = d.get(FILE_NEW_PATH_KEY)
    if p is None:
        p = _text(ocsf_file.event_abs_path2(d)) or ""
        d[FILE_NEW_PATH_KEY] = p
    return p or None


def _file_name(e: Event) -> str | None:
    return _basename(_file_path(e))


def _file_dir(e: Event) -> str | None:
    p = _file_path(e)
    return None if p is None else _dirname(p)


def _file_new_name(e: Event) -> str | None:
    return _basename(_file_new_path(e))


def _file_op_data(op: int, fn: Callable[[dict[str, Any]], Any]) -> Callable[[Event], Any]:
    def get(e: Event) -> Any:
        if e.kind != KIND_FILE:
            return None
        d = e.data
        return fn(d) if d.get("op") == op else None

    return get


def _file_mode(e: Event) -> int | None:
    if e.kind != KIND_FILE:
        return None
    d = e.data
    op = d.get("op")
    if op in (_OP_CHMOD, _OP_MKDIR) or (op == _OP_OPEN and d.get("open_flags", 0) & (_O_CREAT | _O_TMPFILE)):
        mode: int = d["mode"]
        return mode
    return None


def _chown_id(key: str) -> Callable[[dict[str, Any]], int]:
    def get(d: dict[str, Any]) -> int:
        v: int = d.get(key, 0xFFFFFFFF)
        return -1 if v == 0xFFFFFFFF else v

    return get


def _file_inode(key: str) -> Callable[[Event], int | None]:
    def get(e: Event) -> int | None:
        if e.kind != KIND_FILE:
            return None
        d = e.data
        if not d.get("ino"):
            return None
        v: int = d.get(key, 0)
        return v

    return get


def _is_write(d: dict[str, Any]) -> bool:
    of = d.get("open_flags", 0)
    return (of & 3) in (1, 2) or bool(of & (_O_CREAT | _O_TRUNC))


_add(FieldSpec("file.path", "str", _file_path, _FILE, doc="absolute host path"))
_add(FieldSpec("file.name", "str", _file_name, _FILE, doc="basename of file.path"))
_add(FieldSpec("file.dir", "str", _file_dir, _FILE, doc="directory of file.path"))
_add(FieldSpec("file.raw_path", "str", lambda e: _tb(e.data.get("path")) if e.kind == KIND_FILE else None,
               _FILE, doc="path argument as given"))
_add(FieldSpec("file.new_path", "str", _file_new_path, _FILE, doc="rename/link: new path; symlink: the link"))
_add(FieldSpec("file.new_name", "str", _file_new_name, _FILE, doc="basename of file.new_path"))
_add(FieldSpec("file.target", "str", _file_op_data(ocsf_file.OP_SYMLINK, lambda d: _tb(d.get("path2"))), _FILE,
               doc="symlink: the text the link points to"))
_add(FieldSpec("file.flags", "list[str]",
               _file_op_data(_OP_OPEN, lambda d: ocsf_file.open_flag_names(d.get("open_flags", 0))), _FILE,
               doc="open flags"))
_add(FieldSpec("file.is_write", "bool", _file_op_data(_OP_OPEN, _is_write), _FILE, doc="opened for writing"))
_add(FieldSpec("file.is_create", "bool", _file_op_data(_OP_OPEN, lambda d: bool(d.get("open_flags", 0) & _O_CREAT)),
               _FILE, doc="opened with O_CREAT"))
_add(FieldSpec("file.mode", "int", _file_mode, _FILE, doc="creation / chmod mode"))
_add(FieldSpec("file.uid", "int", _file_op_data(_OP_CHOWN, _chown_id("uid")), _FILE, doc="chown uid (-1 unchanged)"))
_add(FieldSpec("file.gid", "int", _file_op_data(_OP_CHOWN, _chown_id("gid")), _FILE, doc="chown gid (-1 unchanged)"))
_add(FieldSpec("file.xattr", "str", _file_op_data(ocsf_file.OP_SETXATTR, lambda d: _tb(d.get("xattr_name"))),
               _FILE, doc="setxattr name"))
_add(FieldSpec("file.dev", "int", _file_inode("dev"), _FILE, doc="device of the file"))
_add(FieldSpec("file.ino", "int", _file_inode("ino"), _FILE, doc="inode of the file"))


# ---------------------------------------------------------------- net.*

_NET = frozenset({KIND_NET})
_INET = (ocsf_net.AF_INET, ocsf_net.AF_INET6)
_NO_REMOTE = (ocsf_net.OP_SOCKET, ocsf_net.OP_BIND, ocsf_net.OP_LISTEN)
_TCP_STATE_OPS = (ocsf_net.OP_STATE, ocsf_net.OP_CONNECT_DONE)


def _net(fn: Callable[[dict[str, Any]], Any]) -> Callable[[Event], Any]:
    def get(e: Event) -> Any:
        return fn(e.data) if e.kind == KIND_NET else None

    return get


def _net_family(d: dict[str, Any]) -> str:
    f: int = d["family"]
    return FAMILY_NAMES.get(f) or str(f)


def _net_type(d: dict[str, Any]) -> str:
    t: int = d["sock_type"]
    return SOCK_TYPE_NAMES.get(t) or str(t)


def _net_proto(d: dict[str, Any]) -> str | None:
    if d["family"] not in _INET:
        return None
    p: int = d["protocol"]
    return ocsf_net.IP_PROTOCOL_NAMES.get(p) or str(p)


def _ip(key: str, addr: str, port: str, remote: bool) -> Callable[[dict[str, Any]], str | None]:
    def get(d: dict[str, Any]) -> str | None:
        ip: str | None = d.get(key)
        if ip is None:
            ip = ""
            if d["family"] in _INET and not (remote and d["op"] in _NO_REMOTE) \
                    and (d[port] or any(d[addr])):
                ip = ocsf_net.format_ip(d["family"], d[addr]) or ""
            d[key] = ip
        return ip or None

    return get


def _port(port: str, remote: bool) -> Callable[[dict[str, Any]], int | None]:
    def get(d: dict[str, Any]) -> int | None:
        if d["family"] not in _INET or (remote and d["op"] in _NO_REMOTE):
            return None
        v: int = d[port]
        return v or None

    return get


def _tcp_state(key: str) -> Callable[[dict[str, Any]], str | None]:
    def get(d: dict[str, Any]) -> str | None:
        if d["op"] not in _TCP_STATE_OPS:
            return None
        n: int = d[key]
        return ocsf_net.TCP_STATE_NAMES.get(n) or str(n)

    return get


def _net_bytes(d: dict[str, Any]) -> int | None:
    if d["op"] not in (ocsf_net.OP_SENDTO, ocsf_net.OP_DGRAM):
        return None
    v: int = d["bytes"]
    return v


_add(FieldSpec("net.family", "str", _net(_net_family), _NET, doc="address family"))
_add(FieldSpec("net.type", "str", _net(_net_type), _NET, doc="socket type"))
_add(FieldSpec("net.proto", "str", _net(_net_proto), _NET, doc="IP protocol"))
_add(FieldSpec("net.local_ip", "str", _net(_ip(LOCAL_IP_KEY, "saddr", "sport", False)), _NET, doc="local IP"))
_add(FieldSpec("net.local_port", "int", _net(_port("sport", False)), _NET, doc="local port"))
_add(FieldSpec("net.remote_ip", "str", _net(_ip(REMOTE_IP_KEY, "daddr", "dport", True)), _NET, doc="remote IP"))
_add(FieldSpec("net.remote_port", "int", _net(_port("dport", True)), _NET, doc="remote port"))
_add(FieldSpec("net.unix_path", "str", _net(lambda d: _tb(d.get("unix_path"))), _NET, doc="AF_UNIX path"))
_add(FieldSpec("net.state", "str", _net(_tcp_state("new_state")), _NET, doc="TCP state entered"))
_add(FieldSpec("net.old_state", "str", _net(_tcp_state("old_state")), _NET, doc="TCP state left"))
_add(FieldSpec("net.cookie", "int", _net(lambda d: d.get("cookie") or None), _NET, doc="socket cookie"))
_add(FieldSpec("net.bytes", "int", _net(_net_bytes), _NET,
               doc="bytes of a sendto, or of a connected UDP socket's first datagram (op send)"))


# ---------------------------------------------------------------- cred.*

_CRED = frozenset({KIND_CRED})


def _cred_id(which: str, key: str) -> Callable[[Event], int | None]:
    def get(e: Event) -> int | None:
        if e.kind != KIND_CRED:
            return None
        ids = e.data.get(which)
        if ids is None:
            return None
        v: int = ids[key]
        return v

    return get


def _caps(key: str) -> Callable[[Event], list[str] | None]:
    def get(e: Event) -> list[str] | None:
        if e.kind != KIND_CRED:
            return None
        mask = e.data.get(key)
        return None if mask is None else _cap_names(mask)

    return get


def _gained_caps(e: Event) -> list[str] | None:
    if e.kind != KIND_CRED:
        return None
    d = e.data
    new = d.get("new_cap_effective")
    if new is None:
        return None
    return _cap_names(new & ~d.get("old_cap_effective", 0))


for _when in ("old", "new"):
    for _id in ("uid", "euid", "gid", "egid"):
        _add(FieldSpec(f"cred.{_when}_{_id}", "int", _cred_id(f"{_when}_ids", _id), _CRED,
                       doc=f"{_id} {'before' if _when == 'old' else 'after'}"))
_add(FieldSpec("cred.old_caps", "list[str]", _caps("old_cap_effective"), _CRED, doc="effective caps before"))
_add(FieldSpec("cred.new_caps", "list[str]", _caps("new_cap_effective"), _CRED, doc="effective caps after"))
_add(FieldSpec("cred.gained_caps", "list[str]", _gained_caps, _CRED, doc="effective caps gained"))


# ---------------------------------------------------------------- ns.*

_NS = frozenset({KIND_NS})
_NS_FLAG_TABLES = {
    ocsf_priv.OP_UNSHARE: ocsf_priv.CLONE_NS_FLAGS,
    ocsf_priv.OP_MOUNT: ocsf_priv.MOUNT_FLAGS,
    ocsf_priv.OP_UMOUNT: ocsf_priv.UMOUNT_FLAGS,
    ocsf_priv.OP_MOVE_MOUNT: ocsf_priv.MOVE_MOUNT_FLAGS,
    ocsf_priv.OP_OPEN_TREE: ocsf_priv.OPEN_TREE_FLAGS,
}


def _ns_flags(e: Event) -> list[str] | None:
    if e.kind != KIND_NS:
        return None
    d = e.data
    table = _NS_FLAG_TABLES.get(d.get("op", 0))
    return None if table is None else _flag_names(d.get("flags", 0), table)


def _ns_type(e: Event) -> str | None:
    if e.kind != KIND_NS:
        return None
    d = e.data
    if d.get("op") != ocsf_priv.OP_SETNS:
        return None
    nstype: int = d.get("nstype", 0)
    if not nstype:
        return None  # any type: the kernel takes it from the fd
    name = NS_TYPE_NAMES.get(nstype)
    if name is not None:
        return name
    return ",".join(NS_TYPE_NAMES.get(1 << i, hex(1 << i)) for i in range(32) if nstype & (1 << i))


def _ns_str(key: str) -> Callable[[Event], str | None]:
    def get(e: Event) -> str | None:
        return _tb(e.data.get(key)) if e.kind == KIND_NS else None

    return get


_add(FieldSpec("ns.flags", "list[str]", _ns_flags, _NS, doc="unshare CLONE_NEW*, mount MS_*, umount MNT_*"))
_add(FieldSpec("ns.type", "str", _ns_type, _NS, doc="setns namespace type"))
_add(FieldSpec("ns.source", "str", _ns_str("source"), _NS, doc="mount source"))
_add(FieldSpec("ns.target", "str", _ns_str("target"), _NS, doc="mount / umount target"))
_add(FieldSpec("ns.fstype", "str", _ns_str("fstype"), _NS, doc="mount file system type"))


# ---------------------------------------------------------------- mem.*

_MEM = frozenset({KIND_MEM})


def _mem(fn: Callable[[dict[str, Any]], Any]) -> Callable[[Event], Any]:
    def get(e: Event) -> Any:
        return fn(e.data) if e.kind == KIND_MEM else None

    return get


def _mem_addr(d: dict[str, Any]) -> int:
    ret: int = d["ret"]
    if d["op"] == ocsf_memory.OP_MMAP and ret >= 0:
        return ret
    addr: int = d["addr"]
    return addr


_add(FieldSpec("mem.prot", "list[str]", _mem(lambda d: _flag_names(d["prot"], ocsf_memory.PROT_NAMES)), _MEM,
               doc="PROT_* names"))
_add(FieldSpec("mem.wx", "bool", _mem(lambda d: d["prot"] & 6 == 6), _MEM, doc="write and execute together"))
_add(FieldSpec("mem.anon", "bool", _mem(lambda d: bool(d["anon"])), _MEM, doc="no file backs the memory"))
_add(FieldSpec("mem.len", "int", _mem(lambda d: d["len"]), _MEM, doc="length"))
_add(FieldSpec("mem.addr", "int", _mem(_mem_addr), _MEM, doc="address of the memory"))


# ---------------------------------------------------------------- ptrace.*

_PTRACE = frozenset({KIND_PTRACE})


def _ptrace_request(e: Event) -> str | None:
    if e.kind != KIND_PTRACE:
        return None
    d = e.data
    op = d.get("op")
    if op == ocsf_memory.OP_PTRACE:
        return ocsf_memory.ptrace_request_name(d.get("request", 0))
    return ocsf_memory.PTRACE_OP_NAMES.get(op or 0)


def _ptrace_target_name(e: Event) -> str | None:
    if e.kind != KIND_PTRACE:
        return None
    name = _tb(e.data.get("target_comm"))
    if name is not None:
        return name
    t: ProcessInfo | None = e.data.get(PTRACE_TARGET_KEY)
    return None if t is None else _t(t.comm)


def _ptrace_target_exe(e: Event) -> str | None:
    if e.kind != KIND_PTRACE:
        return None
    t: ProcessInfo | None = e.data.get(PTRACE_TARGET_KEY)
    return None if t is None else _t(t.exe)


_add(FieldSpec("ptrace.request", "str", _ptrace_request, _PTRACE, doc="PTRACE_* request or the op"))
_add(FieldSpec("ptrace.target_pid", "int", lambda e: e.data.get("target_pid") if e.kind == KIND_PTRACE else None,
               _PTRACE, doc="target pid"))
_add(FieldSpec("ptrace.target_name", "str", _ptrace_target_name, _PTRACE, doc="target comm"))
_add(FieldSpec("ptrace.target_exe", "str", _ptrace_target_exe, _PTRACE, doc="target executable"))


# ---------------------------------------------------------------- memfd, module, bpf, io_uring

_MEMFD = frozenset({KIND_MEMFD})
_MODULE = frozenset({KIND_MODULE})
_BPF = frozenset({KIND_BPF})
_IO_URING = frozenset({KIND_IO_URING})


def _memfd_name(e: Event) -> str | None:
    if e.kind != KIND_MEMFD:
        return None
    return _text(e.data.get("name") or b"")  # an empty name is still the name given


def _bpf_prog(fn: Callable[[dict[str, Any]], Any]) -> Callable[[Event], Any]:
    def get(e: Event) -> Any:
        if e.kind != KIND_BPF:
            return None
        d = e.data
        return fn(d) if d.get("cmd") == ocsf_kernel.BPF_PROG_LOAD else None

    return get


def _prog_type(d: dict[str, Any]) -> str:
    t: int = d.get("prog_type", 0)
    return BPF_PROG_TYPE_NAMES[t] if 0 <= t < len(BPF_PROG_TYPE_NAMES) else str(t)


def _io_uring(op: int, fn: Callable[[dict[str, Any]], Any]) -> Callable[[Event], Any]:
    def get(e: Event) -> Any:
        if e.kind != KIND_IO_URING:
            return None
        d = e.data
        return fn(d) if d.get("op") == op else None

    return get


def _opcode(d: dict[str, Any]) -> str:
    n: int = d.get("opcode", 0)
    return IORING_OP_NAMES[n] if 0 <= n < len(IORING_OP_NAMES) else str(n)


_add(FieldSpec("memfd.name", "str", _memfd_name, _MEMFD, doc="memfd name"))
_add(FieldSpec("memfd.flags", "list[str]",
               lambda e: _flag_names(e.data.get("mfd_flags", 0), ocsf_memory.MFD_NAMES) if e.kind == KIND_MEMFD
               else None, _MEMFD, doc="MFD_* names"))
_add(FieldSpec("module.name", "str", lambda e: _tb(e.data.get("name")) if e.kind == KIND_MODULE else None,
               _MODULE, doc="module name or file"))
_add(FieldSpec("bpf.cmd", "str", lambda e: _event_op(e) if e.kind == KIND_BPF else None, _BPF, doc="bpf command"))
_add(FieldSpec("bpf.prog_type", "str", _bpf_prog(_prog_type), _BPF, doc="program type (prog_load)"))
_add(FieldSpec("bpf.insn_cnt", "int", _bpf_prog(lambda d: d.get("insn_cnt", 0)), _BPF,
               doc="instructions (prog_load)"))
_add(FieldSpec("io_uring.opcode", "str", _io_uring(ocsf_kernel.OP_IO_URING_SUBMIT, _opcode), _IO_URING,
               doc="IORING_OP_* name, lower case, without the prefix"))
_add(FieldSpec("io_uring.entries", "int", _io_uring(ocsf_kernel.OP_IO_URING_SETUP, lambda d: d.get("entries", 0)),
               _IO_URING, doc="setup: queue size"))


# ---------------------------------------------------------------- dns.*, netdet.*, flow.* (network inspector)

_DNS = frozenset({KIND_DNS})
_NETDET = frozenset({KIND_NETDET})
_FLOW = frozenset({KIND_FLOW})


def _dns(fn: Callable[[dict[str, Any]], Any]) -> Callable[[Event], Any]:
    """Getter over the stage's parse of the message (``data["parsed"]``, parse_dns(...).as_dict())."""
    def get(e: Event) -> Any:
        if e.kind != KIND_DNS:
            return None
        p = e.data.get("parsed")
        return fn(p) if isinstance(p, dict) and p.get("id") is not None else None

    return get


def _dns_question(key: str) -> Callable[[dict[str, Any]], str | None]:
    def get(p: dict[str, Any]) -> str | None:
        qs = p.get("questions")
        if not qs:
            return None
        v: str = qs[0][key]
        return v

    return get


def _dns_rcode(p: dict[str, Any]) -> str | None:
    return str(p.get("rcode")) if p.get("response") else None


def _dns_answers(p: dict[str, Any]) -> list[str] | None:
    if not p.get("response"):
        return None
    return [str(a["data"]) for a in p.get("answers") or ()]


def _dns_label_stat(key: str) -> Callable[[dict[str, Any]], Any]:
    def get(p: dict[str, Any]) -> Any:
        return p.get(key) if p.get("questions") else None

    return get


_add(FieldSpec("dns.query", "str", _dns(_dns_question("name")), _DNS, doc="first question's name"))
_add(FieldSpec("dns.query_type", "str", _dns(_dns_question("type")), _DNS, doc="first question's type"))
_add(FieldSpec("dns.domain", "str", _dns(_dns_label_stat("domain")), _DNS,
               doc="last two labels of dns.query, lower case"))
_add(FieldSpec("dns.response", "bool", _dns(lambda p: bool(p.get("response"))), _DNS, doc="QR bit"))
_add(FieldSpec("dns.rcode", "str", _dns(_dns_rcode), _DNS, doc="response code name (responses)"))
_add(FieldSpec("dns.answers", "list[str]", _dns(_dns_answers), _DNS, doc="answer data (responses)"))
_add(FieldSpec("dns.labels", "int", _dns(_dns_label_stat("labels")), _DNS, doc="labels of dns.query"))
_add(FieldSpec("dns.label_max", "int", _dns(_dns_label_stat("label_max")), _DNS, doc="longest label, bytes"))
_add(FieldSpec("dns.entropy", "float", _dns(_dns_label_stat("entropy")), _DNS,
               doc="entropy of the labels left of dns.domain, bits per byte"))


def _netdet(fn: Callable[[dict[str, Any]], Any]) -> Callable[[Event], Any]:
    def get(e: Event) -> Any:
        return fn(e.data) if e.kind == KIND_NETDET else None

    return get


def _netdet_ip(raw_key: str) -> Callable[[dict[str, Any]], str | None]:
    memo = "se_" + raw_key

    def get(d: dict[str, Any]) -> str | None:
        ip: str | None = d.get(memo)
        if ip is None:
            family = int(d.get("family", 0))
            if not family:  # the aggregate SYN flood has no source; its destination is still an address
                family = ocsf_ni.AF_INET6 if any(bytes(d.get(raw_key) or b"")[4:]) else ocsf_ni.AF_INET
            ip = ocsf_ni.address(family, d.get(raw_key) or b"") or ""
            d[memo] = ip
        return ip or None

    return get


_add(FieldSpec("netdet.kind", "str", _netdet(lambda d: ocsf_ni.detection_name(int(d.get("kind", 0)))), _NETDET,
               doc="syn_flood syn_flood_total port_scan icmp_flood"))
_add(FieldSpec("netdet.src_ip", "str", _netdet(_netdet_ip("saddr")), _NETDET, doc="the source"))
_add(FieldSpec("netdet.dst_ip", "str", _netdet(_netdet_ip("daddr")), _NETDET,
               doc="destination of the packet that crossed the threshold"))
_add(FieldSpec("netdet.count", "int", _netdet(lambda d: d.get("count")), _NETDET, doc="count in the window"))
_add(FieldSpec("netdet.port", "int", _netdet(lambda d: d.get("port") or None), _NETDET,
               doc="destination port of that packet"))
_add(FieldSpec("netdet.proto", "str", _netdet(lambda d: ocsf_ni.protocol_name(int(d.get("protocol", 0)))),
               _NETDET, doc="IP protocol of that packet"))


def _flow(fn: Callable[[dict[str, Any]], Any]) -> Callable[[Event], Any]:
    def get(e: Event) -> Any:
        return fn(e.data) if e.kind == KIND_FLOW else None

    return get


def _flow_ip(raw_key: str) -> Callable[[dict[str, Any]], str | None]:
    memo = "se_" + raw_key

    def get(d: dict[str, Any]) -> str | None:
        ip: str | None = d.get(memo)
        if ip is None:
            ip = ocsf_ni.address(int(d.get("family", 0)), d.get(raw_key) or b"") or ""
            d[memo] = ip
        return ip or None

    return get


def _flow_port(key: str) -> Callable[[dict[str, Any]], int | None]:
    def get(d: dict[str, Any]) -> int | None:
        if int(d.get("proto", 0)) not in ocsf_ni.PORT_PROTOS:
            return None  # ICMP keys hold the echo id and type/code there
        v: int = d.get(key, 0)
        return v or None

    return get


_add(FieldSpec("flow.local_ip", "str", _flow(_flow_ip("laddr")), _FLOW, doc="this host's address"))
_add(FieldSpec("flow.local_port", "int", _flow(_flow_port("lport")), _FLOW, doc="this host's port"))
_add(FieldSpec("flow.remote_ip", "str", _flow(_flow_ip("raddr")), _FLOW, doc="the peer's address"))
_add(FieldSpec("flow.remote_port", "int", _flow(_flow_port("rport")), _FLOW, doc="the peer's port"))
_add(FieldSpec("flow.proto", "str", _flow(lambda d: ocsf_ni.protocol_name(int(d.get("proto", 0)))), _FLOW,
               doc="IP protocol"))
_add(FieldSpec("flow.bytes_out", "int", _flow(lambda d: d.get("bytes_out")), _FLOW, doc="bytes sent by this host"))
_add(FieldSpec("flow.bytes_in", "int", _flow(lambda d: d.get("bytes_in")), _FLOW,
               doc="bytes received by this host"))
_add(FieldSpec("flow.community_id", "str", _flow(lambda d: d.get("community_id") or None), _FLOW,
               doc="Community ID"))
_add(FieldSpec("flow.state", "str", _flow(lambda d: d.get("state")), _FLOW, doc="active closed idle"))
_add(FieldSpec("flow.outbound", "bool", _flow(lambda d: int(d.get("initiator", 0)) == ocsf_ni.INIT_LOCAL), _FLOW,
               doc="this host initiated the flow"))

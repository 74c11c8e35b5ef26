"""fanotify permission events: the enforcement the BPF programs cannot decide race-free here.

What this part decides (the rest of a policy set is the kernel part's):

* ``ExecDeny.sha256``: ``FAN_OPEN_EXEC_PERM`` filesystem marks; the file is
  hashed through the event fd while the exec waits in the kernel, so the
  verdict is on the bytes that will run. A read lease is held from before
  the hash until shortly after the answer: nobody can open the file for
  writing meanwhile, and a file that is already open for writing cannot be
  vouched for (the policy hits with reason ``unverifiable``).
* ``ExecDeny.files`` (identity: hard links, symlinks, relative paths are the
  same inode) and ``ExecDeny.prefixes`` (the resolved path of the event fd):
  the opened file is the script itself for ``#!`` scripts, which the BPF exec
  hook cannot see (it only sees the interpreter). Identities get inode marks;
  prefixes get filesystem marks on the filesystems under them.
* ``FileDeny``: ``FAN_OPEN_PERM`` inode marks on the protected files (globs
  and ``dir/`` expanded at apply, on refresh and when a watched directory
  gets a matching name), so the open is refused before a byte is read and
  before ``O_TRUNC`` truncates. The event does not carry the opener's flags:
  the opener is blocked in its syscall, so they are read from
  ``/proc/TID/syscall`` (``open_how`` of openat2 from ``/proc/TID/mem``); when
  unknown, the open counts as read and write (fail closed) and the report says
  ``flags_known: False``.

Safety: PID 1, kernel threads, the agent and ``allow_identities`` are never
denied; an internal error while deciding allows the open and is counted and
reported; the time to answer is bounded (``answer_timeout``, hash size
limit); ``stop()`` and the death of the agent close the group, and the kernel
then lets every waiting process through (fanotify fails open). The reader
thread never opens a file carrying one of its own open-permission marks (it
would wait for itself).

Threads: one reader answers events and owns the marks it refreshes; one
emitter calls ``on_event`` (a slow consumer never delays an answer; a full
queue drops reports and counts them).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import fnmatch
import glob
import hashlib
import logging
import os
import platform
import queue
import re
import select
import signal
import stat
import struct
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

from sentinel_edge.enforce.identity import generation_of_fd
from sentinel_edge.enforce.model import (
    ACTION_AUDIT,
    ACTION_DENY,
    ACTION_NONE,
    KIND_EXEC,
    KIND_FILE,
    MECH_FANOTIFY,
    Enforcement,
    ExecDeny,
    FileDeny,
    FileIdentity,
    Policy,
    PolicySet,
    Scope,
)
from sentinel_edge.enrich.containers import Container, read_container
from sentinel_edge.errors import EnforceError

__all__ = ["DEFAULT_SKIP_FSTYPES", "FanotifyEnforcer", "opener_access"]

log = logging.getLogger(__name__)

# -- kernel ABI (include/uapi/linux/fanotify.h, inotify.h) -------------------------

FAN_CLOEXEC = 0x01
FAN_NONBLOCK = 0x02
FAN_CLASS_CONTENT = 0x04
FAN_UNLIMITED_QUEUE = 0x10      # a full queue would let permission events through unanswered
FAN_UNLIMITED_MARKS = 0x20
FAN_REPORT_TID = 0x100          # the event names the thread blocked in the syscall, whose args we read

FAN_MARK_ADD = 0x01
FAN_MARK_REMOVE = 0x02
FAN_MARK_FLUSH = 0x80
FAN_MARK_FILESYSTEM = 0x100

FAN_OPEN_PERM = 0x10000
FAN_OPEN_EXEC_PERM = 0x40000
FAN_Q_OVERFLOW = 0x4000

FAN_ALLOW = 0x01
FAN_DENY = 0x02
FAN_NOFD = -1
FANOTIFY_METADATA_VERSION = 3
_META = struct.Struct("IBBHQii")        # struct fanotify_event_metadata
_RESPONSE = struct.Struct("iI")         # struct fanotify_response {fd, response}

AT_FDCWD = -100
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
IN_CREATE = 0x100
IN_MOVED_TO = 0x80
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_ONLYDIR = 0x01000000
IN_Q_OVERFLOW = 0x4000
_INOTIFY_EVENT = struct.Struct("iIII")
_WATCH_MASK = IN_CREATE | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR

PF_KTHREAD = 0x00200000
_LEASE_SIGNAL = signal.SIGURG   # lease breaks signal the holder; SIGURG is ignored by default
_LEASE_HOLD_S = 0.05            # a lease outlives the answer by this, while the exec takes its write denial
_HASH_CHUNK = 1 << 20
_HASH_CACHE = 4096
_ERROR_REPORTS_PER_S = 20

# Filesystems that never hold executables, or whose reads go through a user-space
# server or the network (hashing could stall the answer; docs/enforcement-fanotify.md).
DEFAULT_SKIP_FSTYPES: frozenset[str] = frozenset({
    "proc", "sysfs", "cgroup", "cgroup2", "bpf", "tracefs", "debugfs", "securityfs", "pstore",
    "configfs", "fusectl", "mqueue", "devpts", "binfmt_misc", "efivarfs", "autofs", "rpc_pipefs",
    "nsfs", "selinuxfs", "hugetlbfs", "nfsd", "pipefs", "sockfs", "bdev", "anon_inodefs",
    "fuse", "fuseblk", "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "afs", "glusterfs",
    "virtiofs", "lustre", "davfs", "ncpfs", "coda",
})

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
_libc.fanotify_init.restype = ctypes.c_int
_libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
_libc.fanotify_mark.restype = ctypes.c_int
_libc.inotify_init1.argtypes = [ctypes.c_int]
_libc.inotify_init1.restype = ctypes.c_int
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_libc.inotify_add_watch.restype = ctypes.c_int
_libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.inotify_rm_watch.restype = ctypes.c_int

# -- the opener's flags ----------------------------------------------------------------

# syscall number -> (name, index of the flags argument; -1: creat (write); -2: openat2 (open_how *))
_OPEN_SYSCALLS: dict[str, dict[int, tuple[str, int]]] = {
    "x86_64": {2: ("open", 1), 257: ("openat", 2), 85: ("creat", -1), 437: ("openat2", -2),
               304: ("open_by_handle_at", 2), 59: ("execve", -3), 322: ("execveat", -3)},
    "aarch64": {56: ("openat", 2), 437: ("openat2", -2), 265: ("open_by_handle_at", 2),
                221: ("execve", -3), 281: ("execveat", -3)},
}
_X32_BIT = 0x40000000
_ACC_READ = frozenset({"read"})
_ACC_WRITE = frozenset({"write"})
_ACC_BOTH = frozenset({"read", "write"})


def access_of_flags(flags: int) -> frozenset[str]:
    """What an open with these flags does to an existing file: O_TRUNC writes even with O_RDONLY."""
    acc = flags & os.O_ACCMODE
    out: set[str] = set()
    if acc in (os.O_RDONLY, os.O_RDWR, os.O_ACCMODE):
        out.add("read")
    if acc in (os.O_WRONLY, os.O_RDWR, os.O_ACCMODE) or flags & os.O_TRUNC:
        out.add("write")
    return frozenset(out)


def access_name(access: frozenset[str]) -> str:
    return "read-write" if access == _ACC_BOTH else next(iter(access), "none")


@dataclass(frozen=True, slots=True)
class OpenerAccess:
    """How a blocked opener opens: ``access`` is read and write when the flags are not known."""

    access: frozenset[str]
    flags_known: bool
    flags: int | None = None
    syscall: str | None = None


def opener_access(tid: int, machine: str | None = None,
                  read_mem: Callable[[int, int, int], bytes | None] | None = None) -> OpenerAccess:
    """The access a thread blocked in an open syscall asked for (``/proc/TID/syscall``).

    Unknown (another syscall, io_uring, a 32-bit task, unreadable) counts as
    read and write: for a protected file, failing closed is the safe side.
    """
    table = _OPEN_SYSCALLS.get(machine or platform.machine(), {})
    raw = _read(f"/proc/{tid}/syscall")
    if raw is None:
        return OpenerAccess(_ACC_BOTH, False)
    parts = raw.split()
    try:
        nr = int(parts[0])
        args = [int(a, 16) for a in parts[1:7]]
    except (ValueError, IndexError):        # "running", or not in a syscall ("-1 sp pc")
        return OpenerAccess(_ACC_BOTH, False)
    if len(args) < 6:
        return OpenerAccess(_ACC_BOTH, False)
    entry = table.get(nr & ~_X32_BIT if machine in (None, "x86_64") else nr)
    if entry is None:
        return OpenerAccess(_ACC_BOTH, False)
    name, idx = entry
    if idx == -3:
        return OpenerAccess(_ACC_READ, True, None, name)
    if idx == -1:
        flags = os.O_CREAT | os.O_WRONLY | os.O_TRUNC
    elif idx == -2:
        how = (read_mem or _read_mem)(tid, args[2], 8)
        if how is None:
            return OpenerAccess(_ACC_BOTH, False, None, name)
        flags = struct.unpack("<Q", how)[0]
    else:
        flags = args[idx]
    return OpenerAccess(access_of_flags(flags), True, flags, name)


def _read_mem(tid: int, addr: int, size: int) -> bytes | None:
    try:
        fd = os.open(f"/proc/{tid}/mem", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.pread(fd, size, addr)
    except (OSError, OverflowError):
        return None
    finally:
        os.close(fd)
    return data if len(data) == size else None


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "backslashreplace")
    except OSError:
        return None


# -- processes ------------------------------------------------------------------------


@dataclass(slots=True)
class _Task:
    """The thread an event names, from ``/proc/TID/status``; the rest is read when a policy hits."""

    tid: int
    pid: int
    ppid: int
    uid: int
    euid: int
    comm: str
    kthread: bool
    container: Container | None = None
    container_read: bool = False
    parent_ident: FileIdentity | None = None
    parent_read: bool = False
    exe_ident: FileIdentity | None = None
    exe_read: bool = False


_STATUS_KEYS = frozenset({"Name", "Tgid", "PPid", "Uid", "Kthread"})


def _read_task(tid: int) -> _Task | None:
    raw = _read(f"/proc/{tid}/status")
    if raw is None:
        return None
    vals: dict[str, str] = {}
    for line in raw.splitlines():
        key, _, value = line.partition(":")
        if key in _STATUS_KEYS:
            vals[key] = value.strip()
            if key == "Kthread":        # the last one needed
                break
    try:
        uids = vals["Uid"].split()
        kthread = vals.get("Kthread")
        task = _Task(tid=tid, pid=int(vals["Tgid"]), ppid=int(vals["PPid"]), uid=int(uids[0]),
                     euid=int(uids[1]), comm=vals.get("Name", ""), kthread=kthread == "1")
    except (KeyError, ValueError, IndexError):
        return None
    if kthread is None:                     # kernels before the Kthread: line: the PF_KTHREAD flag
        st = _read(f"/proc/{tid}/stat")
        if st is not None:
            try:
                task.kthread = bool(int(st[st.rindex(")") + 2:].split()[6]) & PF_KTHREAD)
            except (ValueError, IndexError):
                pass
    return task


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def _start_ns(tid: int) -> int:
    st = _read(f"/proc/{tid}/stat")
    if st is None:
        return 0
    try:
        return int(st[st.rindex(")") + 2:].split()[19]) * (1_000_000_000 // os.sysconf("SC_CLK_TCK"))
    except (ValueError, IndexError):
        return 0


# -- mounts and identities ------------------------------------------------------------------

_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True, slots=True)
class _Mount:
    mnt_id: int
    dev: int            # superblock device (new_encode_dev)
    mountpoint: str
    fstype: str


def _mount_table(path: str) -> list[_Mount]:
    raw = _read(path)
    if raw is None:
        return []
    out = []
    for line in raw.splitlines():
        left, sep, right = line.partition(" - ")
        f = left.split(" ")
        if not sep or len(f) < 5:
            continue
        try:
            major, _, minor = f[2].partition(":")
            mp = _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), f[4])
            out.append(_Mount(int(f[0]), os.makedev(int(major), int(minor)), mp, right.split(" ", 1)[0]))
        except ValueError:
            continue
    return out


REMOTE_FSTYPES: frozenset[str] = frozenset({
    "fuse", "fuseblk", "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "afs", "glusterfs", "virtiofs",
    "lustre", "davfs", "ncpfs", "coda",
})


def is_remote(fstype: str) -> bool:
    """Reads and even stat() on these go to a user-space server or the network: the reader
    thread must not touch their files (a hung or hostile FUSE daemon would hang every answer)."""
    return fstype in REMOTE_FSTYPES or fstype.startswith("fuse.")


FileKey = tuple[int, int]   # (superblock dev, ino): how marks, rules and events are matched


@dataclass(frozen=True, slots=True)
class _Loc:
    """Where an open file lives, from /proc/self/fdinfo and mountinfo: no call into its filesystem."""

    dev: int
    ino: int
    fstype: str

    @property
    def key(self) -> FileKey:
        return (self.dev, self.ino)

    @property
    def local(self) -> bool:
        return not is_remote(self.fstype)


class _Devices:
    """The mount table of this mount namespace (and, on a miss, of the event process's)."""

    def __init__(self) -> None:
        self.table: list[_Mount] = []
        self._by_id: dict[int, _Mount] = {}

    def reload(self) -> None:
        table = _mount_table("/proc/self/mountinfo")
        self.table, self._by_id = table, {m.mnt_id: m for m in table}

    def mount(self, mnt_id: int, pid: int | None = None) -> _Mount | None:
        m = self._by_id.get(mnt_id)
        if m is None:
            self.reload()
            m = self._by_id.get(mnt_id)
        if m is None and pid:
            m = next((x for x in _mount_table(f"/proc/{pid}/mountinfo") if x.mnt_id == mnt_id), None)
        return m

    def locate(self, fd: int, pid: int | None = None) -> _Loc:
        raw = _read(f"/proc/self/fdinfo/{fd}") or ""
        mnt_id = ino = None
        for line in raw.splitlines():
            if line.startswith("mnt_id:"):
                mnt_id = int(line.split()[1])
            elif line.startswith("ino:"):
                ino = int(line.split()[1])
        m = None if mnt_id is None else self.mount(mnt_id, pid)
        if m is None:
            raise OSError(errno.ENOENT, f"mount {mnt_id} of fd {fd} not found")
        if ino is None:                 # kernels before 5.14 have no ino: in fdinfo
            ino = os.fstat(fd).st_ino if not is_remote(m.fstype) else 0
        return _Loc(m.dev, ino, m.fstype)

    def fstype_of(self, path: str) -> str:
        """The filesystem type of the deepest mount above ``path`` (this namespace's view)."""
        best = ""
        best_len = -1
        for m in self.table:
            mp = m.mountpoint.rstrip("/") + "/"
            if (path + "/").startswith(mp) and len(mp) > best_len:
                best, best_len = m.fstype, len(mp)
        return best


def _same(a: FileIdentity, b: FileIdentity) -> bool:
    """Same file: device and inode, and the generation where both sides know it."""
    return a.dev == b.dev and a.ino == b.ino and (a.gen is None or b.gen is None or a.gen == b.gen)


# -- the compiled policy set ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ScopeRule:
    users: frozenset[int]
    containers: str | tuple[str, ...]
    parents: tuple[FileIdentity, ...]
    everybody: bool


@dataclass(frozen=True, slots=True)
class _ExecRule:
    policy: Policy
    idents: dict[FileKey, FileIdentity]
    dirs: tuple[str, ...]           # prefixes ending in '/'
    wholes: frozenset[str]          # whole paths
    sha256: frozenset[str]
    scope: _ScopeRule


@dataclass(frozen=True, slots=True)
class _FileRule:
    policy: Policy
    access: frozenset[str]
    allow: tuple[FileIdentity, ...]
    scope: _ScopeRule


@dataclass(slots=True)
class _Compiled:
    exec_rules: tuple[_ExecRule, ...] = ()
    protected: dict[FileKey, tuple[_FileRule, ...]] = field(default_factory=dict)
    inode_marks: dict[FileKey, tuple[int, str]] = field(default_factory=dict)   # key -> (mask, path)
    fs_all: bool = False                    # sha256: every filesystem
    fs_prefixes: tuple[str, ...] = ()       # prefixes only: the filesystems under them
    watch: dict[str, tuple[str, ...]] = field(default_factory=dict)    # dir -> name patterns
    problems: tuple[str, ...] = ()

    @property
    def perm_keys(self) -> frozenset[FileKey]:
        return frozenset(k for k, (mask, _) in self.inode_marks.items() if mask & FAN_OPEN_PERM)

    @property
    def needs_fs(self) -> bool:
        return self.fs_all or bool(self.fs_prefixes)


_HEX64 = re.compile(r"[0-9a-f]{64}")


def _validate(pol: Policy) -> None:
    spec = pol.spec
    if isinstance(spec, ExecDeny):
        bad = [d for d in spec.sha256 if not _HEX64.fullmatch(d)]
        if bad:
            raise EnforceError(f"policy {pol.id}: sha256 {bad[0]!r} is not 64 lowercase hex digits")
        rel = [p for p in (*spec.files, *spec.prefixes) if not p.startswith("/")]
    elif isinstance(spec, FileDeny):
        rel = [p for p in (*spec.paths, *spec.allow) if not p.startswith("/")]
        if not spec.access or spec.access - _ACC_BOTH:
            raise EnforceError(f"policy {pol.id}: access must be read and/or write, not {sorted(spec.access)}")
    else:
        return
    rel += [p for p in pol.scope.parents if not p.startswith("/")]
    if rel:
        raise EnforceError(f"policy {pol.id}: path {rel[0]!r} is not absolute")


def _expand(pattern: str) -> list[str]:
    """The files a protected path names now: a glob, ``dir/`` (files directly in it) or one path."""
    if pattern.endswith("/"):
        pattern += "*"
    if glob.has_magic(pattern):
        return sorted(glob.glob(pattern, include_hidden=True))
    return [pattern]


def _watch_targets(pattern: str) -> list[tuple[str, str]]:
    """(directory, name pattern) pairs to watch so a protected file created or renamed in is marked."""
    if pattern.endswith("/"):
        pattern += "*"
    d, name = os.path.split(pattern)
    dirs = glob.glob(d, include_hidden=True) if glob.has_magic(d) else [d]
    return [(x, name) for x in dirs]


# -- the enforcer ----------------------------------------------------------------------------

_LIVE: weakref.WeakSet[FanotifyEnforcer] = weakref.WeakSet()


def _close_groups_in_child() -> None:
    """A child forked from the agent must not hold the group: blocked in an open before its
    exec, its reference would keep the group alive after the agent closed it (stop, crash),
    and nothing would answer it. (subprocess closes fds before exec; this covers os.fork.)"""
    for enf in list(_LIVE):
        enf._forget_fds_in_child()


os.register_at_fork(after_in_child=_close_groups_in_child)


class _Undecided(Exception):
    """Deciding failed: the event is allowed and the failure reported (naming the policy)."""

    def __init__(self, message: str, policy: Policy | None = None) -> None:
        super().__init__(message)
        self.policy = policy


@dataclass(slots=True)
class _Hit:
    policy: Policy
    reason: str


class FanotifyEnforcer:
    """Refuses execs and opens on fanotify permission events; see the module docstring.

    ``on_event`` is called (from an emitter thread) with one
    :class:`Enforcement` per policy an event hit (``deny`` in enforce mode,
    ``audit`` in audit mode), and with ``action none, ok False`` when a
    decision failed and the event was let through.
    """

    def __init__(self, on_event: Callable[[Enforcement], None], *, agent_pid: int | None = None,
                 allow_identities: Collection[FileIdentity] = (), answer_timeout: float = 1.0,
                 max_hash_bytes: int = 512 << 20, skip_fstypes: Collection[str] | None = None,
                 mounts: Collection[str] | None = None, report_queue: int = 4096) -> None:
        """``mounts``: only the filesystems of these paths get exec marks (None: every real
        filesystem, which is what enforcement needs; tests narrow it). ``skip_fstypes``
        replaces :data:`DEFAULT_SKIP_FSTYPES`."""
        self._on_event = on_event
        self._agent_pid = os.getpid() if agent_pid is None else agent_pid
        self._allow = tuple(allow_identities)
        self._answer_timeout = answer_timeout
        self._max_hash = max_hash_bytes
        self._skip = frozenset(DEFAULT_SKIP_FSTYPES if skip_fstypes is None else skip_fstypes)
        self._only_mounts = None if mounts is None else tuple(mounts)
        self._machine = platform.machine()
        self._devices = _Devices()

        self._policies = PolicySet()
        self._compiled = _Compiled()
        self._apply_lock = threading.Lock()     # one apply/refresh compiles at a time
        self._mark_lock = threading.RLock()     # marks, the guard, and the reader's guarded opens
        self._guard: frozenset[FileKey] = frozenset()   # inodes with our open-permission marks
        self._inode_marked: dict[FileKey, tuple[int, str]] = {}
        self._fs_marked: set[int] = set()
        self._watches: dict[int, tuple[str, tuple[str, ...]]] = {}      # wd -> (dir, name patterns)

        self._group = -1
        self._inotify = -1
        self._mountinfo = -1
        self._wake_r = self._wake_w = -1
        self._reader: threading.Thread | None = None
        self._emitter: threading.Thread | None = None
        self._reports: queue.Queue[Enforcement | None] = queue.Queue(maxsize=report_queue)
        self._leases: deque[tuple[float, int]] = deque()
        self._refresh_at: float | None = None
        self._fs_refresh_at: float | None = None
        self._kick = threading.Event()
        self._worker: threading.Thread | None = None
        self._worker_stop = threading.Event()
        self._slow_read: threading.Thread | None = None
        self._hash_cache: OrderedDict[tuple[int, ...], str] = OrderedDict()
        self._err_tokens = float(_ERROR_REPORTS_PER_S)
        self._err_time = time.monotonic()
        self._stats: dict[str, int] = dict.fromkeys((
            "events", "allowed", "denied", "hits", "audited", "errors", "exempt", "vanished", "hashed",
            "hash_cache_hits", "unverifiable", "reports", "reports_dropped", "errors_unreported",
            "callback_errors", "reply_errors", "refreshes", "marks_inode", "marks_fs", "mark_errors",
            "stale_marks", "answer_us_max", "answer_us_total", "overflows"), 0)

    # -- public API ------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._reader is not None and self._reader.is_alive()

    @property
    def problems(self) -> tuple[str, ...]:
        """What the last apply/refresh could not resolve (missing files); the rest is enforced."""
        return self._compiled.problems

    def stats(self) -> dict[str, int]:
        out = dict(self._stats)
        out["marks_inode"] = len(self._inode_marked)
        out["marks_fs"] = len(self._fs_marked)
        out["policies"] = len(self._compiled.exec_rules) + len({r.policy.id for rs in
                                                                self._compiled.protected.values() for r in rs})
        return out

    def apply(self, policies: PolicySet) -> None:
        """Switch to ``policies`` atomically: new marks are added, then decisions use the
        new set, then marks only the old set needed are removed. On EnforceError the
        previous set stays in force."""
        self._not_from_reader("apply")
        for pol in policies.policies:
            if pol.kind in (KIND_EXEC, KIND_FILE):
                _validate(pol)
        with self._apply_lock:
            compiled = self._compile(policies)
            with self._mark_lock:
                if self._group >= 0:
                    self._switch(compiled)
                else:
                    self._compiled = compiled
                self._policies = policies
        for p in compiled.problems:
            log.warning("fanotify enforcement: %s", p)

    def refresh(self) -> None:
        """Expand globs again, mark protected files that were replaced or created, resolve
        identities again and mark filesystems mounted since (all mount namespaces)."""
        self._not_from_reader("refresh")
        with self._apply_lock:
            compiled = self._compile(self._policies)
            with self._mark_lock:
                if self._group >= 0:
                    self._switch(compiled, other_namespaces=True)
                else:
                    self._compiled = compiled
                self._stats["refreshes"] += 1

    def start(self) -> None:
        """Create the fanotify group, place the marks of the applied set, start the threads."""
        if self._reader is not None:
            raise EnforceError("fanotify enforcer already started")
        flags = (FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK | FAN_UNLIMITED_QUEUE | FAN_UNLIMITED_MARKS
                 | FAN_REPORT_TID)
        fd = _libc.fanotify_init(flags, os.O_RDONLY | os.O_LARGEFILE | os.O_CLOEXEC)
        if fd < 0:
            e = ctypes.get_errno()
            raise EnforceError(f"fanotify_init: {os.strerror(e)}"
                               + (" (needs CAP_SYS_ADMIN)" if e == errno.EPERM else ""))
        self._group = fd
        _LIVE.add(self)
        try:
            self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
            self._inotify = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
            if self._inotify < 0:
                raise EnforceError(f"inotify_init1: {os.strerror(ctypes.get_errno())}")
            self._mountinfo = os.open("/proc/self/mountinfo", os.O_RDONLY | os.O_CLOEXEC)
            os.read(self._mountinfo, 1 << 20)
            self._devices.reload()
            self._reports = queue.Queue(maxsize=self._reports.maxsize)
            self._emitter = threading.Thread(target=self._emit_loop, args=(self._reports,), name="se-fanotify-emit",
                                             daemon=True)
            self._emitter.start()
            self._worker_stop = threading.Event()
            self._worker = threading.Thread(target=self._work_loop, args=(self._worker_stop,),
                                            name="se-fanotify-refresh", daemon=True)
            self._worker.start()
            reader = threading.Thread(target=self._read_loop, name="se-fanotify", daemon=True)
            self._reader = reader               # before start: the loop runs while it is the reader
            reader.start()
            with self._apply_lock:
                compiled = self._compile(self._policies)
                with self._mark_lock:
                    self._switch(compiled, other_namespaces=True)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 2.0) -> None:
        """Stop answering and close the group: the kernel allows whatever still waits.

        Prompt: the reader is woken through a pipe; if it is stuck in a decision
        longer than ``timeout``, the group is closed under it (its fd number is
        pointed at /dev/null so its late writes go nowhere).
        """
        reader, self._reader = self._reader, None
        worker, self._worker = self._worker, None
        self._worker_stop.set()
        self._kick.set()
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass
        if reader is not None:
            # the reader closes the group when it ends (so no fd number is closed twice)
            if reader is not threading.current_thread():
                reader.join(timeout)
            if reader.is_alive() and self._group >= 0:
                log.warning("fanotify reader stuck for %.1fs: closing the group under it", timeout)
                null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                os.dup2(null, self._group)      # the group file is released: what waits is allowed
                os.close(null)
                self._group = -1                # the number now holds /dev/null; the reader closes it
        elif self._group >= 0:
            os.close(self._group)
            self._group = -1
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout)
        emitter, self._emitter = self._emitter, None
        if emitter is not None:
            try:
                self._reports.put(None, timeout=timeout)    # after what is queued: reports are delivered
            except queue.Full:
                pass                                        # the callback is stuck; the thread is a daemon
            if emitter is not threading.current_thread():
                emitter.join(timeout)
        for fd in (self._inotify, self._mountinfo, self._wake_r, self._wake_w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._inotify = self._mountinfo = self._wake_r = self._wake_w = -1
        self._inode_marked.clear()
        self._fs_marked.clear()
        self._watches.clear()
        self._guard = frozenset()

    def __enter__(self) -> FanotifyEnforcer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _forget_fds_in_child(self) -> None:
        for fd in (self._group, self._inotify, self._mountinfo, self._wake_r, self._wake_w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._group = self._inotify = self._mountinfo = self._wake_r = self._wake_w = -1
        self._reader = self._emitter = self._worker = None

    def _not_from_reader(self, what: str) -> None:
        if self._reader is threading.current_thread():
            raise EnforceError(f"{what}() called from the fanotify reader thread (from on_event?): it would "
                               "wait for itself")

    # -- compile: policy set -> rules and wanted marks -------------------------------------

    def _identity(self, path: str, pid: int | None = None, *, wait: bool = True) -> tuple[FileKey, FileIdentity]:
        """Identity of the file a path names (symlinks followed). It never opens a file that
        carries our open-permission mark (the opener would wait for its own answer), and
        touches no file on a remote/FUSE filesystem (generation None there). ``wait=False``
        (the reader): when the mark lock is busy, the generation is left out rather than waited for."""
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        try:
            loc = self._devices.locate(fd, pid)
            gen = None
            if loc.local and stat.S_ISREG(os.fstat(fd).st_mode) and self._mark_lock.acquire(blocking=wait):
                try:
                    if loc.key not in self._guard:
                        rfd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY
                                      | os.O_CLOEXEC)
                        try:
                            gen = generation_of_fd(rfd)
                        finally:
                            os.close(rfd)
                finally:
                    self._mark_lock.release()
            real = _readlink(f"/proc/self/fd/{fd}") or path
            return loc.key, FileIdentity(loc.dev, loc.ino, gen, real)
        finally:
            os.close(fd)

    def _exe_identity(self, tid: int, pid: int) -> FileIdentity | None:
        """Identity of a process's executable, from the reader: None when it is gone, is a
        kernel thread, or lives on a remote/FUSE filesystem (then it is never allow-listed)."""
        exe = _readlink(f"/proc/{tid}/exe")
        if not exe or is_remote(self._devices.fstype_of(exe)):
            return None
        try:
            return self._identity(f"/proc/{tid}/exe", pid, wait=False)[1]
        except OSError:
            return None

    def _compile(self, policies: PolicySet) -> _Compiled:
        self._devices.reload()
        problems: list[str] = []
        out = _Compiled()
        exec_rules: list[_ExecRule] = []
        protected: dict[FileKey, list[_FileRule]] = {}
        marks: dict[FileKey, tuple[int, str]] = {}
        watch: dict[str, set[str]] = {}
        prefixes: list[str] = []

        def resolve(pol: Policy, paths: Iterable[str], what: str) -> list[tuple[FileKey, FileIdentity]]:
            got = []
            for p in paths:
                try:
                    got.append(self._identity(p))
                except OSError as exc:
                    problems.append(f"policy {pol.id}: {what} {p}: {exc.strerror}")
            return got

        def mark(key: FileKey, mask: int, path: str) -> None:
            old = marks.get(key)
            marks[key] = ((old[0] if old else 0) | mask, path)

        for pol in policies.policies:
            spec = pol.spec
            if pol.kind not in (KIND_EXEC, KIND_FILE):
                continue
            scope = self._scope(pol, pol.scope, resolve)
            if isinstance(spec, ExecDeny):
                idents = dict(resolve(pol, spec.files, "executable"))
                for key, ident in idents.items():
                    mark(key, FAN_OPEN_EXEC_PERM, ident.path)
                dirs = tuple(p for p in spec.prefixes if p.endswith("/"))
                wholes = frozenset(p for p in spec.prefixes if not p.endswith("/"))
                exec_rules.append(_ExecRule(pol, idents, dirs, wholes, frozenset(spec.sha256), scope))
                out.fs_all = out.fs_all or bool(spec.sha256)
                prefixes.extend(spec.prefixes)
            elif isinstance(spec, FileDeny):
                rule = _FileRule(pol, frozenset(spec.access),
                                 tuple(i for _, i in resolve(pol, spec.allow, "allowed executable")), scope)
                for pattern in spec.paths:
                    for d, name in _watch_targets(pattern):
                        watch.setdefault(d, set()).add(name)
                    found = _expand(pattern)
                    for p in found:
                        try:
                            if stat.S_ISDIR(os.stat(p).st_mode):
                                if p == pattern:
                                    problems.append(f"policy {pol.id}: protected path {p} is a directory")
                                continue
                            key, ident = self._identity(p)
                        except OSError as exc:
                            if p == pattern:
                                problems.append(f"policy {pol.id}: protected file {p}: {exc.strerror} "
                                                "(marked when it appears)")
                            continue
                        mark(key, FAN_OPEN_PERM, ident.path)
                        protected.setdefault(key, []).append(rule)
        out.exec_rules = tuple(exec_rules)
        out.protected = {k: tuple(v) for k, v in protected.items()}
        out.inode_marks = marks
        out.fs_prefixes = () if out.fs_all else tuple(sorted(set(prefixes)))
        out.watch = {d: tuple(sorted(n)) for d, n in watch.items()}
        out.problems = tuple(problems)
        return out

    def _scope(self, pol: Policy, scope: Scope,
               resolve: Callable[[Policy, Iterable[str], str], list[tuple[FileKey, FileIdentity]]]) -> _ScopeRule:
        parents = tuple(i for _, i in resolve(pol, scope.parents, "parent executable"))
        return _ScopeRule(frozenset(scope.users), scope.containers, parents, scope.everybody)

    # -- marks ------------------------------------------------------------------------

    def _fanotify_mark(self, flags: int, mask: int, path: str) -> None:
        if _libc.fanotify_mark(self._group, flags, mask, AT_FDCWD, os.fsencode(path)) < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e), path)

    def _mark_inode(self, flags: int, mask: int, key: FileKey, path: str) -> bool:
        """Add or remove mask bits on the inode ``key`` found at ``path``; False when the
        path names another inode now (replaced: a refresh takes the new one)."""
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            if self._devices.locate(fd).key != key:
                return False
            self._fanotify_mark(flags, mask, f"/proc/self/fd/{fd}")
            return True
        finally:
            os.close(fd)

    def _wanted_filesystems(self, compiled: _Compiled, other_namespaces: bool) -> dict[int, list[str]]:
        """superblock device -> paths that reach it, for the filesystems exec marks go on."""
        tables: list[tuple[str, list[_Mount]]] = [("", _mount_table("/proc/self/mountinfo"))]
        if other_namespaces and compiled.fs_all and self._only_mounts is None:
            tables += self._other_namespaces()
        only: set[int] | None = None
        if self._only_mounts is not None:
            only = set()
            for p in self._only_mounts:
                try:
                    only.add(self._identity(p)[1].dev)
                except OSError:
                    continue
        out: dict[int, list[str]] = {}
        for root, mounts in tables:
            for m in mounts:
                if m.fstype in self._skip or m.fstype.startswith("fuse."):
                    continue
                if only is not None and m.dev not in only:
                    continue
                if not compiled.fs_all and not root and not _under_prefixes(m, mounts, compiled.fs_prefixes):
                    continue
                out.setdefault(m.dev, []).append(root + m.mountpoint)
        return out

    @staticmethod
    def _other_namespaces() -> list[tuple[str, list[_Mount]]]:
        own = _readlink("/proc/self/ns/mnt")
        seen = {own}
        out = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            ns = _readlink(f"/proc/{name}/ns/mnt")
            if not ns or ns in seen:
                continue
            seen.add(ns)
            mounts = _mount_table(f"/proc/{name}/mountinfo")
            if mounts:
                out.append((f"/proc/{name}/root", mounts))
        return out

    def _mark_filesystems(self, compiled: _Compiled, other_namespaces: bool) -> None:
        """Exec marks on every wanted filesystem (adding is idempotent: a superblock whose
        device number was reused after an unmount is marked again)."""
        for dev, paths in self._wanted_filesystems(compiled, other_namespaces).items():
            last: OSError | None = None
            for path in paths:
                try:
                    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)     # a file bind mount is a mount too
                except OSError as exc:
                    last = exc
                    continue
                try:
                    pid = int(path.split("/")[2]) if path.startswith("/proc/") else None
                    if self._devices.locate(fd, pid).dev != dev:
                        continue        # over-mounted: this path reaches another filesystem
                    self._fanotify_mark(FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_OPEN_EXEC_PERM,
                                        f"/proc/self/fd/{fd}")
                    self._fs_marked.add(dev)
                    break
                except OSError as exc:
                    last = exc
                finally:
                    os.close(fd)
            else:
                if last is not None:
                    self._stats["mark_errors"] += 1
                    log.warning("fanotify: cannot mark filesystem %s: %s", paths[0], last.strerror)
                    if paths[0] == "/":
                        raise EnforceError(f"fanotify_mark of the root filesystem: {last.strerror}")

    def _switch(self, new: _Compiled, other_namespaces: bool = False) -> None:
        """Add the new marks, switch decisions, remove what only the old set needed (holds _mark_lock)."""
        old = self._compiled
        old_guard = self._guard
        self._guard = old_guard | new.perm_keys
        added: list[tuple[FileKey, int, str]] = []
        try:
            for key, (mask, path) in new.inode_marks.items():
                # added again even when the books say it is there: adding is idempotent, and a
                # file deleted and created again can have the same inode number (ext4 reuses them)
                have = self._inode_marked.get(key, (0, ""))[0]
                try:
                    ok = self._mark_inode(FAN_MARK_ADD, mask, key, path)
                except OSError as exc:
                    raise EnforceError(f"fanotify_mark of {path}: {exc.strerror}") from exc
                if ok:
                    added.append((key, mask & ~have, path))
                    self._inode_marked[key] = (have | mask, path)
                else:
                    self._refresh_soon()
            if new.needs_fs:
                self._mark_filesystems(new, other_namespaces)
        except EnforceError:
            for key, bits, path in added:
                try:
                    self._mark_inode(FAN_MARK_REMOVE, bits, key, path)
                except OSError:
                    pass
                left = self._inode_marked[key][0] & ~bits
                if left:
                    self._inode_marked[key] = (left, path)
                else:
                    del self._inode_marked[key]
            self._guard = old_guard
            raise
        self._compiled = new                    # from here on, decisions use the new set
        for key, (have, path) in list(self._inode_marked.items()):
            want = new.inode_marks.get(key, (0, ""))[0]
            extra = have & ~want
            if not extra:
                continue
            try:
                if not self._mark_inode(FAN_MARK_REMOVE, extra, key, path):
                    self._stats["stale_marks"] += 1     # moved away or gone: the kernel drops it with the inode
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    self._stats["mark_errors"] += 1
                    log.warning("fanotify: cannot unmark %s: %s", path, exc.strerror)
            if want:
                self._inode_marked[key] = (want, path)
            else:
                del self._inode_marked[key]
        if not new.needs_fs and (old.needs_fs or self._fs_marked):
            try:
                self._fanotify_mark(FAN_MARK_FLUSH | FAN_MARK_FILESYSTEM, 0, "/")
            except OSError as exc:
                self._stats["mark_errors"] += 1
                log.warning("fanotify: cannot remove filesystem marks: %s", exc.strerror)
            self._fs_marked = set()
        self._guard = new.perm_keys
        self._update_watches(new)

    def _update_watches(self, compiled: _Compiled) -> None:
        """Watch every directory again (adding is idempotent, and a directory deleted and made
        again needs a new watch), then drop the watches no longer wanted."""
        new: dict[int, tuple[str, tuple[str, ...]]] = {}
        for d, names in compiled.watch.items():
            wd = _libc.inotify_add_watch(self._inotify, os.fsencode(d), _WATCH_MASK)
            if wd >= 0:
                prev = new.get(wd)                  # the same directory through two paths
                new[wd] = (d, names if prev is None else tuple(sorted({*prev[1], *names})))
        for wd in self._watches.keys() - new.keys():
            _libc.inotify_rm_watch(self._inotify, wd)
        self._watches = new                         # one assignment: the reader sees old or new

    def _refresh_soon(self) -> None:
        if self._refresh_at is None:
            self._refresh_at = time.monotonic() + 0.05
            self._kick.set()

    # -- the worker: refreshes, off the reader (they walk paths that may be slow) ----------------

    def _work_loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            due = [t for t in (self._refresh_at, self._fs_refresh_at) if t is not None]
            wait = 1.0 if not due else min(due) - time.monotonic()
            if wait > 0:
                self._kick.wait(wait)
                self._kick.clear()
                continue
            try:
                self._refresh_due()
            except Exception:
                self._stats["errors"] += 1
                log.exception("fanotify refresh")
                stop.wait(0.1)

    def _refresh_due(self) -> None:
        now = time.monotonic()
        if self._refresh_at is not None and now >= self._refresh_at:
            self._refresh_at = None
            with self._apply_lock:
                compiled = self._compile(self._policies)
                with self._mark_lock:
                    if self._group >= 0:
                        try:
                            self._switch(compiled)
                            self._stats["refreshes"] += 1
                        except EnforceError as exc:
                            self._stats["mark_errors"] += 1
                            log.warning("fanotify refresh: %s", exc)
        if self._fs_refresh_at is not None and now >= self._fs_refresh_at:
            self._fs_refresh_at = None
            with self._mark_lock:
                if self._compiled.needs_fs and self._group >= 0:
                    try:
                        self._mark_filesystems(self._compiled, other_namespaces=False)
                    except EnforceError as exc:
                        log.warning("fanotify: %s", exc)

    def _read_mem_bounded(self, tid: int, addr: int, size: int) -> bytes | None:
        """/proc/TID/mem read in a helper thread, waited for at most 50 ms: the page may be
        backed by a file whose (FUSE) server never answers. While one such read is stuck,
        others are not tried (the flags count as unknown: fail closed)."""
        if self._slow_read is not None and self._slow_read.is_alive():
            return None
        box: list[bytes | None] = []
        t = threading.Thread(target=lambda: box.append(_read_mem(tid, addr, size)), name="se-fanotify-mem",
                             daemon=True)
        t.start()
        t.join(0.05)
        if t.is_alive():
            self._slow_read = t
            return None
        return box[0] if box else None

    # -- the reader ---------------------------------------------------------------------

    def _read_loop(self) -> None:
        group = self._group
        poller = select.poll()
        poller.register(group, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        poller.register(self._inotify, select.POLLIN)
        poller.register(self._mountinfo, select.POLLPRI | select.POLLERR)
        try:
            while True:
                now = time.monotonic()
                timeout = None if not self._leases else max(0, int((self._leases[0][0] - now) * 1000) + 1)
                try:
                    ready = dict(poller.poll(timeout))
                except InterruptedError:
                    continue
                if self._wake_r in ready or self._reader is not threading.current_thread():
                    return
                try:
                    if group in ready:
                        if not self._read_events(group):
                            return
                    if self._inotify in ready:
                        self._read_inotify()
                    if self._mountinfo in ready:
                        os.lseek(self._mountinfo, 0, os.SEEK_SET)
                        while os.read(self._mountinfo, 1 << 20):
                            pass
                        if self._compiled.needs_fs and self._fs_refresh_at is None:
                            self._fs_refresh_at = time.monotonic() + 0.02
                            self._kick.set()
                    self._release_leases()
                except Exception:
                    self._stats["errors"] += 1
                    log.exception("fanotify reader")
                    time.sleep(0.01)
        finally:
            self._release_leases(everything=True)
            if self._group == group:
                self._group = -1
            os.close(group)                 # closing the group allows whatever still waits

    def _read_inotify(self) -> None:
        try:
            buf = os.read(self._inotify, 65536)
        except BlockingIOError:
            return
        off = 0
        while off + _INOTIFY_EVENT.size <= len(buf):
            wd, mask, _, length = _INOTIFY_EVENT.unpack_from(buf, off)
            name = buf[off + 16:off + 16 + length].rstrip(b"\0").decode("utf-8", "surrogateescape")
            off += 16 + length
            patterns = self._watches.get(wd, ("", ()))[1]
            if mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_Q_OVERFLOW) or any(
                    fnmatch.fnmatchcase(name, p) for p in patterns):
                self._refresh_soon()

    def _release_leases(self, everything: bool = False) -> None:
        now = time.monotonic()
        while self._leases and (everything or self._leases[0][0] <= now):
            _, fd = self._leases.popleft()
            os.close(fd)

    def _read_events(self, group: int) -> bool:
        try:
            buf = os.read(group, 65536)
        except BlockingIOError:
            return True
        except OSError as exc:
            log.error("fanotify read: %s", exc)
            return False
        if not buf:                         # the group was closed under us (stop() of a stuck reader)
            return False
        now_ns = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        off = 0
        while off + _META.size <= len(buf):
            length, vers, _, _, mask, fd, tid = _META.unpack_from(buf, off)
            if vers != FANOTIFY_METADATA_VERSION or length < _META.size:
                log.error("fanotify metadata version %d (expected %d): closing the group (fail open)",
                          vers, FANOTIFY_METADATA_VERSION)
                return False
            off += length
            if fd == FAN_NOFD:
                self._stats["overflows"] += 1
                continue
            try:
                self._handle(group, mask, fd, tid, now_ns)
            except Exception:           # the answer must go out whatever failed
                self._stats["errors"] += 1
                log.exception("fanotify event handling")
                try:
                    os.write(group, _RESPONSE.pack(fd, FAN_ALLOW))
                    os.close(fd)
                except OSError:
                    pass
        return True

    def _handle(self, group: int, mask: int, fd: int, tid: int, now_ns: int) -> None:
        t0 = time.monotonic()
        self._stats["events"] += 1
        deny = False
        out: list[Enforcement] = []
        keep_fd = False
        try:
            deny, out, keep_fd = self._decide(mask, fd, tid, now_ns, t0 + self._answer_timeout)
        except _Undecided as exc:       # never let an error hold the opener: allow and report
            self._stats["errors"] += 1
            out = [self._error_for_event(exc.policy, str(exc), fd, tid, now_ns)]
        except Exception as exc:
            self._stats["errors"] += 1
            out = [self._error_for_event(None, f"{type(exc).__name__}: {exc}", fd, tid, now_ns)]
            log.debug("fanotify decision failed", exc_info=True)
        try:
            os.write(group, _RESPONSE.pack(fd, FAN_DENY if deny else FAN_ALLOW))
        except OSError as exc:
            self._stats["reply_errors"] += 1
            for e in out:
                e.ok = False
                e.error = f"reply failed: {exc.strerror}"
        if keep_fd:
            self._leases.append((time.monotonic() + _LEASE_HOLD_S, fd))
        else:
            os.close(fd)
        self._stats["denied" if deny else "allowed"] += 1
        took = int((time.monotonic() - t0) * 1e6)
        self._stats["answer_us_total"] += took
        if took > self._stats["answer_us_max"]:
            self._stats["answer_us_max"] = took
        for e in out:
            self._queue(e)

    # -- deciding --------------------------------------------------------------------------

    def _decide(self, mask: int, fd: int, tid: int, now_ns: int,
                deadline: float) -> tuple[bool, list[Enforcement], bool]:
        """(deny, reports, keep the fd for its lease) for one event.

        The file is matched first (path, identity, hash): most events match no
        rule, and for them nothing about the process is read."""
        comp = self._compiled           # one set for the whole decision
        loc = self._devices.locate(fd, tid)
        path = self._fd_path(fd)
        data: dict[str, object] = {}
        keep = False
        failed: list[Policy] = []
        failure: _Undecided | None = None
        if mask & FAN_OPEN_EXEC_PERM:
            cands, need_hash, failure, keep = self._match_exec(comp, fd, loc, path, data, deadline)
            data.update(access="exec", flags_known=True)
        elif mask & FAN_OPEN_PERM:
            cands = [(r.policy, "protected", r.scope) for r in comp.protected.get(loc.key, ())]
            need_hash = []
        else:
            return False, [], False
        if not cands and failure is None:
            return False, [], keep
        task = _read_task(tid) if tid > 0 else None
        if task is None:
            if tid > 0 and not os.path.exists(f"/proc/{tid}"):
                self._stats["vanished"] += 1            # killed while waiting: nothing to protect
                return False, [], keep
            raise _Undecided(f"cannot read /proc/{tid}/status", cands[0][0] if cands else None)
        if task.pid in (1, self._agent_pid) or task.kthread:
            self._stats["exempt"] += 1
            return False, [], keep
        hits: list[_Hit] = []
        if mask & FAN_OPEN_EXEC_PERM:
            hits = [_Hit(pol, reason) for pol, reason, scope in cands if self._in_scope(scope, task)]
            if failure is not None:
                failed = [r.policy for r in need_hash if self._in_scope(r.scope, task)]
        else:
            how = opener_access(tid, self._machine, self._read_mem_bounded)
            for rule in comp.protected.get(loc.key, ()):
                if not (how.access & rule.access) or not self._in_scope(rule.scope, task):
                    continue
                if rule.allow and self._exe_allowed(task, rule.allow):
                    continue
                hits.append(_Hit(rule.policy, "protected"))
            data.update(access=access_name(how.access), flags_known=how.flags_known, flags=how.flags,
                        syscall=how.syscall)
        if not hits and not failed:
            return False, [], keep
        if self._allow and self._exe_allowed(task, self._allow):
            self._stats["exempt"] += 1
            return False, [], keep
        data["identity"] = {"dev": loc.dev, "ino": loc.ino, "gen": generation_of_fd(fd) if loc.local else None}
        proc = self._proc(task)
        deny = False
        out = []
        for hit in hits:
            enforce = hit.policy.mode == "enforce"
            deny = deny or enforce
            self._stats["hits"] += 1
            if not enforce:
                self._stats["audited"] += 1
            if hit.reason == "unverifiable":
                self._stats["unverifiable"] += 1
            out.append(Enforcement(
                policy_id=hit.policy.id, mode=hit.policy.mode, action=ACTION_DENY if enforce else ACTION_AUDIT,
                mechanism=MECH_FANOTIFY, target=path, ok=True, error=None, time_ns=now_ns, proc=dict(proc),
                data={**data, "reason": hit.reason}))
        if failed and failure is not None:
            self._stats["errors"] += 1
            out.append(self._error_report(failed[0], str(failure), path, proc, now_ns))
        return deny, out, keep

    @staticmethod
    def _fd_path(fd: int) -> str:
        path = _readlink(f"/proc/self/fd/{fd}")
        return path[:-len(" (deleted)")] if path.endswith(" (deleted)") else path

    def _match_exec(self, comp: _Compiled, fd: int, loc: _Loc, path: str, data: dict[str, object],
                    deadline: float) -> tuple[list[tuple[Policy, str, _ScopeRule]], list[_ExecRule],
                                              _Undecided | None, bool]:
        """The exec rules the file matches, before looking at who runs it: (candidates with
        reason and scope, rules that needed the hash, why hashing failed, lease taken)."""
        cands: list[tuple[Policy, str, _ScopeRule]] = []
        need_hash: list[_ExecRule] = []
        gen: int | None = -1
        for rule in comp.exec_rules:
            ident = rule.idents.get(loc.key)
            if ident is not None:
                if gen == -1:
                    gen = generation_of_fd(fd) if loc.local else None
                if ident.gen is None or gen is None or ident.gen == gen:
                    cands.append((rule.policy, "identity", rule.scope))
                    continue
            if path in rule.wholes or path.startswith(rule.dirs):
                cands.append((rule.policy, "prefix", rule.scope))
            elif rule.sha256:
                need_hash.append(rule)
        if not need_hash:
            return cands, need_hash, None, False
        if not loc.local:
            return cands, need_hash, _Undecided(f"not hashed: on a {loc.fstype} filesystem"), False
        stable = _take_lease(fd)
        try:
            digest = self._sha256(fd, deadline)
        except _Undecided as exc:
            return cands, need_hash, exc, True
        except OSError as exc:
            return cands, need_hash, _Undecided(f"hashing failed: {exc.strerror}"), True
        data["sha256"] = digest
        if not stable:
            data["content_stable"] = False
        for rule in need_hash:
            if digest in rule.sha256:
                cands.append((rule.policy, "sha256", rule.scope))
            elif not stable:
                cands.append((rule.policy, "unverifiable", rule.scope))
        return cands, need_hash, None, True

    def _sha256(self, fd: int, deadline: float) -> str:
        st = os.fstat(fd)           # after the lease: the content cannot change from here
        ckey = (st.st_dev, st.st_ino, generation_of_fd(fd) or 0, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        hit = self._hash_cache.get(ckey)
        if hit is not None:
            self._hash_cache.move_to_end(ckey)
            self._stats["hash_cache_hits"] += 1
            return hit
        if st.st_size > self._max_hash:
            raise _Undecided(f"not hashed: {st.st_size} bytes is over the {self._max_hash}-byte limit")
        h = hashlib.sha256()
        pos = 0
        while True:
            chunk = os.pread(fd, _HASH_CHUNK, pos)
            if not chunk:
                break
            h.update(chunk)
            pos += len(chunk)
            if time.monotonic() > deadline:
                raise _Undecided(f"not hashed within {self._answer_timeout}s ({pos} bytes read)")
        digest = h.hexdigest()
        self._stats["hashed"] += 1
        self._hash_cache[ckey] = digest
        if len(self._hash_cache) > _HASH_CACHE:
            self._hash_cache.popitem(last=False)
        return digest

    def _in_scope(self, scope: _ScopeRule, task: _Task) -> bool:
        if scope.everybody:
            return True
        if scope.users and task.uid not in scope.users and task.euid not in scope.users:
            return False
        if scope.containers != "any":
            if not task.container_read:
                task.container = read_container(task.pid)
                task.container_read = True
            c = task.container
            if scope.containers == "host":
                if c is not None:
                    return False
            elif scope.containers == "containers":
                if c is None:
                    return False
            elif c is None or not any(c.id.startswith(cid) for cid in scope.containers):
                return False
        if scope.parents:
            if not task.parent_read:
                task.parent_read = True
                task.parent_ident = self._exe_identity(task.ppid, task.ppid)
            p = task.parent_ident
            if p is None or not any(_same(p, a) for a in scope.parents):
                return False
        return True

    def _exe_allowed(self, task: _Task, allow: tuple[FileIdentity, ...]) -> bool:
        if not task.exe_read:
            task.exe_read = True
            task.exe_ident = self._exe_identity(task.tid, task.pid)
        exe = task.exe_ident
        return exe is not None and any(_same(exe, a) for a in allow)

    def _proc(self, task: _Task) -> dict[str, object]:
        if not task.container_read:
            task.container = read_container(task.pid)
            task.container_read = True
        return {"pid": task.pid, "tid": task.tid, "ppid": task.ppid, "uid": task.uid, "euid": task.euid,
                "comm": task.comm, "exe": _readlink(f"/proc/{task.tid}/exe"), "start_ns": _start_ns(task.pid),
                "container": task.container.id if task.container is not None else None}

    # -- reports ------------------------------------------------------------------------

    def _error_report(self, policy: Policy | None, message: str, target: str, proc: dict[str, object],
                      now_ns: int) -> Enforcement:
        log.warning("fanotify: decision failed (allowed): %s", message)
        return Enforcement(
            policy_id=policy.id if policy is not None else "", mode=policy.mode if policy is not None else "enforce",
            action=ACTION_NONE, mechanism=MECH_FANOTIFY, target=target, ok=False,
            error=f"{message}; allowed (fail open)", time_ns=now_ns, proc=proc, data={"internal_error": True})

    def _error_for_event(self, policy: Policy | None, message: str, fd: int, tid: int,
                         now_ns: int) -> Enforcement:
        task = _read_task(tid) if tid > 0 else None
        proc: dict[str, object] = self._proc(task) if task is not None else {"pid": 0, "tid": tid}
        return self._error_report(policy, message, self._fd_path(fd), proc, now_ns)

    def _queue(self, e: Enforcement) -> None:
        if not e.ok and e.action == ACTION_NONE:
            now = time.monotonic()
            self._err_tokens = min(_ERROR_REPORTS_PER_S, self._err_tokens + (now - self._err_time)
                                   * _ERROR_REPORTS_PER_S)
            self._err_time = now
            if self._err_tokens < 1:
                self._stats["errors_unreported"] += 1
                return
            self._err_tokens -= 1
        try:
            self._reports.put_nowait(e)
            self._stats["reports"] += 1
        except queue.Full:
            self._stats["reports_dropped"] += 1

    def _emit_loop(self, reports: queue.Queue[Enforcement | None]) -> None:
        while True:
            e = reports.get()
            if e is None:
                return
            try:
                self._on_event(e)
            except Exception:
                self._stats["callback_errors"] += 1
                log.exception("fanotify on_event callback")


def _take_lease(fd: int) -> bool:
    """A read lease on the file being executed: True when nobody has it open for writing
    (and nobody can open it for writing while the lease is held)."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETSIG, _LEASE_SIGNAL)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as exc:
        return exc.errno != errno.EAGAIN    # EAGAIN: open for writing; other errors: no leases here
    return True


def _under_prefixes(m: _Mount, mounts: list[_Mount], prefixes: tuple[str, ...]) -> bool:
    """Whether a mount can hold files under one of the prefixes: it is mounted under one,
    or it is the deepest mount above one."""
    mp = m.mountpoint.rstrip("/") + "/"
    for p in prefixes:
        d = p if p.endswith("/") else os.path.dirname(p) + "/"
        if mp.startswith(d):
            return True
        if d.startswith(mp):
            deeper = [o for o in mounts if len(o.mountpoint) > len(m.mountpoint)
                      and d.startswith(o.mountpoint.rstrip("/") + "/")]
            if not deeper:
                return True
    return False

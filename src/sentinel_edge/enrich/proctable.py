"""The process table: who every event's process is, its parent and its ancestry.

Identity
    A process is named by ``(pid, start_ns)``: its tgid and the boot-time ns
    at which its thread group leader started (``task->group_leader->
    start_boottime``, what the sensors put in ``se_proc.start_ns``). A new
    process reusing a pid has another ``start_ns``, so it is another entry.
    The table is per process: thread events carry the tgid in ``proc.pid``.

Images and exec_id
    Each process runs one *image* at a time; an exec replaces it. Every image
    has an ``exec_id``, unique per host and per exec, immune to PID reuse
    (:func:`exec_id`): a 128-bit BLAKE2b digest, base64url without padding
    (22 characters), of

    * ``boot_id:pid:start_tick`` for the image a process runs since it
      started (forked child, or a process found in ``/proc`` or first met
      through a non-exec event). ``start_tick`` is ``start_ns`` in USER_HZ
      ticks (10 ms), the resolution ``/proc/PID/stat`` gives, so the same
      process gets the same id whether it was seeded from ``/proc``, created
      by its fork event, or found lazily - in this agent run or the next;
    * ``boot_id:pid:start_ns:exec_ts_ns`` for the image installed by an exec
      seen at ``exec_ts_ns`` (the exec event's kernel timestamp).

    ``boot_id`` is the kernel's random per-boot UUID: ids never collide across
    hosts or reboots. Two processes could only share ``(pid, start_tick)`` if
    the kernel handed out the same pid twice within 10 ms, which needs the
    whole pid space to wrap in that time.

    ``parent_exec_id`` is the ``exec_id`` of the parent's current image when
    the image was created (fork: the forking process; exec: ``proc.ppid`` at
    the exec). ``event.parent`` and ``event.ancestry`` follow those links, so
    lineage is the one at creation time, like Tetragon's, even after the
    parent exits and the process is reparented.

/proc precision
    ``/proc/PID/stat`` field 22 is ``start_boottime`` in USER_HZ ticks,
    floored; the sensors report it in ns. Entries seeded from ``/proc`` are
    flagged *approximate* and match an event's ``start_ns`` when both fall in
    the same tick; the first such event makes the entry exact.

Lifetime
    An exit marks the process exited; it stays for ``exit_grace_s`` of kernel
    time (measured on event timestamps) so late events - from other ring
    buffers, drained after the exit - still find it. The table holds at most
    ``max_processes`` entries: when full, the oldest exited entries go first,
    then entries whose process is found dead in ``/proc`` (an exit event was
    lost), then, as a last resort, the oldest entry.

What is and is not followed
    fork, exec, exit and comm events update the table; credentials are taken
    from every event (the last seen ``uid``/``euid``/``gid``); a change of
    ``cgroup_id`` makes the container be read again. ``chdir`` is not
    followed: ``cwd`` is the one at exec (or when read from ``/proc``).
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any

from sentinel_edge.enrich.containers import Container, read_container
from sentinel_edge.enrich.users import UserNames
from sentinel_edge.errors import ConfigError
from sentinel_edge.model import KIND_COMM, KIND_EXEC, KIND_EXIT, KIND_FORK, Event, ProcessInfo
from sentinel_edge.output.ocsf.process import (
    EXEC_EXE_DELETED,
    EXEC_FLAGS,
    EXEC_SETGID,
    EXEC_SETUID,
    FD_KINDS,
    fd_kind_name,
)

USER_HZ = os.sysconf("SC_CLK_TCK")
TICK_NS = 1_000_000_000 // USER_HZ
UNSET_ID = 0xFFFFFFFF
_REAP_SCAN = 256  # entries checked in /proc per overflow when no exited entry is left
_LAZY_DEPTH = 256  # ancestors read from /proc for one unknown process (a real tree is shallower)


def text(raw: bytes) -> str:
    """Kernel bytes as text; invalid UTF-8 becomes ``\\xNN`` escapes."""
    return raw.decode("utf-8", "backslashreplace")


def split_nul(raw: bytes) -> list[str]:
    """NUL-separated strings (argv, /proc/PID/cmdline) as a list; one trailing NUL ignored."""
    if not raw:
        return []
    if raw.endswith(b"\0"):
        raw = raw[:-1]
    return [text(s) for s in raw.split(b"\0")]


def exec_id(boot_id: str, pid: int, start_ns: int, exec_ts_ns: int | None = None, *,
            tick_ns: int = TICK_NS) -> str:
    """The exec_id of an image; see the module docstring for what goes in."""
    if exec_ts_ns is None:
        material = f"{boot_id}:{pid}:{start_ns // tick_ns}"
    else:
        material = f"{boot_id}:{pid}:{start_ns}:{exec_ts_ns}"
    digest = hashlib.blake2b(material.encode(), digest_size=16).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(slots=True)
class ProcSnapshot:
    """What ``/proc/PID`` says about a live process."""

    pid: int
    ppid: int
    start_ticks: int
    comm: str
    exe: str | None
    cmdline: list[str] | None
    cwd: str | None
    uid: int | None
    euid: int | None
    gid: int | None
    egid: int | None
    loginuid: int | None
    container: Container | None
    fds: tuple[str, str, str] | None = None  # kinds of fds 0-2, as the exec sensor names them
    ld_preload: str | None = None
    ld_library_path: str | None = None
    environ_read: bool = False  # /proc/PID/environ was readable (the ld_* values are known)


# what the exec sensor reports for fds 0-2 (enum se_fd_kind), also for processes read from /proc
FD_NONE, FD_TTY, FD_PIPE, FD_SOCKET, FD_FILE, FD_CHAR, FD_OTHER = (FD_KINDS[i] for i in range(7))
_TTY_MAJORS = frozenset({4, 5, *range(136, 144)})  # tty/vc, /dev/tty + ptmx, unix98 pts (as the sensor)
EXEC_EXE_MEMFD = next(bit for bit, name in EXEC_FLAGS if name == "exe_memfd")
_DELETED_SUFFIX = " (deleted)"  # what the kernel appends to the link of an unlinked exe


def fd_kind(path: str) -> str:
    """Kind of the open file a /proc/PID/fd/N link names, classified like the exec sensor does."""
    try:
        st = os.stat(path)
    except OSError:
        return FD_NONE
    mode = st.st_mode
    if stat.S_ISFIFO(mode):
        return FD_PIPE
    if stat.S_ISSOCK(mode):
        return FD_SOCKET
    if stat.S_ISREG(mode):
        return FD_FILE
    if stat.S_ISCHR(mode):
        return FD_TTY if os.major(st.st_rdev) in _TTY_MAJORS else FD_CHAR
    return FD_OTHER


def _env_values(raw: bytes) -> tuple[str | None, str | None]:
    """(LD_PRELOAD, LD_LIBRARY_PATH) of a NUL-separated environment block."""
    preload = libpath = None
    for item in raw.split(b"\0"):
        if item.startswith(b"LD_PRELOAD="):
            preload = text(item[11:])
        elif item.startswith(b"LD_LIBRARY_PATH="):
            libpath = text(item[16:])
    return preload, libpath


def _read_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _readlink(path: str) -> str | None:
    try:
        return text(os.readlink(path.encode()))
    except OSError:
        return None


def _parse_stat(raw: bytes) -> tuple[str, int, int]:
    """(comm, ppid, starttime ticks) from /proc/PID/stat; comm may hold ')' and spaces."""
    lpar = raw.index(b"(")
    rpar = raw.rindex(b")")
    rest = raw[rpar + 2:].split()
    # rest[0] is field 3 (state): field n is rest[n - 3]
    return text(raw[lpar + 1:rpar]), int(rest[1]), int(rest[19])


def read_stat(pid: int, proc_root: str = "/proc") -> tuple[str, int, int] | None:
    """(comm, ppid, start ticks) of a live process, ``None`` when it is gone."""
    raw = _read_bytes(f"{proc_root}/{pid}/stat")
    if raw is None:
        return None
    try:
        return _parse_stat(raw)
    except (ValueError, IndexError):
        return None


def read_proc(pid: int, proc_root: str = "/proc") -> ProcSnapshot | None:
    """Everything ``/proc/PID`` tells about a process, ``None`` if it is gone.

    ``stat`` is read first and last: a process that died (or whose pid was
    reused) in between gives ``None`` rather than a mix of two processes.
    Fields the reader may not see (``exe``/``cwd`` of other users' processes
    when not root, kernel threads' ``exe``) are ``None``.
    """
    base = f"{proc_root}/{pid}"
    first = read_stat(pid, proc_root)
    if first is None:
        return None
    comm, ppid, start_ticks = first
    uid = euid = gid = egid = None
    status = _read_bytes(f"{base}/status")
    if status is not None:
        for line in status.split(b"\n"):
            if line.startswith(b"Uid:"):
                ids = line.split()
                uid, euid = int(ids[1]), int(ids[2])
            elif line.startswith(b"Gid:"):
                ids = line.split()
                gid, egid = int(ids[1]), int(ids[2])
                break
    loginuid = None
    raw_login = _read_bytes(f"{base}/loginuid")
    if raw_login is not None and raw_login.strip().isdigit():
        loginuid = int(raw_login)
    raw_cmdline = _read_bytes(f"{base}/cmdline")
    environ = _read_bytes(f"{base}/environ")
    preload, libpath = (None, None) if environ is None else _env_values(environ)
    fds = (fd_kind(f"{base}/fd/0"), fd_kind(f"{base}/fd/1"), fd_kind(f"{base}/fd/2")) \
        if os.path.isdir(f"{base}/fd") else None
    snap = ProcSnapshot(
        pid=pid,
        ppid=ppid,
        start_ticks=start_ticks,
        comm=comm,
        exe=_readlink(f"{base}/exe"),
        cmdline=None if raw_cmdline is None else (split_nul(raw_cmdline) or None),
        cwd=_readlink(f"{base}/cwd"),
        uid=uid,
        euid=euid,
        gid=gid,
        egid=egid,
        loginuid=loginuid,
        container=read_container(pid, proc_root),
        fds=fds,
        ld_preload=preload,
        ld_library_path=libpath,
        environ_read=environ is not None,
    )
    last = read_stat(pid, proc_root)
    if last is None or last[2] != start_ticks:
        return None
    return snap


class _Image:
    """One image of a process: its ProcessInfo (replaced, never mutated) and its parent image."""

    __slots__ = ("ancestry", "info", "parent")

    def __init__(self, info: ProcessInfo, parent: _Image | None) -> None:
        self.info = info
        self.parent = parent
        self.ancestry: list[ProcessInfo] | None = None  # the last ancestry_of() list, see there


class _Proc:
    """One process (pid, start_ns): its current image, the one before the last exec."""

    __slots__ = ("approx", "cgroup_id", "container", "evicted", "exited_ns", "image", "older",
                 "pid", "prev", "start_ns")

    def __init__(self, pid: int, start_ns: int, image: _Image, *, approx: bool = False,
                 container: Container | None = None, cgroup_id: int | None = None) -> None:
        self.pid = pid
        self.start_ns = start_ns
        self.approx = approx  # start_ns known only to the tick (seeded from /proc)
        self.image = image
        self.prev: _Image | None = None
        self.older: _Proc | None = None  # an earlier process with the same pid
        self.exited_ns: int | None = None
        self.evicted = False
        self.container = container
        self.cgroup_id = cgroup_id


class ProcessTable:
    """Processes by ``(pid, start_ns)``, kept up to date by process events.

    :meth:`resolve` is the one entry point for events: it applies fork, exec,
    exit and comm events and returns the image of the event's calling process
    (for an exec, the new image). :meth:`get`, :meth:`parent` and
    :meth:`ancestry` are read-only lookups for tests and other stages.
    """

    def __init__(
        self,
        *,
        boot_id: str,
        users: UserNames | None = None,
        ancestry_depth: int = 8,
        exit_grace_s: float = 30.0,
        max_processes: int = 65536,
        proc_root: str = "/proc",
        tick_ns: int = TICK_NS,
    ) -> None:
        if ancestry_depth < 0:
            raise ConfigError(f"ancestry_depth must be >= 0, got {ancestry_depth}")
        if exit_grace_s < 0:
            raise ConfigError(f"exit_grace_s must be >= 0, got {exit_grace_s}")
        if max_processes < 1:
            raise ConfigError(f"max_processes must be >= 1, got {max_processes}")
        self.boot_id = boot_id
        self.users = users if users is not None else UserNames()
        self.ancestry_depth = ancestry_depth
        self.exit_grace_ns = int(exit_grace_s * 1e9)
        self.max_processes = max_processes
        self.proc_root = proc_root
        self.tick_ns = tick_ns
        self._by_pid: dict[int, _Proc] = {}  # newest process of each pid; older ones chained
        self._all: dict[_Proc, None] = {}  # every entry, oldest inserted first
        self._exited: deque[tuple[int, _Proc]] = deque()  # (exit ts, entry), exit order
        self._now_ns = 0  # newest event timestamp seen
        self.evictions = 0
        self.proc_reads = 0  # lazy /proc lookups (misses), for telemetry

    # ---- lookups ---------------------------------------------------------

    def __len__(self) -> int:
        return len(self._all)

    def __iter__(self) -> Iterator[ProcessInfo]:
        """Current images of every entry."""
        return (r.image.info for r in list(self._all))

    def _find(self, pid: int, start_ns: int) -> _Proc | None:
        """The entry of process (pid, exact start_ns); upgrades a matching approximate entry."""
        r = self._by_pid.get(pid)
        while r is not None:
            if r.start_ns == start_ns:
                return r
            if r.approx and start_ns // self.tick_ns == r.start_ns // self.tick_ns:
                r.approx = False
                r.start_ns = start_ns
                r.image.info = replace(r.image.info, start_ns=start_ns)
                return r
            r = r.older
        return None

    def _find_tick(self, pid: int, start_ticks: int) -> _Proc | None:
        """The entry of process pid started in the given USER_HZ tick."""
        r = self._by_pid.get(pid)
        while r is not None:
            if r.start_ns // self.tick_ns == start_ticks:
                return r
            r = r.older
        return None

    def get(self, pid: int, start_ns: int) -> ProcessInfo | None:
        """Current image of process (pid, start_ns), or ``None`` if not in the table."""
        r = self._find(pid, start_ns)
        return None if r is None else r.image.info

    def lookup(self, pid: int, start_ns: int) -> ProcessInfo | None:
        """Current image of (pid, start_ns); read from /proc when the table does not have it yet."""
        r = self._find(pid, start_ns)
        if r is None and start_ns:
            r = self._load_from_proc(pid, start_ns // self.tick_ns, _LAZY_DEPTH)
            if r is not None and r.approx:
                self._find(pid, start_ns)  # make it exact
        return None if r is None else r.image.info

    def parent(self, pid: int, start_ns: int) -> ProcessInfo | None:
        """Parent image (at creation) of the current image of (pid, start_ns)."""
        r = self._find(pid, start_ns)
        if r is None or r.image.parent is None:
            return None
        return r.image.parent.info

    def ancestry(self, pid: int, start_ns: int) -> list[ProcessInfo]:
        """Ancestors of (pid, start_ns), parent first, at most ``ancestry_depth``."""
        r = self._find(pid, start_ns)
        return [] if r is None else self.ancestry_of(r.image)

    def ancestry_of(self, image: _Image) -> list[ProcessInfo]:
        """Parent first, up to ancestry_depth images. Callers must not mutate the list.

        The same list object is returned for every event of an image while no
        ancestor's info was replaced (checked by identity along the chain), so
        what rule fields derive from it can be cached per list.
        """
        cached = image.ancestry
        n = self.ancestry_depth
        if cached is not None:
            p = image.parent
            i = 0
            size = len(cached)
            while p is not None and i < n:
                if i >= size or cached[i] is not p.info:
                    break
                p = p.parent
                i += 1
            else:
                if i == size:
                    return cached
        out: list[ProcessInfo] = []
        p = image.parent
        while p is not None and n > 0:
            out.append(p.info)
            p = p.parent
            n -= 1
        image.ancestry = out
        return out

    # ---- building entries ------------------------------------------------

    def _info(self, *, pid: int, start_ns: int, eid: str, parent: _Image | None, ppid: int,
              comm: str, exe: str | None, cmdline: list[str] | None, cwd: str | None,
              uid: int | None, euid: int | None, gid: int | None, loginuid: int | None,
              container: Container | None, exec_ts_ns: int | None,
              **exec_info: Any) -> ProcessInfo:
        return ProcessInfo(
            pid=pid,
            start_ns=start_ns,
            exec_id=eid,
            parent_exec_id=None if parent is None else parent.info.exec_id,
            ppid=ppid,
            comm=comm,
            exe=exe,
            cmdline=cmdline,
            cwd=cwd,
            uid=uid,
            euid=euid,
            gid=gid,
            user=self.users.user(uid),
            group=self.users.group(gid),
            loginuid=loginuid,
            container_id=None if container is None else container.id,
            container_runtime=None if container is None else container.runtime,
            exec_ts_ns=exec_ts_ns,
            euser=self.users.user(euid),
            login_user=None if loginuid is None or loginuid == UNSET_ID else self.users.user(loginuid),
            **exec_info,
        )

    def _insert(self, r: _Proc) -> None:
        if len(self._all) >= self.max_processes:
            self._make_room()
        head = self._by_pid.get(r.pid)
        if head is not None and head.exited_ns is None:
            # the pid now names another process: the old one is dead (its exit was lost)
            self._mark_exited(head, self._now_ns)
        r.older = head
        self._by_pid[r.pid] = r
        self._all[r] = None

    def _image_from_snapshot(self, snap: ProcSnapshot, start_ns: int, parent: _Image | None) -> _Image:
        info = self._info(
            pid=snap.pid, start_ns=start_ns,
            eid=exec_id(self.boot_id, snap.pid, start_ns, tick_ns=self.tick_ns),
            parent=parent, ppid=snap.ppid, comm=snap.comm, exe=snap.exe, cmdline=snap.cmdline,
            cwd=snap.cwd, uid=snap.uid, euid=snap.euid, gid=snap.gid, loginuid=snap.loginuid,
            container=snap.container, exec_ts_ns=None, **snapshot_exec_info(snap),
        )
        return _Image(info, parent)

    def _load_from_proc(self, pid: int, start_ticks: int, depth: int) -> _Proc | None:
        """An entry for a process known only by pid and start tick (an ancestor found in /proc)."""
        if pid <= 0:
            return None
        found = self._find_tick(pid, start_ticks)
        if found is not None:
            return found
        self.proc_reads += 1
        snap = read_proc(pid, self.proc_root)
        if snap is None or snap.start_ticks != start_ticks:
            return None
        parent = self._proc_parent(snap, depth - 1)
        r = _Proc(pid, start_ticks * self.tick_ns,
                  self._image_from_snapshot(snap, start_ticks * self.tick_ns, parent),
                  approx=True, container=snap.container)
        self._insert(r)
        return r

    def _proc_parent(self, snap: ProcSnapshot, depth: int) -> _Image | None:
        if snap.ppid <= 0 or depth <= 0:
            return None
        pstat = read_stat(snap.ppid, self.proc_root)
        if pstat is None:
            return None
        pr = self._load_from_proc(snap.ppid, pstat[2], depth)
        return None if pr is None else pr.image

    def _parent_of_event(self, p: dict[str, Any]) -> _Image | None:
        """Current image of the event's real parent (proc.ppid, proc.parent_start_ns)."""
        ppid: int = p["ppid"]
        if ppid <= 0:
            return None
        pstart: int = p["parent_start_ns"]
        r = self._find(ppid, pstart)
        if r is None:
            r = self._load_from_proc(ppid, pstart // self.tick_ns, _LAZY_DEPTH)
            if r is not None and r.approx:
                self._find(ppid, pstart)  # make it exact
        return None if r is None else r.image

    def _load_from_event(self, p: dict[str, Any]) -> _Proc:
        """An entry for a process first met through an event: /proc if it is still it, else se_proc."""
        pid: int = p["pid"]
        start_ns: int = p["start_ns"]
        parent = self._parent_of_event(p)
        self.proc_reads += 1
        snap = read_proc(pid, self.proc_root) if pid > 0 else None
        if snap is not None and snap.start_ticks == start_ns // self.tick_ns:
            image = self._image_from_snapshot(snap, start_ns, parent)
            # the event's credentials are the ones in force when it happened
            image.info = self._with_creds(image.info, p)
            r = _Proc(pid, start_ns, image, container=snap.container, cgroup_id=p["cgroup_id"])
        else:
            container = parent_container(parent)
            info = self._info(
                pid=pid, start_ns=start_ns,
                eid=exec_id(self.boot_id, pid, start_ns, tick_ns=self.tick_ns),
                parent=parent, ppid=p["ppid"], comm=text(p["comm"]), exe=None, cmdline=None,
                cwd=None, uid=p["uid"], euid=p["euid"], gid=p["gid"], loginuid=p["loginuid"],
                container=container, exec_ts_ns=None,
            )
            r = _Proc(pid, start_ns, _Image(info, parent), container=container, cgroup_id=p["cgroup_id"])
        self._insert(r)
        return r

    def _with_creds(self, info: ProcessInfo, p: dict[str, Any]) -> ProcessInfo:
        uid: int = p["uid"]
        gid: int = p["gid"]
        euid: int = p["euid"]
        return replace(
            info, uid=uid, euid=euid, gid=gid,
            user=info.user if uid == info.uid else self.users.user(uid),
            group=info.group if gid == info.gid else self.users.group(gid),
            euser=info.euser if euid == info.euid else self.users.user(euid),
        )

    def _container_now(self, r: _Proc) -> Container | None:
        """Container of a live process read again from /proc; the known one if it is gone."""
        c = read_container(r.pid, self.proc_root)
        st = read_stat(r.pid, self.proc_root)
        if st is None or st[2] != r.start_ns // self.tick_ns:
            return r.container
        return c

    # ---- seeding ---------------------------------------------------------

    def seed(self) -> int:
        """Add every process in /proc not yet in the table; returns how many were added."""
        snaps: dict[int, ProcSnapshot] = {}
        for name in os.listdir(self.proc_root):
            if not name.isdigit():
                continue
            snap = read_proc(int(name), self.proc_root)
            if snap is not None and self._find_tick(snap.pid, snap.start_ticks) is None:
                snaps[snap.pid] = snap
        added: dict[int, _Proc] = {}

        def entry(pid: int, depth: int) -> _Proc | None:
            if pid in added:
                return added[pid]
            snap = snaps.get(pid)
            if snap is None:
                head = self._by_pid.get(pid)
                return head if head is not None and head.exited_ns is None else None
            parent = entry(snap.ppid, depth + 1) if snap.ppid > 0 and depth < 4096 else None
            start_ns = snap.start_ticks * self.tick_ns
            r = _Proc(pid, start_ns,
                      self._image_from_snapshot(snap, start_ns, None if parent is None else parent.image),
                      approx=True, container=snap.container)
            self._insert(r)
            added[pid] = r
            return r

        for pid in snaps:
            entry(pid, 0)
        return len(added)

    # ---- lifetime --------------------------------------------------------

    def _mark_exited(self, r: _Proc, ts_ns: int) -> None:
        if r.exited_ns is not None:
            return
        r.exited_ns = ts_ns
        r.image.info = replace(r.image.info, exited=True)
        self._exited.append((ts_ns, r))

    def _evict(self, r: _Proc) -> None:
        if r.evicted:
            return
        r.evicted = True
        self.evictions += 1
        del self._all[r]
        head = self._by_pid.get(r.pid)
        if head is r:
            if r.older is None:
                del self._by_pid[r.pid]
            else:
                self._by_pid[r.pid] = r.older
            return
        while head is not None and head.older is not r:
            head = head.older
        if head is not None:
            head.older = r.older

    def expire(self, now_ns: int | None = None) -> int:
        """Evict exited entries whose grace period ended by ``now_ns`` (default: newest event ts)."""
        if now_ns is not None and now_ns > self._now_ns:
            self._now_ns = now_ns
        limit = self._now_ns - self.exit_grace_ns
        n = 0
        q = self._exited
        while q and q[0][0] <= limit:
            _, r = q.popleft()
            if not r.evicted:
                self._evict(r)
                n += 1
        return n

    def _make_room(self) -> None:
        q = self._exited
        while q:
            _, r = q.popleft()
            if not r.evicted:
                self._evict(r)
                return
        # no exited entry: look for processes that died without an exit event
        checked: list[_Proc] = []
        for r in islice(self._all, _REAP_SCAN):
            st = read_stat(r.pid, self.proc_root)
            if st is None or st[2] != r.start_ns // self.tick_ns:
                self._evict(r)
                for c in checked:  # alive: move to the young end so the next scan goes further
                    del self._all[c]
                    self._all[c] = None
                return
            checked.append(r)
        self._evict(next(iter(self._all)))

    # ---- events ----------------------------------------------------------

    def current(self, p: dict[str, Any], ts_ns: int) -> _Image:
        """Image of the event's calling process at ``ts_ns``, created lazily if unknown."""
        return self._image_at(self._entry(p), p, ts_ns)

    def start_of(self, pid: int, approx_ns: int, tolerance_ns: int = 10_000_000) -> int | None:
        """The exact start time of a known process whose start is known only to a /proc tick."""
        r = self._by_pid.get(pid)
        if r is not None and abs(r.start_ns - approx_ns) <= tolerance_ns:
            return r.start_ns
        return None

    def _entry(self, p: dict[str, Any]) -> _Proc:
        pid: int = p["pid"]
        start_ns: int = p["start_ns"]
        r = self._by_pid.get(pid)
        if r is None or r.start_ns != start_ns:
            r = self._find(pid, start_ns)
            if r is None:
                r = self._load_from_event(p)
        return r

    def _image_at(self, r: _Proc, p: dict[str, Any], ts_ns: int) -> _Image:
        img = r.image
        if r.prev is not None:
            exec_ts = img.info.exec_ts_ns
            if exec_ts is not None and ts_ns < exec_ts:
                img = r.prev  # a late event from another ring, emitted before the exec
        info = img.info
        if info.uid != p["uid"] or info.euid != p["euid"] or info.gid != p["gid"]:
            img.info = self._with_creds(info, p)
        if r.cgroup_id != p["cgroup_id"]:
            if r.cgroup_id is not None and r.exited_ns is None:
                c = self._container_now(r)
                if c != r.container:
                    r.container = c
                    img.info = replace(img.info, container_id=None if c is None else c.id,
                                       container_runtime=None if c is None else c.runtime)
            r.cgroup_id = p["cgroup_id"]
        return img

    def resolve(self, event: Event) -> _Image:
        """Apply a process event to the table; the calling process's image (the new one for exec)."""
        ts = event.ts_ns
        if ts > self._now_ns:
            self._now_ns = ts
            if self._exited and self._exited[0][0] <= ts - self.exit_grace_ns:
                self.expire()
        kind = event.kind
        if kind == KIND_EXEC:
            return self._on_exec(event)
        r = self._entry(event.proc)
        img = self._image_at(r, event.proc, ts)
        if kind == KIND_FORK:
            self._on_fork(event, r, img)
        elif kind == KIND_EXIT:
            if not event.data.get("is_thread"):
                self._mark_exited(r, ts)  # img.info is now the exited one
        elif kind == KIND_COMM:
            self._on_comm(event, img)
        return img

    def _on_exec(self, event: Event) -> _Image:
        p = event.proc
        d = event.data
        ts = event.ts_ns
        pid: int = p["pid"]
        start_ns: int = p["start_ns"]
        r = self._find(pid, start_ns)
        parent = self._parent_of_event(p)
        old = None if r is None else r.image
        if r is not None and r.exited_ns is None:
            container = self._container_now(r)
        else:
            snap_c = read_container(pid, self.proc_root)
            st = read_stat(pid, self.proc_root)
            if st is not None and st[2] == start_ns // self.tick_ns:
                container = snap_c
            else:
                container = parent_container(parent) if r is None else r.container
        exe_raw: bytes = d.get("exe_path") or d.get("filename") or b""
        cwd_raw: bytes = d.get("cwd") or b""
        argv: bytes = d.get("argv") or b""
        info = self._info(
            pid=pid, start_ns=start_ns,
            eid=exec_id(self.boot_id, pid, start_ns, ts, tick_ns=self.tick_ns),
            parent=parent, ppid=p["ppid"], comm=text(p["comm"]),
            exe=text(exe_raw) if exe_raw else None,
            cmdline=split_nul(argv),
            cwd=text(cwd_raw) if cwd_raw else (None if old is None else old.info.cwd),
            uid=p["uid"], euid=p["euid"], gid=p["gid"], loginuid=p["loginuid"],
            container=container, exec_ts_ns=ts, **event_exec_info(d),
        )
        image = _Image(info, parent)
        if r is None:
            r = _Proc(pid, start_ns, image, container=container, cgroup_id=p["cgroup_id"])
            self._insert(r)
        else:
            r.prev = r.image
            r.image = image
            r.container = container
            r.cgroup_id = p["cgroup_id"]
            if r.exited_ns is not None:  # exit processed first: keep it exited
                image.info = replace(info, exited=True)
        return image

    def _on_fork(self, event: Event, pr: _Proc, parent: _Image) -> None:
        d = event.data
        if d.get("is_thread"):
            return
        child_pid: int = d["child_pid"]
        child_start: int = d["child_start_ns"]
        r = self._find(child_pid, child_start)
        if r is not None:
            # already met through one of its own events (another ring drained first)
            if r.image.parent is None and r.prev is None:
                r.image.parent = parent
                r.image.info = replace(r.image.info, parent_exec_id=parent.info.exec_id)
            return
        pinfo = parent.info
        info = replace(
            pinfo,
            pid=child_pid,
            start_ns=child_start,
            exec_id=exec_id(self.boot_id, child_pid, child_start, tick_ns=self.tick_ns),
            parent_exec_id=pinfo.exec_id,
            ppid=event.proc["pid"],
            comm=text(event.proc["comm"]),  # the child's comm is the forking thread's
            exec_ts_ns=None,
            exited=False,
        )
        self._insert(_Proc(child_pid, child_start, _Image(info, parent), container=pr.container,
                           cgroup_id=event.proc["cgroup_id"]))

    def _on_comm(self, event: Event, img: _Image) -> None:
        p = event.proc
        renamed = event.data.get("renamed_tid", p["tid"])
        if renamed != p["pid"]:
            return  # a thread renamed itself: the process keeps its leader's name
        new = text(event.data["new_comm"])
        if new != img.info.comm:
            img.info = replace(img.info, comm=new)


def event_exec_info(d: dict[str, Any]) -> dict[str, Any]:
    """ProcessInfo fields only known at exec, from the exec event's data."""
    flags: int = d.get("flags", 0)
    kinds = d.get("fd_kind")
    filename: bytes = d.get("filename") or b""
    interp: bytes = d.get("interp") or b""
    preload: bytes = d.get("ld_preload") or b""
    libpath: bytes = d.get("ld_library_path") or b""
    return {
        "argc": d.get("argc"),
        "filename": text(filename) if filename else None,
        "interp": text(interp) if interp else None,
        "fds": None if kinds is None else (fd_kind_name(kinds[0]), fd_kind_name(kinds[1]), fd_kind_name(kinds[2])),
        "exe_deleted": bool(flags & EXEC_EXE_DELETED),
        "exe_memfd": bool(flags & EXEC_EXE_MEMFD),
        "ld_preload": text(preload) if preload else None,
        "ld_library_path": text(libpath) if libpath else None,
        "setuid_exec": bool(flags & (EXEC_SETUID | EXEC_SETGID)),
    }


def snapshot_exec_info(snap: ProcSnapshot) -> dict[str, Any]:
    """What /proc tells of the exec-time fields (not the path given to execve, nor a set-id exec)."""
    exe = snap.exe
    return {
        "argc": None if snap.cmdline is None else len(snap.cmdline),
        "fds": snap.fds,
        "exe_deleted": None if exe is None else exe.endswith(_DELETED_SUFFIX),
        "exe_memfd": None if exe is None else exe.startswith("/memfd:"),
        "ld_preload": snap.ld_preload,
        "ld_library_path": snap.ld_library_path,
    }


def parent_container(parent: _Image | None) -> Container | None:
    if parent is None or parent.info.container_id is None:
        return None
    return Container(parent.info.container_id, parent.info.container_runtime or "unknown")

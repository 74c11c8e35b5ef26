"""fanotify enforcement on the real kernel: execs and opens refused before they happen.

Everything runs on files this module creates in a directory of its own (never
a system binary, never a file anything else uses). The enforcer's exec marks
are limited to the filesystem of that directory (``mounts=``), and every
enforcer is stopped in a ``finally`` (the kernel then lets anything still
waiting through). The test process plays the agent (``agent_pid``: exempt),
so it can check contents itself; the actors are children it forks, whose pids
the reports must name.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sentinel_edge.enforce.fanotify import (
    FanotifyEnforcer,
    _Mount,
    _mount_table,
    _under_prefixes,
    access_name,
    access_of_flags,
)
from sentinel_edge.enforce.identity import identity_of_path
from sentinel_edge.enforce.model import (
    ACTION_AUDIT,
    ACTION_DENY,
    ACTION_NONE,
    MECH_FANOTIFY,
    Enforcement,
    ExecDeny,
    FileDeny,
    Mode,
    Policy,
    PolicySet,
    Scope,
)
from sentinel_edge.errors import EnforceError

pytestmark = pytest.mark.kernel

TRUE = "/usr/bin/true"
CAT = "/usr/bin/cat"
SH = os.path.realpath("/bin/sh")
OTHER_UID = 54321
SELF_COMM = Path("/proc/self/comm").read_text().strip()
SELF_EXE = os.readlink("/proc/self/exe")
SECRET = b"root:$6$not-a-real-hash:19000:0:99999:7:::\n"
EXIT_EXEC_FAILED = 200      # a forked child whose exec/open failed exits with 200 + errno


# -- helpers ----------------------------------------------------------------------------


@pytest.fixture
def work() -> Iterator[Path]:
    """A world-traversable directory of this test's own (tmp_path's parents are 0700:
    a child running as another uid could not reach it)."""
    d = Path(tempfile.mkdtemp(prefix="se-fanotify-", dir="/tmp"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


class Reports:
    """The on_event callback: collects what the emitter thread hands over."""

    def __init__(self) -> None:
        self.items: list[Enforcement] = []
        self._lock = threading.Lock()

    def __call__(self, e: Enforcement) -> None:
        with self._lock:
            self.items.append(e)

    def wait(self, pred: Callable[[Enforcement], bool], count: int = 1, timeout: float = 5.0) -> list[Enforcement]:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                got = [e for e in self.items if pred(e)]
            if len(got) >= count or time.monotonic() > deadline:
                return got
            time.sleep(0.01)

    def of(self, pid: int, count: int = 1, timeout: float = 5.0) -> list[Enforcement]:
        return self.wait(lambda e: e.proc.get("pid") == pid, count, timeout)


def policy(pid_: str, mode: Mode, spec: ExecDeny | FileDeny, scope: Scope | None = None) -> Policy:
    kind = "exec" if isinstance(spec, ExecDeny) else "file"
    return Policy(id=pid_, kind=kind, mode=mode, spec=spec, scope=scope or Scope())


@contextmanager
def enforcing(work: Path, policies: list[Policy], reports: Reports,
              **kw: object) -> Iterator[FanotifyEnforcer]:
    kw.setdefault("mounts", [str(work)])
    enf = FanotifyEnforcer(reports, **kw)  # type: ignore[arg-type]
    try:
        enf.apply(PolicySet(tuple(policies)))
        enf.start()
        yield enf
    finally:
        enf.stop()


def _child_exit(code: int) -> None:
    os._exit(code)


def fork_exec(argv: list[str], *, cwd: Path | None = None, uid: int | None = None,
              cgroup: Path | None = None) -> tuple[int, int]:
    """Fork; the child execs ``argv`` (stdout/stderr to /dev/null). Returns (child pid,
    exit code), the exit code being 200 + errno when the exec itself failed."""
    pid = os.fork()
    if pid == 0:
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            if cwd is not None:
                os.chdir(cwd)
            if cgroup is not None:
                (cgroup / "cgroup.procs").write_text(str(os.getpid()))
            if uid is not None:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            os.execv(argv[0], argv)
        except OSError as exc:
            _child_exit(EXIT_EXEC_FAILED + (exc.errno or 0))
        _child_exit(199)
    return pid, _wait(pid)


def fork_call(fn: Callable[[], int]) -> tuple[int, int]:
    """Fork; the child runs ``fn`` and exits with what it returns, 200 + errno on OSError."""
    pid = os.fork()
    if pid == 0:
        code = 198
        try:
            code = fn()
        except OSError as exc:
            code = EXIT_EXEC_FAILED + (exc.errno or 0)
        finally:
            _child_exit(code)
    return pid, _wait(pid)


def _wait(pid: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError(f"child {pid} still blocked after {timeout}s")
        time.sleep(0.002)


def open_with(path: Path, flags: int) -> Callable[[], int]:
    def fn() -> int:
        os.close(os.open(path, flags))
        return 0
    return fn


def unique_binary(path: Path) -> str:
    """A copy of true with random bytes appended (ELF ignores them): its own sha256."""
    data = Path(TRUE).read_bytes() + os.urandom(32)
    path.write_bytes(data)
    path.chmod(0o755)
    return hashlib.sha256(data).hexdigest()


def script(path: Path, marker: Path) -> Path:
    path.write_text(f"#!/bin/sh\necho ran >> {marker}\n")
    path.chmod(0o755)
    return path


def ident(path: Path | str) -> dict[str, object]:
    i = identity_of_path(path)
    return {"dev": i.dev, "ino": i.ino, "gen": i.gen}


def boot_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def check(e: Enforcement, *, pol: Policy, action: str, target: Path | str, pid: int, data: dict[str, object],
          t0: int, ppid: int | None = None, comm: str = SELF_COMM, exe: str = SELF_EXE, uid: int = 0,
          tid: int | None = None) -> None:
    """Every field of one report."""
    t1 = boot_ns()
    assert e.policy_id == pol.id
    assert e.mode == pol.mode
    assert e.action == action
    assert e.mechanism == MECH_FANOTIFY
    assert e.target == str(target)
    assert e.ok is True
    assert e.error is None
    assert t0 <= e.time_ns <= t1
    start = e.proc["start_ns"]
    assert isinstance(start, int) and t0 - 20_000_000 <= start <= t1
    assert e.proc == {"pid": pid, "tid": pid if tid is None else tid, "ppid": os.getpid() if ppid is None else ppid,
                      "uid": uid, "euid": uid, "comm": comm, "exe": exe, "start_ns": start, "container": None}
    assert e.data == data


def exec_data(target: Path | str, reason: str, sha256: str | None = None) -> dict[str, object]:
    d: dict[str, object] = {"access": "exec", "flags_known": True, "identity": ident(target), "reason": reason}
    if sha256 is not None:
        d["sha256"] = sha256
    return d


def open_data(target: Path, access: str, flags: int | None, syscall: str | None,
              known: bool = True) -> dict[str, object]:
    return {"access": access, "flags_known": known, "flags": flags, "syscall": syscall, "identity": ident(target),
            "reason": "protected"}


EPERM_EXIT = EXIT_EXEC_FAILED + errno.EPERM


# -- pure parts ------------------------------------------------------------------------------


def test_access_of_open_flags() -> None:
    assert access_of_flags(os.O_RDONLY) == {"read"}
    assert access_of_flags(os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW) == {"read"}
    assert access_of_flags(os.O_WRONLY) == {"write"}
    assert access_of_flags(os.O_WRONLY | os.O_APPEND) == {"write"}
    assert access_of_flags(os.O_RDWR) == {"read", "write"}
    assert access_of_flags(os.O_RDONLY | os.O_TRUNC) == {"read", "write"}    # Linux truncates anyway
    assert access_of_flags(os.O_ACCMODE) == {"read", "write"}
    assert access_name(frozenset({"read", "write"})) == "read-write"
    assert access_name(frozenset({"write"})) == "write"


def test_prefix_filesystems() -> None:
    mounts = [_Mount(1, 1, "/", "ext4"), _Mount(2, 2, "/tmp", "tmpfs"), _Mount(3, 3, "/dev", "devtmpfs"),
              _Mount(4, 4, "/dev/shm", "tmpfs"), _Mount(5, 5, "/tmp/deep/mnt", "tmpfs")]
    under = {m.mountpoint for m in mounts if _under_prefixes(m, mounts, ("/tmp/", "/dev/shm/"))}
    assert under == {"/tmp", "/dev/shm", "/tmp/deep/mnt"}
    under = {m.mountpoint for m in mounts if _under_prefixes(m, mounts, ("/opt/tool",))}
    assert under == {"/"}


# -- exec ------------------------------------------------------------------------------------


def test_sha256_denied_binary_created_and_executed_at_once(work: Path) -> None:
    reports = Reports()
    denied = work / "denied"
    digest = unique_binary(work / "template")
    pol = policy("no-hash", "enforce", ExecDeny(sha256=(digest,)))
    with enforcing(work, [pol], reports) as enf:
        t0 = boot_ns()
        shutil.copyfile(work / "template", denied)      # created, then executed at once
        denied.chmod(0o755)
        pid, rc = fork_exec([str(denied)])
        assert rc == EPERM_EXIT
        (e,) = reports.of(pid)
        check(e, pol=pol, action=ACTION_DENY, target=denied, pid=pid, t0=t0,
              data=exec_data(denied, "sha256", digest))
        # the same content again: from the hash cache, still refused
        hits_before = enf.stats()["hash_cache_hits"]
        pid, rc = fork_exec([str(denied)])
        assert rc == EPERM_EXIT
        assert len(reports.of(pid)) == 1
        assert enf.stats()["hash_cache_hits"] > hits_before
        # one byte appended: another hash, runs
        with denied.open("ab") as f:
            f.write(b"x")
        pid, rc = fork_exec([str(denied)])
        assert rc == 0
        other = work / "other"
        unique_binary(other)
        pid2, rc = fork_exec([str(other)])
        assert rc == 0
        time.sleep(0.1)
        assert reports.of(pid, timeout=0) == [] and reports.of(pid2, timeout=0) == []
        st = enf.stats()
        assert st["denied"] >= 2 and st["hashed"] >= 3 and st["errors"] == 0


def test_sha256_cannot_vouch_for_a_file_open_for_writing(work: Path) -> None:
    """Someone holds the file open for writing at the exec: the bytes hashed are not
    certainly the bytes that run, so a sha256 policy refuses it (the kernel alone would say
    ETXTBSY, or run it if the writer closed in time)."""
    reports = Reports()
    binary = work / "being-written"
    digest = unique_binary(binary)
    pol = policy("no-hash", "enforce", ExecDeny(sha256=("0" * 64,)))
    with enforcing(work, [pol], reports) as enf:
        t0 = boot_ns()
        writer = os.open(binary, os.O_WRONLY)
        try:
            pid, rc = fork_exec([str(binary)])
        finally:
            os.close(writer)
        assert rc == EPERM_EXIT
        (e,) = reports.of(pid)
        check(e, pol=pol, action=ACTION_DENY, target=binary, pid=pid, t0=t0,
              data={**exec_data(binary, "unverifiable", digest), "content_stable": False})
        assert fork_exec([str(binary)])[1] == 0          # writer gone: hashed, no match, runs
        assert enf.stats()["unverifiable"] == 1


def test_script_denied_by_identity_even_through_links(work: Path) -> None:
    reports = Reports()
    marker = work / "marker"
    s = script(work / "s.sh", marker)
    (work / "elsewhere").mkdir()
    link = work / "elsewhere" / "link.sh"
    link.symlink_to(s)
    hard = work / "elsewhere" / "hard.sh"
    os.link(s, hard)
    pol = policy("no-script", "enforce", ExecDeny(files=(str(s),)))
    with enforcing(work, [pol], reports):
        t0 = boot_ns()
        for argv, cwd, target in (([str(s)], None, s), ([str(link)], None, s), ([str(hard)], None, hard),
                                  (["./s.sh"], work, s)):
            pid, rc = fork_exec(argv, cwd=cwd)
            assert rc == EPERM_EXIT, argv
            (e,) = reports.of(pid)
            check(e, pol=pol, action=ACTION_DENY, target=target, pid=pid, t0=t0,
                  data=exec_data(s, "identity"))
        assert not marker.exists()
        # the limit: an interpreter reading the script is not an exec of it
        pid, rc = fork_exec([SH, str(s)])
        assert rc == 0
        assert marker.read_text() == "ran\n"
        time.sleep(0.1)
        assert reports.of(pid, timeout=0) == []


def test_script_and_binary_denied_by_prefix(work: Path) -> None:
    reports = Reports()
    marker = work / "marker"
    deny = work / "deny"
    deny.mkdir()
    s = script(deny / "s.sh", marker)
    os.link(s, deny / "h.sh")
    (work / "link.sh").symlink_to(s)
    binary = deny / "true"
    shutil.copy(TRUE, binary)
    ok = script(work / "ok.sh", marker)
    pol = policy("no-exec-here", "enforce", ExecDeny(prefixes=(f"{deny}/",)))
    with enforcing(work, [pol], reports):
        t0 = boot_ns()
        for argv, cwd, target in (([str(s)], None, s), ([str(work / "link.sh")], None, s),
                                  ([str(deny / "h.sh")], None, deny / "h.sh"), (["./s.sh"], deny, s),
                                  ([str(binary)], None, binary)):
            pid, rc = fork_exec(argv, cwd=cwd)
            assert rc == EPERM_EXIT, argv
            (e,) = reports.of(pid)
            check(e, pol=pol, action=ACTION_DENY, target=target, pid=pid, t0=t0, data=exec_data(target, "prefix"))
        assert not marker.exists()
        pid, rc = fork_exec([str(ok)])
        assert rc == 0 and marker.read_text() == "ran\n"
        pid2, rc = fork_exec([SH, str(s)])            # not an exec of the script: runs
        assert rc == 0 and marker.read_text() == "ran\nran\n"
        time.sleep(0.1)
        assert reports.of(pid, timeout=0) == [] and reports.of(pid2, timeout=0) == []


def test_scope_users_and_parents(work: Path) -> None:
    reports = Reports()
    target = work / "target"
    digest = unique_binary(target)
    mysh = work / "mysh"
    shutil.copy(SH, mysh)
    by_user = policy("users-only", "enforce", ExecDeny(sha256=(digest,)), Scope(users=(OTHER_UID,)))
    with enforcing(work, [by_user], reports):
        t0 = boot_ns()
        _, rc = fork_exec([str(target)])
        assert rc == 0
        pid, rc = fork_exec([str(target)], uid=OTHER_UID)
        assert rc == EPERM_EXIT
        (e,) = reports.of(pid)
        check(e, pol=by_user, action=ACTION_DENY, target=target, pid=pid, t0=t0, uid=OTHER_UID,
              data=exec_data(target, "sha256", digest))
    by_parent = policy("parents-only", "enforce", ExecDeny(sha256=(digest,)), Scope(parents=(str(mysh),)))
    with enforcing(work, [by_parent], reports):
        t0 = boot_ns()
        pid, rc = fork_exec([SH, "-c", f"{target} && exit 0; exit 7"])
        assert rc == 0
        pid, rc = fork_exec([str(mysh), "-c", f"{target} && exit 0; exit 7"])
        assert rc == 7
        (e,) = reports.wait(lambda e: e.proc.get("ppid") == pid)
        check(e, pol=by_parent, action=ACTION_DENY, target=target, pid=int(str(e.proc["pid"])), ppid=pid,
              t0=t0, comm="mysh", exe=str(mysh), data=exec_data(target, "sha256", digest))
    scoped_host = policy("containers-only", "enforce", ExecDeny(sha256=(digest,)), Scope(containers="containers"))
    with enforcing(work, [scoped_host], reports):
        _, rc = fork_exec([str(target)])
        assert rc == 0                                  # a host process is outside the scope


def test_scope_containers(work: Path) -> None:
    """A container as the agent sees one: a process in a cgroup named like docker's."""
    reports = Reports()
    target = work / "target"
    digest = unique_binary(target)
    cg2 = next(m.mountpoint for m in _mount_table("/proc/self/mountinfo") if m.fstype == "cgroup2")
    cid = secrets.token_hex(32)
    cg = Path(cg2) / f"docker-{cid}.scope"
    cg.mkdir()
    try:
        in_it = policy("in-container", "enforce", ExecDeny(sha256=(digest,)), Scope(containers=(cid[:12],)))
        on_host = policy("on-host", "enforce", ExecDeny(sha256=(digest,)), Scope(containers="host"))
        with enforcing(work, [in_it], reports):
            t0 = boot_ns()
            assert fork_exec([str(target)])[1] == 0
            pid, rc = fork_exec([str(target)], cgroup=cg)
            assert rc == EPERM_EXIT
            (e,) = reports.of(pid)
            start = e.proc["start_ns"]
            assert e.proc == {"pid": pid, "tid": pid, "ppid": os.getpid(), "uid": 0, "euid": 0, "comm": SELF_COMM,
                              "exe": SELF_EXE, "start_ns": start, "container": cid}
            assert isinstance(start, int) and t0 - 20_000_000 <= start <= boot_ns()
            assert (e.policy_id, e.action, e.data) == ("in-container", ACTION_DENY,
                                                       exec_data(target, "sha256", digest))
        with enforcing(work, [on_host], reports):
            assert fork_exec([str(target)], cgroup=cg)[1] == 0
            pid, rc = fork_exec([str(target)])
            assert rc == EPERM_EXIT
            (e,) = reports.of(pid)
            assert (e.policy_id, e.proc["container"]) == ("on-host", None)
    finally:
        deadline = time.monotonic() + 5
        while True:                                     # its processes are reaped: it empties
            try:
                cg.rmdir()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


# -- protected files ------------------------------------------------------------------------


def test_protected_file_read_and_truncating_write_refused(work: Path) -> None:
    reports = Reports()
    secret = work / "shadow"
    secret.write_bytes(SECRET)
    pol = policy("protect-shadow", "enforce", FileDeny(paths=(str(secret),)))
    with enforcing(work, [pol], reports):
        t0 = boot_ns()
        cases = [(os.O_RDONLY, "read"), (os.O_WRONLY | os.O_TRUNC, "write"), (os.O_RDWR, "read-write"),
                 (os.O_RDONLY | os.O_TRUNC, "read-write")]
        for flags, access in cases:
            pid, rc = fork_call(open_with(secret, flags))
            assert rc == EPERM_EXIT, flags
            (e,) = reports.of(pid)
            check(e, pol=pol, action=ACTION_DENY, target=secret, pid=pid, t0=t0,
                  data=open_data(secret, access, flags | os.O_CLOEXEC, "openat"))
        assert secret.read_bytes() == SECRET              # not truncated

        def openat2() -> int:                           # flags from struct open_how in the opener's memory
            libc = ctypes.CDLL(None, use_errno=True)
            how = (ctypes.c_uint64 * 3)(os.O_WRONLY | os.O_TRUNC, 0, 0)
            fd = libc.syscall(437, -100, os.fsencode(secret), ctypes.byref(how), ctypes.sizeof(how))
            return 0 if fd >= 0 else EXIT_EXEC_FAILED + ctypes.get_errno()

        pid, rc = fork_call(openat2)
        assert rc == EPERM_EXIT
        (e,) = reports.of(pid)
        check(e, pol=pol, action=ACTION_DENY, target=secret, pid=pid, t0=t0,
              data=open_data(secret, "write", os.O_WRONLY | os.O_TRUNC, "openat2"))

        def swapon() -> int:                            # the kernel opens the file: not an open syscall
            libc = ctypes.CDLL(None, use_errno=True)
            r = libc.swapon(os.fsencode(secret), 0)
            return 0 if r == 0 else EXIT_EXEC_FAILED + ctypes.get_errno()

        pid, rc = fork_call(swapon)
        assert rc == EPERM_EXIT
        (e,) = reports.of(pid)
        check(e, pol=pol, action=ACTION_DENY, target=secret, pid=pid, t0=t0,
              data=open_data(secret, "read-write", None, None, known=False))
        assert secret.read_bytes() == SECRET


def test_thread_opener_flags_read_from_the_blocked_thread(work: Path) -> None:
    """The event names the thread (FAN_REPORT_TID): its own syscall, not the main thread's."""
    reports = Reports()
    secret = work / "key"
    secret.write_bytes(SECRET)
    pol = policy("protect-key", "enforce", FileDeny(paths=(str(secret),), access=frozenset({"write"})))
    r, w = os.pipe()

    def threaded() -> int:
        out: list[int] = []

        def opener() -> None:
            out.append(threading.get_native_id())
            try:
                os.close(os.open(secret, os.O_WRONLY | os.O_TRUNC))
                out.append(0)
            except OSError as exc:
                out.append(exc.errno or 0)

        t = threading.Thread(target=opener)
        t.start()
        t.join()
        os.write(w, f"{out[0]} {out[1]}".encode())
        return 0

    with enforcing(work, [pol], reports):
        t0 = boot_ns()
        pid, rc = fork_call(threaded)
        assert rc == 0
        tid, err = map(int, os.read(r, 100).split())
        os.close(r)
        os.close(w)
        assert err == errno.EPERM and tid != pid
        (e,) = reports.of(pid)
        check(e, pol=pol, action=ACTION_DENY, target=secret, pid=pid, tid=tid, t0=t0,
              data=open_data(secret, "write", os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC, "openat"))
        pid, rc = fork_call(open_with(secret, os.O_RDONLY))   # reading is not in this policy
        assert rc == 0
        assert secret.read_bytes() == SECRET


def test_allow_listed_executable_still_opens(work: Path) -> None:
    reports = Reports()
    secret = work / "host_key"
    secret.write_bytes(SECRET)
    allowed = work / "allowed-cat"
    shutil.copy(CAT, allowed)
    os.link(allowed, work / "allowed-cat-link")
    (work / "copies").mkdir()
    same_bytes = work / "copies" / "allowed-cat"       # same name, same bytes: another file
    shutil.copy(CAT, same_bytes)
    exempt = work / "exempt-cat"
    shutil.copy(CAT, exempt)
    pol = policy("protect-key", "enforce", FileDeny(paths=(str(secret),), allow=(str(allowed),)))

    def cat(exe: Path) -> tuple[int, subprocess.CompletedProcess[bytes]]:
        p = subprocess.Popen([str(exe), str(secret)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = p.communicate(timeout=20)
        return p.pid, subprocess.CompletedProcess([], p.returncode, out, err)

    with enforcing(work, [pol], reports, allow_identities=[identity_of_path(exempt)]):
        t0 = boot_ns()
        for exe in (allowed, work / "allowed-cat-link", exempt):
            pid, res = cat(exe)
            assert (res.returncode, res.stdout) == (0, SECRET), exe
        for exe, comm in ((same_bytes, "allowed-cat"), (Path(CAT), "cat")):
            pid, res = cat(exe)
            assert res.returncode == 1 and b"Operation not permitted" in res.stderr
            (e,) = reports.of(pid)
            check(e, pol=pol, action=ACTION_DENY, target=secret, pid=pid, t0=t0, comm=comm, exe=str(exe),
                  data=open_data(secret, "read", os.O_RDONLY, "openat"))
        time.sleep(0.1)
        assert len(reports.items) == 2               # the allowed and exempt ones are not reported


def test_audit_mode_allows_and_reports(work: Path) -> None:
    reports = Reports()
    secret = work / "audited"
    secret.write_bytes(SECRET)
    binary = work / "audited-bin"
    digest = unique_binary(binary)
    pf = policy("audit-file", "audit", FileDeny(paths=(str(secret),)))
    pe = policy("audit-exec", "audit", ExecDeny(sha256=(digest,)))
    with enforcing(work, [pf, pe], reports) as enf:
        t0 = boot_ns()
        pid, rc = fork_call(open_with(secret, os.O_WRONLY | os.O_APPEND))
        assert rc == 0
        (e,) = reports.of(pid)
        check(e, pol=pf, action=ACTION_AUDIT, target=secret, pid=pid, t0=t0,
              data=open_data(secret, "write", os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC, "openat"))
        pid, rc = fork_exec([str(binary)])
        assert rc == 0
        (e,) = reports.of(pid)
        check(e, pol=pe, action=ACTION_AUDIT, target=binary, pid=pid, t0=t0,
              data=exec_data(binary, "sha256", digest))
        st = enf.stats()
        assert st["audited"] == 2 and st["hits"] == 2


def test_switch_audit_to_enforce_misses_nothing(work: Path) -> None:
    """Execs in a loop while the set switches from audit to enforce: every attempt is
    either audited (and ran) or denied (and failed); none passes unreported."""
    reports = Reports()
    binary = work / "loop-bin"
    digest = unique_binary(binary)
    audit = policy("switch", "audit", ExecDeny(sha256=(digest,)))
    enforce = policy("switch", "enforce", ExecDeny(sha256=(digest,)))
    driver = (
        "import os, sys, json\n"
        "out = []\n"
        "for i in range(int(sys.argv[2])):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        try:\n"
        "            os.execv(sys.argv[1], [sys.argv[1]])\n"
        "        except OSError as e:\n"
        "            os._exit(200 + e.errno)\n"
        "    out.append((pid, os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])))\n"
        "    if i == 40:\n"
        "        print('half', flush=True)\n"
        "print(json.dumps(out), flush=True)\n"
    )
    with enforcing(work, [audit], reports) as enf:
        p = subprocess.Popen([sys.executable, "-c", driver, str(binary), "200"], stdout=subprocess.PIPE, text=True)
        try:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "half"
            enf.apply(PolicySet((enforce,)))
            line = p.stdout.readline()
            assert p.wait(timeout=60) == 0
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        attempts: list[tuple[int, int]] = [(int(a), int(b)) for a, b in json.loads(line)]
        ran = {pid for pid, rc in attempts if rc == 0}
        refused = {pid for pid, rc in attempts if rc == EPERM_EXIT}
        assert len(attempts) == 200 and ran | refused == {pid for pid, _ in attempts}
        assert len(ran) >= 41 and refused                 # both halves happened
        got = reports.wait(lambda e: e.policy_id == "switch", count=200, timeout=10)
        assert {e.proc["pid"] for e in got if e.action == ACTION_AUDIT} == ran
        assert {e.proc["pid"] for e in got if e.action == ACTION_DENY} == refused
        assert len(got) == 200
        assert all(e.mode == ("audit" if e.action == ACTION_AUDIT else "enforce") for e in got)
        # after the switch nothing ran: every success precedes every refusal
        order = [rc == 0 for _, rc in attempts]
        assert order == sorted(order, reverse=True)


def test_stop_never_leaves_a_process_blocked(work: Path) -> None:
    """A decision stuck in the agent: stop() closes the group and the kernel lets the
    waiting opener through; after stop, nothing is enforced (fanotify fails open)."""
    reports = Reports()
    secret = work / "guarded"
    secret.write_bytes(SECRET)
    binary = work / "bin"
    digest = unique_binary(binary)
    pol_f = policy("guard", "enforce", FileDeny(paths=(str(secret),)))
    pol_e = policy("no-bin", "enforce", ExecDeny(sha256=(digest,)))
    enf = FanotifyEnforcer(reports, mounts=[str(work)])
    entered = threading.Event()
    release = threading.Event()
    real_decide = enf._decide

    def stuck(mask: int, fd: int, tid: int, now_ns: int, deadline: float) -> tuple[bool, list[Enforcement], bool]:
        if os.readlink(f"/proc/self/fd/{fd}") == str(secret):
            entered.set()
            release.wait(30)
        return real_decide(mask, fd, tid, now_ns, deadline)

    enf._decide = stuck  # type: ignore[method-assign]
    try:
        enf.apply(PolicySet((pol_f, pol_e)))
        enf.start()
        _, rc = fork_exec([str(binary)])
        assert rc == EPERM_EXIT                          # enforcing
        child = os.fork()
        if child == 0:
            try:
                os.close(os.open(secret, os.O_RDONLY))
                _child_exit(0)
            except OSError as exc:
                _child_exit(EXIT_EXEC_FAILED + (exc.errno or 0))
        assert entered.wait(10)
        time.sleep(0.05)
        assert os.waitpid(child, os.WNOHANG) == (0, 0)   # blocked in open(), waiting for the answer
        t = time.monotonic()
        enf.stop(timeout=0.3)
        assert time.monotonic() - t < 2
        assert _wait(child, timeout=5) == 0             # the kernel let it through
        _, rc = fork_exec([str(binary)])
        assert rc == 0                                  # fails open once stopped
        _, rc = fork_call(open_with(secret, os.O_RDONLY))
        assert rc == 0
    finally:
        release.set()
        enf.stop()
    assert not enf.running


def test_internal_error_allows_and_reports(work: Path) -> None:
    reports = Reports()
    target = work / "big"
    digest = unique_binary(target)
    mysh = work / "mysh"
    shutil.copy(SH, mysh)
    pol = policy("hash-limit", "enforce", ExecDeny(sha256=(digest,)), Scope(parents=(str(mysh),)))
    with enforcing(work, [pol], reports, max_hash_bytes=1000) as enf:
        t0 = boot_ns()
        pid, rc = fork_exec([str(mysh), "-c", f"{target} && exit 0; exit 7"])
        assert rc == 0                                  # could not decide: let through
        (e,) = reports.wait(lambda e: e.proc.get("ppid") == pid and e.target == str(target))
        size = target.stat().st_size
        assert e.policy_id == "hash-limit" and e.mode == "enforce"
        assert e.action == ACTION_NONE and e.mechanism == MECH_FANOTIFY
        assert e.target == str(target)
        assert e.ok is False
        assert e.error == f"not hashed: {size} bytes is over the 1000-byte limit; allowed (fail open)"
        assert t0 <= e.time_ns <= boot_ns()
        assert e.proc["ppid"] == pid and e.proc["comm"] == "mysh" and e.proc["exe"] == str(mysh)
        assert set(e.proc) == {"pid", "tid", "ppid", "uid", "euid", "comm", "exe", "start_ns", "container"}
        assert e.data == {"internal_error": True}
        assert enf.stats()["errors"] >= 1


# -- changes while running ----------------------------------------------------------------------


def _until(cond: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_protected_files_replaced_or_created_are_marked(work: Path) -> None:
    reports = Reports()
    keys = work / "keys"
    keys.mkdir()
    (keys / "ssh_host_rsa_key").write_bytes(SECRET)
    (keys / "ssh_host_rsa_key.pub").write_bytes(b"public\n")
    pol = policy("keys", "enforce", FileDeny(paths=(f"{keys}/ssh_host_*_key", f"{keys}/late")))

    def refused(p: Path) -> bool:
        return fork_call(open_with(p, os.O_RDONLY))[1] == EPERM_EXIT

    with enforcing(work, [pol], reports) as enf:
        assert enf.problems == (f"policy keys: protected file {keys}/late: No such file or directory "
                                "(marked when it appears)",)
        assert refused(keys / "ssh_host_rsa_key")
        assert not refused(keys / "ssh_host_rsa_key.pub")
        # replaced the way editors and passwd do: a new inode renamed over the old name
        (keys / "tmp").write_bytes(SECRET + b"new\n")
        os.rename(keys / "tmp", keys / "ssh_host_rsa_key")
        assert _until(lambda: refused(keys / "ssh_host_rsa_key"))
        (keys / "ssh_host_ed25519_key").write_bytes(SECRET)      # a new name matching the glob
        assert _until(lambda: refused(keys / "ssh_host_ed25519_key"))
        (keys / "late").write_bytes(SECRET)                       # the named file appears
        assert _until(lambda: refused(keys / "late"))
        assert enf.stats()["refreshes"] >= 1
        assert (keys / "ssh_host_rsa_key").read_bytes() == SECRET + b"new\n"


def test_refresh_follows_a_recreated_executable(work: Path) -> None:
    reports = Reports()
    marker = work / "marker"
    s = script(work / "tool.sh", marker)
    pol = policy("no-tool", "enforce", ExecDeny(files=(str(s),)))
    with enforcing(work, [pol], reports) as enf:
        assert fork_exec([str(s)])[1] == EPERM_EXIT
        s.unlink()
        script(s, marker)                                # another inode at the same path
        assert fork_exec([str(s)])[1] == 0               # identities are resolved at apply/refresh
        enf.refresh()
        pid, rc = fork_exec([str(s)])
        assert rc == EPERM_EXIT
        (e,) = reports.of(pid)
        assert e.data["identity"] == ident(s) and e.data["reason"] == "identity"


def test_filesystem_mounted_later_gets_exec_marks(work: Path) -> None:
    reports = Reports()
    mnt = work / "mnt"
    mnt.mkdir()
    digest = unique_binary(work / "template")
    pol = policy("no-hash", "enforce", ExecDeny(sha256=(digest,)))
    mounted = False
    try:
        with enforcing(work, [pol], reports, mounts=[str(mnt)]):
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "se-fanotify-test", str(mnt)], check=True,
                           timeout=20)
            mounted = True
            shutil.copy(work / "template", mnt / "denied")
            assert _until(lambda: fork_exec([str(mnt / "denied")])[1] == EPERM_EXIT)
            (e,) = reports.wait(lambda e: e.target == str(mnt / "denied"))
            assert e.action == ACTION_DENY and e.data["sha256"] == digest and e.data["identity"] == ident(
                mnt / "denied")
    finally:
        if mounted:
            subprocess.run(["umount", str(mnt)], check=True, timeout=20)


def test_apply_of_a_bad_set_keeps_the_previous_one(work: Path) -> None:
    reports = Reports()
    binary = work / "bin"
    digest = unique_binary(binary)
    pol = policy("no-hash", "enforce", ExecDeny(sha256=(digest,)))
    bad = policy("bad", "enforce", ExecDeny(sha256=("XYZ",)))
    with enforcing(work, [pol], reports) as enf:
        with pytest.raises(EnforceError, match="policy bad: sha256 'XYZ' is not 64 lowercase hex digits"):
            enf.apply(PolicySet((bad,)))
        with pytest.raises(EnforceError, match="policy rel: path 'tmp/x' is not absolute"):
            enf.apply(PolicySet((policy("rel", "enforce", FileDeny(paths=("tmp/x",))),)))
        assert fork_exec([str(binary)])[1] == EPERM_EXIT
        enf.apply(PolicySet(()))                          # and an empty set lifts it
        assert fork_exec([str(binary)])[1] == 0
        assert enf.stats()["marks_fs"] == 0 and enf.stats()["marks_inode"] == 0

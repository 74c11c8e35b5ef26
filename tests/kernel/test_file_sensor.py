"""File sensor end to end: real file syscalls from child processes through the agent.

Each test runs a small Python script in a child process (the agent ignores
only itself, but the actions come from another process as they would on a
host) inside a temporary directory under /tmp, and asserts the fields of the
OCSF objects the running agent wrote and the raw kernel fields in
``unmapped``. Syscalls whose number matters are made with libc's syscall()
so the expected ``syscall_nr`` is exact; the rest use the os module like a
real program would.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import AgentHandle, Obj, start_agent, stop_agent

pytestmark = pytest.mark.kernel

if platform.machine() != "x86_64":  # pragma: no cover - syscall numbers below are x86-64
    pytest.skip("syscall numbers in this file are x86-64", allow_module_level=True)

NR = {
    "open": 2, "creat": 85, "openat": 257, "openat2": 437, "unlink": 87, "unlinkat": 263, "rmdir": 84,
    "rename": 82, "renameat": 264, "renameat2": 316, "chmod": 90, "fchmod": 91, "fchmodat": 268,
    "fchmodat2": 452, "chown": 92, "fchown": 93, "lchown": 94, "fchownat": 260, "link": 86, "linkat": 265,
    "symlink": 88, "symlinkat": 266, "utimensat": 280, "utimes": 235, "truncate": 76, "ftruncate": 77,
    "setxattr": 188, "lsetxattr": 189, "fsetxattr": 190, "mkdir": 83, "mkdirat": 258,
}
O_FLAGS = {"O_WRONLY": os.O_WRONLY, "O_CREAT": os.O_CREAT, "O_TRUNC": os.O_TRUNC}

# prelude of every child script: raw syscalls through libc
PRELUDE = textwrap.dedent(
    """
    import ctypes, json, os, sys
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    def sc(nr, *args):
        r = libc.syscall(ctypes.c_long(nr), *args)
        return r if r >= 0 else -ctypes.get_errno()
    def B(s):
        return s if isinstance(s, bytes) else os.fsencode(s)
    AT_FDCWD = ctypes.c_int(-100)
    out = {"pid": os.getpid()}
    """
)


@pytest.fixture
def work() -> Iterator[Path]:
    """A fresh directory under /tmp (real path), removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix="se-file-", dir="/tmp")).resolve()
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run_child(script: str, cwd: Path) -> dict[str, Any]:
    """Run PRELUDE + script in a child process; returns the child's `out` dict."""
    code = PRELUDE + textwrap.dedent(script) + "\nprint(json.dumps(out))\n"
    res = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    data: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return data


def file_ev(pid: int, op: str, path: str | None = None, **um: Any) -> Callable[[Obj], bool]:
    """Predicate: a file event of `pid` with this op, raw path and unmapped values."""

    def pred(o: Obj) -> bool:
        u = o.get("unmapped", {})
        if u.get("event") != "file" or u.get("proc", {}).get("pid") != pid or u.get("op") != op:
            return False
        if path is not None and u.get("path") != path:
            return False
        return all(u.get(k) == v for k, v in um.items())

    return pred


def check_common(o: Obj, pid: int, *, class_activity: int, ret: int, nr: int) -> dict[str, Any]:
    assert o["class_uid"] == 1001 and o["category_uid"] == 1
    assert o["activity_id"] == class_activity and o["type_uid"] == 100100 + class_activity
    um: dict[str, Any] = o["unmapped"]
    assert um["ret"] == ret and um["syscall_nr"] == nr
    assert um["proc"]["pid"] == pid and um["proc"]["ppid"] == os.getpid()
    assert o["actor"]["process"]["pid"] == pid
    if ret >= 0:
        assert o["status_id"] == 1 and "status_code" not in o
    else:
        assert o["status_id"] == 2 and o["status_code"] == errno.errorcode[-ret]
    return um


def test_relative_paths_every_op(agent: AgentHandle, work: Path) -> None:
    """create/write, rename, chmod, chown, utimes, truncate, symlink, link, unlink, mkdir, rmdir."""
    mark = agent.mark()
    out = run_child(
        f"""
        fd = os.open("f1", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        os.write(fd, b"hello world")
        st = os.fstat(fd)
        out["open_fd"], out["dev"], out["ino"] = fd, st.st_dev, st.st_ino
        os.close(fd)
        out["rename"] = sc({NR["renameat2"]}, AT_FDCWD, b"f1", AT_FDCWD, b"f2", 1)  # RENAME_NOREPLACE
        out["chmod"] = sc({NR["fchmodat"]}, AT_FDCWD, b"f2", 0o600)
        out["chown"] = sc({NR["fchownat"]}, AT_FDCWD, b"f2", 1234, 5678, 0)
        out["utimes"] = sc({NR["utimensat"]}, AT_FDCWD, b"f2", None, 0)
        out["truncate"] = sc({NR["truncate"]}, b"f2", 3)
        out["symlink"] = sc({NR["symlinkat"]}, b"f2", AT_FDCWD, b"s1")
        out["link"] = sc({NR["linkat"]}, AT_FDCWD, b"f2", AT_FDCWD, b"h1", 0)
        out["unlink"] = sc({NR["unlink"]}, b"h1")
        out["mkdir"] = sc({NR["mkdir"]}, b"dd", 0o700)
        out["rmdir"] = sc({NR["unlinkat"]}, AT_FDCWD, b"dd", 0x200)
        """,
        work,
    )
    pid = out["pid"]
    for k in ("rename", "chmod", "chown", "utimes", "truncate", "symlink", "link", "unlink", "mkdir", "rmdir"):
        assert out[k] == 0, (k, out[k])
    d = str(work)

    o = agent.wait_for(file_ev(pid, "open", "f1"), mark)
    um = check_common(o, pid, class_activity=14, ret=out["open_fd"], nr=NR["openat"])
    assert set(O_FLAGS) <= set(um["open_flags"]) and um["open_flags"][0] == "O_WRONLY"
    assert um["mode"] == "0o640" and um["base"] == d and um["dirfd"] == -100
    assert um["resolved"] == f"{d}/f1" and o["file"]["path"] == f"{d}/f1"
    assert o["file"]["name"] == "f1" and o["file"]["parent_folder"] == d
    assert um["dev"] == out["dev"] and um["ino"] == out["ino"]
    assert "resolved_by_fd" in um["flags"] and "follow" in um["flags"] and "path_truncated" not in um["flags"]

    o = agent.wait_for(file_ev(pid, "rename", "f1"), mark)
    um = check_common(o, pid, class_activity=5, ret=0, nr=NR["renameat2"])
    assert um["path2"] == "f2" and um["base"] == d and um["base2"] == d and um["dirfd2"] == -100
    assert um["op_flags"] == ["RENAME_NOREPLACE"]
    assert o["file"]["path"] == f"{d}/f1" and o["file_result"]["path"] == f"{d}/f2"

    o = agent.wait_for(file_ev(pid, "chmod", "f2"), mark)
    um = check_common(o, pid, class_activity=7, ret=0, nr=NR["fchmodat"])
    assert um["mode"] == "0o600" and o["file"]["path"] == f"{d}/f2" and "follow" in um["flags"]

    o = agent.wait_for(file_ev(pid, "chown", "f2"), mark)
    um = check_common(o, pid, class_activity=7, ret=0, nr=NR["fchownat"])
    assert um["uid"] == 1234 and um["gid"] == 5678 and um["op_flags"] == []

    o = agent.wait_for(file_ev(pid, "utimes", "f2"), mark)
    check_common(o, pid, class_activity=6, ret=0, nr=NR["utimensat"])
    assert o["file"]["path"] == f"{d}/f2"

    o = agent.wait_for(file_ev(pid, "truncate", "f2"), mark)
    um = check_common(o, pid, class_activity=3, ret=0, nr=NR["truncate"])
    assert um["size"] == 3 and um["base"] == d

    o = agent.wait_for(file_ev(pid, "symlink", "s1"), mark)
    um = check_common(o, pid, class_activity=1, ret=0, nr=NR["symlinkat"])
    assert um["symlink_target"] == "f2" and um["base2"] == "" and o["file"]["type_id"] == 7
    assert o["file"]["path"] == f"{d}/s1"

    o = agent.wait_for(file_ev(pid, "link", "f2"), mark)
    um = check_common(o, pid, class_activity=1, ret=0, nr=NR["linkat"])
    assert um["path2"] == "h1" and o["file_result"]["path"] == f"{d}/h1" and "follow" not in um["flags"]

    o = agent.wait_for(file_ev(pid, "unlink", "h1"), mark)
    check_common(o, pid, class_activity=4, ret=0, nr=NR["unlink"])
    assert o["file"]["path"] == f"{d}/h1"

    o = agent.wait_for(file_ev(pid, "mkdir", "dd"), mark)
    um = check_common(o, pid, class_activity=1, ret=0, nr=NR["mkdir"])
    assert um["mode"] == "0o700" and o["file"]["type_id"] == 2

    o = agent.wait_for(file_ev(pid, "rmdir", "dd"), mark)
    um = check_common(o, pid, class_activity=4, ret=0, nr=NR["unlinkat"])
    assert um["op_flags"] == ["AT_REMOVEDIR"] and o["file"]["path"] == f"{d}/dd"


def test_dirfd_relative_and_fd_calls(agent: AgentHandle, work: Path) -> None:
    (work / "sub").mkdir()
    mark = agent.mark()
    out = run_child(
        f"""
        dfd = os.open("sub", os.O_RDONLY | os.O_DIRECTORY)
        fd = os.open("g", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o604, dir_fd=dfd)
        out["dfd"], out["fd"] = dfd, fd
        st = os.fstat(fd)
        out["dev"], out["ino"] = st.st_dev, st.st_ino
        out["fchmod"] = sc({NR["fchmod"]}, fd, 0o4755)
        out["fchown"] = sc({NR["fchown"]}, fd, -1, 42)
        out["ftruncate"] = sc({NR["ftruncate"]}, fd, 77)
        out["utimes_fd"] = sc({NR["utimensat"]}, fd, None, None, 0)
        out["rename"] = sc({NR["renameat"]}, ctypes.c_int(-100), b"sub/g", dfd, b"../top")
        out["unlink"] = sc({NR["unlinkat"]}, ctypes.c_int(-100), b"top", 0)
        """,
        work,
    )
    pid, dfd, fd = out["pid"], out["dfd"], out["fd"]
    sub = f"{work}/sub"
    o = agent.wait_for(file_ev(pid, "open", "g"), mark)
    um = check_common(o, pid, class_activity=14, ret=fd, nr=NR["openat"])
    assert um["dirfd"] == dfd and um["base"] == sub and o["file"]["path"] == f"{sub}/g"
    assert um["open_flags"] == ["O_RDWR", "O_CREAT", "O_EXCL", "O_CLOEXEC"] or um["open_flags"][:3] == [
        "O_RDWR", "O_CREAT", "O_EXCL"]
    assert "follow" not in um["flags"] and um["ino"] == out["ino"] and um["dev"] == out["dev"]

    for op, nr, act in (("chmod", "fchmod", 7), ("chown", "fchown", 7), ("truncate", "ftruncate", 3),
                        ("utimes", "utimensat", 6)):
        assert out[nr if nr != "utimensat" else "utimes_fd"] == 0
        o = agent.wait_for(file_ev(pid, op, None, syscall_nr=NR[nr]), mark)
        um = check_common(o, pid, class_activity=act, ret=0, nr=NR[nr])
        assert um["dirfd"] == fd and um["resolved"] == f"{sub}/g" and o["file"]["path"] == f"{sub}/g"
        assert "resolved_by_fd" in um["flags"] and um["ino"] == out["ino"] and um["path"] == ""
        if op == "chmod":
            assert um["mode"] == "0o4755"
        if op == "chown":
            assert um["uid"] == 0xFFFFFFFF and um["gid"] == 42
        if op == "truncate":
            assert um["size"] == 77

    assert out["rename"] == 0 and out["unlink"] == 0
    o = agent.wait_for(file_ev(pid, "rename", "sub/g"), mark)
    um = check_common(o, pid, class_activity=5, ret=0, nr=NR["renameat"])
    assert um["dirfd"] == -100 and um["dirfd2"] == dfd and um["base"] == str(work) and um["base2"] == sub
    assert um["path2"] == "../top"
    assert o["file"]["path"] == f"{sub}/g" and o["file_result"]["path"] == f"{work}/top"
    o = agent.wait_for(file_ev(pid, "unlink", "top"), mark)
    um = check_common(o, pid, class_activity=4, ret=0, nr=NR["unlinkat"])
    assert um["op_flags"] == [] and o["file"]["path"] == f"{work}/top"


def test_symlinked_directory(agent: AgentHandle, work: Path) -> None:
    (work / "real").mkdir()
    (work / "link").symlink_to(work / "real")
    mark = agent.mark()
    out = run_child(
        f"""
        fd = os.open("link/inner", os.O_WRONLY | os.O_CREAT, 0o600)
        out["fd"] = fd
        out["unlink_missing"] = sc({NR["unlink"]}, b"link/missing")
        """,
        work,
    )
    pid = out["pid"]
    o = agent.wait_for(file_ev(pid, "open", "link/inner"), mark)
    um = check_common(o, pid, class_activity=14, ret=out["fd"], nr=NR["openat"])
    assert um["base"] == str(work)
    assert um["resolved"] == f"{work}/real/inner" and o["file"]["path"] == f"{work}/real/inner"
    assert out["unlink_missing"] == -errno.ENOENT
    o = agent.wait_for(file_ev(pid, "unlink", "link/missing"), mark)
    um = check_common(o, pid, class_activity=4, ret=-errno.ENOENT, nr=NR["unlink"])
    assert um["resolved"] == "" and o["file"]["path"] == f"{work}/real/missing"  # resolved in user space


def test_failed_open_and_rare_syscalls(agent: AgentHandle, work: Path) -> None:
    mark = agent.mark()
    out = run_child(
        f"""
        try:
            os.open("missing", os.O_RDONLY)
        except FileNotFoundError:
            out["enoent"] = True
        out["creat"] = sc({NR["creat"]}, b"{work}/c", 0o644)
        how = (ctypes.c_uint64 * 3)(os.O_RDONLY | os.O_NOFOLLOW, 0, 0x08)   # RESOLVE_BENEATH
        out["openat2"] = sc({NR["openat2"]}, AT_FDCWD, b"c", ctypes.byref(how), 24)
        out["legacy_open"] = sc({NR["open"]}, b"missing2", 0)
        out["fchmodat2"] = sc({NR["fchmodat2"]}, AT_FDCWD, b"c", 0o640, 0)
        """,
        work,
    )
    pid = out["pid"]
    assert out["enoent"] and out["creat"] >= 0 and out["openat2"] >= 0
    o = agent.wait_for(file_ev(pid, "open", "missing"), mark)
    um = check_common(o, pid, class_activity=14, ret=-2, nr=NR["openat"])
    assert o["status_detail"] == os.strerror(errno.ENOENT) and um["resolved"] == "" and um["ino"] == 0
    assert o["file"]["path"] == f"{work}/missing" and um["base"] == str(work)

    o = agent.wait_for(file_ev(pid, "open", f"{work}/c", syscall_nr=NR["creat"]), mark)
    um = check_common(o, pid, class_activity=14, ret=out["creat"], nr=NR["creat"])
    assert um["open_flags"] == ["O_WRONLY", "O_CREAT", "O_TRUNC"] and um["base"] == "" and um["mode"] == "0o644"

    o = agent.wait_for(file_ev(pid, "open", "c", syscall_nr=NR["openat2"]), mark)
    um = check_common(o, pid, class_activity=14, ret=out["openat2"], nr=NR["openat2"])
    assert um["open_flags"] == ["O_RDONLY", "O_NOFOLLOW"] and um["resolve"] == ["RESOLVE_BENEATH"]
    assert um["resolved"] == f"{work}/c"

    o = agent.wait_for(file_ev(pid, "open", "missing2", syscall_nr=NR["open"]), mark)
    check_common(o, pid, class_activity=14, ret=-2, nr=NR["open"])

    if out["fchmodat2"] != -errno.ENOSYS:
        o = agent.wait_for(file_ev(pid, "chmod", "c", syscall_nr=NR["fchmodat2"]), mark)
        um = check_common(o, pid, class_activity=7, ret=0, nr=NR["fchmodat2"])
        assert um["mode"] == "0o640" and "follow" in um["flags"]


def test_setxattr(agent: AgentHandle, work: Path) -> None:
    probe = work / "probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
    except OSError as exc:
        pytest.skip(f"{work} does not support user.* xattrs: {exc}")
    (work / "x").write_bytes(b"")
    mark = agent.mark()
    out = run_child(
        f"""
        out["setxattr"] = sc({NR["setxattr"]}, b"x", b"user.sentinel", b"value", 5, 1)
        """,
        work,
    )
    pid = out["pid"]
    assert out["setxattr"] == 0
    o = agent.wait_for(file_ev(pid, "setxattr", "x"), mark)
    um = check_common(o, pid, class_activity=6, ret=0, nr=NR["setxattr"])
    assert um["xattr_name"] == "user.sentinel" and um["size"] == 5 and um["op_flags"] == ["XATTR_CREATE"]
    assert o["file"]["path"] == f"{work}/x"


def test_hostile_names(agent: AgentHandle, work: Path) -> None:
    # nested directories to a ~4 KiB absolute path (each name 200 bytes)
    deep = work
    while len(str(deep)) < 3900:
        deep = deep / ("d" * 200)
        deep.mkdir()
    mark = agent.mark()
    out = run_child(
        f"""
        fd = os.open(b"new\\nline", os.O_WRONLY | os.O_CREAT, 0o600); out["nl"] = fd
        fd = os.open(b"bad\\xff\\xfename", os.O_WRONLY | os.O_CREAT, 0o600); out["bad"] = fd
        long = {str(deep)!r} + "/leaf"
        out["long_len"] = len(long)
        fd = os.open(long, os.O_WRONLY | os.O_CREAT, 0o600); out["long"] = fd
        """,
        work,
    )
    pid = out["pid"]
    o = agent.wait_for(file_ev(pid, "open", "new\nline"), mark)
    assert o["file"]["path"] == f"{work}/new\nline" and o["unmapped"]["ret"] == out["nl"]
    o = agent.wait_for(file_ev(pid, "open", "bad\\xff\\xfename"), mark)
    assert o["file"]["path"] == f"{work}/bad\\xff\\xfename" and o["file"]["name"] == "bad\\xff\\xfename"
    long = f"{deep}/leaf"
    o = agent.wait_for(file_ev(pid, "open", long), mark)
    um = o["unmapped"]
    assert um["ret"] == out["long"] and out["long_len"] > 3900
    # the kernel's resolved path is cut (SE_PATH_MAX - SE_NAME_MAX); the full raw path wins
    assert "path_truncated" in um["flags"] and len(um["resolved"]) < len(long)
    assert long.startswith(um["resolved"])
    assert o["file"]["path"] == long


def test_open_dedup(agent: AgentHandle, work: Path) -> None:
    (work / "same").write_bytes(b"x")
    mark = agent.mark()
    script = """
        for _ in range(20):
            os.close(os.open("same", os.O_RDONLY))
        for _ in range(3):
            try:
                os.open("nothere", os.O_RDONLY)
            except FileNotFoundError:
                pass
        """
    a = run_child(script, work)
    b = run_child(script, work)
    for out in (a, b):
        agent.wait_for(file_ev(out["pid"], "open", "nothere"), mark)
        agent.wait_for(file_ev(out["pid"], "open", "same"), mark)
    agent.mark()
    for out in (a, b):
        # repeated identical opens by one process: one event (default window 1 s)
        assert len(agent.find_all(file_ev(out["pid"], "open", "same"), mark)) == 1
        # failed opens are never deduplicated
        assert len(agent.find_all(file_ev(out["pid"], "open", "nothere"), mark)) == 3


def test_dedup_does_not_hide_a_recreated_file(agent: AgentHandle, work: Path) -> None:
    """A file deleted and created again inside the window is a new file (a reused inode number
    is told apart by its i_generation): every creation is reported."""
    mark = agent.mark()
    script = """
        inos = []
        for _ in range(5):
            fd = os.open("again", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            inos.append(os.fstat(fd).st_ino)
            os.close(fd)
            os.unlink("again")
        out["reused"] = len(inos) - len(set(inos))
        """
    out = run_child(script, work)
    got = agent.wait_all(file_ev(out["pid"], "open", "again"), 5, mark)
    assert len(got) == 5, f"{len(got)} of 5 creations reported (inode numbers reused {out['reused']} times)"
    assert all("O_CREAT" in o["unmapped"]["open_flags"] for o in got)


def test_prefix_filters(work: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A second agent with include/exclude prefixes."""
    (work / "keep").mkdir()
    (work / "keep" / "skip").mkdir()
    cfg = textwrap.dedent(
        f"""
        file:
          include_prefixes: ["{work}/keep"]
          exclude_prefixes: ["{work}/keep/skip"]
        """
    )
    handle = start_agent(tmp_path_factory.mktemp("agent-filters"), cfg)
    try:
        mark = handle.mark()
        out = run_child(
            f"""
            for name in ("keep/a", "keep/skip/b", "other", "keep/skip/../c", "keepx"):
                os.close(os.open(name, os.O_WRONLY | os.O_CREAT, 0o600))
            out["unlink"] = sc({NR["unlink"]}, b"keep/skip/b")
            out["unlink2"] = sc({NR["unlink"]}, b"keep/a")
            out["unlink3"] = sc({NR["unlink"]}, b"keep/skip/../c")   # ".." defeats the exclude: reported
            """,
            work,
        )
        pid = out["pid"]
        handle.wait_for(file_ev(pid, "unlink", "keep/a"), mark)
        o = handle.wait_for(file_ev(pid, "unlink", "keep/skip/../c"), mark)
        assert out["unlink3"] == 0 and o["file"]["path"] == f"{work}/keep/c"
        handle.wait_for(file_ev(pid, "open", "keep/skip/../c"), mark)
        handle.wait_for(file_ev(pid, "open", "keep/a"), mark)
        handle.mark()
        raw = {o["unmapped"]["path"] for o in handle.find_all(file_ev(pid, "open"), mark)}
        assert "keep/skip/b" not in raw and "other" not in raw and "keepx" not in raw
        assert not handle.find_all(file_ev(pid, "unlink", "keep/skip/b"), mark)
    finally:
        assert stop_agent(handle) == 0

"""Process Activity (1007) mapping of exec, fork, exit and comm, from hand-built Events."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sentinel_edge.model import Event, ProcessInfo
from sentinel_edge.output.ocsf import to_ocsf
from sentinel_edge.output.ocsf.common import HostInfo, untext
from sentinel_edge.output.ocsf.process import exec_flag_names, fd_kind_name
from sentinel_edge.output.ocsf.schema import assert_valid

BOOT = 1_700_000_000_000_000_000
HOST = HostInfo(
    hostname="edge", boot_id="boot-1", boot_time_ns=BOOT, machine_id="m" * 32, kernel_release="6.18.0"
)
MS = 1_000_000


def proc(**kw: Any) -> dict[str, Any]:
    p = {
        "pid": 300,
        "tid": 300,
        "ppid": 200,
        "ns_pid": 12,
        "uid": 1000,
        "euid": 1000,
        "gid": 100,
        "egid": 100,
        "loginuid": 1000,
        "sessionid": 4,
        "mnt_ns": 11,
        "pid_ns": 12,
        "net_ns": 13,
        "cgroup_id": 99,
        "start_ns": 3_000 * MS,
        "parent_start_ns": 2_000 * MS,
        "comm": b"ls",
    }
    p.update(kw)
    return p


def info(pid: int, start_ms: int, comm: str, exe: str, **kw: Any) -> ProcessInfo:
    return ProcessInfo(
        pid=pid,
        start_ns=start_ms * MS,
        exec_id=f"x-{pid}",
        parent_exec_id=None,
        ppid=kw.pop("ppid", 1),
        comm=comm,
        exe=exe,
        **kw,
    )


PARENT = info(
    200,
    2_000,
    "bash",
    "/usr/bin/bash",
    cmdline=["bash", "-i"],
    uid=1000,
    gid=100,
    user="alice",
    group="users",
)
GRANDPARENT = info(100, 1_000, "sshd", "/usr/sbin/sshd", cmdline=["sshd: alice"])


def exec_data(**kw: Any) -> dict[str, Any]:
    d = {
        "flags": 0,
        "argc": 2,
        "old_uid": 1000,
        "old_euid": 1000,
        "old_gid": 100,
        "old_egid": 100,
        "exe_dev": (8 << 8) | 2,
        "exe_nlink": 1,
        "exe_ino": 77,
        "exe_mode": 0o100755,
        "exe_uid": 0,
        "fd_kind": [1, 2, 3],
        "filename": b"/bin/ls",
        "interp": b"/bin/ls",
        "exe_path": b"/usr/bin/ls",
        "cwd": b"/home/alice",
        "argv": b"ls\0-la\0",
        "ld_preload": b"",
        "ld_library_path": b"",
    }
    d.update(kw)
    return d


def mapped(ev: Event) -> dict[str, Any]:
    obj = to_ocsf(ev, HOST)
    assert_valid(obj)
    json.loads(json.dumps(obj, ensure_ascii=False))
    return obj


# ---------------------------------------------------------------- exec


def test_exec_enriched() -> None:
    me = info(
        300,
        3_000,
        "ls",
        "/usr/bin/ls",
        ppid=200,
        cmdline=["ls", "-la"],
        cwd="/home/alice",
        uid=1000,
        euid=1000,
        gid=100,
        user="alice",
        group="users",
        loginuid=1000,
        container_id="abc123",
        container_runtime="docker",
    )
    ev = Event("exec", 1, 5_000 * MS, 1, proc(), exec_data(), me, PARENT, [PARENT, GRANDPARENT])
    obj = mapped(ev)
    assert (obj["class_uid"], obj["activity_id"], obj["type_uid"]) == (1007, 1, 100701)
    assert (obj["activity_name"], obj["type_name"]) == ("Launch", "Process Activity: Launch")
    assert (obj["launch_type_id"], obj["launch_type"]) == (3, "Exec")
    assert (obj["status_id"], obj["status"]) == (1, "Success")
    assert obj["time"] == BOOT // MS + 5_000
    assert obj["message"] == "exec /usr/bin/ls"
    p = obj["process"]
    assert p["pid"] == 300 and p["ptid"] == 300 and p["uid"] == "x-300" and p["name"] == "ls"
    assert p["path"] == "/usr/bin/ls"
    assert p["file"] == {
        "name": "ls",
        "path": "/usr/bin/ls",
        "type_id": 1,
        "parent_folder": "/usr/bin",
        "uid": "8:2:77",
        "owner": {"uid": "0"},
    }
    assert p["cmd_line"] == "ls -la" and p["working_directory"] == "/home/alice"
    assert p["user"] == {"uid": "1000", "name": "alice"} and p["group"] == {"uid": "100", "name": "users"}
    assert (p["euid"], p["egid"], p["auid"], p["namespace_pid"]) == (1000, 100, 1000, 12)
    assert p["container"] == {"uid": "abc123", "runtime": "docker"}
    assert p["created_time"] == BOOT // MS + 3_000
    assert p["parent_process"]["pid"] == 200 and p["parent_process"]["uid"] == "x-200"
    assert [a["pid"] for a in p["ancestry"]] == [200, 100]
    assert p["ancestry"][1] == {
        "pid": 100,
        "uid": "x-100",
        "name": "sshd",
        "path": "/usr/sbin/sshd",
        "cmd_line": "sshd: alice",
        "created_time": BOOT // MS + 1_000,
    }
    # the actor is the parent, with its own parent and ancestry
    a = obj["actor"]["process"]
    assert a["pid"] == 200 and a["uid"] == "x-200" and a["cmd_line"] == "bash -i" and a["name"] == "bash"
    assert a["parent_process"]["pid"] == 100 and [x["pid"] for x in a["ancestry"]] == [100]
    assert obj["actor"]["user"] == {"uid": "1000", "name": "alice"}
    u = obj["unmapped"]
    assert u["event"] == "exec" and u["proc"]["pid"] == 300 and u["proc"]["cgroup_id"] == 99
    assert u["filename"] == "/bin/ls" and u["interp"] == "/bin/ls" and u["exe_path"] == "/usr/bin/ls"
    assert u["argv"] == ["ls", "-la"] and u["argc"] == 2 and u["cwd"] == "/home/alice"
    assert u["flags"] == [] and u["flags_raw"] == 0
    assert u["exe"] == {
        "dev": (8 << 8) | 2,
        "dev_major": 8,
        "dev_minor": 2,
        "ino": 77,
        "nlink": 1,
        "mode": 0o100755,
        "mode_str": "-rwxr-xr-x",
        "uid": 0,
    }
    assert u["fd"] == {"stdin": "tty", "stdout": "pipe", "stderr": "socket"}
    assert "ld_preload" not in u and "ld_library_path" not in u and "credentials" not in u
    assert obj["device"] == {
        "hostname": "edge",
        "uid": "m" * 32,
        "boot_uid": "boot-1",
        "boot_time": BOOT // MS,
        "type_id": 0,
        "os": {"name": "Linux", "type_id": 200, "kernel_release": "6.18.0"},
    }
    assert obj["metadata"]["profiles"] == ["container", "host", "linux/linux_users"]
    assert obj["metadata"]["extensions"] == [{"name": "linux", "uid": "1", "version": "1.8.0"}]
    assert obj["metadata"]["event_code"] == "exec" and obj["metadata"]["version"] == "1.8.0"


def test_exec_without_enrichment_is_complete_from_raw_fields() -> None:
    ev = Event("exec", 1, 5_000 * MS, 0, proc(uid=0, euid=0, loginuid=0xFFFFFFFF), exec_data())
    obj = mapped(ev)
    p = obj["process"]
    assert p["pid"] == 300 and p["name"] == "ls" and p["path"] == "/usr/bin/ls"
    assert p["cmd_line"] == "ls -la" and p["working_directory"] == "/home/alice"
    assert p["user"] == {"uid": "0"} and p["group"] == {"uid": "100"} and p["euid"] == 0
    assert "auid" not in p  # loginuid unset
    assert p["created_time"] == BOOT // MS + 3_000
    assert p["parent_process"] == {"pid": 200, "created_time": BOOT // MS + 2_000}
    assert obj["actor"] == {"process": {"pid": 200, "created_time": BOOT // MS + 2_000}}
    assert "uid" not in p  # no exec_id without enrichment


def test_exec_setuid_memfd_preload_and_hostile_argv() -> None:
    flags = (1 << 4) | (1 << 3) | (1 << 2) | (1 << 0) | (1 << 6)
    argv = b"/proc/self/fd/3\0a\nb\0\xff\xfe\\x41\0"
    ev = Event(
        "exec",
        1,
        5_000 * MS,
        0,
        proc(euid=0),
        exec_data(
            flags=flags,
            argc=3,
            exe_nlink=0,
            exe_mode=0o104755,
            exe_path=b"/memfd:x (deleted)",
            filename=b"/proc/self/fd/3",
            argv=argv,
            ld_preload=b"/tmp/evil.so",
            ld_library_path=b"/tmp/\xff",
            fd_kind=[0, 6, 9],
        ),
    )
    obj = mapped(ev)
    u = obj["unmapped"]
    assert u["flags"] == ["argv_truncated", "exe_deleted", "exe_memfd", "setuid", "secureexec"]
    assert u["argv"] == ["/proc/self/fd/3", "a\nb", "\\xff\\xfe\\\\x41"]
    assert [untext(a) for a in u["argv"]] == [b"/proc/self/fd/3", b"a\nb", b"\xff\xfe\\x41"]
    assert u["ld_preload"] == "/tmp/evil.so" and u["ld_library_path"] == "/tmp/\\xff"
    assert u["fd"] == {"stdin": "none", "stdout": "other", "stderr": "unknown(9)"}
    assert u["exe"]["mode_str"] == "-rwsr-xr-x" and u["exe"]["nlink"] == 0
    assert u["credentials"] == {
        "old": {"uid": 1000, "euid": 1000, "gid": 100, "egid": 100},
        "new": {"uid": 1000, "euid": 0, "gid": 100, "egid": 100},
    }
    assert obj["process"]["file"]["is_deleted"] is True
    assert obj["process"]["file"]["name"] == "memfd:x (deleted)"
    assert obj["message"] == "exec /memfd:x (deleted) (setuid)"


def test_exec_flag_and_fd_names() -> None:
    assert exec_flag_names(0x3FF) == [
        "argv_truncated",
        "filename_truncated",
        "exe_deleted",
        "exe_memfd",
        "setuid",
        "setgid",
        "secureexec",
        "env_truncated",
        "cwd_truncated",
        "exe_truncated",
    ]
    assert exec_flag_names(1 << 12) == ["bit12"]
    assert [fd_kind_name(k) for k in range(7)] == ["none", "tty", "pipe", "socket", "file", "char", "other"]


# ---------------------------------------------------------------- fork


def test_fork_child_is_process_caller_is_actor() -> None:
    caller = info(
        200,
        2_000,
        "bash",
        "/usr/bin/bash",
        ppid=100,
        cmdline=["bash", "-i"],
        uid=1000,
        gid=100,
        user="alice",
        group="users",
    )
    ev = Event(
        "fork",
        2,
        6_000 * MS,
        0,
        proc(pid=200, tid=201, ppid=100, comm=b"bash", start_ns=2_000 * MS, parent_start_ns=1_000 * MS),
        {"child_pid": 400, "child_tid": 400, "child_start_ns": 6_000 * MS, "is_thread": 0},
        caller,
        GRANDPARENT,
        [GRANDPARENT],
    )
    obj = mapped(ev)
    assert (obj["activity_id"], obj["launch_type_id"], obj["launch_type"]) == (1, 2, "Fork")
    a = obj["actor"]["process"]
    assert a["pid"] == 200 and a["ptid"] == 201 and a["uid"] == "x-200"
    assert a["parent_process"]["pid"] == 100
    c = obj["process"]
    assert c["pid"] == 400 and c["ptid"] == 400 and "uid" not in c
    assert c["created_time"] == BOOT // MS + 6_000
    assert c["name"] == "bash" and c["path"] == "/usr/bin/bash" and c["cmd_line"] == "bash -i"
    assert c["user"] == {"uid": "1000", "name": "alice"} and c["group"] == {"uid": "100", "name": "users"}
    assert c["parent_process"]["pid"] == 200 and c["parent_process"]["uid"] == "x-200"
    assert "parent_process" not in c["parent_process"]
    assert [x["pid"] for x in c["ancestry"]] == [200, 100]
    assert obj["unmapped"]["fork"] == {
        "child_pid": 400,
        "child_tid": 400,
        "child_start_ns": 6_000 * MS,
        "is_thread": False,
    }
    assert obj["message"] == "fork 200 -> 400"


def test_fork_without_enrichment_and_thread_create() -> None:
    data = {"child_pid": 400, "child_tid": 400, "child_start_ns": 6_000 * MS, "is_thread": 0}
    obj = mapped(Event("fork", 2, 6_000 * MS, 0, proc(), data))
    assert obj["process"]["pid"] == 400 and obj["process"]["parent_process"]["pid"] == 300
    assert obj["process"]["ancestry"][0] == {"pid": 300, "name": "ls", "created_time": BOOT // MS + 3_000}
    thread = mapped(
        Event("fork", 2, 6_000 * MS, 0, proc(), dict(data, child_pid=300, child_tid=305, is_thread=1))
    )
    assert (thread["activity_id"], thread["activity_name"]) == (99, "Thread Create")
    assert thread["process"]["pid"] == 300 and thread["process"]["ptid"] == 305
    assert "launch_type_id" not in thread


# ---------------------------------------------------------------- exit


@pytest.mark.parametrize(
    ("code", "sig", "core", "message"),
    [
        (3, 0, 0, "process exited with code 3"),
        (0, 9, 0, "process killed by SIGKILL"),
        (0, 11, 1, "process killed by SIGSEGV (core dumped)"),
    ],
)
def test_exit(code: int, sig: int, core: int, message: str) -> None:
    me = info(300, 3_000, "ls", "/usr/bin/ls", ppid=200)
    ev = Event(
        "exit",
        3,
        9_000 * MS,
        0,
        proc(),
        {"exit_code": code, "exit_signal": sig, "core_dumped": core, "is_thread": 0},
        me,
        PARENT,
        [PARENT],
    )
    obj = mapped(ev)
    assert (obj["activity_id"], obj["activity_name"], obj["type_uid"]) == (2, "Terminate", 100702)
    assert obj["exit_code"] == code and obj["message"] == message
    assert obj["process"]["pid"] == 300 and obj["process"]["terminated_time"] == BOOT // MS + 9_000
    assert obj["process"]["parent_process"]["pid"] == 200
    assert obj["actor"]["process"]["pid"] == 300
    u = obj["unmapped"]
    assert (u["exit_code"], u["exit_signal"], u["core_dumped"], u["is_thread"]) == (
        code,
        sig,
        bool(core),
        False,
    )
    assert u.get("signal_name") == ({9: "SIGKILL", 11: "SIGSEGV"}.get(sig))


def test_thread_exit_is_other() -> None:
    obj = mapped(
        Event(
            "exit",
            3,
            9_000 * MS,
            0,
            proc(tid=305),
            {"exit_code": 0, "exit_signal": 0, "core_dumped": 0, "is_thread": 1},
        )
    )
    assert (obj["activity_id"], obj["activity_name"]) == (99, "Thread Exit")
    assert "terminated_time" not in obj["process"] and obj["process"]["ptid"] == 305


# ---------------------------------------------------------------- comm


def test_comm_change() -> None:
    me = info(300, 3_000, "ls", "/usr/bin/ls", ppid=200)
    ev = Event(
        "comm", 4, 7_000 * MS, 0, proc(), {"old_comm": b"ls", "new_comm": b"kworker/\xff\n"}, me, PARENT
    )
    obj = mapped(ev)
    assert (obj["activity_id"], obj["activity_name"], obj["type_name"]) == (
        99,
        "Set Name",
        "Process Activity: Other",
    )
    assert obj["process"]["name"] == "kworker/\\xff\n"
    assert obj["actor"]["process"]["name"] == "ls"
    assert obj["unmapped"]["old_comm"] == "ls" and obj["unmapped"]["new_comm"] == "kworker/\\xff\n"
    assert untext(obj["unmapped"]["new_comm"]) == b"kworker/\xff\n"

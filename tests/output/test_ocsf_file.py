"""OCSF File System Activity mapping of se_file events, from hand-built Events."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from sentinel_edge.model import KIND_FILE, Event
from sentinel_edge.output.ocsf import HostInfo, to_ocsf
from sentinel_edge.output.ocsf.file import op_flag_names, open_flag_names
from sentinel_edge.output.ocsf.schema import validate

HOST = HostInfo(hostname="h1", boot_id="boot-1", boot_time_ns=1_700_000_000_000_000_000)
O_WRONLY, O_CREAT, O_TRUNC, O_CLOEXEC = 0o1, 0o100, 0o1000, 0o2000000


def proc(pid: int = 4242) -> dict[str, Any]:
    return {
        "pid": pid, "tid": pid, "ppid": 1, "ns_pid": pid, "uid": 1000, "euid": 1000, "gid": 1000,
        "egid": 1000, "loginuid": 1000, "sessionid": 3, "mnt_ns": 4026531841, "pid_ns": 4026531836,
        "net_ns": 4026531840, "_pad0": 0, "cgroup_id": 77, "start_ns": 5_000_000, "parent_start_ns": 1_000,
        "comm": b"touch",
    }


def fev(**over: Any) -> Event:
    data: dict[str, Any] = {
        "op": 1, "ret": 3, "syscall_nr": 257, "dirfd": -100, "open_flags": 0, "mode": 0, "uid": 0,
        "gid": 0, "flags": 0, "dev": 0, "ino": 0, "size": 0, "path": b"", "path2": b"", "base": b"",
        "base2": b"", "resolved": b"", "xattr_name": b"", "dirfd2": -100, "resolve": 0,
    }
    data.update(over)
    return Event(kind=KIND_FILE, type_id=10, ts_ns=2_000_000_000, cpu=1, proc=proc(), data=data)


def mapped(ev: Event) -> dict[str, Any]:
    obj = to_ocsf(ev, HOST)
    errors = validate(obj)
    assert errors == [], errors
    return obj


def test_open_write_create_with_resolved_path() -> None:
    obj = mapped(fev(ret=5, path=b"out.txt", base=b"/home/u", resolved=b"/home/u/out.txt",
                     open_flags=O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode=0o644, flags=0b110,
                     dev=0xFE00, ino=1234))
    assert obj["class_uid"] == 1001 and obj["activity_id"] == 14 and obj["type_uid"] == 100114
    assert obj["category_uid"] == 1 and obj["status_id"] == 1 and "status_code" not in obj
    f = obj["file"]
    assert f["path"] == "/home/u/out.txt" and f["name"] == "out.txt" and f["parent_folder"] == "/home/u"
    assert f["uid"] == f"{0xFE00}:1234"
    um = obj["unmapped"]
    assert um["event"] == "file" and um["op"] == "open" and um["ret"] == 5
    assert um["open_flags"] == ["O_WRONLY", "O_CREAT", "O_TRUNC", "O_CLOEXEC"]
    assert um["mode"] == "0o644" and um["path"] == "out.txt" and um["base"] == "/home/u"
    assert um["flags"] == ["resolved_by_fd", "follow"] and um["dev"] == 0xFE00 and um["ino"] == 1234
    assert um["dirfd"] == -100 and um["syscall_nr"] == 257 and um["proc"]["pid"] == 4242


def test_failed_open_is_a_failure_resolved_from_base(tmp_path: Path) -> None:
    base = os.fsencode(str(tmp_path.resolve()))
    obj = mapped(fev(ret=-2, path=b"../nope/x", base=base + b"/sub", flags=4))
    assert obj["status_id"] == 2 and obj["status_code"] == "ENOENT"
    assert obj["status_detail"] == os.strerror(2)
    assert obj["file"]["path"] == os.fsdecode(base) + "/nope/x"
    assert obj["unmapped"]["open_flags"] == ["O_RDONLY"] and obj["unmapped"]["resolved"] == ""
    assert "failed: ENOENT" in obj["message"]


@pytest.mark.parametrize(
    ("op", "activity", "type_id"),
    [(2, 4, 0), (12, 4, 2), (4, 7, 0), (5, 7, 0), (8, 6, 0), (10, 6, 0), (9, 3, 0), (11, 1, 2), (7, 1, 7)],
)
def test_activity_per_op(op: int, activity: int, type_id: int) -> None:
    obj = mapped(fev(op=op, ret=0, path=b"/etc/thing", syscall_nr=87))
    assert obj["activity_id"] == activity and obj["file"]["type_id"] == type_id
    assert obj["file"]["path"] == "/etc/thing" and obj["status_id"] == 1


def test_rename_has_file_result_and_flags() -> None:
    obj = mapped(fev(op=3, ret=0, path=b"a", base=b"/d1", path2=b"/abs/b", base2=b"", open_flags=1,
                     dirfd=7, dirfd2=-100, syscall_nr=316))
    assert obj["activity_id"] == 5
    assert obj["file"]["path"] == "/d1/a" and obj["file_result"]["path"] == "/abs/b"
    um = obj["unmapped"]
    assert um["op_flags"] == ["RENAME_NOREPLACE"] and um["path2"] == "/abs/b" and um["dirfd"] == 7
    assert um["dirfd2"] == -100


def test_link_and_symlink() -> None:
    link = mapped(fev(op=6, ret=0, path=b"orig", base=b"/w", path2=b"hard", base2=b"/w2"))
    assert link["activity_id"] == 1 and link["file"]["path"] == "/w/orig"
    assert link["file_result"]["path"] == "/w2/hard"
    sym = mapped(fev(op=7, ret=0, path=b"ln", base=b"/w", path2=b"../target"))
    assert sym["file"]["path"] == "/w/ln" and sym["file"]["type_id"] == 7 and "file_result" not in sym
    assert sym["unmapped"]["symlink_target"] == "../target"


def test_chown_chmod_truncate_xattr_fields() -> None:
    ch = mapped(fev(op=5, ret=-1, path=b"/f", uid=1000, gid=0xFFFFFFFF, open_flags=0x100, syscall_nr=260))
    assert ch["status_code"] == "EPERM" and ch["unmapped"]["uid"] == 1000
    assert ch["unmapped"]["gid"] == 0xFFFFFFFF and ch["unmapped"]["op_flags"] == ["AT_SYMLINK_NOFOLLOW"]
    cm = mapped(fev(op=4, ret=0, path=b"", dirfd=4, resolved=b"/x/y", mode=0o4755, flags=2))
    assert cm["file"]["path"] == "/x/y" and cm["unmapped"]["mode"] == "0o4755"
    tr = mapped(fev(op=9, ret=0, dirfd=3, resolved=b"/t", size=123, flags=2))
    assert tr["unmapped"]["size"] == 123 and tr["activity_id"] == 3
    xa = mapped(fev(op=10, ret=0, path=b"/f", xattr_name=b"user.k", size=5, open_flags=1))
    assert xa["unmapped"]["xattr_name"] == "user.k" and xa["unmapped"]["op_flags"] == ["XATTR_CREATE"]


def test_hostile_bytes_escaped() -> None:
    obj = mapped(fev(ret=-2, path=b"/tmp/new\nline\xff\xfe", flags=4))
    assert obj["file"]["path"] == "/tmp/new\nline\\xff\\xfe"
    assert obj["file"]["name"] == "new\nline\\xff\\xfe"
    assert obj["unmapped"]["path"] == "/tmp/new\nline\\xff\\xfe"


def test_truncated_resolved_prefers_longer_raw() -> None:
    long_raw = b"/" + b"/".join([b"d" * 200] * 20) + b"/leaf"
    obj = mapped(fev(ret=3, path=long_raw, resolved=long_raw[:3800], flags=3))
    assert obj["file"]["path"] == long_raw.decode()
    assert "path_truncated" in obj["unmapped"]["flags"]


def test_flag_names() -> None:
    assert open_flag_names(0o2 | 0o20200000) == ["O_RDWR", "O_DIRECTORY", "O_TMPFILE"]
    assert open_flag_names(1 << 40) == ["O_RDONLY", hex(1 << 40)]
    assert op_flag_names(2, 0x200) == ["AT_REMOVEDIR"]
    assert op_flag_names(10, 2 | 0x1000) == ["XATTR_REPLACE", "AT_EMPTY_PATH"]

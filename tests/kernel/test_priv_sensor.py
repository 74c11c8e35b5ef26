"""Privilege sensor against the real kernel: a small C helper (tests/helpers/
priv_helper.c) changes its ids, capabilities, namespaces and mounts; it prints
what it did (pid, results, ids read from /proc) and the OCSF objects the agent
wrote for that pid are checked field by field.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import run_helper

pytestmark = pytest.mark.kernel

Obj = dict[str, Any]


def kind_op(pid: int, kind: str, op: str) -> Callable[[Obj], bool]:
    def pred(o: Obj) -> bool:
        um = o.get("unmapped", {})
        return bool(um.get("event") == kind and um.get("op") == op and um.get("proc", {}).get("pid") == pid)

    return pred


def self_caps() -> tuple[int, int, int]:
    """CapEff/CapPrm/CapInh of this (root) test process: what a root helper starts with."""
    vals = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("CapEff", "CapPrm", "CapInh"):
            vals[k] = int(v.strip(), 16)
    return vals["CapEff"], vals["CapPrm"], vals["CapInh"]


def ns_inode(kind: str) -> int:
    return os.stat(f"/proc/self/ns/{kind}").st_ino


def check_process_activity(o: Obj, pid: int, activity: int) -> None:
    assert o["class_uid"] == 1007
    assert o["category_uid"] == 1
    assert o["activity_id"] == activity
    assert o["type_uid"] == 100700 + activity
    assert o["actor"]["process"]["pid"] == pid
    assert o["process"]["pid"] == pid
    assert o["unmapped"]["proc"]["pid"] == pid
    assert o["unmapped"]["proc"]["comm"] == "priv_helper"


@pytest.fixture(scope="module")
def helper(c_helper: Callable[..., str]) -> str:
    return c_helper("priv_helper")


def test_setgid_then_setresuid(agent: Any, helper: str) -> None:
    eff, prm, inh = self_caps()
    mark = agent.mark()
    out = run_helper(helper, "setuid")
    pid = out["pid"]
    assert out["setgid_ret"] == 0 and out["setresuid_ret"] == 0

    g = agent.wait_for(kind_op(pid, "cred", "setgid"), since=mark)
    check_process_activity(g, pid, 99)
    assert g["activity_name"] == "Set Group ID"
    assert g["status_id"] == 1
    ug = g["unmapped"]
    assert ug["ret"] == 0
    assert ug["args"] == [1000]
    assert ug["old_ids"] == dict.fromkeys(("uid", "euid", "suid", "fsuid", "gid", "egid", "sgid", "fsgid"), 0)
    assert ug["new_ids"] == {"uid": 0, "euid": 0, "suid": 0, "fsuid": 0,
                             "gid": 1000, "egid": 1000, "sgid": 1000, "fsgid": 1000}
    assert ug["changed_ids"] == ["gid", "egid", "sgid", "fsgid"]
    # a gid change keeps the capabilities
    for when in ("old_caps", "new_caps"):
        assert int(ug[when]["effective"]["mask"], 16) == eff
        assert int(ug[when]["permitted"]["mask"], 16) == prm
        assert int(ug[when]["inheritable"]["mask"], 16) == inh

    u = agent.wait_for(kind_op(pid, "cred", "setresuid"), since=mark)
    check_process_activity(u, pid, 5)
    assert u["activity_name"] == "Set User ID"
    assert u["status_id"] == 1
    assert u["message"] == "setresuid(1000, 1000, 1000): uid 0 -> 1000, euid 0 -> 1000"
    uu = u["unmapped"]
    assert uu["ret"] == 0
    assert uu["args"] == [1000, 1000, 1000]
    assert uu["old_ids"] == {"uid": 0, "euid": 0, "suid": 0, "fsuid": 0,
                             "gid": 1000, "egid": 1000, "sgid": 1000, "fsgid": 1000}
    assert uu["new_ids"] == dict.fromkeys(("uid", "euid", "suid", "fsuid", "gid", "egid", "sgid", "fsgid"), 1000)
    assert uu["changed_ids"] == ["uid", "euid", "suid", "fsuid"]
    assert int(uu["old_caps"]["effective"]["mask"], 16) == eff
    assert int(uu["old_caps"]["permitted"]["mask"], 16) == prm
    # leaving uid 0 for good (no KEEPCAPS) clears the permitted and effective sets
    assert uu["new_caps"]["effective"] == {"mask": "0x0", "names": []}
    assert uu["new_caps"]["permitted"] == {"mask": "0x0", "names": []}
    # the event's own task context is taken after the change
    assert uu["proc"]["uid"] == 1000 and uu["proc"]["euid"] == 1000 and uu["proc"]["gid"] == 1000


def test_capset_drops_net_raw(agent: Any, helper: str) -> None:
    mark = agent.mark()
    out = run_helper(helper, "capset")
    pid = out["pid"]
    assert out["ret"] == 0
    o = agent.wait_for(kind_op(pid, "cred", "capset"), since=mark)
    check_process_activity(o, pid, 99)
    assert o["activity_name"] == "Set Capabilities"
    assert o["status_id"] == 1
    um = o["unmapped"]
    assert um["ret"] == 0
    assert um["cap_version"] == out["version"]
    assert um["cap_target_pid"] == 0
    assert int(um["old_caps"]["effective"]["mask"], 16) == out["old_eff"]
    assert int(um["old_caps"]["permitted"]["mask"], 16) == out["old_prm"]
    assert int(um["old_caps"]["inheritable"]["mask"], 16) == out["old_inh"]
    assert int(um["new_caps"]["effective"]["mask"], 16) == out["new_eff"]
    assert out["old_eff"] & ~out["new_eff"] == 1 << 13
    assert int(um["new_caps"]["permitted"]["mask"], 16) == out["old_prm"]
    assert int(um["new_caps"]["inheritable"]["mask"], 16) == out["old_inh"]
    assert "CAP_NET_RAW" in um["old_caps"]["effective"]["names"]
    assert "CAP_NET_RAW" not in um["new_caps"]["effective"]["names"]
    assert um["old_ids"] == um["new_ids"] == dict.fromkeys(
        ("uid", "euid", "suid", "fsuid", "gid", "egid", "sgid", "fsgid"), 0)
    assert um["changed_ids"] == []


def test_unshare_uts_and_setns_back(agent: Any, helper: str) -> None:
    mark = agent.mark()
    out = run_helper(helper, "ns")
    pid = out["pid"]
    assert out["unshare_ret"] == 0 and out["setns_ret"] == 0
    assert out["uts0"] != out["uts1"] and out["uts2"] == out["uts0"]
    host = {"mnt": ns_inode("mnt"), "net": ns_inode("net"), "ipc": ns_inode("ipc"), "user": ns_inode("user"),
            "cgroup": ns_inode("cgroup"), "pid": ns_inode("pid_for_children")}

    u = agent.wait_for(kind_op(pid, "ns", "unshare"), since=mark)
    check_process_activity(u, pid, 99)
    assert u["activity_name"] == "Unshare Namespace"
    assert u["status_id"] == 1
    assert u["message"] == "unshare CLONE_NEWUTS"
    uu = u["unmapped"]
    assert uu["ret"] == 0
    assert uu["flags"] == 0x04000000
    assert uu["flag_names"] == ["CLONE_NEWUTS"]
    assert uu["old_ns"] == dict(host, uts=out["uts0"])
    assert uu["new_ns"] == dict(host, uts=out["uts1"])
    assert uu["changed_ns"] == ["uts"]

    s = agent.wait_for(kind_op(pid, "ns", "setns"), since=mark)
    check_process_activity(s, pid, 99)
    assert s["activity_name"] == "Enter Namespace"
    assert s["status_id"] == 1
    su = s["unmapped"]
    assert su["ret"] == 0
    assert su["fd"] == out["fd"]
    assert su["nstype"] == 0x04000000
    assert su["nstype_names"] == ["CLONE_NEWUTS"]
    assert su["old_ns"] == dict(host, uts=out["uts1"])
    assert su["new_ns"] == dict(host, uts=out["uts0"])
    assert su["changed_ns"] == ["uts"]


def test_tmpfs_mount_and_umount(agent: Any, helper: str, tmp_path: Path) -> None:
    target = tmp_path / "mnt"
    target.mkdir()
    mark = agent.mark()
    try:
        out = run_helper(helper, "mount", str(target))
    finally:
        # never leave a mount behind, whatever the helper did
        subprocess.run(["umount", str(target)], capture_output=True)
    pid = out["pid"]
    assert out["mount_ret"] == 0 and out["umount_ret"] == 0
    mnt = ns_inode("mnt")

    m = agent.wait_for(kind_op(pid, "ns", "mount"), since=mark)
    assert (m["class_uid"], m["category_uid"], m["activity_id"], m["type_uid"]) == (1001, 1, 12, 100112)
    assert m["activity_name"] == "Mount"
    assert m["status_id"] == 1
    assert m["actor"]["process"]["pid"] == pid
    assert m["file"] == {"name": "mnt", "type_id": 2, "path": str(target)}
    assert m["message"] == f"mount se_test_tmpfs on {target} type tmpfs"
    mu = m["unmapped"]
    assert mu["ret"] == 0
    assert mu["source"] == "se_test_tmpfs"
    assert mu["target"] == str(target)
    assert mu["fstype"] == "tmpfs"
    assert mu["flags"] == out["flags"] == 6
    assert mu["flag_names"] == ["MS_NOSUID", "MS_NODEV"]
    assert mu["old_ns"]["mnt"] == mu["new_ns"]["mnt"] == mnt
    assert mu["changed_ns"] == []

    u = agent.wait_for(kind_op(pid, "ns", "umount"), since=mark)
    assert (u["class_uid"], u["activity_id"], u["activity_name"]) == (1001, 13, "Unmount")
    assert u["status_id"] == 1
    assert u["file"] == {"name": "mnt", "type_id": 2, "path": str(target)}
    uu = u["unmapped"]
    assert uu["ret"] == 0
    assert uu["target"] == str(target)
    assert uu["flags"] == 0
    assert uu["flag_names"] == []
    assert "source" not in uu and "fstype" not in uu


def test_failed_mount_is_reported_with_errno(agent: Any, helper: str, tmp_path: Path) -> None:
    """A mount on a path that does not exist fails with ENOENT: still one event, status Failure."""
    missing = tmp_path / "does-not-exist"
    mark = agent.mark()
    res = subprocess.run([helper, "mount", str(missing)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 1
    pid = int(res.stdout.split("pid=")[1].split()[0])
    m = agent.wait_for(kind_op(pid, "ns", "mount"), since=mark)
    assert m["status_id"] == 2
    assert m["status_code"] == "ENOENT"
    assert m["unmapped"]["ret"] == -2
    assert m["unmapped"]["target"] == str(missing)
    assert agent.find_all(kind_op(pid, "ns", "umount"), since=mark) == []


def test_bind_mount_through_the_new_mount_api(agent: Any, helper: str, tmp_path: Path) -> None:
    """open_tree(OPEN_TREE_CLONE) + move_mount(MOVE_MOUNT_F_EMPTY_PATH), as util-linux >= 2.39 binds,
    in the helper's own mount namespace: both steps are reported, the tree's fd ties them."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    mark = agent.mark()
    out = run_helper(helper, "bind_new_api", str(src), str(dst))
    pid = out["pid"]
    assert out["unshare_ret"] == 0 and out["move_ret"] == 0 and out["bound"] == 1

    t = agent.wait_for(kind_op(pid, "ns", "open_tree"), since=mark)
    assert (t["class_uid"], t["activity_id"], t["activity_name"]) == (1001, 99, "Open Mount Tree")
    assert t["status_id"] == 1
    assert t["file"] == {"name": "src", "type_id": 2, "path": str(src)}
    assert t["message"] == f"open_tree {src} OPEN_TREE_CLONE|OPEN_TREE_CLOEXEC"
    tu = t["unmapped"]
    assert tu["ret"] == out["tree_fd"]
    assert tu["source"] == str(src)
    assert tu["fd"] == -100  # AT_FDCWD
    assert tu["flag_names"] == ["OPEN_TREE_CLONE", "OPEN_TREE_CLOEXEC"]

    m = agent.wait_for(kind_op(pid, "ns", "move_mount"), since=mark)
    assert (m["class_uid"], m["activity_id"], m["activity_name"]) == (1001, 12, "Mount")
    assert m["status_id"] == 1
    assert m["file"] == {"name": "dst", "type_id": 2, "path": str(dst)}
    assert m["message"] == f"move_mount fd {out['tree_fd']} on {dst}"
    mu = m["unmapped"]
    assert mu["ret"] == 0
    assert mu["fd"] == out["tree_fd"]
    assert mu["source"] == "" and mu["target"] == str(dst)
    assert mu["flag_names"] == ["MOVE_MOUNT_F_EMPTY_PATH"]
    # the mount happened in the namespace the helper had just made
    assert mu["old_ns"]["mnt"] == mu["new_ns"]["mnt"] != ns_inode("mnt")

"""OCSF mappings of the priv sensor (privilege.py), from hand-built Events.

Credential changes (Process Activity Set User ID / Other), namespace changes
(Process Activity Other) and mounts (File System Activity Mount / Unmount).
"""

from __future__ import annotations

from typing import Any

import pytest

from sentinel_edge.model import Event
from sentinel_edge.output.ocsf import to_ocsf
from sentinel_edge.output.ocsf.common import HostInfo
from sentinel_edge.output.ocsf.privilege import cap_names
from sentinel_edge.output.ocsf.schema import assert_valid

BOOT = 1_700_000_000_000_000_000
HOST = HostInfo(hostname="edge", boot_id="boot-1", boot_time_ns=BOOT, machine_id="m" * 32,
                kernel_release="6.18.0")
MS = 1_000_000
FULL_CAPS = (1 << 41) - 1
ROOT_IDS = dict.fromkeys(("uid", "euid", "suid", "fsuid", "gid", "egid", "sgid", "fsgid"), 0)
USER_IDS = dict.fromkeys(("uid", "euid", "suid", "fsuid", "gid", "egid", "sgid", "fsgid"), 1000)


def proc(**kw: Any) -> dict[str, Any]:
    p = {
        "pid": 300, "tid": 300, "ppid": 200, "ns_pid": 300, "uid": 1000, "euid": 1000, "gid": 1000,
        "egid": 1000, "loginuid": 1000, "sessionid": 4, "mnt_ns": 11, "pid_ns": 12, "net_ns": 13,
        "cgroup_id": 99, "start_ns": 3_000 * MS, "parent_start_ns": 2_000 * MS, "comm": b"su",
    }
    p.update(kw)
    return p


def cred(**kw: Any) -> Event:
    d = {
        "op": 3, "ret": 0, "args": [1000, 1000, 1000], "old_ids": dict(ROOT_IDS), "new_ids": dict(USER_IDS),
        "old_cap_effective": FULL_CAPS, "old_cap_permitted": FULL_CAPS, "old_cap_inheritable": 0,
        "new_cap_effective": 0, "new_cap_permitted": 0, "new_cap_inheritable": 0,
    }
    d.update(kw)
    return Event("cred", 30, 5_000 * MS, 0, proc(), d)


def ns(**kw: Any) -> Event:
    d: dict[str, Any] = {
        "op": 3, "ret": 0, "flags": 0x04000000, "fd": -1, "nstype": 0,
        "new_mnt_ns": 11, "new_pid_ns": 12, "new_net_ns": 13, "new_uts_ns": 77, "new_ipc_ns": 15,
        "new_user_ns": 16, "new_cgroup_ns": 17,
        "old_mnt_ns": 11, "old_pid_ns": 12, "old_net_ns": 13, "old_uts_ns": 14, "old_ipc_ns": 15,
        "old_user_ns": 16, "old_cgroup_ns": 17,
        "source": b"", "target": b"", "fstype": b"",
    }
    d.update(kw)
    return Event("ns", 31, 5_000 * MS, 0, proc(uid=0, euid=0, gid=0, egid=0, comm=b"unshare"), d)


def mapped(event: Event) -> dict[str, Any]:
    obj = to_ocsf(event, HOST)
    assert_valid(obj)
    assert obj["unmapped"]["event"] == event.kind
    assert obj["actor"]["process"]["pid"] == 300
    return obj


def test_setresuid_is_set_user_id() -> None:
    obj = mapped(cred())
    assert (obj["class_uid"], obj["category_uid"], obj["activity_id"]) == (1007, 1, 5)
    assert obj["activity_name"] == "Set User ID"
    assert obj["type_uid"] == 100705
    assert obj["status_id"] == 1
    assert obj["message"] == "setresuid(1000, 1000, 1000): uid 0 -> 1000, euid 0 -> 1000"
    assert obj["process"]["pid"] == 300
    assert obj["process"]["euid"] == 1000
    u = obj["unmapped"]
    assert u["op"] == "setresuid"
    assert u["ret"] == 0
    assert u["args"] == [1000, 1000, 1000]
    assert u["old_ids"] == ROOT_IDS
    assert u["new_ids"] == USER_IDS
    assert u["changed_ids"] == ["uid", "euid", "suid", "fsuid", "gid", "egid", "sgid", "fsgid"]
    assert u["old_caps"]["effective"]["mask"] == "0x1ffffffffff"
    assert u["old_caps"]["effective"]["names"] == cap_names(FULL_CAPS)
    assert len(u["old_caps"]["permitted"]["names"]) == 41
    assert u["old_caps"]["inheritable"] == {"mask": "0x0", "names": []}
    assert u["new_caps"] == {s: {"mask": "0x0", "names": []} for s in ("effective", "permitted", "inheritable")}


def test_setreuid_unchanged_arg_and_failure() -> None:
    obj = mapped(cred(op=2, ret=-1, args=[0xFFFFFFFF, 0, 0], new_ids=dict(ROOT_IDS),
                      new_cap_effective=FULL_CAPS, new_cap_permitted=FULL_CAPS))
    assert obj["activity_id"] == 5
    assert obj["status_id"] == 2
    assert obj["status_code"] == "EPERM"
    assert obj["status_detail"] == "Operation not permitted"
    assert obj["unmapped"]["args"] == [-1, 0]
    assert obj["unmapped"]["changed_ids"] == []
    assert obj["message"] == "setreuid(-1, 0): uid 0 -> 0, euid 0 -> 0"


def test_setgid_is_other_set_group_id() -> None:
    new = dict(ROOT_IDS, gid=1000, egid=1000, sgid=1000, fsgid=1000)
    obj = mapped(cred(op=5, args=[1000, 0, 0], new_ids=new, new_cap_effective=FULL_CAPS,
                      new_cap_permitted=FULL_CAPS))
    assert (obj["activity_id"], obj["activity_name"]) == (99, "Set Group ID")
    assert obj["message"] == "setgid(1000): gid 0 -> 1000, egid 0 -> 1000"
    assert obj["unmapped"]["args"] == [1000]
    assert obj["unmapped"]["changed_ids"] == ["gid", "egid", "sgid", "fsgid"]


def test_setfsuid_returns_old_id_and_is_success() -> None:
    obj = mapped(cred(op=4, ret=0, args=[1000, 0, 0], new_ids=dict(ROOT_IDS, fsuid=1000)))
    assert obj["status_id"] == 1
    assert "status_code" not in obj
    assert obj["unmapped"]["op"] == "setfsuid"
    assert obj["unmapped"]["changed_ids"] == ["fsuid"]


def test_capset_is_other_set_capabilities() -> None:
    new_eff = FULL_CAPS & ~(1 << 13)
    obj = mapped(cred(op=9, args=[0x20080522, 0, 0], new_ids=dict(ROOT_IDS), new_cap_effective=new_eff,
                      new_cap_permitted=FULL_CAPS))
    assert (obj["activity_id"], obj["activity_name"]) == (99, "Set Capabilities")
    assert obj["message"] == "capset effective 0x1ffffffffff -> 0x1ffffffdfff"
    u = obj["unmapped"]
    assert u["cap_version"] == 0x20080522
    assert u["cap_target_pid"] == 0
    assert "args" not in u
    assert "CAP_NET_RAW" in u["old_caps"]["effective"]["names"]
    assert "CAP_NET_RAW" not in u["new_caps"]["effective"]["names"]
    assert set(u["old_caps"]["effective"]["names"]) - set(u["new_caps"]["effective"]["names"]) == {"CAP_NET_RAW"}


def test_cred_unknown_op() -> None:
    with pytest.raises(ValueError, match="unknown op 42"):
        to_ocsf(cred(op=42), HOST)


def test_unshare_lists_changed_namespaces() -> None:
    obj = mapped(ns())
    assert (obj["class_uid"], obj["activity_id"], obj["activity_name"]) == (1007, 99, "Unshare Namespace")
    assert obj["message"] == "unshare CLONE_NEWUTS"
    assert obj["process"]["pid"] == 300
    u = obj["unmapped"]
    assert u["op"] == "unshare"
    assert u["flags"] == 0x04000000
    assert u["flag_names"] == ["CLONE_NEWUTS"]
    assert u["old_ns"] == {"mnt": 11, "pid": 12, "net": 13, "uts": 14, "ipc": 15, "user": 16, "cgroup": 17}
    assert u["new_ns"]["uts"] == 77
    assert u["changed_ns"] == ["uts"]
    assert "source" not in u and "target" not in u


def test_setns_is_enter_namespace() -> None:
    obj = mapped(ns(op=4, flags=0, fd=3, nstype=0x40000000, old_net_ns=13, new_net_ns=99, new_uts_ns=14))
    assert (obj["activity_id"], obj["activity_name"]) == (99, "Enter Namespace")
    assert obj["message"] == "setns fd 3 CLONE_NEWNET"
    u = obj["unmapped"]
    assert u["fd"] == 3
    assert u["nstype"] == 0x40000000
    assert u["nstype_names"] == ["CLONE_NEWNET"]
    assert u["changed_ns"] == ["net"]


def test_mount_is_file_system_mount() -> None:
    obj = mapped(ns(op=1, flags=6, source=b"se_tmpfs", target=b"/tmp/x/mnt", fstype=b"tmpfs",
                    new_uts_ns=14))
    assert (obj["class_uid"], obj["activity_id"], obj["activity_name"]) == (1001, 12, "Mount")
    assert obj["file"] == {"name": "mnt", "type_id": 2, "path": "/tmp/x/mnt"}
    assert obj["message"] == "mount se_tmpfs on /tmp/x/mnt type tmpfs"
    assert obj["status_id"] == 1
    assert "process" not in obj
    u = obj["unmapped"]
    assert (u["source"], u["target"], u["fstype"]) == ("se_tmpfs", "/tmp/x/mnt", "tmpfs")
    assert u["flags"] == 6
    assert u["flag_names"] == ["MS_NOSUID", "MS_NODEV"]
    assert u["changed_ns"] == []


def test_umount_failure() -> None:
    obj = mapped(ns(op=2, flags=2, target=b"/mnt/busy/", ret=-16, new_uts_ns=14))
    assert (obj["class_uid"], obj["activity_id"], obj["activity_name"]) == (1001, 13, "Unmount")
    assert obj["file"] == {"name": "busy", "type_id": 2, "path": "/mnt/busy/"}
    assert obj["status_id"] == 2
    assert obj["status_code"] == "EBUSY"
    assert obj["unmapped"]["flag_names"] == ["MNT_DETACH"]
    assert "source" not in obj["unmapped"]


def test_cap_names() -> None:
    assert cap_names(0) == []
    assert cap_names(1 << 21) == ["CAP_SYS_ADMIN"]
    assert cap_names(1 << 50) == ["CAP_50"]

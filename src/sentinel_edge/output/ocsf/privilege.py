"""OCSF mappings of the privilege sensor: credential and namespace changes, mounts.

================================  ===============================================  ===================
kind / op                         OCSF class and activity                          object
================================  ===============================================  ===================
cred setuid/setreuid/setresuid/   Process Activity (1007) 5 Set User ID            ``process``: the
setfsuid                                                                           caller, new ids
cred setgid/setregid/setresgid/   Process Activity (1007) 99 "Set Group ID"        same
setfsgid
cred capset                       Process Activity (1007) 99 "Set Capabilities"    same
ns unshare                        Process Activity (1007) 99 "Unshare Namespace"   same
ns setns                          Process Activity (1007) 99 "Enter Namespace"     same
ns mount                          File System Activity (1001) 12 Mount             ``file``: target
ns umount                         File System Activity (1001) 13 Unmount           ``file``: target
================================  ===============================================  ===================

Ids before/after (``unmapped.old_ids`` / ``new_ids``: uid, euid, suid,
fsuid, gid, egid, sgid, fsgid), the ids asked for (``unmapped.args``), the
capability sets before/after (hex masks and CAP_* names) and, for namespace
events, every namespace id before and after with the list of namespaces that
changed are kept under ``unmapped``. ``pid`` namespace ids are those of
``pid_ns_for_children`` (what unshare/setns change; the caller itself never
moves). setfsuid/setfsgid return the previous fsuid/fsgid, never an error:
their status is Success, and whether the change happened is in the ids.
"""

from __future__ import annotations

from typing import Any

from sentinel_edge.model import KIND_CRED, KIND_NS, Event
from sentinel_edge.output.ocsf.common import (
    ACTIVITY_OTHER,
    STATUS_SUCCESS,
    HostInfo,
    base,
    process_object,
    register,
    status_from_ret,
    text,
    with_lineage,
)
from sentinel_edge.output.ocsf.memory import flag_names

CLASS_FILE_SYSTEM_ACTIVITY = 1001
CLASS_PROCESS_ACTIVITY = 1007
CATEGORY_SYSTEM = 1
ACTIVITY_SET_USER_ID = 5
ACTIVITY_MOUNT = 12
ACTIVITY_UNMOUNT = 13
FILE_TYPE_FOLDER = 2

# enum se_cred_op
CRED_OPS: dict[int, tuple[str, int]] = {  # op -> (syscall, number of id arguments)
    1: ("setuid", 1), 2: ("setreuid", 2), 3: ("setresuid", 3), 4: ("setfsuid", 1),
    5: ("setgid", 1), 6: ("setregid", 2), 7: ("setresgid", 3), 8: ("setfsgid", 1),
    9: ("capset", 0),
}
OP_CAPSET = 9
UID_OPS = (1, 2, 3, 4)
FS_OPS = (4, 8)

# enum se_ns_op
OP_MOUNT = 1
OP_UMOUNT = 2
OP_UNSHARE = 3
OP_SETNS = 4
OP_MOVE_MOUNT = 5
OP_OPEN_TREE = 6
NS_OP_NAMES = {OP_MOUNT: "mount", OP_UMOUNT: "umount", OP_UNSHARE: "unshare", OP_SETNS: "setns",
               OP_MOVE_MOUNT: "move_mount", OP_OPEN_TREE: "open_tree"}

CAP_SETS = ("effective", "permitted", "inheritable")
ID_KEYS = ("uid", "euid", "suid", "fsuid", "gid", "egid", "sgid", "fsgid")
NS_KEYS = ("mnt", "pid", "net", "uts", "ipc", "user", "cgroup")

CAP_NAMES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
CLONE_NS_FLAGS: tuple[tuple[int, str], ...] = (
    (0x00000080, "CLONE_NEWTIME"), (0x00000200, "CLONE_FS"), (0x00000400, "CLONE_FILES"),
    (0x00020000, "CLONE_NEWNS"), (0x02000000, "CLONE_NEWCGROUP"), (0x04000000, "CLONE_NEWUTS"),
    (0x08000000, "CLONE_NEWIPC"), (0x10000000, "CLONE_NEWUSER"), (0x20000000, "CLONE_NEWPID"),
    (0x40000000, "CLONE_NEWNET"), (0x00000100, "CLONE_VM"), (0x00000800, "CLONE_SIGHAND"),
    (0x00008000, "CLONE_THREAD"), (0x00040000, "CLONE_SYSVSEM"),
)
MOUNT_FLAGS: tuple[tuple[int, str], ...] = (
    (1, "MS_RDONLY"), (2, "MS_NOSUID"), (4, "MS_NODEV"), (8, "MS_NOEXEC"), (16, "MS_SYNCHRONOUS"),
    (32, "MS_REMOUNT"), (64, "MS_MANDLOCK"), (128, "MS_DIRSYNC"), (256, "MS_NOSYMFOLLOW"),
    (1024, "MS_NOATIME"), (2048, "MS_NODIRATIME"), (4096, "MS_BIND"), (8192, "MS_MOVE"),
    (16384, "MS_REC"), (32768, "MS_SILENT"), (1 << 16, "MS_POSIXACL"), (1 << 17, "MS_UNBINDABLE"),
    (1 << 18, "MS_PRIVATE"), (1 << 19, "MS_SLAVE"), (1 << 20, "MS_SHARED"), (1 << 21, "MS_RELATIME"),
    (1 << 22, "MS_KERNMOUNT"), (1 << 23, "MS_I_VERSION"), (1 << 24, "MS_STRICTATIME"),
    (1 << 25, "MS_LAZYTIME"),
)
UMOUNT_FLAGS: tuple[tuple[int, str], ...] = (
    (1, "MNT_FORCE"), (2, "MNT_DETACH"), (4, "MNT_EXPIRE"), (8, "UMOUNT_NOFOLLOW"),
)
OPEN_TREE_FLAGS: tuple[tuple[int, str], ...] = (
    (1, "OPEN_TREE_CLONE"), (0x100, "AT_SYMLINK_NOFOLLOW"), (0x800, "AT_NO_AUTOMOUNT"),
    (0x1000, "AT_EMPTY_PATH"), (0x8000, "AT_RECURSIVE"), (0o2000000, "OPEN_TREE_CLOEXEC"),
)
MOVE_MOUNT_FLAGS: tuple[tuple[int, str], ...] = (
    (1, "MOVE_MOUNT_F_SYMLINKS"), (2, "MOVE_MOUNT_F_AUTOMOUNTS"), (4, "MOVE_MOUNT_F_EMPTY_PATH"),
    (0x10, "MOVE_MOUNT_T_SYMLINKS"), (0x20, "MOVE_MOUNT_T_AUTOMOUNTS"), (0x40, "MOVE_MOUNT_T_EMPTY_PATH"),
    (0x100, "MOVE_MOUNT_SET_GROUP"), (0x200, "MOVE_MOUNT_BENEATH"),
)


def cap_names(mask: int) -> list[str]:
    """CAP_* names of a capability mask; unnamed bits as ``CAP_<n>``."""
    return [CAP_NAMES[i] if i < len(CAP_NAMES) else f"CAP_{i}" for i in range(64) if mask & (1 << i)]


def _ids(raw: dict[str, Any] | None) -> dict[str, int]:
    raw = raw or {}
    return {k: int(raw.get(k, 0)) for k in ID_KEYS}


def _caps(mask: int) -> dict[str, Any]:
    return {"mask": f"{mask:#x}", "names": cap_names(mask)}


def _own_process(event: Event, host: HostInfo) -> dict[str, Any]:
    return with_lineage(process_object(event.process, event, host=host), event, host=host)


# ---------------------------------------------------------------- credentials


@register(KIND_CRED)
def map_cred(event: Event, host: HostInfo) -> dict[str, Any]:
    """setuid family (Set User ID), setgid family and capset (Other)."""
    d = event.data
    op = int(d["op"])
    ret = int(d["ret"])
    if op not in CRED_OPS:
        raise ValueError(f"cred event with unknown op {op}")
    name, nargs = CRED_OPS[op]
    old = _ids(d.get("old_ids"))
    new = _ids(d.get("new_ids"))
    raw_args = [int(a) for a in (d.get("args") or [0, 0, 0])]
    detail: dict[str, Any]
    if op in FS_OPS:
        status_id, detail = STATUS_SUCCESS, {}
    else:
        status_id, detail = status_from_ret(ret)

    def as_id(v: int) -> int:
        return -1 if v == 0xFFFFFFFF else v  # (uid_t)-1: "leave unchanged"

    args = [as_id(a) for a in raw_args[:nargs]]
    if op == OP_CAPSET:
        msg = f"capset effective {int(d['old_cap_effective']):#x} -> {int(d['new_cap_effective']):#x}"
        obj = base(event, host, class_uid=CLASS_PROCESS_ACTIVITY, category_uid=CATEGORY_SYSTEM,
                   activity_id=ACTIVITY_OTHER, activity_name="Set Capabilities", status_id=status_id,
                   message=msg)
    else:
        key = "uid" if op in UID_OPS else "gid"
        msg = f"{name}({', '.join(str(a) for a in args)}): {key} {old[key]} -> {new[key]}, " \
              f"e{key} {old['e' + key]} -> {new['e' + key]}"
        if op in UID_OPS:
            obj = base(event, host, class_uid=CLASS_PROCESS_ACTIVITY, category_uid=CATEGORY_SYSTEM,
                       activity_id=ACTIVITY_SET_USER_ID, status_id=status_id, message=msg)
        else:
            obj = base(event, host, class_uid=CLASS_PROCESS_ACTIVITY, category_uid=CATEGORY_SYSTEM,
                       activity_id=ACTIVITY_OTHER, activity_name="Set Group ID", status_id=status_id,
                       message=msg)
    obj.update(detail)
    obj["process"] = _own_process(event, host)
    unm = obj["unmapped"]
    unm["op"] = name
    unm["ret"] = ret
    if op == OP_CAPSET:
        unm["cap_version"] = raw_args[0]
        unm["cap_target_pid"] = raw_args[1]
    else:
        unm["args"] = args
    unm["old_ids"] = old
    unm["new_ids"] = new
    unm["changed_ids"] = [k for k in ID_KEYS if old[k] != new[k]]
    for when in ("old", "new"):
        unm[f"{when}_caps"] = {s: _caps(int(d.get(f"{when}_cap_{s}", 0))) for s in CAP_SETS}
    return obj


# ---------------------------------------------------------------- namespaces and mounts


def _ns_ids(d: dict[str, Any], prefix: str) -> dict[str, int]:
    return {k: int(d.get(f"{prefix}_{k}_ns", 0)) for k in NS_KEYS}


@register(KIND_NS)
def map_ns(event: Event, host: HostInfo) -> dict[str, Any]:
    """mount/umount (File System Mount/Unmount), unshare/setns (Process Other)."""
    d = event.data
    op = int(d["op"])
    ret = int(d["ret"])
    name = NS_OP_NAMES.get(op)
    if name is None:
        raise ValueError(f"ns event with unknown op {op}")
    flags = int(d.get("flags", 0))
    old = _ns_ids(d, "old")
    new = _ns_ids(d, "new")
    status_id, detail = status_from_ret(ret)
    target = text(d.get("target")) or ""
    source = text(d.get("source")) or ""
    fstype = text(d.get("fstype")) or ""
    if op in (OP_MOUNT, OP_UMOUNT, OP_MOVE_MOUNT, OP_OPEN_TREE):
        fd = int(d.get("fd", -1))
        activity_name = None
        if op == OP_MOUNT:
            msg = f"mount {source or '-'} on {target} type {fstype or '-'}"
            activity = ACTIVITY_MOUNT
        elif op == OP_MOVE_MOUNT:
            msg = f"move_mount {source or f'fd {fd}'} on {target}"
            activity = ACTIVITY_MOUNT
        elif op == OP_OPEN_TREE:
            msg = f"open_tree {source} " + ("|".join(flag_names(flags, OPEN_TREE_FLAGS)) or "0")
            activity, activity_name = ACTIVITY_OTHER, "Open Mount Tree"
        else:
            msg = f"umount {target}"
            activity = ACTIVITY_UNMOUNT
        obj = base(event, host, class_uid=CLASS_FILE_SYSTEM_ACTIVITY, category_uid=CATEGORY_SYSTEM,
                   activity_id=activity, status_id=status_id, message=msg,
                   activity_name=activity_name)
        # the file object: what is mounted on (mount, move_mount, umount) or the tree opened (open_tree)
        fpath = source if op == OP_OPEN_TREE else target
        tname = fpath.rstrip("/").rsplit("/", 1)[-1] or fpath or "?"
        fobj: dict[str, Any] = {"name": tname, "type_id": FILE_TYPE_FOLDER}
        if fpath:
            fobj["path"] = fpath
        obj["file"] = fobj
    elif op == OP_UNSHARE:
        obj = base(event, host, class_uid=CLASS_PROCESS_ACTIVITY, category_uid=CATEGORY_SYSTEM,
                   activity_id=ACTIVITY_OTHER, activity_name="Unshare Namespace", status_id=status_id,
                   message="unshare " + ("|".join(flag_names(flags, CLONE_NS_FLAGS)) or "0"))
        obj["process"] = _own_process(event, host)
    else:
        nstype = int(d.get("nstype", 0))
        obj = base(event, host, class_uid=CLASS_PROCESS_ACTIVITY, category_uid=CATEGORY_SYSTEM,
                   activity_id=ACTIVITY_OTHER, activity_name="Enter Namespace", status_id=status_id,
                   message=f"setns fd {int(d.get('fd', -1))} "
                   + ("|".join(flag_names(nstype, CLONE_NS_FLAGS)) or "any type"))
        obj["process"] = _own_process(event, host)
    obj.update(detail)
    unm = obj["unmapped"]
    unm["op"] = name
    unm["ret"] = ret
    unm["flags"] = flags
    # the strings as given (mount: all three; umount: target); any the kernel sent is kept
    for key, value in (("source", source), ("target", target), ("fstype", fstype)):
        if value or op == OP_MOUNT or (op == OP_UMOUNT and key == "target") or (
                op == OP_MOVE_MOUNT and key != "fstype") or (op == OP_OPEN_TREE and key == "source"):
            unm[key] = value
    if op == OP_MOUNT:
        unm["flag_names"] = flag_names(flags, MOUNT_FLAGS)
    elif op == OP_UMOUNT:
        unm["flag_names"] = flag_names(flags, UMOUNT_FLAGS)
    elif op in (OP_MOVE_MOUNT, OP_OPEN_TREE):
        unm["flag_names"] = flag_names(flags, MOVE_MOUNT_FLAGS if op == OP_MOVE_MOUNT else OPEN_TREE_FLAGS)
        unm["fd"] = int(d.get("fd", -1))
    elif op == OP_UNSHARE:
        unm["flag_names"] = flag_names(flags, CLONE_NS_FLAGS)
    else:
        unm["fd"] = int(d.get("fd", -1))
        unm["nstype"] = int(d.get("nstype", 0))
        unm["nstype_names"] = flag_names(unm["nstype"], CLONE_NS_FLAGS)
    unm["old_ns"] = old
    unm["new_ns"] = new
    unm["changed_ns"] = [k for k in NS_KEYS if old[k] != new[k]]
    return obj

"""OCSF File System Activity (class 1001) for the file sensor (kind ``file``).

=================  ==========================  ================================
op                 activity                    ``file`` / ``file_result``
=================  ==========================  ================================
open               14 Open                     the opened file
unlink, rmdir      4 Delete                    the removed entry
rename             5 Rename                    old name / new name
chmod, chown       7 Set Security              the file
utimes, setxattr   6 Set Attributes            the file
truncate           3 Update                    the file
link               1 Create                    existing file / new link
symlink, mkdir     1 Create                    the new link / directory
=================  ==========================  ================================

``file.path`` is the kernel's ``resolved`` path (taken from the file itself)
when present, else :func:`sentinel_edge.enrich.paths.resolve` of base + raw.
Whether an open created the file cannot be known from the syscall, so opens
stay 14 Open with their flags in ``unmapped.open_flags``. The raw kernel
fields (paths as given, bases, decoded flags, octal mode, dirfd, syscall
number, dev/ino) are kept under ``unmapped``.
"""

from __future__ import annotations

import functools
from typing import Any

from sentinel_edge.enrich.paths import resolve
from sentinel_edge.model import KIND_FILE, Event
from sentinel_edge.output.ocsf.common import HostInfo, base, file_object, register, status_from_ret, text

CLASS_FILE_ACTIVITY = 1001
CATEGORY_SYSTEM = 1

ACTIVITY_CREATE = 1
ACTIVITY_UPDATE = 3
ACTIVITY_DELETE = 4
ACTIVITY_RENAME = 5
ACTIVITY_SET_ATTRIBUTES = 6
ACTIVITY_SET_SECURITY = 7
ACTIVITY_OPEN = 14

FILE_TYPE_UNKNOWN = 0
FILE_TYPE_FOLDER = 2
FILE_TYPE_SYMLINK = 7

#: enum se_file_op -> (name, activity_id)
OPS: dict[int, tuple[str, int]] = {
    1: ("open", ACTIVITY_OPEN),
    2: ("unlink", ACTIVITY_DELETE),
    3: ("rename", ACTIVITY_RENAME),
    4: ("chmod", ACTIVITY_SET_SECURITY),
    5: ("chown", ACTIVITY_SET_SECURITY),
    6: ("link", ACTIVITY_CREATE),
    7: ("symlink", ACTIVITY_CREATE),
    8: ("utimes", ACTIVITY_SET_ATTRIBUTES),
    9: ("truncate", ACTIVITY_UPDATE),
    10: ("setxattr", ACTIVITY_SET_ATTRIBUTES),
    11: ("mkdir", ACTIVITY_CREATE),
    12: ("rmdir", ACTIVITY_DELETE),
}
OP_OPEN, OP_RENAME, OP_LINK, OP_SYMLINK, OP_MKDIR, OP_RMDIR = 1, 3, 6, 7, 11, 12
OP_UNLINK, OP_SETXATTR = 2, 10

#: enum se_file_flags
FILE_PATH_TRUNC = 1 << 0
FILE_RESOLVED_BY_FD = 1 << 1
FILE_FOLLOW = 1 << 2
FILE_FLAGS: tuple[tuple[int, str], ...] = (
    (FILE_PATH_TRUNC, "path_truncated"),
    (FILE_RESOLVED_BY_FD, "resolved_by_fd"),
    (FILE_FOLLOW, "follow"),
)

AT_FDCWD = -100

#: O_* bits (x86-64 / generic values), O_ACCMODE handled apart
_O_FLAGS: tuple[tuple[int, str], ...] = (
    (0o100, "O_CREAT"),
    (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"),
    (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (0o10000, "O_DSYNC"),
    (0o20000, "O_ASYNC"),
    (0o40000, "O_DIRECT"),
    (0o100000, "O_LARGEFILE"),
    (0o200000, "O_DIRECTORY"),
    (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"),
    (0o2000000, "O_CLOEXEC"),
    (0o4000000, "O_SYNC"),  # __O_SYNC: O_SYNC is __O_SYNC|O_DSYNC
    (0o10000000, "O_PATH"),
    (0o20000000, "O_TMPFILE"),  # __O_TMPFILE: O_TMPFILE is __O_TMPFILE|O_DIRECTORY
)
_ACCMODE = {0: "O_RDONLY", 1: "O_WRONLY", 2: "O_RDWR", 3: "O_ACCMODE"}

_AT_FLAGS: tuple[tuple[int, str], ...] = (
    (0x100, "AT_SYMLINK_NOFOLLOW"),
    (0x200, "AT_REMOVEDIR"),
    (0x400, "AT_SYMLINK_FOLLOW"),
    (0x800, "AT_NO_AUTOMOUNT"),
    (0x1000, "AT_EMPTY_PATH"),
)
_RENAME_FLAGS: tuple[tuple[int, str], ...] = (
    (1, "RENAME_NOREPLACE"),
    (2, "RENAME_EXCHANGE"),
    (4, "RENAME_WHITEOUT"),
)
_XATTR_FLAGS: tuple[tuple[int, str], ...] = ((1, "XATTR_CREATE"), (2, "XATTR_REPLACE"))
_RESOLVE_FLAGS: tuple[tuple[int, str], ...] = (
    (0x01, "RESOLVE_NO_XDEV"),
    (0x02, "RESOLVE_NO_MAGICLINKS"),
    (0x04, "RESOLVE_NO_SYMLINKS"),
    (0x08, "RESOLVE_BENEATH"),
    (0x10, "RESOLVE_IN_ROOT"),
    (0x20, "RESOLVE_CACHED"),
)


@functools.lru_cache(maxsize=4096)
def _bits(value: int, table: tuple[tuple[int, str], ...]) -> list[str]:
    """Flag names of value (cached: the same few flag words recur; never mutate the result)."""
    names = [name for bit, name in table if value & bit]
    known = 0
    for bit, _ in table:
        known |= bit
    rest = value & ~known
    return names + [hex(1 << i) for i in range(64) if rest & (1 << i)]


@functools.lru_cache(maxsize=1024)
def open_flag_names(flags: int) -> list[str]:
    """O_* names of an open flags word, access mode first, unknown bits in hex."""
    return [_ACCMODE[flags & 3], *_bits(flags & ~3, _O_FLAGS)]


def op_flag_names(op: int, flags: int) -> list[str]:
    """Names of the open_flags word of a non-open op (AT_*, RENAME_*, XATTR_*)."""
    if op == OP_RENAME:
        return _bits(flags, _RENAME_FLAGS)
    if op == OP_SETXATTR:
        return _bits(flags & 3, _XATTR_FLAGS) + _bits(flags & ~3, _AT_FLAGS)
    return _bits(flags, _AT_FLAGS)


def file_flag_names(flags: int) -> list[str]:
    return _bits(flags, FILE_FLAGS)


def _abs_path(resolved: bytes, base_dir: bytes, raw: bytes, *, follow: bool, trunc: bool) -> bytes:
    """The best absolute path: the kernel's when it has one, else base + raw."""
    if resolved and not trunc:
        return resolved
    if not raw and not base_dir:
        return resolved
    joined = resolve(base_dir, raw, follow=follow)
    # with truncation, keep whichever path lost less
    return resolved if resolved and len(resolved) >= len(joined) else joined


# where the absolute paths of a file event are kept once computed (resolving may stat the
# filesystem): the OCSF mapper and the rule fields (rules/fields.py) both read them
ABS_PATH_KEY = "se_abs_path"
ABS_PATH2_KEY = "se_abs_path2"


def event_abs_path(d: dict[str, Any]) -> bytes:
    """The absolute path of a file event's first path (computed once per event)."""
    p: bytes | None = d.get(ABS_PATH_KEY)
    if p is None:
        flags = int(d.get("flags", 0))
        p = _abs_path(d.get("resolved") or b"", d.get("base") or b"", d.get("path") or b"",
                      follow=bool(flags & FILE_FOLLOW), trunc=bool(flags & FILE_PATH_TRUNC))
        d[ABS_PATH_KEY] = p
    return p


def event_abs_path2(d: dict[str, Any]) -> bytes:
    """The absolute path of a rename/link event's second (new) path (computed once per event)."""
    p: bytes | None = d.get(ABS_PATH2_KEY)
    if p is None:
        p = resolve(d.get("base2") or b"", d.get("path2") or b"", follow=False)
        d[ABS_PATH2_KEY] = p
    return p


def _file(path: bytes, type_id: int, **extra: Any) -> dict[str, Any]:
    obj = file_object(text(path) or "", **extra)
    obj["type_id"] = type_id
    return obj


@register(KIND_FILE)
def map_file(event: Event, host: HostInfo) -> dict[str, Any]:
    """One file syscall and its result."""
    d = event.data
    op = int(d.get("op", 0))
    ret = int(d.get("ret", 0))
    flags = int(d.get("flags", 0))
    open_flags = int(d.get("open_flags", 0))
    op_name, activity = OPS.get(op, (f"op{op}", ACTIVITY_OPEN))
    raw: bytes = d.get("path") or b""
    raw2: bytes = d.get("path2") or b""
    base1: bytes = d.get("base") or b""
    base2: bytes = d.get("base2") or b""
    resolved: bytes = d.get("resolved") or b""

    path = event_abs_path(d)
    status_id, status = status_from_ret(ret)
    type_id = FILE_TYPE_UNKNOWN
    if op in (OP_MKDIR, OP_RMDIR):
        type_id = FILE_TYPE_FOLDER
    elif op == OP_SYMLINK:
        type_id = FILE_TYPE_SYMLINK
    file_obj = _file(path, type_id)
    if int(d.get("ino", 0)):
        file_obj["uid"] = f"{int(d.get('dev', 0))}:{int(d['ino'])}"

    message = f"{op_name} {text(path)}"
    path_result = b""
    if op in (OP_RENAME, OP_LINK):
        path_result = event_abs_path2(d)
        message += f" -> {text(path_result)}"
    elif op == OP_SYMLINK:
        message += f" -> {text(raw2)}"
    if ret < 0:
        message += f" failed: {status.get('status_code')}"

    obj = base(
        event,
        host,
        class_uid=CLASS_FILE_ACTIVITY,
        category_uid=CATEGORY_SYSTEM,
        activity_id=activity,
        status_id=status_id,
        message=message,
    )
    obj.update(status)
    obj["file"] = file_obj
    if path_result:
        obj["file_result"] = _file(path_result, FILE_TYPE_UNKNOWN)

    um: dict[str, Any] = obj["unmapped"]
    um.update(
        {
            "op": op_name,
            "ret": ret,
            "syscall_nr": int(d.get("syscall_nr", 0)),
            "dirfd": int(d.get("dirfd", AT_FDCWD)),
            "path": text(raw),
            "base": text(base1),
            "resolved": text(resolved),
            "flags": file_flag_names(flags),
            "dev": int(d.get("dev", 0)),
            "ino": int(d.get("ino", 0)),
        }
    )
    if op == OP_OPEN:
        um["open_flags"] = open_flag_names(open_flags)
        um["mode"] = oct(int(d.get("mode", 0)))
        if int(d.get("resolve", 0)):
            um["resolve"] = _bits(int(d["resolve"]), _RESOLVE_FLAGS)
    else:
        um["op_flags"] = op_flag_names(op, open_flags)
    # two-path ops always, and any string the kernel sent (nothing is dropped)
    if op in (OP_RENAME, OP_LINK, OP_SYMLINK) or raw2 or base2:
        um["path2"] = text(raw2)
        um["base2"] = text(base2)
        um["dirfd2"] = int(d.get("dirfd2", AT_FDCWD))
    if op == OP_SYMLINK:
        um["symlink_target"] = text(raw2)
    if op in (OP_MKDIR, 4) or (op == OP_OPEN and open_flags & 0o20000100):
        um["mode"] = oct(int(d.get("mode", 0)))
    if op == 5:  # chown: (u32)-1 means unchanged
        um["uid"] = int(d.get("uid", 0xFFFFFFFF))
        um["gid"] = int(d.get("gid", 0xFFFFFFFF))
    if op in (9, OP_SETXATTR):
        um["size"] = int(d.get("size", 0))
    if op == OP_SETXATTR or d.get("xattr_name"):
        um["xattr_name"] = text(d.get("xattr_name") or b"")
    return obj

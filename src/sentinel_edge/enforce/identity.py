"""File identity as the kernel sees it: (superblock device, inode, inode generation).

``os.stat`` is not enough: btrfs subvolumes and overlayfs report an
``st_dev`` that is not the superblock's ``s_dev`` the BPF programs read from
``inode->i_sb``. The superblock device is taken from the mount the file is
on (``mnt_id`` in ``/proc/self/fdinfo/<fd>``, then that mount's
``major:minor`` in ``/proc/self/mountinfo``), encoded like the kernel's
``new_encode_dev`` (``os.makedev``). The generation comes from the
``FS_IOC_GETVERSION`` ioctl; where the filesystem does not answer it
(tmpfs, overlayfs), it is None and only (dev, ino) are compared.
"""

from __future__ import annotations

import fcntl
import os
import stat
import struct
from pathlib import Path

from sentinel_edge.enforce.model import FileIdentity
from sentinel_edge.errors import EnforceError

FS_IOC_GETVERSION = 0x80087601  # _IOR('v', 1, long) on 64-bit


def mount_devices(mountinfo: str = "/proc/self/mountinfo") -> dict[int, int]:
    """mount id -> superblock device (new_encode_dev) for every mount of this mount namespace."""
    out: dict[int, int] = {}
    try:
        text = Path(mountinfo).read_text()
    except OSError as exc:
        raise EnforceError(f"cannot read {mountinfo}: {exc}") from exc
    for line in text.splitlines():
        parts = line.split(" ", 3)
        if len(parts) < 3:
            continue
        major, _, minor = parts[2].partition(":")
        out[int(parts[0])] = os.makedev(int(major), int(minor))
    return out


def _mnt_id(fd: int) -> int:
    with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as f:
        for line in f:
            if line.startswith("mnt_id:"):
                return int(line.split()[1])
    raise EnforceError(f"no mnt_id in /proc/self/fdinfo/{fd}")


def generation_of_fd(fd: int) -> int | None:
    """The inode generation of an open file, or None where the filesystem has no FS_IOC_GETVERSION."""
    buf = bytearray(8)
    try:
        fcntl.ioctl(fd, FS_IOC_GETVERSION, buf, True)
    except OSError:
        return None
    return int(struct.unpack("<q", bytes(buf))[0]) & 0xFFFFFFFF


def identity_of_fd(fd: int, path: str = "", devices: dict[int, int] | None = None) -> FileIdentity:
    """Identity of an open file (a regular file opened by the caller, or an fd fanotify handed over)."""
    try:
        st = os.fstat(fd)
        mnt = _mnt_id(fd)
    except OSError as exc:
        raise EnforceError(f"cannot identify {path or f'fd {fd}'}: {exc}") from exc
    devs = devices if devices is not None and mnt in devices else mount_devices()
    dev = devs.get(mnt)
    if dev is None:
        raise EnforceError(f"cannot identify {path or f'fd {fd}'}: mount {mnt} is not in /proc/self/mountinfo")
    return FileIdentity(dev=dev, ino=st.st_ino, gen=generation_of_fd(fd), path=path)


def identity_of_path(path: str | Path, devices: dict[int, int] | None = None) -> FileIdentity:
    """Identity of the file a path names, symlinks followed (what exec of that path would run).

    Raises EnforceError naming the path when it does not exist or is not a
    regular file (a directory, FIFO or device has no executable identity).
    """
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except OSError as exc:
        raise EnforceError(f"cannot identify {p}: {exc.strerror}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise EnforceError(f"cannot identify {p}: not a regular file")
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise EnforceError(f"cannot identify {p}: {exc.strerror}") from exc
    try:
        return identity_of_fd(fd, os.path.realpath(p), devices)
    finally:
        os.close(fd)
